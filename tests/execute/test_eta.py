"""The ETA counts the work left by cell and by pool of routes (engine/execute/progress.py), tested as a
pure function on simulated runs: no clock, no flakiness.

Each timeline is a run the runner would make: trials in seed-major order, admitted per pool of
routes (a pool's slots play its trials side by side), each trial a sequence of model calls of its
model's latency. The ETA, sampled along the run, must land within a factor of 1.5 of the time
really left once 10% of the trials that call models have finished. The estimate the progress line
gave before (trials left x time per trial so far) is computed beside it, to show each timeline is
one where that goes wrong.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from dataclasses import dataclass

import pytest

from engine.execute.eta import CellWork, eta_seconds
from engine.execute.progress import format_seconds

FACTOR = 1.5


@dataclass
class CellSpec:
    cell_id: str
    pool: str
    seeds: int
    calls: tuple[int, int]  # each trial makes between these many calls (0: a scripted game)
    calls_planned: int  # the plan's upper bound per trial
    latency: tuple[float, float]  # seconds per call, between


def simulate(cells: list[CellSpec], slots: dict[str, int], rng: random.Random):
    """Events (time, kind, trial, cell_id, x) of a run: "call" when a call returns (x: its latency),
    "trial" when a trial finishes (x: its calls). Trials in seed-major order, each pool on its own slots."""
    queues: dict[str, list[CellSpec]] = {pool: [] for pool in slots}
    for seed in range(max(c.seeds for c in cells)):
        for cell in cells:
            if seed < cell.seeds:
                queues[cell.pool].append(cell)
    events = []
    for pool, queue in queues.items():
        free = [0.0] * slots[pool]  # when each slot's worker takes its next trial
        heapq.heapify(free)
        for trial, cell in enumerate(queue):
            t = heapq.heappop(free)
            n = rng.randint(*cell.calls)
            for _ in range(n):
                latency = rng.uniform(*cell.latency)
                t += latency
                events.append((t, "call", (pool, trial), cell.cell_id, latency))
            t += 0.005  # a scripted game, or a trial's own work after its last call
            events.append((t, "trial", (pool, trial), cell.cell_id, n))
            heapq.heappush(free, t)
    events.sort(key=lambda e: e[0])
    return events


def replay(cells: list[CellSpec], events, every_s: float):
    """(time, remaining, eta, naive eta, share of the calling trials finished, whether every pool
    has made progress) every `every_s`."""
    work = {c.cell_id: CellWork(c.pool, c.seeds, calls_planned=c.calls_planned) for c in cells}
    calling = sum(c.seeds for c in cells if c.calls_planned)
    total = sum(c.seeds for c in cells)
    end = events[-1][0]
    samples, done, calling_done, i = [], 0, 0, 0
    t = every_s
    while t < end:
        while i < len(events) and events[i][0] <= t:
            _, kind, trial, cell_id, x = events[i]
            c = work[cell_id]
            if kind == "call":  # as RunProgress.call_made
                c.running[trial] = c.running.get(trial, 0) + 1
                c.calls_made += 1
                c.seconds_made += x  # the call's latency
            else:  # as RunProgress.trial_finished
                c.finished += 1
                c.played += 1
                c.lengths[x] += 1
                c.running.pop(trial, None)
                done += 1
                calling_done += c.calls_planned > 0
            i += 1
        naive = (total - done) * t / done if done else None  # what the progress line said before
        measured = all(c.calls_made or c.played for c in work.values())
        samples.append((t, end - t, eta_seconds(work.values(), t), naive, calling_done / calling, measured))
        t += every_s
    return samples


def model_size_like(rng):
    """The offline model_size study: 4 model cells (2 models x 2 personas) on the one local slot,
    games of 2-16 calls (adversarial ones end sooner), Gemma 2.5x slower per call than SmolLM2;
    7 scripted cells (5 baselines, 2 controls) that call nothing; 10 seeds."""
    cells = [CellSpec(f"{model}/{persona}", "local", 10, calls, 16, latency)
             for model, latency in (("smollm2", (0.8, 1.4)), ("gemma", (2.2, 3.4)))
             for persona, calls in (("default", (10, 16)), ("adversarial", (2, 10)))]
    cells += [CellSpec(f"scripted:{i}", "none", 10, (0, 0), 0, (0, 0)) for i in range(7)]
    return cells, simulate(cells, {"local": 1, "none": 1}, rng), 5.0


def two_api_routes(rng):
    """Single-call trials on two routes side by side: a fast one (64 slots, 0.2 s) with 1,600
    trials and a slow one (8 slots, 1-2 s) with 400: the slow route sets the end."""
    cells = [CellSpec("fast", "a", 1600, (1, 1), 1, (0.15, 0.25)), CellSpec("slow", "b", 400, (1, 1), 1, (1.0, 2.0))]
    return cells, simulate(cells, {"a": 64, "b": 8}, rng), 1.0


def multi_turn_api(rng):
    """Multi-turn games on one API route (16 slots) whose calls per game vary 3-30, beside a
    scripted control: the control's instant trials must not make the run look nearly done."""
    cells = [CellSpec(f"model{i}", "api", 40, (3, 30), 30, (0.5, 1.5)) for i in range(3)]
    cells += [CellSpec("control", "none", 40, (0, 0), 0, (0, 0))]
    return cells, simulate(cells, {"api": 16, "none": 1}, rng), 2.0


@pytest.mark.parametrize("timeline", [model_size_like, two_api_routes, multi_turn_api])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_eta_is_within_a_factor_of_1_5_after_a_tenth_of_the_trials(timeline, seed):
    cells, events, every = timeline(random.Random(seed))
    longest = max(c.calls[1] * c.latency[1] for c in cells)  # the longest a trial can take
    samples = replay(cells, events, every)
    after = [(t, left, eta, naive, measured) for t, left, eta, naive, share, measured in samples if share >= 0.10]
    assert len(after) >= 10, "the timeline is too short to sample"
    for t, left, eta, _, measured in after:
        if not measured:  # a pool has not returned a call yet: its pace is not known
            assert eta is None and t < longest
        elif left >= longest:
            assert left / FACTOR <= eta <= left * FACTOR, f"at {t:.0f}s: ETA {format_seconds(eta)}, {left:.0f}s left"
        else:  # the last stretch, where one trial's own length is what is left: within half of one
            assert abs(eta - left) <= longest / 2, f"at {t:.0f}s: ETA {format_seconds(eta)}, {left:.0f}s left"
    # The old estimate (trials left x time per trial so far) misses by more on each of these runs.
    assert any(naive is None or not left / FACTOR <= naive <= left * FACTOR
               for _, left, _, naive, _ in after if left >= longest)


def test_the_eta_is_unknown_until_each_pool_with_work_left_has_made_progress():
    a, b = CellWork("a", 10, calls_planned=2), CellWork("b", 10, calls_planned=2)
    assert eta_seconds([a, b], 5.0) is None
    a.calls_made, a.seconds_made, a.running = 3, 3.0, {"t1": 2, "t2": 1}
    assert eta_seconds([a, b], 5.0) is None  # pool b has not returned a call yet
    b.calls_made, b.seconds_made, b.running = 1, 1.0, {"t3": 1}
    assert eta_seconds([a, b], 5.0) is not None


def finished(*lengths: int) -> dict:
    return {"finished": len(lengths), "played": len(lengths), "lengths": Counter(lengths),
            "calls_made": sum(lengths), "seconds_made": float(sum(lengths))}


# One call at a time (call-seconds done = seconds elapsed): the work left is the time left.

def test_trials_in_flight_are_expected_to_make_the_plans_calls_until_a_trial_finishes():
    # 10 trials of 4 calls planned, none finished; one in flight has made 2 calls of 1 s: 2 more, then 9 x 4
    cells = [CellWork("a", 10, calls_planned=4, running={1: 2}, calls_made=2, seconds_made=2.0)]
    assert eta_seconds(cells, 2.0) == pytest.approx(2 + 9 * 4)


def test_finished_trials_set_the_calls_per_trial_of_their_cell_and_scale_the_plan_for_the_others():
    # 5 finished with 2 calls each (half the plan's bound): the other 5 are expected at 2 too
    cells = [CellWork("a", 10, calls_planned=4, **finished(2, 2, 2, 2, 2))]
    assert eta_seconds(cells, 10.0) == pytest.approx(5 * 2)
    # a cell of the pool without finished trials: its plan's 8 scaled to 4; its calls take 3 s each;
    # the one in flight has made 2 and is expected to make the bound, 8
    cells.append(CellWork("a", 10, calls_planned=8, running={"x": 2}, calls_made=2, seconds_made=6.0))
    assert eta_seconds(cells, 16.0) == pytest.approx(5 * 2 * 1 + (9 * 4 + (8 - 2)) * 3)


def test_trials_in_flight_that_outlast_the_finished_ones_lengthen_the_estimate():
    # The short trials finish first: 4 stopped at 2 calls while 4 others are in flight at 6 calls.
    # Counting the finished ones alone, the 12 not started would make 2 calls each; with the trials
    # in flight (Kaplan-Meier), half the trials make more than 6.
    alone = CellWork("a", 20, calls_planned=10, **finished(2, 2, 2, 2))
    both = CellWork("a", 20, calls_planned=10, **finished(2, 2, 2, 2))
    both.running = {i: 6 for i in range(4)}
    both.calls_made, both.seconds_made = 8 + 24, 8.0 + 24
    assert eta_seconds([alone], 8.0) == pytest.approx(16 * (4 * 2 + 2 * 1) / 5)  # 16 left at 2, shrunk to the bound
    # S(k) = P(more than k calls): 1 up to 2 calls, then 0.5 up to the bound of 10: 6 calls per trial
    # (shrunk to the scaled bound: still 6); each in flight at 6 makes 4 more
    assert eta_seconds([both], 32.0) == pytest.approx(12 * 6 + 4 * 4)


def test_the_last_wave_ends_with_its_longest_remainder():
    # 3 calls side by side (12 call-seconds in 4 s), every trial 4 calls of 1 s: when the queue
    # empties, each place is part way through a trial (uniform on [0, 4] s left); the run ends with
    # the longest of three, 4 x 3/4 = 3 s, not their mean, 2 s: 1 s later than the work at pace.
    cells = [CellWork("a", 30, calls_planned=4, **finished(4, 4, 4))]
    assert eta_seconds(cells, 4.0) == pytest.approx(27 * 4 / 3 + 1, abs=0.05)


def test_once_nothing_is_queued_the_eta_is_the_end_of_the_longest_trial_in_flight():
    # Two trials in flight, each of exactly 30 calls (the cell's finished ones were), 1 s per call:
    # the one at 10 calls ends in 20 s, however many places are free.
    cells = [CellWork("a", 4, calls_planned=30, **finished(30, 30))]
    cells[0].running = {1: 10, 2: 29}
    cells[0].calls_made += 39
    cells[0].seconds_made += 39
    assert eta_seconds(cells, 9.9) == pytest.approx(20.0, abs=0.2)


def test_a_finished_pool_sets_no_time_and_trials_finished_before_make_no_pace():
    cells = [CellWork("a", 10, calls_planned=1, **finished(*[1] * 10)),
             CellWork(None, 20, finished=10, played=5)]  # scripted: 5 of this run's trials in 10 s
    assert eta_seconds(cells, 10.0) == pytest.approx(10 * 10 / 5)


def test_cached_calls_take_no_time_and_an_all_cached_pool_counts_calls():
    cells = [CellWork("a", 10, calls_planned=1, **finished(1, 1, 1, 1, 1) | {"seconds_made": 0.0})]
    assert eta_seconds(cells, 5.0) == pytest.approx(5 * 1)


def test_eta_text():
    assert [format_seconds(s) for s in (None, 0, 59.6, 61, 3725)] == ["?", "0m00s", "1m00s", "1m01s", "1h02m"]
