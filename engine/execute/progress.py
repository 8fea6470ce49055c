"""Live progress on the terminal (rich): trials, calls, cache hits, tokens, cost, errors, ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engine.execute.gateway import GatewayStats


class RunProgress:
    def __init__(self, total: int, already_done: int, stats: GatewayStats, enabled: bool = True,
                 console: Console | None = None, what: str = "trials"):
        self.stats = stats
        self.errors = 0
        self._progress = Progress(
            TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=console, disable=not enabled, transient=False)
        self._task = self._progress.add_task(what, total=total, completed=already_done, detail="")

    def __enter__(self) -> "RunProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.refresh()
        self._progress.__exit__(*exc)

    def trial_finished(self, status: str) -> None:
        if status == "error":
            self.errors += 1
        self._progress.advance(self._task)
        self.refresh()

    def refresh(self) -> None:
        s = self.stats
        detail = (f"calls {s.live_calls} · cache {s.cache_hits} · tokens {s.tokens:,} · "
                  f"${s.cost_usd:.4f} · errors {self.errors}")
        self._progress.update(self._task, detail=detail)
