"""One job of a Hydra multirun: run the job's spec into its own shard database.

Hydra's launchers (basic, joblib, submitit) call `sweep_job` wherever the job runs; it needs nothing
from the launching process but the config Hydra hands it, so it works the same on a Slurm node."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from engine.kernel.spec_redaction import redact_text, redact_yaml_file

# The sweep's launching process, "<host>:<pid>", in its jobs' environment (set by launch.launch).
LAUNCHER_ENV = "ENGINE_SWEEP_LAUNCHER"
EXIT_ORPHANED = 1
WATCH_INTERVAL_S = 0.25


def launcher_mark() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ancestors() -> list[int]:
    """This process's parent, its parent, ... (read from /proc on Linux; elsewhere the parent only)."""
    chain = [os.getppid()]
    while chain[-1] > 1 and len(chain) < 64:
        try:
            stat = Path(f"/proc/{chain[-1]}/stat").read_text()
        except OSError:
            break
        chain.append(int(stat.rsplit(")", 1)[1].split()[1]))  # after "pid (comm)": state, then ppid
    return chain


def stop_with_launcher() -> threading.Event | None:
    """A job that the sweep's launching process started on this machine (a joblib worker, a submitit
    local job) exits as soon as that process is gone, e.g. killed with kill -9: nobody would merge
    what it goes on paying for. A kill loses at most its trials in flight, as a killed run does (the
    shard's writes are transactions), and a rerun of the sweep resumes the shard. Returns the event
    that ends the watch, or None when there is nothing to watch: the job runs in the launching process
    itself (the basic launcher), or was started by another machine or by Slurm, whose jobs are the
    cluster's to stop (scancel)."""
    host, _, pid = os.environ.get(LAUNCHER_ENV, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) not in ancestors():
        return None
    launcher = int(pid)
    done = threading.Event()

    def watch() -> None:
        # Polled: a process is re-parented when its parent dies, so the launcher leaves the chain
        # (PR_SET_PDEATHSIG would fire when the launcher's thread that started the worker ends).
        while not done.wait(WATCH_INTERVAL_S):
            if launcher not in ancestors():
                print(f"sweep job (pid {os.getpid()}): the launching process {launcher} is gone; stopping. "
                      "Rerun the sweep to resume.", file=sys.stderr, flush=True)
                os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="sweep-launcher-watch", daemon=True).start()
    return done


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

    from engine.sweep.attempts import record, scheduler_job
    from engine.sweep.expand import shard_path

    watch = stop_with_launcher()
    hc = HydraConfig.get()
    shard = shard_path(Path(hc.sweep.dir), tuple(hc.overrides.task))
    job = scheduler_job()
    record(shard, job, "start")
    try:
        result = _run_job(cfg, shard)
    except BaseException as exc:  # recorded for the launching process's report, then raised as before
        error = redact_text(f"{type(exc).__name__}: {exc}")
        # Also in the job's own log: Hydra hands the exception back to the launcher, so the scheduler's
        # log would otherwise show a job that "completed successfully".
        print(f"sweep job {shard.stem} failed: {error}", file=sys.stderr, flush=True)
        record(shard, job, "error", error)
        raise
    finally:
        if watch is not None:
            watch.set()
    record(shard, job, "done")
    return result


def _run_job(cfg: DictConfig, shard: Path) -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig

    from engine.checks import check_study
    from engine.spec.load import Sources, validate_spec
    from engine.study import run_loaded

    hc = HydraConfig.get()
    redact_hydra_files(Path(hc.sweep.dir))  # written by the sweeper just before the first job starts
    overrides = tuple(hc.overrides.task)
    sources = Sources(job_study_file(), dict(OmegaConf.to_container(hc.runtime.choices)), overrides)
    loaded = check_study(validate_spec(OmegaConf.to_container(cfg, resolve=True), sources))
    # The shard only: the launching process holds the study's one-writer lock for the whole sweep.
    summary, _ = run_loaded(loaded, store_at=shard, show_progress=False)
    return {"spec_hash": loaded.spec_hash, "shard": str(shard), "done": summary.done + summary.skipped_done,
            "errors": summary.errors, "not_run_budget": summary.not_run_budget}
