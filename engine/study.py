"""The pipeline end to end for one study: spec -> plan -> execute -> store -> analyze."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import duckdb
import pandas as pd

from engine.kernel.version import __version__
from engine.analyze.design_power import Budget, PlanPrecision, TargetSeeds, plan_precision, target_lines
from engine.analyze.live import LivePublisher, NoSnapshot
from engine.analyze.plan_cost import PlanEstimate, estimate_plan  # noqa: F401 (the API of `plan`)
from engine.analyze.summary import summary_frame
from engine.execute import loop as event_loop
from engine.execute.gateway import Gateway
from engine.execute.runner import RunSummary, execute, trials_to_run
from engine.execute.transports import check_credentials
from engine.judging.run import run_judges, study_judges, JudgeRunSummary
from engine.judging.catalog import judge_models, make_judges
from engine.kernel.paths import REPO_ROOT
from engine.plan.compile import compile_plan, Plan
from engine.providers.prepare import prepare_models
from engine.spec.load import LoadedSpec, load_spec
from engine.spec.schema import Budget as BudgetSpec
from engine.checks import check_study
from engine.report.sections import calibration
from engine.report.sections.preregistration import register_study
from engine.report.study_report import Report, build_report_for
from engine.store.db import StoreBusy, StudyStore
from engine.store.lock import study_lock
from engine.store.registration import mark_imported
from engine.store.snapshot import Snapshot, read_snapshot

RECORDED_PACKAGES = ("litellm", "llama_cpp_python", "duckdb", "hydra-core", "omegaconf", "pydantic",
                     "numpy", "scipy", "statsmodels", "pandas")


def load_study(study: str, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """Compose and validate a study: the spec's own fields, then every check across stages (design,
    judges, report sections). Raises SpecError before anything is written."""
    return check_study(load_spec(study, overrides))


def plan_precision_of(plan: Plan) -> tuple[PlanPrecision, str | None]:
    """The design's precision and power, measured on the study's database when it exists and
    holds finished trials of the plan; with why it was not read, if it was not."""
    path = store_path(plan.loaded)
    if not path.exists():
        return plan_precision(plan, None), None
    try:
        store = StudyStore(path, read_only=True)
    except StoreBusy as exc:
        live = running_snapshot(plan.loaded)
        return plan_precision(plan, None), str(exc) if live is None else live[1]
    try:
        return plan_precision(plan, store.con), None
    except duckdb.Error as exc:  # a database of another scenario or an older schema
        return plan_precision(plan, None), f"{path} could not be read ({type(exc).__name__})"
    finally:
        store.close(checkpoint=False)


def seeds_cost(target: TargetSeeds, est: PlanEstimate, budget: BudgetSpec) -> list[str]:
    """What reaching a target half-width takes: seeds per rate, and the plan's calls, tokens and cost
    scaled to them, flagged when over the study's budget."""
    return target_lines(target, est.calls, est.prompt_tokens + est.completion_tokens, est.usd,
                        Budget(budget.max_usd, budget.max_tokens))


def store_path(loaded: LoadedSpec) -> Path:
    return Path(loaded.spec.store.path)


def writing(loaded: LoadedSpec, command: str) -> AbstractContextManager[None]:
    """Hold the study's one-writer lock for `command` (run, judge, report, ...): StoreBusy, before
    anything is called or written, while another command writes the same study."""
    return study_lock(store_path(loaded), command)


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in RECORDED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def git_sha() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def open_store(loaded: LoadedSpec, path: Path | None = None) -> StudyStore:
    store = StudyStore(path or store_path(loaded))
    scenario = loaded.scenario
    try:
        if scenario.migrations_dir is not None:  # a scenario without tables of its own has none
            store.migrate_component(scenario.name, scenario.migrations_dir)
    except BaseException:
        store.close(checkpoint=False)
        raise
    return store


def record(store: StudyStore, loaded: LoadedSpec, plan: Plan) -> None:
    """The spec version, its provenance and its plan, before anything runs under it."""
    spec = loaded.spec
    if not store.has_study(loaded.spec_hash):  # a rerun of the same spec records nothing again
        store.record_study(spec_hash=loaded.spec_hash, name=spec.name, title=spec.title, spec=loaded.resolved,
                           overrides=loaded.overrides, command=loaded.reproduce_command,
                           engine_version=__version__, package_versions=package_versions(), git_sha=git_sha())
    store.record_plan(loaded.spec_hash, [(t.trial_id, t.cell_id, t.cell, t.seed) for t in plan.trials])


async def play(plan: Plan, store: StudyStore, gateway: Gateway, show_progress: bool, todo,
               on_commit=None) -> RunSummary:
    """The trials, on the executor the spec names."""
    if plan.loaded.spec.executor.backend == "ray":
        from engine.execute.ray_backend import add_stats, execute_on_ray

        summary = await execute_on_ray(plan, store, show_progress=show_progress)
        add_stats(gateway.stats, summary.stats)  # the judges that follow share the budget the trials spent
        return summary
    return await execute(plan, store, gateway=gateway, show_progress=show_progress, todo=todo, on_commit=on_commit)


def run_study(study: str, overrides: list[str] | tuple[str, ...] = (), *, show_progress: bool = True,
              gateway_factory=None, judge: bool = True,
              calibrate: bool = False) -> tuple[LoadedSpec, RunSummary, pd.DataFrame]:
    """Validate, plan, execute (resuming), judge, and return the per-cell summary."""
    loaded = load_study(study, overrides)
    summary, table = run_loaded(loaded, show_progress=show_progress, gateway_factory=gateway_factory, judge=judge,
                                calibrate=calibrate)
    return loaded, summary, table


def run_loaded(loaded: LoadedSpec, *, store_at: Path | None = None, show_progress: bool = True,
               gateway_factory=None, judge: bool = True, calibrate: bool = False) -> tuple[RunSummary, pd.DataFrame]:
    """Plan, execute and judge a validated spec into its database (or `store_at`: a sweep job's shard)."""
    # Everything imported and composed so far lives until the process ends: keep it out of every
    # later garbage collection (a full one over it cost 0.1 s, half of a cached rerun). The event
    # loop unfreezes when it ends; unfreezing again below covers a failure before it starts.
    gc.freeze()
    try:
        # A sweep job writes only its shard: the sweep's launching process holds the study's lock.
        with writing(loaded, "run") if store_at is None else nullcontext():
            return _run_frozen(loaded, store_at, show_progress, gateway_factory, judge, calibrate)
    finally:
        gc.unfreeze()


def _run_frozen(loaded: LoadedSpec, store_at: Path | None, show_progress: bool, gateway_factory,
                judge: bool, calibrate: bool = False) -> tuple[RunSummary, pd.DataFrame]:
    plan = compile_plan(loaded)
    spec = loaded.spec
    scenario = loaded.scenario
    # Keys are checked before anything is opened or written (their variables, never their values).
    check_credentials({k: spec.models[k] for cell in plan.cells for k in scenario.cell_models(cell)}
                      | judge_models(make_judges(spec) if judge else []))
    store = open_store(loaded, store_at)
    local = spec.executor.backend == "local"
    try:
        # The snapshot `watch` reads (a sweep job's shard has none: the sweep is watched by its jobs' logs).
        live = LivePublisher(store, loaded, read_db=local) if store_at is None else NoSnapshot()
        with live:
            say = _announcer(live, show_progress)
            # Only models with trials left to play are checked and loaded (a finished study loads none,
            # and does not even import litellm).
            todo = trials_to_run(plan, store)
            used = {key for t, _ in todo[0] for key in scenario.cell_models(t.cell)}
            # Loaded here, where the run says so, rather than by the first call (on its timeout).
            prepare_models(spec.models, used, spec.executor.local_threads, load=local, say=say)
            if store_at is None:  # a sweep job's shard is not the study's record (sweeps register nothing yet)
                # Before the first trial (and before an import): what the report will test, hashed.
                register_study(store.con, loaded, "run")
            record(store, loaded, plan)
            if store_at is None and not plan.trials:  # an analysis-only study: its data is the import
                mark_imported(store.con, spec.name)
            imported = scenario.ingest(store, loaded)
            gateway = gateway_factory(spec.executor, store) if gateway_factory else Gateway(spec.executor, store)
            if todo[0]:
                # Import the provider libraries now: a first call must not spend its timeout importing.
                say("importing the provider libraries")
                gateway.warm_up([spec.models[k] for k in sorted(used)])
            live.say("playing trials")
            summary = event_loop.run(play(plan, store, gateway, show_progress, todo, on_commit=live.progress))
            summary.imported = imported
            if spec.judges and judge:
                # Judges grade what is stored; a rerun grades only what has no verdict yet. Judges that
                # call no model (the heuristic) still run when the budget has stopped the trials.
                live.say("judging")
                summary.judging = run_judges(loaded, store, gateway=gateway, show_progress=show_progress,
                                             on_commit=live.progress)
            if summary.stopped_by_budget:
                summary.budget_note = gateway.budget.describe()
            # Fits the report shows, stored now that the data are in (the report opens the file read-only).
            live.say("storing the analyses")
            scenario.cache_analyses(store, loaded)
            if calibrate and store_at is None and any(s.get("type") == "calibration" for s in spec.report.sections):
                # The report's calibration section, at the default draws, on the data just stored.
                say("simulating the design for the calibration section")
                calibration.store(store.con, calibration.run_calibration(
                    plan, store.con, calibration.DEFAULT_DRAWS, calibration.DEFAULT_SEED, lambda n: None, lambda n: None))
            table = summary_frame(store.con, loaded.spec_hash, spec, scenario)
            live.finished(table, summary.stopped_by_budget)
    finally:
        store.close()
    return summary, table


def _announcer(live: LivePublisher | NoSnapshot, show_progress: bool):
    """Each step before the trials start, said where the progress shows and in the live snapshot."""
    def say(step: str) -> None:
        live.say(step)
        if show_progress:
            print(f"{step} ...", flush=True)
    return say


def regrade_study(study: str, overrides: list[str] | tuple[str, ...] = (), *, only: list[str] | None = None,
            show_progress: bool = True, gateway_factory=None) -> tuple[LoadedSpec, JudgeRunSummary]:
    """Judge the stored responses again (with the spec's judges, or some of them): calls the judges'
    models only, never the models under test."""
    loaded = load_study(study, overrides)
    # A study without judges, an unknown --judge or a missing key variable fails before anything opens.
    check_credentials(judge_models(study_judges(loaded, only)))
    path = store_path(loaded)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the study first")
    with writing(loaded, "judge"):
        store = open_store(loaded)
        try:
            spec = loaded.spec
            register_study(store.con, loaded, "judge")
            record(store, loaded, compile_plan(loaded))
            gateway = gateway_factory(spec.executor, store) if gateway_factory else None
            summary = run_judges(loaded, store, only=only, gateway=gateway, show_progress=show_progress)
            loaded.scenario.cache_analyses(store, loaded)
        finally:
            store.close()
    return loaded, summary


def study_summary(study: str, overrides: list[str] | tuple[str, ...] = ()) -> tuple[LoadedSpec, pd.DataFrame, str | None]:
    """The per-cell table from the database alone (no model calls); while a run holds the database,
    from the snapshot it publishes, with a note saying so (the third value; None otherwise)."""
    loaded = load_study(study, overrides)
    path = store_path(loaded)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the study first")
    try:
        store = StudyStore(path, read_only=True)
    except StoreBusy:
        live = running_snapshot(loaded)
        if live is None:
            raise
        table, note = live
        if table is None:
            raise StoreBusy(f"{note}; its first results are not published yet: try again in a few seconds, "
                            f"or follow it with `python -m engine watch {study}`") from None
        return loaded, table, note
    try:
        table = summary_frame(store.con, loaded.spec_hash, loaded.spec, loaded.scenario)
    finally:
        store.close(checkpoint=False)
    return loaded, table, None


def running_snapshot(loaded: LoadedSpec) -> tuple[pd.DataFrame | None, str] | None:
    """The summary table a running study of this spec last published, and a note that says when
    (None: no run of this spec is publishing one)."""
    snap = read_snapshot(store_path(loaded))
    if snap is None or not snap.running or snap.data.get("spec_hash") != loaded.spec_hash:
        return None
    note = live_note(snap)
    table = snap.data.get("table")
    if not table:
        return None, note
    return pd.DataFrame(table["rows"], columns=table["columns"]), note


def live_note(snap: Snapshot) -> str:
    """"live snapshot of a running study, updated 3 s ago (...)": how old what is shown is."""
    stages = snap.data.get("progress") or {}
    table = snap.data.get("table") or {}
    where = ", ".join(f"{p['finished']}/{p['planned']} {what}" for what, p in stages.items()) or snap.data.get("phase")
    computed = f", its table computed {max(0, time.time() - table['computed_at']):.0f} s ago" if table else ""
    return (f"live snapshot of a running study, updated {snap.age_s:.0f} s ago ({where}{computed}; "
            f"pid {snap.data['writer']['pid']} holds the database)")


def build_report(study: str, overrides: list[str] | tuple[str, ...] = (), *, formats: tuple[str, ...] = ("html", "pdf"),
                 out_dir: Path | None = None, force_pandoc: bool = False) -> Report:
    """The study's report (HTML and PDF) from its database; no model calls."""
    loaded = load_study(study, overrides)
    with writing(loaded, "report"):
        return build_report_for(loaded, formats=formats, out_dir=out_dir, force_pandoc=force_pandoc)


def calibrate_study(study: str, overrides: list[str] | tuple[str, ...] = (), *, draws: int = calibration.DEFAULT_DRAWS,
                    seed: int = calibration.DEFAULT_SEED, progress=lambda n: None,
                    start=lambda total: None, model_sd: float = calibration.MODEL_SD) -> tuple[LoadedSpec, dict, bool]:
    """Simulate the study's design (engine/analyze/calibration.py) with its data's base rates where its
    database holds finished trials, else the spec's assumptions; store the result in the database (when
    there is one) for the report's calibration section. Returns the result and whether it was stored.
    Reads the study's results only; writes one fit_cache row."""
    loaded = load_study(study, overrides)
    plan = compile_plan(loaded)
    path = store_path(loaded)
    if not path.exists():
        return loaded, calibration.run_calibration(plan, None, draws, seed, progress, start, model_sd), False
    store = StudyStore(path, read_only=True)
    try:
        result = calibration.run_calibration(plan, store.con, draws, seed, progress, start, model_sd)
    finally:
        store.close(checkpoint=False)
    with writing(loaded, "calibrate"):
        store = StudyStore(path)
        try:
            stored = calibration.store(store.con, result)
        finally:
            store.close()
    return loaded, result, stored
