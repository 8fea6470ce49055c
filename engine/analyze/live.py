"""What a running study publishes for `watch`, `summary` and `plan` (engine/store/snapshot.py).

A thread of the running process refreshes the snapshot after group commits, at most every
`every_s` (and at least every HEARTBEAT_S, so a reader can tell it is alive): per cell, the trials
stored and planned (the query the summary uses), errors by kind, the run's progress and ETA, the
gateway's counters, the spend against the cap, each route's slots; and the summary table itself
(summary_frame, the `summary` command's). That table takes a while over a large study (0.7 s for
20,000 trials on an idle core, 2 s beside a run), and its cost grows with the trials stored: it is
recomputed only when its expected cost (the last one's, scaled by the trials stored since) keeps
all of them within `metrics_share` of the time the run has taken. The thread reads the
database through a cursor of its own (DuckDB lets a process read while it writes). Every string
is redacted; no model text and no error message is published, only counts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from engine.analyze.metrics import plan_cells
from engine.analyze.summary import summary_frame
from engine.execute.progress import format_seconds
from engine.kernel.redaction import redact
from engine.store.snapshot import HEARTBEAT_S, Snapshot, this_process, write_snapshot

if TYPE_CHECKING:
    from engine.execute.gateway import Gateway
    from engine.execute.progress import RunProgress
    from engine.spec.load import LoadedSpec
    from engine.store.db import StudyStore

EVERY_S = 2.0
METRICS_SHARE = 0.05
METRICS_MIN_S = 5.0
METRICS_FIRST_S = 0.5  # what the first table is expected to cost: it comes after 10 s of the run
PUBLISH_SHARE = 0.02


class LivePublisher:
    """Publishes the run's snapshot from its own thread; a context manager around the run.
    `read_db`: False where another process holds the database meanwhile (the Ray executor's writer)."""

    def __init__(self, store: "StudyStore", loaded: "LoadedSpec", *, every_s: float = EVERY_S,
                 metrics_share: float = METRICS_SHARE, read_db: bool = True):
        spec = loaded.spec
        self.db = store.path
        self.loaded = loaded
        self.every_s = every_s
        self.metrics_share = metrics_share
        self._store = store
        self._cursor = store.con.cursor() if read_db else None  # taken here, used by the thread only
        self._head = {"study": redact(spec.name), "title": redact(spec.title), "spec_hash": loaded.spec_hash,
                      "db": redact(str(self.db)), "writer": this_process(), "started_at": time.time(),
                      "unit": list(loaded.scenario.unit)}
        budget = spec.executor.budget
        self._caps = {"max_usd": budget.max_usd, "max_tokens": budget.max_tokens}
        self.state, self.phase = "preparing", "starting"
        self._progress: dict[str, RunProgress] = {}  # by stage: trials, then verdicts
        self._gateway: Gateway | None = None
        self._run: dict[str, Any] = self._run_state()  # read on the thread that changes it, published by ours
        self._table: pd.DataFrame | None = None
        self._table_meta: dict[str, float] = {}
        self._metrics: tuple[float, int] | None = None  # the last table's (cost, trials stored then)
        self._metrics_spent = 0.0
        self._started = time.monotonic()
        self._problem: str | None = None
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._publishing = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="live-snapshot", daemon=True)
        self.publish_seconds = 0.0  # time spent publishing, for the benchmark

    # the run's side (cheap: no query, no file) ------------------------------------------------
    def __enter__(self) -> "LivePublisher":
        try:
            self._publish(query=False)  # the previous run's snapshot is replaced at once
        except OSError as exc:
            self._problem = f"the snapshot could not be written ({type(exc).__name__})"
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if kind is not None and self.state not in ("finished", "stopped by budget"):
            self.state = "interrupted" if not issubclass(kind, Exception) else "failed"
            self.phase = kind.__name__
        self._stop.set()
        self._thread.join()
        self._run = self._run_state()  # the loop has ended: its last counts
        try:  # a failed or interrupted run's last table is not worth delaying its exit for
            self._publish(query=True, con=self._store.con, metrics=kind is None and self._table is None)
        except OSError:
            pass  # the run's own outcome (or error) is what counts; the next run replaces the snapshot
        finally:
            if self._cursor is not None:
                self._cursor.close()

    def say(self, phase: str) -> None:
        """What the run is doing before its trials start (checking weights, loading a model...)."""
        self.phase = phase
        self._changed.set()

    def progress(self, progress: "RunProgress", gateway: "Gateway") -> None:
        """Called after each group commit, on the event loop's thread: the one that changes the
        progress and the gateway's counters, so they are read here, not by the publishing thread."""
        self._progress[progress.what], self._gateway = progress, gateway
        self.state, self.phase = "running", "playing trials" if progress.what == "trials" else f"judging: {progress.what}"
        self._run = self._run_state()
        self._changed.set()

    def finished(self, table: pd.DataFrame, stopped_by_budget: bool = False) -> None:
        """The run's own summary table, computed at its end, is the last snapshot's."""
        self._table, self._table_meta = table, {"computed_at": time.time(), "seconds": 0.0}
        self.state = "stopped by budget" if stopped_by_budget else "finished"
        self.phase = self.state

    # the publishing thread ------------------------------------------------------------------
    def _loop(self) -> None:
        last, wait = time.monotonic(), self.every_s
        while not self._stop.wait(wait):
            if self._changed.is_set() or time.monotonic() - last >= HEARTBEAT_S:
                self._changed.clear()
                spent = self._metrics_spent
                try:
                    cost = self._publish(query=True, con=self._cursor) - (self._metrics_spent - spent)
                except Exception as exc:  # noqa: BLE001 - a snapshot that cannot be written never stops the run
                    self._problem, cost = f"the snapshot could not be written ({type(exc).__name__})", 0.0
                last = time.monotonic()
                # The counts' queries grow with the study too: they keep within PUBLISH_SHARE of the time.
                wait = min(HEARTBEAT_S, max(self.every_s, cost / PUBLISH_SHARE))

    def _publish(self, *, query: bool, con: Any = None, metrics: bool | None = None) -> float:
        """Write the snapshot; returns what it took."""
        started = time.perf_counter()
        with self._publishing:
            data = {**self._head, "state": self.state, "phase": redact(self.phase), **self._run}
            if query and con is not None:
                try:
                    data |= self._stored(con, metrics)
                    self._problem = None
                except Exception as exc:  # noqa: BLE001 - watching must never stop the run
                    self._problem = f"the database could not be read ({type(exc).__name__})"
            data |= self._table_snapshot()
            data["problem"] = self._problem
            write_snapshot(self.db, data)
        took = time.perf_counter() - started
        self.publish_seconds += took
        return took

    def _run_state(self) -> dict[str, Any]:
        out: dict[str, Any] = {"progress": {what: p.state() for what, p in self._progress.items()}}
        gateway = self._gateway
        if gateway is not None:
            budget = gateway.budget
            out["gateway"] = asdict(gateway.stats)
            out["spend"] = {"usd": budget.spent_usd, "tokens": budget.spent_tokens,
                            "max_usd": budget.max_usd, "max_tokens": budget.max_tokens}
            status = getattr(gateway.limits, "status", None)
            routes = status() if status is not None else {}
            out["routes"] = {redact(route): values for route, values in routes.items()}
        else:
            out["spend"] = {"usd": None, "tokens": None, **self._caps}
        return out

    def _stored(self, con: Any, metrics: bool | None) -> dict[str, Any]:
        spec_hash, spec, scenario = self.loaded.spec_hash, self.loaded.spec, self.loaded.scenario
        cells = plan_cells(con, spec_hash)
        kinds = con.execute(
            "SELECT coalesce(t.error_kind, 'other'), count(*) FROM trials t JOIN plan p ON p.trial_id = t.trial_id"
            " AND p.spec_hash = ? WHERE t.status = 'error' GROUP BY 1 ORDER BY 2 DESC", [spec_hash]).fetchall()
        out = {"cells": [{"id": row.cell_id, "label": {redact(k): redact(v) for k, v in
                                                       scenario.describe_cell(row.cell, spec).items()},
                          "planned": int(row.planned), "done": int(row.done), "errors": int(row.errors)}
                         for row in cells.itertuples()],
               "errors_by_kind": {redact(kind): int(n) for kind, n in kinds}}
        stored = int(cells["done"].sum() + cells["errors"].sum()) if not cells.empty else 0
        if metrics is None:
            metrics = self._metrics_due(stored)
        if metrics:
            started = time.perf_counter()
            self._table = summary_frame(con, spec_hash, spec, scenario)
            took = time.perf_counter() - started
            self._metrics, self._metrics_spent = (took, stored), self._metrics_spent + took
            self._table_meta = {"computed_at": time.time(), "seconds": round(took, 3)}
        return out

    def _metrics_due(self, stored: int) -> bool:
        if self._metrics is None:
            expected = METRICS_FIRST_S  # not measured yet: a short run computes none before its end
        else:
            took, then = self._metrics
            if time.time() - self._table_meta["computed_at"] < METRICS_MIN_S:
                return False
            expected = took * max(1.0, stored / max(then, 1))
        return self._metrics_spent + expected <= self.metrics_share * (time.monotonic() - self._started)

    def _table_snapshot(self) -> dict[str, Any]:
        table = self._table
        if table is None or table.empty:
            return {"table": None}
        return {"table": {"columns": [redact(str(c)) for c in table.columns],
                          "rows": [[redact(str(v)) for v in row] for row in table.itertuples(index=False)],
                          **self._table_meta}}


class NoSnapshot:
    """The publisher's interface, publishing nothing (a sweep job's shard has no watcher)."""

    def __enter__(self) -> "NoSnapshot":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def say(self, phase: str) -> None:
        pass

    def progress(self, progress: "RunProgress", gateway: "Gateway") -> None:
        pass

    def finished(self, table: pd.DataFrame, stopped_by_budget: bool = False) -> None:
        pass


@dataclass(frozen=True)
class LiveView:
    """What `watch` shows of a snapshot: lines of text, and the per-cell table."""

    lines: list[str]
    table: pd.DataFrame
    running: bool


def live_view(snap: Snapshot) -> LiveView:
    """Raises SnapshotUnreadable for a snapshot not of this engine's making (another version's)."""
    try:
        return _view(snap)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotUnreadable(f"{snap.path} could not be read "
                                 f"({type(exc).__name__}): was it written by another version of the engine? "
                                 "The next run replaces it") from None


class SnapshotUnreadable(Exception):
    pass


def _view(snap: Snapshot) -> LiveView:
    d = snap.data
    writer = d.get("writer") or {}
    lines = [f"{d.get('title')} · spec {d.get('spec_hash')} · database {d.get('db')}"]
    if snap.running:
        lines.append(f"running: {d.get('phase')} · pid {writer.get('pid')} on {writer.get('host')} · "
                     f"updated {snap.age_s:.0f} s ago")
    elif snap.ended:
        lines.append(f"the run ended ({d.get('state')}) at {snap.written_at}")
    else:
        lines.append(f"not running: the run that published this (pid {writer.get('pid')} on {writer.get('host')}) "
                     f"is gone, last update at {snap.written_at} ({snap.age_s:.0f} s ago), while "
                     f"{d.get('phase')}. Rerun the study to resume it: finished trials are kept")
    for what, p in (d.get("progress") or {}).items():
        under_way = snap.running and p["finished"] < p["planned"]
        lines.append(f"{what} {p['finished']}/{p['planned']} · errors {p['errors']} · elapsed "
                     f"{format_seconds(p['elapsed_s'])}" + (f" · ETA {format_seconds(p['eta_s'])}" if under_way else ""))
    gateway, spend = d.get("gateway"), d.get("spend") or {}
    if gateway:
        cap = f" of the ${spend['max_usd']:g} cap" if spend.get("max_usd") is not None else " (no cap)"
        tokens_cap = f" of the {spend['max_tokens']:,} cap" if spend.get("max_tokens") is not None else ""
        lines.append(f"calls {gateway['live_calls']:,} live, {gateway['cache_hits']:,} cached · retries "
                     f"{gateway['retries']:,} · 429s {gateway['rate_limited']:,} · timeouts {gateway['timeouts']:,} "
                     f"· spent ${spend['usd']:.4f}{cap}, {spend['tokens']:,} tokens{tokens_cap}")
    for route, r in (d.get("routes") or {}).items():
        lines.append(f"route {route}: {r['open']}/{r['slots']} slots open, {r['in_flight']} in flight · "
                     f"{r['rate_limited']} × 429, halved {r['halved']}× (down to {r['min_slots']})"
                     + (f" · paused {r['paused_s']:g} s more (Retry-After)" if r["paused_s"] else ""))
    kinds = d.get("errors_by_kind")
    if kinds is not None:
        lines.append("errors by kind: " + (", ".join(f"{k} {n}" for k, n in kinds.items()) or "none"))
    table = d.get("table")
    if snap.running:
        lines.append(f"headline metrics as computed {max(0.0, time.time() - table['computed_at']):.0f} s ago "
                     "(recomputed as often as keeps the run's cost of it under 5%)" if table else
                     "headline metrics: not computed yet (the first after about 10 s)")
    if d.get("problem"):
        lines.append(str(d["problem"]))
    return LiveView(lines, _cells_table(d), snap.running)


def _cells_table(d: dict[str, Any]) -> pd.DataFrame:
    """The summary table as last computed, with each cell's stored/planned trials and errors as they
    are now; before the first table, the cells with their counts."""
    cells = d.get("cells") or []
    counts = pd.DataFrame({"N": [f"{c['done']}/{c['planned']}" for c in cells],
                           "errors": [c["errors"] for c in cells]})
    table = d.get("table")
    if table and len(table["rows"]) == len(cells):
        frame = pd.DataFrame(table["rows"], columns=table["columns"]).drop(columns=["N"], errors="ignore")
        return pd.concat([frame, counts], axis=1)
    labels = pd.DataFrame([c["label"] for c in cells]).fillna("—")
    return pd.concat([labels, counts], axis=1)
