"""One job of a Hydra multirun: run the job's spec into its own shard database.

Hydra's launchers (basic, joblib, submitit) call `sweep_job` wherever the job runs; it needs nothing
from the launching process but the config Hydra hands it, so it works the same on a Slurm node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from engine.kernel.spec_redaction import redact_yaml_file


def job_study_file() -> Path:
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    main = next(s for s in hc.runtime.config_sources if s.provider == "main")
    return Path(main.path.removeprefix("file://")) / f"{hc.job.config_name}.yaml"


def redact_hydra_files(sweep_dir: Path) -> None:
    """Hydra's sweeper writes the sweep's whole config, overrides included, to multirun.yaml before
    any job starts: each job and the launching process mask its secrets at once."""
    path = Path(sweep_dir) / "multirun.yaml"
    if path.exists():
        redact_yaml_file(path)


def sweep_job(cfg: DictConfig) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    from engine.checks import check_study
    from engine.spec.load import Sources, validate_spec
    from engine.study import run_loaded
    from engine.sweep.expand import shard_path

    hc = HydraConfig.get()
    redact_hydra_files(Path(hc.sweep.dir))  # written by the sweeper just before the first job starts
    overrides = tuple(hc.overrides.task)
    sources = Sources(job_study_file(), dict(OmegaConf.to_container(hc.runtime.choices)), overrides)
    loaded = check_study(validate_spec(OmegaConf.to_container(cfg, resolve=True), sources))
    shard = shard_path(Path(hc.sweep.dir), overrides)
    summary, _ = run_loaded(loaded, store_at=shard, show_progress=False)
    return {"spec_hash": loaded.spec_hash, "shard": str(shard), "done": summary.done + summary.skipped_done,
            "errors": summary.errors, "not_run_budget": summary.not_run_budget}
