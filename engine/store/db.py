"""The study database: one DuckDB file per study, versioned by numbered migrations.

DuckDB allows one writing process per file, so only the executor's event loop writes; model
calls run elsewhere and hand their results back to it.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

import duckdb

from engine.errors import StoreBusy

CORE_MIGRATIONS = Path(__file__).parent / "migrations"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class CachedResponse:
    response_text: str
    raw_response: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float


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

    @contextmanager
    def released(self) -> Iterator[None]:
        """Let another process (the Ray executor's writer actor) hold the file for a while."""
        self.close()
        try:
            yield
        finally:
            self.con = self._reconnect()

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
        if checkpoint:
            self.con.execute("CHECKPOINT")
        self.con.close()

    # studies and plans -------------------------------------------------------------------
    def record_study(self, *, spec_hash: str, name: str, title: str, spec: dict, overrides: Iterable[str],
                     command: str, engine_version: str, package_versions: dict, git_sha: str | None) -> None:
        self.con.execute(
            "INSERT INTO studies (spec_hash, name, title, spec, overrides, command, engine_version,"
            " package_versions, git_sha) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [spec_hash, name, title, json.dumps(spec), json.dumps(list(overrides)), command,
             engine_version, json.dumps(package_versions), git_sha],
        )

    def record_plan(self, spec_hash: str, rows: list[tuple[str, str, dict, int]]) -> None:
        if not rows:
            return  # analysis-only studies plan no trials
        with transaction(self.con):
            self.con.executemany(
                "INSERT INTO plan (spec_hash, trial_id, cell_id, cell, seed) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                [(spec_hash, trial_id, cell_id, json.dumps(cell), seed) for trial_id, cell_id, cell, seed in rows],
            )

    def trial_statuses(self) -> dict[str, tuple[str, int]]:
        return {tid: (status, attempt) for tid, status, attempt in
                self.con.execute("SELECT trial_id, status, attempt FROM trials").fetchall()}

    # response cache ----------------------------------------------------------------------
    def cached_response(self, request_hash: str) -> CachedResponse | None:
        row = self.con.execute(
            "SELECT response_text, raw_response, prompt_tokens, completion_tokens, cost_usd, latency_s"
            " FROM responses WHERE request_hash = ?", [request_hash]).fetchone()
        return CachedResponse(*row) if row else None

    def put_response(self, request_hash: str, litellm_id: str, response: CachedResponse) -> None:
        self.con.execute(
            "INSERT INTO responses (request_hash, litellm_id, response_text, raw_response, prompt_tokens,"
            " completion_tokens, cost_usd, latency_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [request_hash, litellm_id, response.response_text, response.raw_response, response.prompt_tokens,
             response.completion_tokens, response.cost_usd, response.latency_s],
        )

    # trials ------------------------------------------------------------------------------
    def commit_trial(self, trial_row: dict[str, Any], calls: list[dict[str, Any]],
                     scenario_rows: dict[str, list[dict[str, Any]]]) -> None:
        """Write a finished trial, its calls and its scenario rows atomically (replacing an earlier
        errored attempt of the same trial, whose calls stay on record)."""
        trial_id = trial_row["trial_id"]
        with transaction(self.con):
            for table in scenario_rows:
                self.con.execute(f"DELETE FROM {_ident(table)} WHERE trial_id = ?", [trial_id])
            self.con.execute("DELETE FROM trials WHERE trial_id = ?", [trial_id])
            self._insert("trials", [trial_row])
            self._insert("calls", calls)
            for table, rows in scenario_rows.items():
                self._insert(table, rows)

    # verdicts ----------------------------------------------------------------------------
    def verdict_statuses(self, judge_id: str, rubric_version: str,
                         judge_fingerprint: str) -> dict[str, tuple[str, int]]:
        return {sid: (status, attempt) for sid, status, attempt in self.con.execute(
            "SELECT subject_id, status, attempt FROM verdicts WHERE judge_id = ? AND rubric_version = ?"
            " AND judge_fingerprint = ?", [judge_id, rubric_version, judge_fingerprint]).fetchall()}

    def commit_verdict(self, verdict: dict[str, Any], calls: list[dict[str, Any]]) -> None:
        """Write one verdict with the judge's calls atomically (replacing an earlier failed one)."""
        with transaction(self.con):
            self.con.execute(
                "DELETE FROM verdicts WHERE subject_id = ? AND judge_id = ? AND rubric_version = ?"
                " AND judge_fingerprint = ?", [verdict["subject_id"], verdict["judge_id"],
                                               verdict["rubric_version"], verdict["judge_fingerprint"]])
            self._insert("verdicts", [verdict])
            self._insert("calls", calls)

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = list(rows[0])
        sql = (f"INSERT INTO {_ident(table)} ({', '.join(map(_ident, columns))}) "
               f"VALUES ({', '.join('?' for _ in columns)})")
        self.con.executemany(sql, [[_to_db(row[c]) for c in columns] for row in rows])


def _ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


def _to_db(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value
