"""Adaptive per-route limits on Ray: one limiter actor for the whole cluster, holding the local
executor's `LocalRouteLimits`. A 429 seen by one worker halves the route for all, a Retry-After
pauses it for all, the run summary counts halvings as the local executor does, and the slots of a
trial whose worker died are freed."""

import asyncio
import sys
import time

import pytest
from conftest import REPO, rows

sys.path.insert(0, str(REPO / "bench"))
from fixtures import loopback_server  # noqa: E402

from engine.spec.schema import Executor  # noqa: E402

STUDY = str(REPO / "bench" / "studies" / "gateway_bench.yaml")


@pytest.fixture
def limiter(ray_local):
    """A fresh limiter actor on the module's Ray instance."""
    import ray

    from engine.execute.ray_backend import RouteLimiter

    actor = ray.remote(RouteLimiter).options(num_cpus=0, max_concurrency=1000).remote(
        Executor(concurrency={"default": 8, "api": 4}))
    try:
        yield actor
    finally:
        ray.kill(actor)


@pytest.mark.slow
def test_ray_counts_429s_halvings_and_retries_as_the_local_executor(run_main, tmp_path):
    """The same design against a server whose first 8 answers are 429 with Retry-After, on both
    executors: the same retries, 429s and halvings in the run summary, every trial done. First in the
    module: its Ray run starts Ray itself (the module's shared instance is not up yet)."""
    import ray

    # Two trials at a time on either executor; enough retries that no trial runs out of them.
    common = ["design.seeds=1", "executor.concurrency.loopback=2", "executor.max_retries=8",
              "executor.backoff_initial_s=0.05",
              "executor.backoff_max_s=0.2", "--no-report", "--no-progress"]
    summaries = {}
    for executor in ("local", "ray"):
        db = tmp_path / f"{executor}.duckdb"
        extra = ["executor=ray", "executor.ray.num_cpus=2"] if executor == "ray" else []
        with loopback_server(0.05, "--fail-429", "8", "--retry-after", "0.3") as server:
            result = run_main("run", STUDY, f"models.loopback.api_base={server.api_base}", f"store.path={db}",
                              *common, *extra, env={"LOOPBACK_API_KEY": "k-test"})
            served = server.stats()["requests"]
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{executor} executor" in result.stdout
        assert not ray.is_initialized()  # the run started its own Ray instance and shut it down
        assert served == 50 + 8
        assert rows(db, "SELECT count(*) FILTER (WHERE status = 'done') FROM trials") == [(50,)]
        route = [line.split(", Retry-After")[0] for line in result.stdout.splitlines() if "route loopback:" in line]
        retries = [part for part in result.stdout.split("·") if "retries" in part]
        summaries[executor] = (route, [r.split("retries")[1].split(",")[0] for r in retries])
    assert summaries["local"][0] == ["  route loopback: 8 × 429, slots halved 1× (down to 1)"]
    assert summaries["ray"] == summaries["local"]


def test_a_429_on_one_ray_worker_halves_the_route_and_its_retry_after_pauses_every_worker(limiter):
    import ray

    from engine.execute.ray_backend import ActorRouteLimits

    @ray.remote(num_cpus=1)
    def call(rate_limited: bool, delay: float) -> tuple[float, float]:
        async def once():
            await asyncio.sleep(delay)
            slot = ActorRouteLimits(limiter, f"w{delay}").slot("api")
            async with slot:
                granted = time.time()
                if rate_limited:
                    slot.rate_limited(0.8, time.monotonic())
                else:
                    slot.succeeded()
            return granted, time.time()
        return asyncio.run(once())

    first = ray.get(call.remote(True, 0.0))  # worker 1 is told to come back in 0.8 s
    second = ray.get(call.remote(False, 0.0))  # worker 2, another process, waits out that pause
    assert second[0] - first[1] >= 0.7, (first, second)
    events = ray.get(limiter.rate_limited_routes.remote())
    assert set(events) == {"api"}
    e = events["api"]
    assert (e.rate_limited, e.decreases, e.min_slots) == (1, 1, 2) and e.paused_s == pytest.approx(0.8, abs=0.1)


def test_the_slots_of_a_lost_trial_are_freed_for_the_others(limiter):
    """A worker killed mid-call never releases its slot: the driver frees its owner's leases."""
    import ray

    async def scenario():
        for i in range(4):  # the route's four slots, held by a trial whose node is gone
            await limiter.acquire.remote("api", "lost", f"lost/{i}")
        waiting = asyncio.ensure_future(asyncio.wrap_future(
            limiter.acquire.remote("api", "alive", "alive/0").future()))
        await asyncio.sleep(0.5)
        blocked = not waiting.done()
        await limiter.release_owner.remote("lost")
        await asyncio.wait_for(waiting, 5)
        return blocked

    assert asyncio.run(scenario())
    ray.get(limiter.release.remote("alive/0", "ok", None))
