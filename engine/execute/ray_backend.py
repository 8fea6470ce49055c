"""The Ray executor: the same plan's trials spread over a Ray cluster (or a local Ray instance).

One writer: while trials run, the study database is held by a `StoreWriter` actor pinned to this
node; workers read the response cache through it and this process commits each finished trial
through it, so DuckDB still has a single writing process. Rate limits stay global: one
`RouteLimiter` actor hands out the per-route call slots to every worker. The USD/token budget is
enforced here: a trial is dispatched only while budget remains, with an equal share of what remains
for the trials in flight as its own cap.
Trials, seeds, cache keys and results are those of the local executor (`play_trial` is shared)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import fields
from typing import Any

from engine.execute import loop as event_loop
from engine.execute.context import CallContext
from engine.execute.gateway import Budget, Gateway, GatewayStats
from engine.execute.progress import RunProgress
from engine.execute.runner import RunSummary, TrialRecord, by_routes, play_trial, pool_sizes, raise_first_bug, \
    round_robin, trials_to_run
from engine.kernel.registry import get_scenario
from engine.plan.compile import Plan
from engine.kernel.records import Trial
from engine.spec.load import LoadedSpec
from engine.spec.schema import Executor
from engine.kernel.records import CachedResponse
from engine.store.db import StudyStore


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
    """Per-route call slots shared by every worker (an async Ray actor)."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self.semaphores: dict[str, asyncio.Semaphore] = {}

    async def acquire(self, route: str) -> None:
        if route not in self.semaphores:
            self.semaphores[route] = asyncio.Semaphore(self.executor.limit_for(route))
        await self.semaphores[route].acquire()

    async def release(self, route: str) -> None:
        self.semaphores[route].release()


class ActorCache:
    def __init__(self, writer: Any):
        self.writer = writer

    async def get(self, request_hash: str) -> CachedResponse | None:
        return await self.writer.cached_response.remote(request_hash)

    async def put(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None:
        await self.writer.put_response.remote(request_hash, litellm_id, response)


class ActorSlot:
    """A call slot from the cluster-wide limiter (fixed slots per route: no adaptation on Ray)."""

    def __init__(self, limiter: Any, route: str):
        self.limiter, self.route = limiter, route

    async def __aenter__(self) -> None:
        await self.limiter.acquire.remote(self.route)

    async def __aexit__(self, *exc: object) -> None:
        await self.limiter.release.remote(self.route)

    def rate_limited(self, retry_after_s: float | None, started: float) -> None:
        pass

    def succeeded(self) -> None:
        pass


class ActorRouteLimits:
    def __init__(self, limiter: Any):
        self.limiter = limiter

    def slot(self, route: str, lane: str | None = None) -> ActorSlot:
        # Per route: each Ray worker has llama.cpp instances of its own.
        return ActorSlot(self.limiter, route)


def play_on_worker(loaded: LoadedSpec, scenario_name: str, trial: Trial, attempt: int, budget: Budget,
                   writer: Any, limiter: Any) -> tuple[TrialRecord | None, GatewayStats]:
    """Runs in a Ray worker. None = the budget ran out before the trial finished (left for a rerun)."""
    from engine.kernel.errors import BudgetExhausted
    from engine.providers.prepare import prepare_models

    spec = loaded.spec
    scenario = get_scenario(scenario_name)
    # A worker's local models run on the CPUs its trial reserved (unless executor.local_threads says).
    threads = spec.executor.local_threads or max(1, round(spec.executor.ray.cpus_per_trial))
    prepare_models(spec.models, set(scenario.cell_models(trial.cell)), threads)
    gateway = Gateway(spec.executor, None, cache=ActorCache(writer), limits=ActorRouteLimits(limiter), budget=budget)
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
        record = None
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
    play = ray.remote(num_cpus=executor.ray.cpus_per_trial)(play_on_worker)
    try:
        with store.released(), RunProgress(len(plan.trials), finished, stats, enabled=show_progress,
                                           line_every_s=executor.progress_every_s) as progress:
            writer = ray.remote(StoreWriter).options(scheduling_strategy=here, num_cpus=0).remote(
                str(store.path.resolve()))
            limiter = ray.remote(RouteLimiter).options(num_cpus=0).remote(executor)
            loaded = ray.put(plan.loaded)
            in_flight: dict[Any, frozenset[str]] = {}  # a trial's future -> its group of routes
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
                            trial, attempt = queue.pop()
                            ref = play.remote(loaded, plan.scenario_name, trial, attempt, budget, writer, limiter)
                            in_flight[asyncio.wrap_future(ref.future())] = routes
                            running[routes] += 1
                    if not in_flight:
                        break
                    finished_now, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    for fut in finished_now:
                        running[in_flight.pop(fut)] -= 1
                        try:
                            record, used = fut.result()
                        except Exception as exc:  # noqa: BLE001 - a bug in a worker: stop after in-flight trials
                            results.append(exc)
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
                      time.perf_counter() - started, backend="ray")
