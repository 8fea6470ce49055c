"""Concurrent-call slots per gateway route, adapting to the provider's rate limits.

Each route starts at its configured number of slots. A 429 halves the route's slots (at most once
per round of requests, so one burst of 429s counts once); each success adds 1/slots back (about one
slot per round), up to the configured number again: additive increase, multiplicative decrease.
A `Retry-After` from the provider pauses the whole route until then.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from engine.spec.schema import Executor, ModelEntry


class Lane(NamedTuple):
    """Where a model's calls wait for a slot: its route. An in-process local model is its own
    llama.cpp instance, so it has a lane of its own on its route (`concurrency.local` slots each):
    local models run side by side, each on its share of the cores."""

    route: str
    local_model: str | None = None  # the litellm id of an in-process model

    @classmethod
    def of(cls, model: ModelEntry) -> "Lane":
        return cls(model.route, model.litellm_id) if model.in_process else cls(model.route)

    @property
    def key(self) -> str:
        return self.route if self.local_model is None else f"{self.route}[{self.local_model}]"


@dataclass
class RouteEvents:
    """What happened on one route, for the run summary."""

    rate_limited: int = 0  # 429 answers
    decreases: int = 0  # times the slots went down (halved, to no fewer than one)
    min_slots: int = 0  # the fewest slots the route went down to
    paused_s: float = 0.0  # total Retry-After pause asked for


class RouteSlot(Protocol):
    """One call's hold on a route (an async context manager) that learns how the call went."""

    async def __aenter__(self) -> None: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def rate_limited(self, retry_after_s: float | None, started: float) -> None: ...

    def succeeded(self) -> None: ...


class RouteLimits(Protocol):
    def slot(self, route: str, lane: str | None = None) -> RouteSlot: ...


@dataclass
class AdaptiveLimit:
    maximum: int
    minimum: int = 1
    events: RouteEvents = field(default_factory=RouteEvents)

    def __post_init__(self) -> None:
        self.slots = float(self.maximum)
        self.in_flight = 0
        self.paused_until = 0.0
        self._last_decrease = 0.0
        self._waiters: deque[asyncio.Future] = deque()
        self._wake_scheduled = False
        self.events.min_slots = min(self.events.min_slots or self.maximum, self.maximum)

    async def __aenter__(self) -> None:
        if not self._waiters and self.in_flight < int(self.slots) and time.monotonic() >= self.paused_until:
            self.in_flight += 1
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._wake()
        try:
            await fut  # the waker counted this call in `in_flight` before waking it
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()
            else:
                fut.cancel()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        wait = self.paused_until - time.monotonic()
        if wait > 0:
            if not self._wake_scheduled:
                self._wake_scheduled = True
                asyncio.get_running_loop().call_later(wait, self._wake_after_pause)
            return
        while self._waiters and self.in_flight < int(self.slots):
            fut = self._waiters.popleft()
            if fut.done():
                continue
            self.in_flight += 1
            fut.set_result(None)

    def _wake_after_pause(self) -> None:
        self._wake_scheduled = False
        self._wake()

    def rate_limited(self, retry_after_s: float | None, started: float) -> None:
        self.events.rate_limited += 1
        # One decrease per round: a request sent before the last decrease saw the old load. At the
        # floor there is nothing to halve, and nothing is counted.
        if started >= self._last_decrease and self.slots > self.minimum:
            self.slots = max(float(self.minimum), self.slots / 2)
            self._last_decrease = time.monotonic()
            self.events.decreases += 1
            self.events.min_slots = min(self.events.min_slots, int(self.slots))
        if retry_after_s:
            until = time.monotonic() + retry_after_s
            if until > self.paused_until:
                self.events.paused_s += until - max(self.paused_until, time.monotonic())
                self.paused_until = until

    def succeeded(self) -> None:
        if self.slots < self.maximum:  # the common case costs one comparison
            self.slots = min(float(self.maximum), self.slots + 1 / self.slots)
            self._wake()


class LocalRouteLimits:
    """The routes' adaptive slots within this process."""

    def __init__(self, executor: Executor):
        self.executor = executor
        self._limits: dict[tuple[int, str], AdaptiveLimit] = {}
        self.events: dict[str, RouteEvents] = {}

    def _limit(self, route: str, lane: str) -> AdaptiveLimit:
        # Per event loop: one gateway (and its budget) serves both the run and the judge stage.
        key = (id(asyncio.get_running_loop()), lane)
        limit = self._limits.get(key)
        if limit is not None:
            return limit
        events = self.events.setdefault(lane, RouteEvents())
        limit = self._limits[key] = AdaptiveLimit(self.executor.limit_for(route), events=events)
        return limit

    def slot(self, route: str, lane: str | None = None) -> AdaptiveLimit:
        """A slot of `lane` (a `Lane.key`; by default the route itself), which has the route's slots."""
        return self._limit(route, lane or route)

    def forget_loop(self) -> None:
        """Drop the running loop's limits (its timers die with it; a later loop may reuse its id)."""
        loop_id = id(asyncio.get_running_loop())
        for key in [k for k in self._limits if k[0] == loop_id]:
            del self._limits[key]

    def rate_limited_routes(self) -> dict[str, RouteEvents]:
        """The routes a 429 came back on, with what happened there (for the run summary)."""
        return {route: e for route, e in self.events.items() if e.rate_limited}

    def status(self) -> dict[str, dict[str, float]]:
        """Each route's slots as they stand (for the live snapshot; read from another thread)."""
        now = time.monotonic()
        out: dict[str, dict[str, float]] = {}
        for (_, route), limit in list(self._limits.items()):
            e = limit.events
            out[route] = {"slots": limit.maximum, "open": int(limit.slots), "in_flight": limit.in_flight,
                          "paused_s": round(max(0.0, limit.paused_until - now), 1), "rate_limited": e.rate_limited,
                          "halved": e.decreases, "min_slots": e.min_slots}
        return out
