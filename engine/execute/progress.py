"""Live progress: a rich bar on a terminal; where there is none (CI, nohup, a log file) one line
every 30 s with trials done/total, calls, cache hits, errors, cost and ETA."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engine.execute.gateway import GatewayStats


LINE_EVERY_S = 30.0


class RunProgress:
    def __init__(self, total: int, already_done: int, stats: GatewayStats, enabled: bool = True,
                 console: Console | None = None, what: str = "trials", line_every_s: float = LINE_EVERY_S,
                 out=None):
        self.stats = stats
        self.errors = 0
        self.what = what
        self.total, self.done, self.already_done = total, already_done, already_done
        self._out = out or sys.stdout
        # A terminal gets the live bar; anything else gets a plain line now and then.
        self._lines = enabled and not (console.is_terminal if console is not None else self._out.isatty())
        self._every = line_every_s
        self._enabled = enabled
        self._last_refresh = 0.0
        self._started = self._last_line = time.monotonic()
        self._progress = Progress(
            TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=console, disable=not enabled or self._lines, transient=False)
        self._task = self._progress.add_task(what, total=total, completed=already_done, detail="")

    def __enter__(self) -> "RunProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh()
        self._progress.__exit__(*exc)
        if self._lines:
            self._print_line()

    def trial_finished(self, status: str) -> None:
        if status == "error":
            self.errors += 1
        self.done += 1
        self._progress.advance(self._task)
        self.refresh()

    def tick(self) -> None:
        """Called now and then (by the writer's loop): prints the line when it is due."""
        if self._lines and time.monotonic() - self._last_line >= self._every:
            self._print_line()

    def line(self) -> str:
        s = self.stats
        elapsed = time.monotonic() - self._started
        new = self.done - self.already_done
        eta = (self.total - self.done) * elapsed / new if new else None
        eta_text = "?" if eta is None else f"{int(eta // 60)}m{int(eta % 60):02d}s"
        return (f"{self.what} {self.done}/{self.total} · calls {s.live_calls} · cache hits {s.cache_hits} · "
                f"errors {self.errors} · ${s.cost_usd:.4f} · elapsed {int(elapsed)}s · ETA {eta_text}")

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
        self._progress.update(self._task, detail=detail)
