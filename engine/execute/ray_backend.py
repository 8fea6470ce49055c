"""The Ray executor: the same plan's trials spread over a Ray cluster (or a local Ray instance).

One writer: while trials run, the study database is held by a `StoreWriter` actor pinned to this
node; workers read the response cache through it and this process commits each finished trial
through it, so DuckDB still has a single writing process. Rate limits stay global: one
`RouteLimiter` actor, also on this node, holds the local executor's adaptive per-route slots for
every worker (a 429 halves a route's slots, a Retry-After pauses it, cluster-wide). A trial lost
with its worker or node is dispatched again (nothing of it was committed). The USD/token budget is
enforced here: a trial is dispatched only while budget remains, with an equal share of what remains
for the trials in flight as its own cap.
Trials, seeds, cache keys and results are those of the local executor (`play_trial` is shared)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import fields
from typing import Any

from engine.execute import loop as event_loop
from engine.execute.context import CallContext
from engine.execute.gateway import Budget, Gateway, GatewayStats
from engine.execute.limits import AdaptiveLimit, LocalRouteLimits, RouteEvents
from engine.execute.progress import RunProgress
from engine.execute.runner import Routes, RunSummary, TrialRecord, by_routes, play_trial, pool_sizes, \
    raise_first_bug, round_robin, trials_to_run
from engine.kernel.registry import get_scenario
from engine.plan.compile import Plan
from engine.kernel.records import Trial
from engine.spec.load import LoadedSpec
from engine.spec.schema import Executor
from engine.kernel.records import CachedResponse
from engine.store.db import StudyStore

# Calls the limiter actor serves at once: more than can ever wait for a slot, so that a waiting
# `acquire` never holds back the `release` that would grant it.
LIMITER_CONCURRENCY = 100_000
MAX_LOSSES = 3  # a trial whose worker is lost this often stops the run (a bug, not bad luck)


class StoreWriter:
    """The study database for the duration of a Ray run (a Ray actor; calls run one at a time)."""

    def __init__(self, path: str):
        self.store = StudyStore(path)

    def cached_response(self, request_hash: str) -> CachedResponse | None:
        return self.store.cached_response(request_hash)

    def put_response(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None:
        self.store.put_response(request_hash, litellm_id, response)

    def commit_trial(self, record: TrialRecord) -> None:
        self.store.commit_trial(record.row, record.calls, record.scenario_rows)

    def close(self) -> None:
        self.store.close()


class RouteLimiter:
    """The cluster's one set of per-route adaptive slots (an async Ray actor on the driver's node):
    the local executor's `LocalRouteLimits`, each call's slot held as a lease named by the worker.
    A 429 halves the route's slots and a Retry-After pauses it for every worker at once; a lease
    is timed by this actor's clock (workers' clocks differ), so one burst of 429s halves once."""

    def __init__(self, executor: Executor):
        self.limits = LocalRouteLimits(executor)
        self.waiting: dict[str, tuple[str, asyncio.Task]] = {}  # lease -> (owner, its wait for a slot)
        self.held: dict[str, tuple[str, AdaptiveLimit, float]] = {}  # lease -> (owner, route limit, granted at)
        self.lost: set[str] = set()  # owners released by `release_owner`

    async def acquire(self, route: str, owner: str, lease: str) -> None:
        limit = self.limits.slot(route)
        wait = asyncio.ensure_future(limit.__aenter__())
        self.waiting[lease] = (owner, wait)
        try:
            await wait
        finally:
            self.waiting.pop(lease, None)
        if owner in self.lost:  # granted just as its owner was given up
            await limit.__aexit__(None, None, None)
            return
        self.held[lease] = (owner, limit, time.monotonic())

    async def release(self, lease: str, outcome: str | None, retry_after_s: float | None) -> None:
        """End a lease, with how its call went: 'ok', 'rate_limited', or None (neither)."""
        held = self.held.pop(lease, None)
        if held is None:  # already released with its owner
            return
        _, limit, granted = held
        if outcome == "rate_limited":
            limit.rate_limited(retry_after_s, granted)
        elif outcome == "ok":
            limit.succeeded()
        await limit.__aexit__(None, None, None)

    async def release_owner(self, owner: str) -> None:
        """Free every slot a lost trial held or waited for (its worker or node died mid-call)."""
        self.lost.add(owner)
        for lease, (who, wait) in list(self.waiting.items()):
            if who == owner:
                wait.cancel()
        for lease, (who, _, _) in list(self.held.items()):
            if who == owner:
                await self.release(lease, None, None)

    def rate_limited_routes(self) -> dict[str, RouteEvents]:
        return self.limits.rate_limited_routes()


class ActorCache:
    def __init__(self, writer: Any):
        self.writer = writer

    async def get(self, request_hash: str) -> CachedResponse | None:
        return await self.writer.cached_response.remote(request_hash)

    async def put(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None:
        await self.writer.put_response.remote(request_hash, litellm_id, response)


class ActorSlot:
    """A call's slot from the cluster-wide limiter; how the call went is reported on release."""

    def __init__(self, limiter: Any, route: str, owner: str):
        self.limiter, self.route, self.owner = limiter, route, owner
        self.lease = f"{owner}/{uuid.uuid4().hex}"
        self.outcome: str | None = None
        self.retry_after_s: float | None = None

    async def __aenter__(self) -> None:
        await self.limiter.acquire.remote(self.route, self.owner, self.lease)

    async def __aexit__(self, *exc: object) -> None:
        await self.limiter.release.remote(self.lease, self.outcome, self.retry_after_s)

    def rate_limited(self, retry_after_s: float | None, started: float) -> None:
        # `started` is this worker's clock: the limiter times the call from its lease instead.
        self.outcome, self.retry_after_s = "rate_limited", retry_after_s

    def succeeded(self) -> None:
        self.outcome = "ok"


class ActorRouteLimits:
    def __init__(self, limiter: Any, owner: str):
        self.limiter, self.owner = limiter, owner

    def slot(self, route: str, lane: str | None = None) -> ActorSlot:
        # Per route: each Ray worker has llama.cpp instances of its own.
        return ActorSlot(self.limiter, route, self.owner)


def play_on_worker(loaded: LoadedSpec, scenario_name: str, trial: Trial, attempt: int, budget: Budget,
                   writer: Any, limiter: Any, owner: str) -> tuple[TrialRecord | None, GatewayStats]:
    """Runs in a Ray worker. None = the budget ran out before the trial finished (left for a rerun).
    `owner` names this dispatch of the trial to the limiter (its slots are freed if the worker is lost)."""
    import ray

    from engine.kernel.errors import BudgetExhausted
    from engine.providers.prepare import prepare_models

    spec = loaded.spec
    scenario = get_scenario(scenario_name)
    # A worker's local models run on the CPUs its trial reserved (unless executor.local_threads says).
    threads = spec.executor.local_threads or max(1, round(spec.executor.ray.cpus_per_trial))
    prepare_models(spec.models, set(scenario.cell_models(trial.cell)), threads)
    gateway = Gateway(spec.executor, None, cache=ActorCache(writer), limits=ActorRouteLimits(limiter, owner),
                      budget=budget)
    gateway.warm_up([spec.models[k] for k in scenario.cell_models(trial.cell)])
    ctx = CallContext(trial.trial_id, trial.seed, attempt, gateway, spec.models, spec.executor.parse_retries)

    async def play() -> TrialRecord:
        try:
            return await play_trial(scenario, trial, attempt, ctx)
        finally:
            await gateway.close()

    try:
        record = event_loop.run(play())
    except BudgetExhausted:
        return None, gateway.stats
    record.row["node_id"] = ray.get_runtime_context().get_node_id()
    return record, gateway.stats


def trial_budget(executor: Executor, spent: GatewayStats, in_flight: int, before: tuple[float, int]) -> Budget:
    """What remains of the study's cap (spend on record before this run counts), shared equally by
    the trials that may be in flight at once, so together they cannot spend more than remains
    (calls already under way finish, as with the local executor)."""
    cap = executor.budget
    return Budget(None if cap.max_usd is None else (cap.max_usd - before[0] - spent.cost_usd) / in_flight,
                  None if cap.max_tokens is None else (cap.max_tokens - before[1] - spent.tokens) // in_flight)


def add_stats(total: GatewayStats, part: GatewayStats) -> None:
    for f in fields(GatewayStats):
        setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))


def connect(executor: Executor) -> bool:
    """Join the configured Ray cluster, or start a local instance. True if this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    opts = executor.ray
    ray.init(address=opts.address, num_cpus=None if opts.address else opts.num_cpus, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}})
    return True


async def execute_on_ray(plan: Plan, store: StudyStore, *, show_progress: bool = True) -> RunSummary:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    spec = plan.loaded.spec
    executor = spec.executor
    todo, finished = trials_to_run(plan, store)
    if not todo:  # a rerun of a finished study: no cluster to join, no actors to start (seconds each)
        return RunSummary(len(plan.trials), finished, 0, 0, 0, GatewayStats(), 0.0, backend="ray")
    # Admitted per group of routes, as by the local executor: trials waiting on a rate-limited
    # route never hold the places of another route's trials.
    groups = by_routes(plan, round_robin(todo))
    caps = pool_sizes(executor, groups)
    queues = {routes: list(reversed(jobs)) for routes, jobs in groups.items()}
    running = dict.fromkeys(groups, 0)
    in_flight_max = sum(caps.values())
    spent_before = store.spent()
    counts = {"done": 0, "error": 0, "budget": 0}
    stats = GatewayStats()
    started = time.perf_counter()
    started_ray = connect(executor)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    # No retries by Ray: a trial lost with its worker or node is dispatched again from here, once
    # the limiter has freed its slots (Ray's own retry would reuse its leases).
    play = ray.remote(num_cpus=executor.ray.cpus_per_trial, max_retries=0)(play_on_worker)
    lost: Counter[str] = Counter()  # trial id -> times its worker or node was lost
    routes_seen: dict[str, Any] = {}
    try:
        with store.released(), RunProgress(len(plan.trials), finished, stats, enabled=show_progress,
                                           line_every_s=executor.progress_every_s) as progress:
            writer = ray.remote(StoreWriter).options(scheduling_strategy=here, num_cpus=0).remote(
                str(store.path.resolve()))
            limiter = ray.remote(RouteLimiter).options(scheduling_strategy=here, num_cpus=0,
                                                       max_concurrency=LIMITER_CONCURRENCY).remote(executor)
            loaded = ray.put(plan.loaded)
            in_flight: dict[Any, tuple[Routes, tuple[Trial, int], str]] = {}  # future -> (group, job, owner)
            results: list[Any] = []
            try:
                while any(queues.values()) or in_flight:
                    for routes, queue in queues.items():
                        while queue and running[routes] < caps[routes]:
                            # shared by the trials that can still be in flight, not by every slot
                            waiting = sum(map(len, queues.values()))
                            share = max(1, min(in_flight_max, waiting + len(in_flight)))
                            budget = trial_budget(executor, stats, share, spent_before)
                            if budget.exhausted:
                                counts["budget"] += waiting
                                for q in queues.values():
                                    q.clear()
                                break
                            job = queue.pop()
                            owner = uuid.uuid4().hex
                            ref = play.remote(loaded, plan.scenario_name, *job, budget, writer, limiter, owner)
                            in_flight[asyncio.wrap_future(ref.future())] = routes, job, owner
                            running[routes] += 1
                    if not in_flight:
                        break
                    finished_now, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    for fut in finished_now:
                        routes, job, owner = in_flight.pop(fut)
                        running[routes] -= 1
                        try:
                            record, used = fut.result()
                        except Exception as exc:  # noqa: BLE001 - a lost worker, or a bug in one
                            trial_id = job[0].trial_id
                            if worker_lost(exc):
                                await limiter.release_owner.remote(owner)
                                if lost[trial_id] < MAX_LOSSES:
                                    lost[trial_id] += 1  # nothing of it was committed: play it again
                                    queues[routes].append(job)
                                    continue
                                exc = RuntimeError(f"trial {trial_id} lost its Ray worker {MAX_LOSSES + 1} times "
                                                   f"(last: {type(exc).__name__}); the finished trials are "
                                                   "stored and a rerun resumes")
                            results.append(exc)  # stop after the trials in flight
                            for q in queues.values():
                                q.clear()
                            continue
                        add_stats(stats, used)
                        if record is None:
                            counts["budget"] += 1
                            continue
                        await writer.commit_trial.remote(record)
                        counts[record.status] += 1
                        progress.trial_finished(record.status)
                        progress.tick()  # the line where there is no terminal
                routes_seen = await limiter.rate_limited_routes.remote()
            finally:
                try:
                    await writer.close.remote()  # checkpoint and release the file
                finally:
                    ray.kill(writer)
                    ray.kill(limiter)
        raise_first_bug(results)
    finally:
        if started_ray:
            ray.shutdown()
    return RunSummary(len(plan.trials), finished, counts["done"], counts["error"], counts["budget"], stats,
                      time.perf_counter() - started, backend="ray", routes=routes_seen,
                      replayed=sum(lost.values()))


def worker_lost(exc: BaseException) -> bool:
    """The trial's worker process or node died (Ray's error), rather than the trial's code raising."""
    from ray.exceptions import RayError, RayTaskError

    return isinstance(exc, RayError) and not isinstance(exc, RayTaskError)
