"""One worker pool for trials and verdicts: `size` workers take the next job from one queue, so
a 100,000-trial run holds `size` tasks, not 100,000 tasks waiting on a semaphore."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Hashable, Iterable, Mapping, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


async def run_pool(jobs: Iterable[T], work: Callable[[T], Awaitable[None]], size: int) -> list[BaseException]:
    """Run `work` on every job, at most `size` at once. A failing job does not stop the others;
    the failures are returned (the caller decides: a bug is raised after the pool drains)."""
    queue = iter(jobs)
    failures: list[BaseException] = []

    async def worker() -> None:
        for job in queue:  # one shared iterator: each job is taken by exactly one worker
            try:
                await work(job)
            except Exception as exc:  # noqa: BLE001 - collected and re-raised by the caller
                failures.append(exc)

    await asyncio.gather(*(worker() for _ in range(max(1, size))))
    return failures


async def run_pools(groups: Mapping[K, Iterable[T]], work: Callable[[T], Awaitable[None]],
                    sizes: Mapping[K, int], on_drained: Callable[[K], None] | None = None) -> list[BaseException]:
    """One pool per group, side by side: a group whose jobs wait (on a rate-limited route, in
    backoff) holds only its own workers, never another group's. `on_drained` is told each group
    whose jobs have all finished (the others may still be running)."""

    async def pool(key: K, jobs: Iterable[T]) -> list[BaseException]:
        try:
            return await run_pool(jobs, work, sizes[key])
        finally:
            if on_drained is not None:
                on_drained(key)

    results = await asyncio.gather(*(pool(key, jobs) for key, jobs in groups.items()))
    return [failure for failures in results for failure in failures]
