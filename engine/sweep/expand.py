"""A sweep: the study's overrides expanded into jobs exactly as Hydra's basic sweeper expands them,
each job validated before any of them runs."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from engine.kernel.errors import SpecError
from engine.kernel.hashing import content_hash
from engine.kernel.spec_redaction import override_without_credentials, redact_override, redact_setting, redact_text
from engine.checks import check_study
from engine.spec.load import (LoadedSpec, absorb_searchpath, compose, load_spec, resolve_study_file,
                              study_argument)


@dataclass(frozen=True)
class SweepJob:
    index: int
    overrides: tuple[str, ...]  # the job's task overrides, as Hydra hands them to the job
    swept: dict[str, str]       # swept key -> this job's value, as written (a secret masked: shown and stored)
    loaded: LoadedSpec


@dataclass(frozen=True)
class Sweep:
    study_file: Path
    sweep_id: str
    keys: tuple[str, ...]              # the swept keys, in sweep order
    task_overrides: tuple[str, ...]    # the command line's study overrides (sweep syntax intact)
    hydra_overrides: tuple[str, ...]   # hydra.* and hydra/ overrides: launcher settings, never the spec
    jobs: tuple[SweepJob, ...]

    @property
    def name(self) -> str:
        return self.jobs[0].loaded.spec.name

    @property
    def store_path(self) -> Path:
        return Path(self.jobs[0].loaded.spec.store.path)

    @property
    def dir(self) -> Path:
        """Hydra's sweep dir: the jobs' shards and Hydra's own job logs."""
        # Absolute: jobs may run elsewhere (a Slurm node, a changed working directory).
        return self.store_path.resolve().parent / f"{self.name}.sweeps" / self.sweep_id

    @property
    def command(self) -> str:
        """How to run the sweep again (shown in its report; a secret on the command line masked)."""
        overrides = [redact_override(o) for o in (*self.task_overrides, *self.hydra_overrides)]
        return " ".join(["python -m engine run", study_argument(self.study_file), shlex.join(["-m", *overrides])])

    def shard(self, job: SweepJob) -> Path:
        return shard_path(self.dir, job.overrides)


def shard_path(sweep_dir: Path, overrides: tuple[str, ...] | list[str]) -> Path:
    """One database per job, named by its overrides: a rerun of the sweep resumes each job's shard.
    Credentials do not count (as in the spec's hash): the name offers no test of a guessed password."""
    return sweep_dir / "shards" / f"{content_hash([override_without_credentials(o) for o in overrides], 12)}.duckdb"


def is_hydra_override(text: str) -> bool:
    key = text.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def expand_sweep(study: str, overrides: list[str] | tuple[str, ...]) -> Sweep:
    """Jobs of `python -m engine run STUDY -m ...`: the study's `hydra.sweeper.params`, then the
    command line (which wins for a key both set), crossed."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException

    study_file = resolve_study_file(study)
    overrides = absorb_searchpath(overrides)
    hydra_overrides = tuple(o for o in overrides if is_hydra_override(o))
    task_overrides = tuple(o for o in overrides if not is_hydra_override(o))
    parser = OverridesParser.create()
    try:
        parsed_cli = parser.parse_overrides(list(task_overrides))
        fixed = [o.input_line for o in parsed_cli if not o.is_sweep_override()]
        _, sources = compose(str(study_file), [*fixed, *hydra_overrides])
        params = [f"{k}={v}" for k, v in sources.sweeper_params]
        parsed = parser.parse_overrides([*params, *task_overrides])
        batches = BasicSweeper.split_arguments(parsed, None)[0]
    except (OverrideParseException, HydraException) as exc:
        message = redact_text(" ".join(str(exc).split()))
        if "ConfigLoader is not set" in message:  # glob() needs Hydra's config loader, which the expansion lacks
            message = "glob() sweeps are not supported: list the options instead, e.g. model_set=a,b"
        raise SpecError(message, file="sweep overrides (command line or hydra.sweeper.params)") from None
    last = {o.get_key_element(): o for o in parsed}  # a later override of a key replaces the earlier one
    keys = tuple(k for k, o in last.items() if o.is_sweep_override())
    jobs = []
    for index, job_overrides in enumerate(batches):
        values = dict(o.split("=", 1) for o in job_overrides)
        loaded = check_study(load_spec(str(study_file), job_overrides))
        jobs.append(SweepJob(index, tuple(job_overrides), {k: redact_setting(k, values[k]) for k in keys}, loaded))
    stores = {j.loaded.spec.store.path for j in jobs}
    if len(stores) > 1:
        raise SpecError("the jobs of one sweep must share one database; do not sweep it", key="store.path")
    sweep_id = content_hash({"study": study_file.stem,
                             "jobs": [[override_without_credentials(o) for o in j.overrides] for j in jobs]}, 12)
    return Sweep(study_file, sweep_id, keys, task_overrides, hydra_overrides, tuple(jobs))
