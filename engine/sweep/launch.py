"""`python -m engine run STUDY -m ...`: validate every job, launch them through Hydra's multirun
(whichever launcher the study or command line picks), then merge the shards into the study database."""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from engine.kernel.errors import SpecError
from engine.kernel.paths import hydra_quoted, hydra_searchpath_override
from engine.kernel.spec_redaction import redact_override
from engine.store.db import transaction
from engine.store.lock import study_lock
from engine.sweep.attempts import LAUNCH_ENV, describe, read_attempts, unfinished
from engine.sweep.expand import Sweep, expand_sweep
from engine.sweep.job import redact_hydra_files
from engine.sweep.merge import MergeError, copy_results


class SweepFailed(Exception):
    """A job of the sweep failed; finished jobs keep their shards and a rerun resumes."""


@dataclass(frozen=True)
class SweepResult:
    sweep: Sweep
    merged: dict[str, int]  # rows added to the study database, per table


def launch_overrides(sweep: Sweep) -> list[str]:
    """What Hydra's multirun is given: the sweep's own overrides, then where to find the config groups
    and write the jobs' logs (paths quoted: a folder may be named anything)."""
    # No .hydra folder per job: its config.yaml, hydra.yaml and overrides.yaml would copy every
    # override (an api_base with a password) into the sweep folder; Hydra's logs are redacted. (A
    # command line that sets these itself wins.)
    private = ["hydra.output_subdir=null", "hydra/hydra_logging=redacted", "hydra/job_logging=redacted"]
    return [*private, *sweep.task_overrides, *sweep.hydra_overrides, hydra_searchpath_override(),
            f"hydra.sweep.dir={hydra_quoted(str(sweep.dir))}", f"hydra.job.name={sweep.name}"]


def check_launchable(sweep: Sweep) -> None:
    """Hydra's multirun will parse every override it is given: checked before any shard is written."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in launch_overrides(sweep):
        try:
            parser.parse_override(override)
        except OverrideParseException as exc:
            raise SpecError(f"Hydra cannot parse this sweep override: {' '.join(str(exc).split())[:300]}",
                            file=f"the sweep's launch (override '{redact_override(override)}')") from None


def launch(sweep: Sweep) -> None:
    """Hand the sweep to Hydra: its sweeper expands the same jobs, its launcher runs them."""
    import hydra

    from engine.sweep.job import LAUNCHER_ENV, launcher_mark, sweep_job

    argv = [f"{sweep.name}-sweep", "--multirun", *launch_overrides(sweep)]
    saved, saved_env = sys.argv, {k: os.environ.get(k) for k in (LAUNCHER_ENV, LAUNCH_ENV)}
    sys.argv = argv
    # Jobs started on this machine (joblib workers, submitit local jobs) inherit it and stop when this
    # process is gone.
    os.environ[LAUNCHER_ENV] = launcher_mark()
    # Jobs record their scheduler job under this launch (sbatch passes the environment on).
    launch_id = os.environ[LAUNCH_ENV] = uuid.uuid4().hex
    stop_idle_joblib_workers()
    try:
        hydra.main(config_path=str(sweep.study_file.parent), config_name=sweep.study_file.stem,
                   version_base="1.3")(sweep_job)()
    except SystemExit as exc:  # Hydra reports a failed job, then exits
        if exc.code:
            raise SweepFailed(f"a job of sweep {sweep.sweep_id} failed (Hydra's log: {sweep.dir})"
                              f"{failed_jobs(sweep, launch_id)}\n"
                              "finished jobs are kept: rerun the same command to resume") from None
    finally:
        sys.argv = saved
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        redact_hydra_files(sweep.dir)


def stop_idle_joblib_workers() -> None:
    """joblib keeps its worker processes for the next call (loky's reusable executor), with the environment
    they started in: a second sweep from this process (a notebook, a test) ran in the first one's, without
    an API key exported since and with the last launch's marks. The next sweep starts fresh workers."""
    reusable = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(reusable, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def failed_jobs(sweep: Sweep, launch_id: str) -> str:
    """Each job of this launch that a scheduler ran and that did not finish: which job, and why."""
    lines = []
    for job in sweep.jobs:
        for attempt in unfinished(read_attempts(sweep.shard(job)), launch_id):
            swept = " ".join(f"{k}={v}" for k, v in job.swept.items()) or "the only job"
            lines.append(f"job {job.index} ({swept}): {describe(attempt)}")
    return "".join(f"\n  {line}" for line in lines)


def seed(sweep: Sweep) -> None:
    """Give every job's shard the study database's finished trials of that job and its response
    cache, so a job replays nothing that is already stored (as running it alone would)."""
    from engine.plan.compile import compile_plan
    from engine.study import open_store

    spent_usd, spent_tokens = study_spend(sweep.store_path)
    for job in sweep.jobs:
        shard = open_store(job.loaded, sweep.shard(job))
        try:
            if sweep.store_path.exists():
                copy_results(shard.con, sweep.store_path.resolve(),
                             only_trials=[t.trial_id for t in compile_plan(job.loaded).trials])
            # The study's budget is shared: each job may spend its part of what is left, on top of
            # the spend its shard already holds (the study's, copied in with the response cache).
            cap = job.loaded.spec.executor.budget
            jobs = len(sweep.jobs)
            shard.set_budget_share(
                None if cap.max_usd is None else shard.spent()[0] + max(0.0, cap.max_usd - spent_usd) / jobs,
                None if cap.max_tokens is None else shard.spent()[1] + max(0, cap.max_tokens - spent_tokens) // jobs,
                sweep.sweep_id, jobs)
        except MergeError as exc:
            raise SweepFailed(str(exc)) from None
        finally:
            shard.close()


def study_spend(path: Path) -> tuple[float, int]:
    """What the study database has spent so far (nothing when it does not exist yet)."""
    from engine.store.db import StudyStore

    if not path.exists():
        return 0.0, 0
    store = StudyStore(path, read_only=True)
    try:
        return store.spent()
    finally:
        store.close(checkpoint=False)


def merge(sweep: Sweep) -> dict[str, int]:
    """Every job's shard into the study database, and the sweep's jobs with their swept values."""
    from engine.study import open_store

    missing = [str(sweep.shard(j)) for j in sweep.jobs if not sweep.shard(j).exists()]
    if missing:
        raise SweepFailed(f"sweep {sweep.sweep_id}: no shard from {len(missing)} job(s): {', '.join(missing)}")
    for job in sweep.jobs:
        ran = shard_spec_hashes(sweep.shard(job))
        if job.loaded.spec_hash not in ran:
            raise SweepFailed(f"job {job.index} of sweep {sweep.sweep_id} ran spec {', '.join(ran) or 'none'}, not "
                              f"{job.loaded.spec_hash} as planned; its shard {sweep.shard(job)} is not merged")
    store = open_store(sweep.jobs[0].loaded)
    added: dict[str, int] = {}
    try:
        for job in sweep.jobs:
            for table, n in copy_results(store.con, sweep.shard(job)).items():
                added[table] = added.get(table, 0) + n
        with transaction(store.con):
            for job in sweep.jobs:
                store.con.execute(
                    "INSERT OR REPLACE INTO sweep_jobs (sweep_id, job_index, study, overrides, swept, spec_hash, shard,"
                    " scheduler_jobs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [sweep.sweep_id, job.index, sweep.name, json.dumps([redact_override(o) for o in job.overrides]),
                     json.dumps(job.swept), job.loaded.spec_hash, str(sweep.shard(job)),
                     json.dumps([a.scheduler_job() for a in read_attempts(sweep.shard(job))])])
    except MergeError as exc:
        raise SweepFailed(str(exc)) from None
    finally:
        store.close()
    return added


def shard_spec_hashes(shard: Path) -> list[str]:
    con = duckdb.connect(str(shard), read_only=True)
    try:
        return [h for (h,) in con.execute("SELECT spec_hash FROM studies").fetchall()]
    finally:
        con.close()


def run_sweep(study: str, overrides: list[str] | tuple[str, ...], *, sweep: Sweep | None = None) -> SweepResult:
    """Seed, launch and merge. `sweep`: the jobs already expanded (and validated) from the same arguments."""
    sweep = sweep or expand_sweep(study, overrides)
    if not sweep.jobs:
        raise SpecError("the sweep has no jobs", file=str(sweep.study_file))
    check_launchable(sweep)
    # Held from seeding to merging: no other command writes the study while its jobs run.
    with study_lock(sweep.store_path, "run -m"):
        Path(sweep.dir).mkdir(parents=True, exist_ok=True)
        seed(sweep)
        launch(sweep)
        return SweepResult(sweep, merge(sweep))
