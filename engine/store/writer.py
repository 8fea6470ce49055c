"""Group commit: finished trials, verdicts and cached responses are queued in memory and written
together, one transaction per batch, from Arrow tables (a row-by-row INSERT costs milliseconds;
a batch of a thousand rows costs about as much as one).

A batch is written every `interval_s` (and when `max_rows` are waiting), so a kill -9 loses at
most the trials of the last interval, which were still in flight for the database; a batch is
one transaction, so a trial is either whole or absent, and never stored twice (a retried trial's
earlier errored row is replaced in the same transaction).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import orjson
import pyarrow as pa

import duckdb

from engine.kernel.contracts import VERDICT_KEY
from engine.kernel.records import ERROR_LABEL

if TYPE_CHECKING:
    from engine.kernel.records import CachedResponse

_ARROW = {"VARCHAR": pa.string(), "JSON": pa.string(), "INTEGER": pa.int32(), "BIGINT": pa.int64(),
          "DOUBLE": pa.float64(), "FLOAT": pa.float32(), "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.timestamp("us"),
          "SMALLINT": pa.int16(), "HUGEINT": pa.int64(), "DATE": pa.date32()}
# Provider text is redacted at the gateway, where it enters; error text can also come from our
# own exceptions and judges' rationales from their own parsing, so those are redacted here too.
REDACTED_COLUMNS = {"error", "rationale"}


@dataclass
class Batch:
    trials: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    scenario_rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    responses: dict[str, tuple[str, "CachedResponse"]] = field(default_factory=dict)

    done: bool = False  # written (or salvaged)

    @property
    def rows(self) -> int:
        return (len(self.trials) + len(self.calls) + len(self.verdicts) + len(self.responses)
                + sum(map(len, self.scenario_rows.values())))


class GroupCommit:
    def __init__(self, con: "duckdb.DuckDBPyConnection", *, redact: Callable[[str | None], str | None],
                 interval_s: float = 0.5, max_rows: int = 20_000,
                 on_responses_written: Callable[[list[str]], None] = lambda hashes: None):
        self.con = con
        self.on_responses_written = on_responses_written
        self.redact = redact
        self.interval_s = interval_s
        self.max_rows = max_rows
        self.pending = Batch()
        self._writing: Batch | None = None
        self._lock = threading.Lock()  # one batch written at a time
        self._types: dict[str, dict[str, pa.DataType]] = {}
        self._json: dict[str, set[str]] = {}
        self._full: asyncio.Event | None = None  # exists while `running`
        self.failure: Exception | None = None

    # queueing (event-loop thread) -----------------------------------------------------------
    def add_trial(self, row: dict[str, Any], calls: list[dict[str, Any]],
                  scenario_rows: dict[str, list[dict[str, Any]]]) -> None:
        self.pending.trials.append(row)
        self.pending.calls.extend(calls)
        for table, rows in scenario_rows.items():
            self.pending.scenario_rows.setdefault(table, []).extend(rows)
        self._maybe_full()

    def add_verdict(self, verdict: dict[str, Any], calls: list[dict[str, Any]]) -> None:
        self.pending.verdicts.append(verdict)
        self.pending.calls.extend(calls)
        self._maybe_full()

    def add_response(self, request_hash: str, litellm_id: str, response: "CachedResponse") -> None:
        self.pending.responses.setdefault(request_hash, (litellm_id, response))

    def queued_response(self, request_hash: str) -> "CachedResponse | None":
        for batch in (self.pending, self._writing):
            if batch is not None and request_hash in batch.responses:
                return batch.responses[request_hash][1]
        return None

    def _maybe_full(self) -> None:
        if self._full is not None and self.pending.rows >= self.max_rows:
            self._full.set()

    # writing -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write what is queued now (synchronously, in the calling thread)."""
        batch, self.pending = self.pending, Batch()
        self._writing = batch
        self._write(batch)

    async def flush_async(self) -> None:
        batch, self.pending = self.pending, Batch()
        if not batch.rows:
            return
        self._writing = batch  # cache lookups see it until it is written
        try:
            await asyncio.to_thread(self._write, batch)
        except asyncio.CancelledError:
            with self._lock:  # a write already under way in the thread finishes first
                pass
            if not batch.done:  # cancelled before the thread took it (Ctrl-C): write it here
                self._write(batch)
            raise

    def check(self) -> None:
        """Raise the failure that stopped the writer, if any (a bug: nothing more should be played)."""
        if self.failure is not None:
            raise self.failure

    @asynccontextmanager
    async def running(self, interval_s: float | None = None,
                      on_tick: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Write batches in the background while the body runs; the rest when it ends (also on error).
        `on_tick` runs after each interval (the progress line where there is no terminal). A write
        that fails stops the loop and is raised by `check()` (which the executors call before each
        trial) and again when the body ends."""
        self._full = asyncio.Event()
        stop = asyncio.Event()
        interval = interval_s or self.interval_s

        async def loop() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(self._full.wait(), interval)
                except asyncio.TimeoutError:
                    pass
                self._full.clear()
                try:
                    await self.flush_async()
                except Exception as exc:  # noqa: BLE001 - kept, and raised by check() and at the end
                    self.failure = exc
                    return
                if on_tick is not None:
                    on_tick()

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            stop.set()
            self._full.set()
            try:
                await task
            finally:
                self._full = None
                if self.failure is None:
                    await self.flush_async()
        self.check()

    def _write(self, batch: Batch) -> None:
        if not batch.rows:
            return
        with self._lock:
            try:
                try:
                    self._transaction(lambda cur: self._write_batch(cur, batch))
                except Exception as exc:  # noqa: BLE001 - any bad row (an Arrow overflow, a type, a constraint)
                    self._salvage(batch, exc)
                batch.done = True
                self.on_responses_written(list(batch.responses))
            finally:
                if self._writing is batch:
                    self._writing = None

    def _transaction(self, write: Callable[["duckdb.DuckDBPyConnection"], None]) -> None:
        cur = self.con.cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
            try:
                write(cur)
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
        finally:
            cur.close()

    def _salvage(self, batch: Batch, error: Exception) -> None:
        """One bad row must not cost the whole batch: the cached replies first (each alone if they
        fail together; a reply that cannot be stored is dropped, never cached), then each owner's
        rows (a trial or a graded subject, with its calls and scenario rows) in a transaction of its
        own. An owner whose rows cannot be stored is stored as an error (a rerun plays it again);
        only when even that fails is the failure raised: a bug, never an outcome."""
        failures: list[Exception] = []
        self._write_responses(batch.responses)
        for part in _by_owner(batch).values():
            try:
                self._transaction(lambda cur, part=part: self._write_batch(cur, part))
            except Exception as exc:  # noqa: BLE001 - whatever the cause, the owner becomes an error row
                reason = self._reason(exc)
                try:
                    self._transaction(lambda cur, part=part: self._write_batch(cur, _as_errors(part, reason)))
                except Exception as again:  # noqa: BLE001 - raised below, after the other owners are written
                    failures.append(again)
        if failures:
            raise failures[0] from error

    def _write_responses(self, responses: dict[str, tuple[str, "CachedResponse"]]) -> None:
        if not responses:
            return
        try:
            self._transaction(lambda cur: self._write_batch(cur, Batch(responses=responses)))
            return
        except Exception:  # noqa: BLE001 - one at a time, to keep all but the bad ones
            pass
        for request_hash, response in responses.items():
            try:
                one = Batch(responses={request_hash: response})
                self._transaction(lambda cur, one=one: self._write_batch(cur, one))
            except Exception:  # noqa: BLE001 - not cached: a rerun asks again rather than trust it
                pass

    def _reason(self, exc: Exception) -> str:
        """Why an owner's rows could not be stored: one line, redacted before it is cut."""
        return " ".join((self.redact(f"{type(exc).__name__}: {exc}") or "").split())[:300]

    def _write_batch(self, cur: "duckdb.DuckDBPyConnection", batch: Batch) -> None:
        if batch.responses:
            rows = [{"request_hash": h, "litellm_id": lid, "response_text": r.response_text,
                     "raw_response": r.raw_response, "prompt_tokens": r.prompt_tokens,
                     "completion_tokens": r.completion_tokens, "cost_usd": r.cost_usd, "latency_s": r.latency_s,
                     "finish_reason": r.finish_reason}
                    for h, (lid, r) in batch.responses.items()]
            self._insert(cur, "responses", rows, or_ignore=True)
        # A retried trial (attempt > 1) replaces its earlier errored row and scenario rows.
        retried = [r["trial_id"] for r in batch.trials if r.get("attempt", 1) > 1]
        if retried:
            for table in [*batch.scenario_rows, "trials"]:
                _delete_in(cur, table, "trial_id", retried)
        self._insert(cur, "trials", batch.trials)
        if batch.verdicts:
            again = [tuple(v[k] for k in VERDICT_KEY) for v in batch.verdicts if v.get("attempt", 1) > 1]
            if again:
                cur.register("_again", pa.table({k: [a[i] for a in again] for i, k in enumerate(VERDICT_KEY)}))
                key = ", ".join(VERDICT_KEY)
                cur.execute(f"DELETE FROM verdicts WHERE ({key}) IN (SELECT ({key}) FROM _again)")
            self._insert(cur, "verdicts", batch.verdicts)
        self._insert(cur, "calls", batch.calls)
        for table, rows in batch.scenario_rows.items():
            self._insert(cur, table, rows)

    def _insert(self, cur: "duckdb.DuckDBPyConnection", table: str, rows: list[dict[str, Any]],
                or_ignore: bool = False) -> None:
        if not rows:
            return
        types = self._column_types(cur, table)
        columns = list(rows[0])
        every = set().union(*rows)  # a key only later rows have is a column too
        if len(every) != len(columns):
            columns += sorted(every - set(columns))
        unknown = [c for c in columns if c not in types]
        if unknown:
            raise ValueError(f"table {table} has no column(s) {', '.join(unknown)}")
        arrays = [_array(values, types[c], c in self._json[table], self.redact if c in REDACTED_COLUMNS else None)
                  for c, values in zip(columns, _columns(rows, columns))]
        # Registered on this transaction's own cursor, which is closed after it (no unregister: inside
        # an aborted transaction it would raise and hide the real error).
        cur.register("_batch", pa.Table.from_arrays(arrays, names=columns))
        names = ", ".join(columns)
        verb = "INSERT OR IGNORE INTO" if or_ignore else "INSERT INTO"
        cur.execute(f"{verb} {table} ({names}) SELECT {names} FROM _batch")

    def _column_types(self, cur: "duckdb.DuckDBPyConnection", table: str) -> dict[str, pa.DataType]:
        if table not in self._types:
            described = cur.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?"
                " ORDER BY ordinal_position", [table]).fetchall()
            if not described:
                raise ValueError(f"no table named {table!r} in the study database")
            self._types[table] = {name: _ARROW.get(kind.split("(")[0], pa.string()) for name, kind in described}
            self._json[table] = {name for name, kind in described if kind == "JSON"}
        return self._types[table]


def _by_owner(batch: Batch) -> dict[str, Batch]:
    """The batch's rows grouped by owner: a trial, or a graded subject (its calls name it as trial_id)."""
    groups: dict[str, Batch] = {}

    def group(owner: str) -> Batch:
        return groups.setdefault(owner, Batch())

    for row in batch.trials:
        group(row["trial_id"]).trials.append(row)
    for row in batch.verdicts:
        group(row["subject_id"]).verdicts.append(row)
    for row in batch.calls:
        group(row["trial_id"]).calls.append(row)
    for table, rows in batch.scenario_rows.items():
        for row in rows:
            group(row["trial_id"]).scenario_rows.setdefault(table, []).append(row)
    return groups


def _as_errors(part: Batch, reason: str) -> Batch:
    """An owner whose rows could not be stored, as error rows without its calls and scenario rows:
    never an outcome, and played (or graded) again by a rerun."""
    trials = [{**row, "status": "error", "error_kind": "store",
               "error": f"its rows could not be stored ({reason}); a rerun plays it again"} for row in part.trials]
    verdicts = [{**row, "label": ERROR_LABEL, "score": None, "rationale": None, "status": "error", "call_id": None,
                 "error": f"the verdict could not be stored ({reason}); a rerun grades it again"}
                for row in part.verdicts]
    return Batch(trials=trials, verdicts=verdicts)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _columns(rows: list[dict[str, Any]], columns: list[str]) -> list[tuple[Any, ...]]:
    """Rows -> one tuple per column, in C (itemgetter, then zip); a row that lacks a column is read
    key by key (the column is NULL there)."""
    if len(columns) == 1:
        return [tuple(row.get(columns[0]) for row in rows)]
    try:
        return list(zip(*map(itemgetter(*columns), rows)))
    except KeyError:
        return [tuple(row.get(c) for row in rows) for c in columns]


def _array(values: tuple[Any, ...], kind: pa.DataType, is_json: bool,
           redact: Callable[[str | None], str | None] | None) -> pa.Array:
    if kind == pa.string():
        if redact is None and not is_json:
            try:
                return pa.array(values, type=kind)  # plain text: converted in C
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
        # JSON columns get dicts and lists; the same object (a trial's inputs, a cell) recurs
        # across many rows of a batch, so each distinct object is serialised once.
        memo: dict[int, str] = {}
        out = []
        for v in values:
            if v is None or type(v) is str:
                out.append(v)
            elif isinstance(v, (dict, list)):
                text = memo.get(id(v))
                if text is None:
                    text = memo[id(v)] = _json(v)
                out.append(text)
            else:
                out.append(str(v))
        values = out if redact is None else [v if v is None else redact(v) for v in out]
        return pa.array(values, type=kind)
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # bools or numeric strings in a number column
        convert = int if pa.types.is_integer(kind) else float if pa.types.is_floating(kind) else None
        if convert is None:
            raise
        return pa.array([None if v is None else convert(v) for v in values], type=kind)


def _delete_in(cur: "duckdb.DuckDBPyConnection", table: str, column: str, ids: list[str]) -> None:
    cur.register("_ids", pa.table({"id": ids}))
    cur.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT id FROM _ids)")
