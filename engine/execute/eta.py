"""How long a run has left: the work left by cell and by pool of routes, at the pace measured so far.

Cells differ (a scripted control makes no call, a model's game about thirty; one model answers in
1 s, another in 3 s), and the runner admits trials per pool of routes, whose trials run side by
side. Per pool, the work is the seconds its calls take: each cell's trials left times its calls per
trial times its seconds per call, less what its trials in flight have done already. Calls per
trial are measured on the cell's trials so far by Kaplan and Meier (the short trials finish first:
a trial in flight says it is at least as long as its calls so far), shrunk towards the plan's
estimate while the cell has few; seconds per call are its calls'. The pool gets through as many
call-seconds per second as it did so far; and the run does not end when that work is done, but
when the last trial in flight does: the longest of the last ones to start. A pool that calls no
model (scripted games) counts trials. The ETA is the slowest pool's.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Hashable, Iterable

import numpy as np

# The plan's calls per trial count as this many finished trials of a cell, until it has its own.
PRIOR_TRIALS = 1.0
GRID = 256  # points of the time axis on which the end of the last trials is integrated


@dataclass
class CellWork:
    """One design cell's trials, as the ETA sees them."""

    group: Hashable  # the pool its trials are admitted to: the cells of one pool share its call slots
    planned: int  # trials of the cell in the plan
    finished: int = 0  # finished, in an earlier run or in this one
    played: int = 0  # finished in this run
    calls_planned: float = 0.0  # the plan's calls per trial: an upper bound (a game may end early)
    lengths: Counter[int] = field(default_factory=Counter)  # calls per trial finished in this run -> trials
    running: dict[Hashable, int] = field(default_factory=dict)  # a trial in flight -> its calls so far
    calls_made: int = 0  # calls returned in this run: of finished trials and of trials in flight
    seconds_made: float = 0.0  # what those calls took (a cached reply: nothing)


def eta_seconds(cells: Iterable[CellWork], elapsed_s: float) -> float | None:
    """Seconds left, from where the run stands after `elapsed_s` seconds of playing trials. None
    while some pool with work left has made no progress to measure its pace by."""
    pools: dict[Hashable, list[CellWork]] = {}
    for cell in cells:
        pools.setdefault(cell.group, []).append(cell)
    slowest = 0.0
    for members in pools.values():
        if elapsed_s <= 0:
            return None
        if all(c.finished >= c.planned for c in members):
            continue
        if any(c.calls_planned > 0 or c.calls_made > 0 for c in members):
            left = _calls_left(members, elapsed_s)
        else:
            played = sum(c.played for c in members)
            left = sum(c.planned - c.finished for c in members) * elapsed_s / played if played else None
        if left is None:
            return None
        slowest = max(slowest, left)
    return slowest


@dataclass
class _Cell:
    """A cell's estimates: its chance to make more than k calls, calls per trial, seconds per call."""

    work: CellWork
    survival: np.ndarray
    per_trial: float
    per_call: float

    @property
    def not_started(self) -> int:
        return max(0, self.work.planned - self.work.finished - len(self.work.running))


def _calls_left(cells: list[CellWork], elapsed_s: float) -> float | None:
    made = sum(c.calls_made for c in cells)
    seconds = sum(c.seconds_made for c in cells)
    if made == 0:
        return None
    timed = seconds > 0  # else every call so far was cached: count calls
    done = seconds if timed else float(made)
    survival = {id(c): _survival(c) for c in cells}
    measured = [c for c in cells if c.played and c.calls_planned > 0]
    expected = sum(c.played * c.calls_planned for c in measured)
    scale = sum(c.played * survival[id(c)].sum() for c in measured) / expected if expected else 1.0
    estimates = []
    for c in cells:
        s = survival[id(c)]
        per_trial = (c.played * s.sum() + PRIOR_TRIALS * scale * c.calls_planned) / (c.played + PRIOR_TRIALS)
        per_call = (c.seconds_made / c.calls_made if timed else 1.0) if c.calls_made else done / made
        estimates.append(_Cell(c, s, per_trial, per_call))
    left = sum((e.not_started * e.per_trial + sum(_calls_after(e.survival, n) for n in e.work.running.values()))
               * e.per_call for e in estimates)
    side_by_side = done / elapsed_s  # calls (or call-seconds) the pool got through per second
    at_pace = left / side_by_side
    if any(e.not_started for e in estimates):
        return max(at_pace + _last_wave(estimates, side_by_side), _longest_in_flight(estimates))
    return max(at_pace, _longest_in_flight(estimates))


def _survival(cell: CellWork) -> np.ndarray:
    """S[k] = P(a trial of the cell makes more than k calls), k = 0, 1, ... up to the plan's bound
    (or the longest trial seen), by Kaplan and Meier: a finished trial stopped at its count; a trial
    in flight with n calls is known to make at least n. Before any data, every trial makes the bound."""
    in_flight = Counter(cell.running.values())
    cap = max([math.ceil(cell.calls_planned), *cell.lengths, *in_flight])
    at_risk = cell.played + len(cell.running)
    s, curve = 1.0, np.empty(cap)
    for k in range(cap):
        at_risk -= in_flight.get(k, 0)  # in flight with k calls: not known whether it stops at k
        stopped = cell.lengths.get(k, 0)
        if at_risk > 0:
            s *= 1 - stopped / at_risk
        curve[k] = s
        at_risk -= stopped
    return curve


def _calls_after(survival: np.ndarray, n: int) -> float:
    """The calls a trial that has made n is expected to make still."""
    reached = survival[n - 1] if 0 < n <= len(survival) else 1.0 if n == 0 else 0.0
    return float(survival[n:].sum() / reached) if reached > 0 else 0.0


def _last_wave(cells: list[_Cell], side_by_side: float) -> float:
    """How much later than "work left / pace" the pool ends: when its queue empties, each of its
    `side_by_side` places is part way through a trial, and the run ends with the longest of those
    remainders, not their mean. The remainder of a trial caught in progress has P(R > x) =
    E[(D - x)+] / E[D] for the trial's duration D (trials of the cells still to start, measured ones)."""
    durations, weights = [], []
    for e in cells:
        if not (e.not_started and e.work.played):
            continue
        k = np.arange(len(e.survival) + 1)
        pmf = -np.diff(np.concatenate(([1.0], e.survival, [0.0])))  # P(L = k), k = 0 .. cap
        durations.append(k * e.per_call)
        weights.append(pmf * e.not_started)
    if not durations or side_by_side <= 1:
        return 0.0
    d, w = np.concatenate(durations), np.concatenate(weights)
    w = w / w.sum()
    mean = float(d @ w)
    if mean <= 0:
        return 0.0
    x = np.linspace(0.0, d.max(), GRID)
    beyond = np.clip(np.clip(d[None, :] - x[:, None], 0.0, None) @ w / mean, 0.0, 1.0)  # P(R > x)
    longest = float(np.sum(1 - (1 - beyond) ** side_by_side) * (x[1] - x[0]))
    return max(0.0, longest - float(d ** 2 @ w) / (2 * mean))  # the longest remainder less their mean


def _longest_in_flight(cells: list[_Cell]) -> float:
    """The expected end of the last of the trials now in flight, in seconds."""
    tails = [(e, n) for e in cells for n in e.work.running.values()]
    if not tails:
        return 0.0
    horizon = max(len(e.survival) * e.per_call for e, _ in tails)
    if horizon <= 0:
        return 0.0
    x = np.linspace(0.0, horizon, GRID)
    none_beyond = np.ones(GRID)  # P(every trial in flight has ended by x)
    for e, n in tails:
        s = e.survival
        reached = s[n - 1] if 0 < n <= len(s) else 0.0
        if reached <= 0:
            continue
        index = n + np.floor(x / e.per_call).astype(int) if e.per_call > 0 else np.full(GRID, len(s))
        beyond = np.where(index < len(s), s[np.minimum(index, len(s) - 1)], 0.0) / reached
        none_beyond *= 1 - beyond
    return float(np.sum(1 - none_beyond) * (x[1] - x[0]))
