"""Plan -> executed trials in the study database. Resumable: finished trials are skipped,
and each trial is committed atomically, so a killed run loses at most the trials in flight."""

from __future__ import annotations

import time
import traceback
from collections import Counter
from operator import attrgetter
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Protocol, TypeVar

from engine.kernel.errors import BudgetExhausted, ParseFailure, ProviderError, WeightsError
from engine.execute.context import CallContext
from engine.execute.gateway import Gateway, GatewayStats
from engine.execute.limits import Lane
from engine.execute.pool import run_pools
from engine.execute.eta import CellWork
from engine.execute.progress import RunProgress
from engine.plan.compile import Plan
from engine.kernel.records import Trial
from engine.kernel.redaction import redact
from engine.kernel.contracts import Scenario
from engine.spec.schema import Executor
from engine.store.db import StudyStore
from engine.store.resume import still_to_do
from engine.kernel.records import now


class LaterStageSummary(Protocol):
    """What the run summary reads of a later stage's summary (the judge stage's, set by the study
    orchestrator): typed structurally so execute imports no later stage."""

    not_run_budget: int


@dataclass
class RunSummary:
    planned: int
    skipped_done: int
    done: int
    errors: int
    not_run_budget: int
    stats: GatewayStats
    seconds: float
    backend: str = "local"  # which executor played the trials
    imported: str | None = None  # analysis-only studies: what was imported
    judging: LaterStageSummary | None = None  # the judge stage's summary, when the study has judges
    routes: dict[str, Any] = field(default_factory=dict)  # route -> RouteEvents, where a 429 came back
    budget_note: str | None = None  # what the budget stood at, when it stopped the run
    cpu_s: float = 0.0  # this process's CPU time while the trials ran
    replayed: int = 0  # Ray: trials played again after their worker or node was lost mid-trial

    @property
    def stopped_by_budget(self) -> bool:
        return bool(self.not_run_budget or (self.judging and self.judging.not_run_budget))


def round_robin(todo: list[tuple[Trial, int]]) -> list[tuple[Trial, int]]:
    """Seed-major order (one trial of each cell, then the next seed), so trials in flight span
    models and their calls can run side by side. Order never changes ids or results."""
    rank: dict[str, int] = {}
    for trial, _ in todo:
        rank.setdefault(trial.cell_id, len(rank))
    seen: dict[str, int] = {}
    keyed = []
    for trial, attempt in todo:
        seen[trial.cell_id] = seen.get(trial.cell_id, 0) + 1
        keyed.append(((seen[trial.cell_id], rank[trial.cell_id]), trial, attempt))
    return [(t, a) for _, t, a in sorted(keyed, key=lambda k: k[0])]


def trials_to_run(plan: Plan, store: StudyStore) -> tuple[list[tuple[Trial, int]], int]:
    """Trials still to play with their attempt number, and how many are already finished."""
    retry_errors = plan.loaded.spec.executor.retry_errored_trials
    return still_to_do(plan.trials, attrgetter("trial_id"), store.trial_statuses(),
                       lambda status: status == "done" or (status == "error" and not retry_errors))


@dataclass
class TrialRecord:
    """A played trial, ready to be committed by the one process that writes the database."""

    row: dict[str, Any]
    calls: list[dict[str, Any]]
    scenario_rows: dict[str, list[dict[str, Any]]]

    @property
    def status(self) -> str:
        return self.row["status"]


async def play_trial(scenario: Scenario, trial: Trial, attempt: int, ctx: CallContext) -> TrialRecord:
    """Play one trial. Provider, parse and weights failures become an 'error' record, never an
    outcome; BudgetExhausted propagates (the trial is left for a rerun); anything else is a bug."""
    t0, began = time.perf_counter(), now()
    status, kind, error, rows = "done", None, None, {}
    try:
        rows = (await scenario.run(trial, ctx)).rows
    except (ProviderError, ParseFailure, WeightsError) as exc:
        status, error = "error", redact(str(exc))
        kind = {ProviderError: "provider", ParseFailure: "parse", WeightsError: "weights"}[type(exc)]
    row = {"trial_id": trial.trial_id, "scenario": scenario.name, "cell_id": trial.cell_id, "cell": trial.cell,
           "seed": trial.seed, "inputs": trial.inputs, "status": status, "error_kind": kind, "error": error,
           "attempt": attempt, "started_at": began, "finished_at": now(), "duration_s": time.perf_counter() - t0}
    return TrialRecord(row, ctx.calls, rows if status == "done" else {})


Routes = frozenset[str]


def cell_routes(plan: Plan, cell: dict[str, Any]) -> Routes:
    """The routes a cell's models call (none for a scripted cell)."""
    spec = plan.loaded.spec
    return frozenset(spec.models[k].route for k in plan.scenario.cell_models(cell) if k in spec.models)


def by_routes(plan: Plan, todo: list[tuple[Trial, int]]) -> dict[Routes, list[tuple[Trial, int]]]:
    """The trials to play grouped by the routes their cell's models call (each group in `todo`'s order)."""
    routes_of: dict[str, Routes] = {}
    groups: dict[Routes, list[tuple[Trial, int]]] = {}
    for job in todo:
        trial = job[0]
        routes = routes_of.get(trial.cell_id)
        if routes is None:
            routes = routes_of[trial.cell_id] = cell_routes(plan, trial.cell)
        groups.setdefault(routes, []).append(job)
    return groups


Lanes = frozenset[Lane]


def cell_lanes(plan: Plan, cell: dict[str, Any]) -> Lanes:
    """The lanes a cell's models call (none for a scripted cell)."""
    spec = plan.loaded.spec
    return frozenset(Lane.of(spec.models[k]) for k in plan.scenario.cell_models(cell) if k in spec.models)


def by_lanes(plan: Plan, todo: list[tuple[Trial, int]]) -> dict[Lanes, list[tuple[Trial, int]]]:
    """The trials to play grouped as by `by_routes`, but with each in-process local model in a lane of its
    own: trials of different local models are played side by side. The cells that share a local model
    (directly or through a cell of two) form one group, each in `todo`'s order: at the default one trial
    at a time, so each model's calls come in the plan's order whatever the timing (its replies do not depend
    on that order, see engine/providers/prefix_states.py, but its prefix reuse and the run's log do)."""
    lanes_of: dict[str, Lanes] = {}
    for trial, _ in todo:
        if trial.cell_id not in lanes_of:
            lanes_of[trial.cell_id] = cell_lanes(plan, trial.cell)
    # Cells joined by a local model they share: each cell's group is its component's lanes.
    root: dict[Lane, Lane] = {}

    def find(lane: Lane) -> Lane:
        while root.setdefault(lane, lane) != lane:
            lane = root[lane]
        return lane

    for lanes in lanes_of.values():
        local = sorted(lane for lane in lanes if lane.local_model)
        for lane in local[1:]:
            root[find(lane)] = find(local[0])
    component: dict[Lane, set[Lane]] = {}
    for lanes in lanes_of.values():
        local = [lane for lane in lanes if lane.local_model]
        if local:
            component.setdefault(find(local[0]), set()).update(lanes)
    groups: dict[Lanes, list[tuple[Trial, int]]] = {}
    for job in todo:
        lanes = lanes_of[job[0].cell_id]
        local = next((lane for lane in lanes if lane.local_model), None)
        key = frozenset(component[find(local)]) if local else lanes
        groups.setdefault(key, []).append(job)
    return groups


def lane_routes(lanes: Lanes) -> Routes:
    return frozenset(lane.route for lane in lanes)


def cell_work(plan: Plan, todo: list[tuple[Trial, int]]) -> dict[str, CellWork]:
    """Each cell's trials, finished ones and the plan's calls per trial: what the ETA counts."""
    left = Counter(trial.cell_id for trial, _ in todo)
    calls_of: dict[int, int] = {}  # the trials of one cell and item share one inputs object
    cells: dict[str, CellWork] = {}
    for trial in plan.trials:
        cell = cells.get(trial.cell_id)
        if cell is None:
            cell = cells[trial.cell_id] = CellWork(cell_routes(plan, trial.cell), 0)
        calls = calls_of.get(id(trial.inputs))
        if calls is None:
            calls = calls_of[id(trial.inputs)] = sum(e.calls for e in plan.scenario.estimate(trial.inputs))
        cell.planned += 1
        cell.calls_planned += calls
    for cell_id, cell in cells.items():
        cell.calls_planned /= cell.planned
        cell.finished = cell.planned - left[cell_id]
    return cells


G = TypeVar("G", bound=Hashable)


def pool_sizes(executor: Executor, groups: Iterable[G],
               routes_of: Callable[[G], Iterable[str]] = lambda routes: routes) -> dict[G, int]:
    """Trials in flight per group of routes: enough to fill its routes' slots. Trials are admitted
    per group, so trials waiting on a rate-limited route (for a slot, in backoff, in a Retry-After
    pause) never hold the places of another route's trials. `max_concurrent_trials` is the total:
    shared among the groups by their slots, each at least one. `routes_of`: a group's routes."""
    groups = list(groups)
    cap = executor.max_concurrent_trials
    if cap is None or len(groups) < 2:
        return {group: executor.trials_in_flight(set(routes_of(group))) for group in groups}
    slots = {group: sum(executor.limit_for(r) for r in set(routes_of(group))) or 1 for group in groups}
    total = sum(slots.values())
    return {group: max(1, cap * slots[group] // total) for group in groups}


class CoreShare:
    """Tells the local provider which in-process models still have trials to play: they share the
    machine's cores, and when one model's trials are done the others get its cores. A run drops the
    prompt prefixes an earlier run in this process left (memory; replies never depend on them)."""

    def __init__(self, groups: Iterable[Lanes]):
        self.left: Counter[str] = Counter(lane.local_model for lanes in groups for lane in lanes if lane.local_model)
        if self.left:
            from engine.providers.local_llama import local_provider

            local_provider().forget_prompts()
        self._tell()

    def drained(self, lanes: Lanes) -> None:
        self.left.subtract(lane.local_model for lane in lanes if lane.local_model)
        self._tell()

    def _tell(self) -> None:
        if not self.left:
            return
        from engine.providers.local_llama import local_provider, model_name

        local_provider().share_cores(model_name(m) for m, n in self.left.items() if n > 0)


async def execute(plan: Plan, store: StudyStore, *, gateway: Gateway | None = None, show_progress: bool = True,
                  todo: tuple[list[tuple[Trial, int]], int] | None = None,
                  on_commit: Callable[[RunProgress, Gateway], None] | None = None) -> RunSummary:
    """Play the plan's unfinished trials in this process (`todo`: `trials_to_run`'s answer, when
    the caller has it). `on_commit` is called with the progress after each group commit (the live
    snapshot). The Ray executor is engine/execute/ray_backend.py."""
    spec = plan.loaded.spec
    scenario = plan.scenario
    gateway = gateway or Gateway(spec.executor, store)
    todo, finished = todo or trials_to_run(plan, store)
    groups = by_lanes(plan, round_robin(todo))
    cores = CoreShare(groups)
    counts = {"done": 0, "error": 0, "budget": 0}
    started, cpu_started = time.perf_counter(), time.process_time()
    cells = cell_work(plan, todo) if todo else None
    progress = RunProgress(len(plan.trials), finished, gateway.stats, enabled=show_progress,
                           line_every_s=spec.executor.progress_every_s, cells=cells)

    def tick() -> None:
        progress.tick()
        if on_commit is not None:
            on_commit(progress, gateway)

    async def play(job: tuple[Trial, int]) -> None:
        trial, attempt = job
        store.writer.check()  # a failed write is a bug: play nothing more
        cell = cells[trial.cell_id] if cells else None

        def counted() -> None:
            progress.call_made(cell, trial.trial_id, ctx.calls[-1])

        ctx = CallContext(trial.trial_id, trial.seed, attempt, gateway, spec.models, spec.executor.parse_retries,
                          on_call=counted if cell is not None else progress.refresh)
        try:
            record = await play_trial(scenario, trial, attempt, ctx)
        except BudgetExhausted:
            counts["budget"] += 1  # no row: a rerun with more budget picks the trial up
            if cell is not None:
                cell.running.pop(trial.trial_id, None)
            return
        # Queued: the writer commits finished trials together (engine/store/writer.py).
        store.writer.add_trial(record.row, record.calls, record.scenario_rows)
        counts[record.status] += 1
        progress.trial_finished(record.status, trial.cell_id, trial.trial_id, len(record.calls))

    with progress:
        tick()
        try:
            async with store.writer.running(interval_s=spec.executor.commit_interval_s, on_tick=tick):
                results = await run_pools(groups, play, pool_sizes(spec.executor, groups, lane_routes),
                                          on_drained=cores.drained)
        finally:
            await gateway.close()
    raise_first_bug(results)
    return RunSummary(len(plan.trials), finished, counts["done"], counts["error"], counts["budget"],
                      gateway.stats, time.perf_counter() - started, routes=route_events(gateway),
                      cpu_s=time.process_time() - cpu_started)


def route_events(gateway: Gateway) -> dict[str, Any]:
    troubled = getattr(gateway.limits, "rate_limited_routes", None)
    return troubled() if troubled is not None else {}


def raise_first_bug(results: list[Any]) -> None:
    bugs = [r for r in results if isinstance(r, BaseException)]
    if bugs:
        # A bug is not a trial outcome: stop loudly; finished trials are committed and resume.
        traceback.print_exception(bugs[0])
        raise bugs[0]
