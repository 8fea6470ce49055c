"""The study database: one DuckDB file per study, versioned by numbered migrations.

DuckDB allows one writing process per file, so only the executor's event loop writes; model
calls run elsewhere and hand their results back to it.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb
import pyarrow as pa

from engine.kernel.errors import StoreBusy
from engine.kernel.contracts import verdict_match
from engine.kernel.records import CachedResponse
from engine.kernel.redaction import redact
from engine.kernel.spec_redaction import redact_command, redact_override, redact_spec
from engine.store.writer import GroupCommit

CORE_MIGRATIONS = Path(__file__).parent / "migrations"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def migration_files(folder: Path) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(folder.glob("*.sql")):
        number = int(path.name.split("_", 1)[0])
        files.append((number, path))
    return files


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# Columns a later migration added, as a database written before it is read (it cannot be migrated
# while opened read-only): table -> (column, its value for rows from before the migration).
ADDED_COLUMNS = {"plan": ("position", "NULL::INTEGER")}  # (ordering falls back to storage order)


def read_as_migrated(con: duckdb.DuckDBPyConnection) -> None:
    """On a read-only connection to an older database, each table lacking an added column is shadowed
    by a temporary view that has it (the code's queries then run unchanged)."""
    database = con.execute("SELECT current_database()").fetchone()[0]
    for table, (column, value) in ADDED_COLUMNS.items():
        columns = {c for (c,) in con.execute("SELECT column_name FROM information_schema.columns WHERE table_catalog"
                                             " = ? AND table_schema = 'main' AND table_name = ?",
                                             [database, table]).fetchall()}
        if columns and column not in columns:
            # rowid too: a view has none of its own, and queries may order by it
            con.execute(f'CREATE TEMP VIEW {table} AS SELECT *, {value} AS {column}, rowid AS rowid'
                        f' FROM "{database}".main.{table}')


def migrate(con: duckdb.DuckDBPyConnection, component: str, folder: Path) -> list[int]:
    """Apply the component's migrations that this database has not seen, each in a transaction."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " component VARCHAR, version INTEGER, name VARCHAR,"
        " applied_at TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (component, version))"
    )
    done = {v for (v,) in con.execute(
        "SELECT version FROM schema_migrations WHERE component = ?", [component]).fetchall()}
    applied = []
    for number, path in migration_files(folder):
        if number in done:
            continue
        with transaction(con):
            con.execute(path.read_text())
            con.execute("INSERT INTO schema_migrations (component, version, name) VALUES (?, ?, ?)",
                        [component, number, path.name])
        applied.append(number)
    return applied


class StudyStore:
    """All reads and writes of one study database."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            raise StoreBusy(f"{self.path} is in use by another process (DuckDB allows one writer per file); "
                            "wait for it to finish or stop it, then rerun") from None
        if not read_only:
            migrate(self.con, "core", CORE_MIGRATIONS)
        else:
            read_as_migrated(self.con)
        self._cached_hashes: set[str] | None = None
        self.writer = GroupCommit(self.con, redact=redact, on_responses_written=self._cached)

    def _cached(self, request_hashes: list[str]) -> None:
        if self._cached_hashes is not None:
            self._cached_hashes.update(request_hashes)

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let another process (the Ray executor's writer actor) hold the file for a while."""
        self.close()
        try:
            yield
        finally:
            self.con = self.writer.con = self._reconnect()
            self._cached_hashes = None

    def _reconnect(self, wait_s: float = 30.0) -> duckdb.DuckDBPyConnection:
        """The other process may need a moment to let go of the file after it is stopped."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise StoreBusy(f"{self.path} is still held by another process after {wait_s:.0f}s") from None
                time.sleep(0.2)

    def migrate_component(self, component: str, folder: Path) -> None:
        migrate(self.con, component, folder)

    def close(self, checkpoint: bool = True) -> None:
        self.writer.flush()
        wal = self.path.with_name(self.path.name + ".wal")
        if checkpoint and wal.exists() and wal.stat().st_size > 0:  # nothing written, nothing to fold in
            self.con.execute("CHECKPOINT")
        self.con.close()

    # studies and plans -------------------------------------------------------------------
    def has_study(self, spec_hash: str) -> bool:
        return self.con.execute("SELECT count(*) FROM studies WHERE spec_hash = ?", [spec_hash]).fetchall()[0][0] > 0

    def record_study(self, *, spec_hash: str, name: str, title: str, spec: dict, overrides: Iterable[str],
                     command: str, engine_version: str, package_versions: dict, git_sha: str | None) -> None:
        """The spec as resolved, its overrides and command line, each with its secrets masked."""
        self.con.execute(
            "INSERT INTO studies (spec_hash, name, title, spec, overrides, command, engine_version,"
            " package_versions, git_sha) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [spec_hash, redact(name), redact(title), json.dumps(redact_spec(spec)),
             json.dumps([redact_override(o) for o in overrides]), redact_command(command),
             engine_version, json.dumps(package_versions), git_sha],
        )

    def record_plan(self, spec_hash: str, rows: list[tuple[str, str, dict, int]]) -> None:
        if not rows:
            return  # analysis-only studies plan no trials
        # A rerun of the same spec finds every id already there and writes nothing; a changed corpus
        # or scenario version under the same spec hash adds its new trial ids.
        cur = self.con.cursor()
        try:
            cur.register("_ids", pa.table({"trial_id": [r[0] for r in rows]}))
            ((new,),) = cur.execute("SELECT count(*) FROM _ids WHERE trial_id NOT IN"
                                    " (SELECT trial_id FROM plan WHERE spec_hash = ?)", [spec_hash]).fetchall()
            ((unplaced,),) = cur.execute("SELECT count(*) FROM plan WHERE spec_hash = ? AND position IS NULL",
                                         [spec_hash]).fetchall()
        finally:
            cur.close()
        if not new and not unplaced:
            return
        cell_json: dict[str, str] = {}
        for _, cell_id, cell, _ in rows:
            if cell_id not in cell_json:
                cell_json[cell_id] = json.dumps(cell)
        table = pa.table({"spec_hash": [spec_hash] * len(rows), "trial_id": [r[0] for r in rows],
                          "cell_id": [r[1] for r in rows], "cell": [cell_json[r[1]] for r in rows],
                          "seed": pa.array([r[3] for r in rows], pa.int32()),
                          "position": pa.array(range(len(rows)), pa.int32())})
        with transaction(self.con):
            self.con.register("_plan", table)
            self.con.execute("INSERT OR IGNORE INTO plan (spec_hash, trial_id, cell_id, cell, seed, position)"
                             " SELECT spec_hash, trial_id, cell_id, cell, seed, position FROM _plan")
            if unplaced:  # planned before positions were recorded
                self.con.execute("UPDATE plan SET position = n.position FROM _plan n WHERE plan.spec_hash = n.spec_hash"
                                 " AND plan.trial_id = n.trial_id AND plan.position IS NULL")
            self.con.unregister("_plan")

    def set_budget_share(self, max_usd: float | None, max_tokens: int | None, sweep_id: str, jobs: int) -> None:
        with transaction(self.con):
            self.con.execute("DELETE FROM budget_share")
            self.con.execute("INSERT INTO budget_share (max_usd, max_tokens, sweep_id, jobs) VALUES (?, ?, ?, ?)",
                             [max_usd, max_tokens, sweep_id, jobs])

    def budget_share(self) -> tuple[float | None, int | None] | None:
        """A sweep job's cap (its share of what the study had left), if this is a job's shard."""
        rows = self.con.execute("SELECT max_usd, max_tokens FROM budget_share").fetchall()
        return (rows[0][0], rows[0][1]) if rows else None

    def spent(self) -> tuple[float, int]:
        """USD and tokens of every live call on record (the study's spend so far, across runs). Each
        live reply is one row of the response cache, also when its trial did not finish. A negative
        figure (stored before provider numbers were checked) never lowers the spend."""
        usd, tokens = self.con.execute(
            "SELECT coalesce(sum(greatest(cost_usd, 0)), 0),"
            " coalesce(sum(greatest(prompt_tokens, 0) + greatest(completion_tokens, 0)), 0) FROM responses").fetchall()[0]
        return float(usd), int(tokens)

    def trial_statuses(self) -> dict[str, tuple[str, int]]:
        return {tid: (status, attempt) for tid, status, attempt in
                self.con.execute("SELECT trial_id, status, attempt FROM trials").fetchall()}

    # response cache ----------------------------------------------------------------------
    def cached_response(self, request_hash: str) -> CachedResponse | None:
        queued = self.writer.queued_response(request_hash)
        if queued is not None:
            return queued
        if self._cached_hashes is None:
            # One read of the cache's keys; a miss (most lookups of a first run) then costs no query.
            cur = self.con.cursor()
            try:
                keys = cur.sql("SELECT request_hash FROM responses").to_arrow_table().column(0)
            finally:
                cur.close()
            self._cached_hashes = set(keys.to_pylist())
        if request_hash not in self._cached_hashes:
            return None
        row = self.con.execute(
            "SELECT response_text, raw_response, prompt_tokens, completion_tokens, cost_usd, latency_s,"
            " finish_reason FROM responses WHERE request_hash = ?", [request_hash]).fetchall()
        return CachedResponse(*row[0]) if row else None

    def put_response(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None:
        """Queued with the trial's rows: written by the next group commit."""
        self.writer.add_response(request_hash, litellm_id, response)

    # trials ------------------------------------------------------------------------------
    def commit_trial(self, trial_row: dict[str, Any], calls: list[dict[str, Any]],
                     scenario_rows: dict[str, list[dict[str, Any]]]) -> None:
        """Write a finished trial, its calls and its scenario rows now, atomically (replacing an
        earlier errored attempt of the same trial, whose calls stay on record). The executors queue
        trials on `writer` instead and let it write them in batches."""
        for table in scenario_rows:
            _ident(table)
        self.writer.add_trial(trial_row, calls, scenario_rows)
        self.writer.flush()

    # verdicts ----------------------------------------------------------------------------
    def verdict_statuses(self, judge_id: str, rubric_version: str,
                         judge_fingerprint: str) -> dict[str, tuple[str, int]]:
        return {sid: (status, attempt) for sid, status, attempt in self.con.execute(
            f"SELECT subject_id, status, attempt FROM verdicts v WHERE {verdict_match('v')}",
            {"judge_id": judge_id, "rubric_version": rubric_version, "judge_fingerprint": judge_fingerprint}).fetchall()}

    def commit_verdict(self, verdict: dict[str, Any], calls: list[dict[str, Any]]) -> None:
        """Write one verdict with the judge's calls now (replacing an earlier failed one)."""
        self.writer.add_verdict(verdict, calls)
        self.writer.flush()


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name

