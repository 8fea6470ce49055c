"""Live progress: a rich bar on a terminal; where there is none (CI, nohup, a log file) one line
every 30 s with trials done/total, calls, cache hits, errors, cost and ETA (engine/execute/eta.py).
The ETA's clock starts when the trials do: checking and loading weights is not on it."""

from __future__ import annotations

import sys
import time
from typing import Any, Hashable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.execute.eta import CellWork, eta_seconds
from engine.execute.gateway import GatewayStats


LINE_EVERY_S = 30.0
ETA_EVERY_S = 1.0  # the ETA is recomputed at most this often (a bar redraws ten times a second)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class RunProgress:
    """`cells`: the plan's cells by id (the runner's; without them the ETA counts trials alike)."""

    def __init__(self, total: int, already_done: int, stats: GatewayStats, enabled: bool = True,
                 console: Console | None = None, what: str = "trials", line_every_s: float = LINE_EVERY_S,
                 out=None, cells: dict[str, CellWork] | None = None):
        self.stats = stats
        self.errors = 0
        self.what = what
        self.total, self.done, self.already_done = total, already_done, already_done
        self.cells = cells if cells is not None else {"": CellWork(None, total, already_done)}
        self._out = out or sys.stdout
        # A terminal gets the live bar; anything else gets a plain line now and then.
        self._lines = enabled and not (console.is_terminal if console is not None else self._out.isatty())
        self._every = line_every_s
        self._enabled = enabled
        self._last_refresh = 0.0
        self._eta: tuple[float, float | None] = (-ETA_EVERY_S, None)  # (when computed, value)
        self._started = self._last_line = time.monotonic()
        self._ended: float | None = None
        self._progress = Progress(
            TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
            console=console, disable=not enabled or self._lines, transient=False)
        self._task = self._progress.add_task(what, total=total, completed=already_done, detail="", eta="?")

    def __enter__(self) -> "RunProgress":
        self._started = time.monotonic()  # the ETA's clock starts with the trials
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ended = time.monotonic()
        self.refresh()
        self._progress.__exit__(*exc)
        if self._lines:
            self._print_line()

    def call_made(self, cell: CellWork, trial: Hashable, call: dict[str, Any]) -> None:
        """A model call of `trial` (of `cell`) returned (`call`: its record, engine/execute/context.py)."""
        cell.running[trial] = cell.running.get(trial, 0) + 1
        cell.calls_made += 1
        if not call["cache_hit"]:
            cell.seconds_made += call["latency_s"] or 0.0
        self.refresh()

    def trial_finished(self, status: str, cell_id: str = "", trial: Hashable = None, calls: int = 0) -> None:
        if status == "error":
            self.errors += 1
        self.done += 1
        cell = self.cells.get(cell_id)
        if cell is not None:
            cell.finished += 1
            cell.played += 1
            cell.lengths[calls] += 1
            cell.running.pop(trial, None)
        self._progress.advance(self._task)
        self.refresh()

    @property
    def elapsed_s(self) -> float:
        return (self._ended or time.monotonic()) - self._started

    def eta(self) -> float | None:
        if self.done >= self.total:
            return 0.0
        if self._ended is not None:  # stopped before the end (the budget): nothing more is coming
            return None
        now = time.monotonic()
        if now - self._eta[0] >= ETA_EVERY_S:
            self._eta = (now, eta_seconds(self.cells.values(), now - self._started))
        return self._eta[1]

    def tick(self) -> None:
        """Called now and then (by the writer's loop): prints the line when it is due."""
        if self._lines and time.monotonic() - self._last_line >= self._every:
            self._print_line()

    def line(self) -> str:
        s = self.stats
        return (f"{self.what} {self.done}/{self.total} · calls {s.live_calls} · cache hits {s.cache_hits} · "
                f"errors {self.errors} · ${s.cost_usd:.4f} · elapsed {int(self.elapsed_s)}s · "
                f"ETA {format_seconds(self.eta())}")

    def state(self) -> dict[str, Any]:
        """Where the run stands, for the live snapshot (engine/analyze/live.py)."""
        return {"what": self.what, "finished": self.done, "planned": self.total, "errors": self.errors,
                "elapsed_s": round(self.elapsed_s, 1), "eta_s": self.eta()}

    def _print_line(self) -> None:
        self._last_line = time.monotonic()
        print(self.line(), file=self._out, flush=True)

    def refresh(self) -> None:
        if self._lines or not self._enabled:
            return
        now = time.monotonic()
        if now - self._last_refresh < 0.1:  # the bar redraws ten times a second; more is wasted work
            return
        self._last_refresh = now
        s = self.stats
        detail = (f"calls {s.live_calls} · cache {s.cache_hits} · tokens {s.tokens:,} · "
                  f"${s.cost_usd:.4f} · errors {self.errors}")
        self._progress.update(self._task, detail=detail, eta=format_seconds(self.eta()))
