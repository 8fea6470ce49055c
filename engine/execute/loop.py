"""The event loop the stages run on: uvloop where installed (it halves the loop's own share of
the per-call CPU, measured by bench/gateway_throughput.py), else asyncio's; and a garbage
collector that stays out of the way of calls in flight.

Why the collector: the plan's trials (100,000s of objects) live for the whole run, and every full
collection walked them again: 11% of a 20,000-call run's wall time went to collections of up to
170 ms, during which every reply waited. Freezing what exists before the calls start takes it out
of every later collection, and a larger young generation makes collections rarer.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")
YOUNG_THRESHOLD = 50_000  # CPython's default is 700 allocations


def loop_factory():
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(coro: Coroutine[Any, Any, T]) -> T:
    gc.freeze()  # no collection first: on a large heap that alone took 0.12 s (a cached rerun's half)
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, *thresholds[1:])
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(coro)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
