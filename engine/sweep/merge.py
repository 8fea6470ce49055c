"""Copy results between the study database and the jobs' shard databases (DuckDB has one writer
per file, so jobs never write the study database directly).

Before launching, each shard is seeded from the study database with its job's finished trials and
the response cache, so a job plays exactly what running it alone would play. Afterwards each shard
is merged back. Both directions are the same copy and are idempotent: a finished trial already in
the target is kept (with its rows and verdicts); an errored one gives way to the source's."""

from __future__ import annotations

from pathlib import Path

import duckdb

from engine.kernel.contracts import VERDICT_KEY
from engine.store.db import transaction

# Bookkeeping of spec versions: copied back to the study database, never seeded into a shard.
SPEC_TABLES = ("studies", "plan", "sweep_jobs")
# A database's own bookkeeping, never copied: its migrations, and a sweep job's budget share.
LOCAL_TABLES = ("schema_migrations", "budget_share")


class MergeError(Exception):
    """Two databases cannot be merged (different schemas, a table the merge cannot key)."""


def tables(con: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    return [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'main'"
        " AND table_type = 'BASE TABLE' ORDER BY table_name", [catalog]).fetchall() if t not in LOCAL_TABLES]


def has_column(con: duckdb.DuckDBPyConnection, catalog: str, table: str, column: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.columns WHERE table_catalog = ?"
                            " AND table_name = ? AND column_name = ?", [catalog, table, column]).fetchone()[0])


def has_primary_key(con: duckdb.DuckDBPyConnection, catalog: str, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_constraints() WHERE database_name = ? AND table_name = ?"
                            " AND constraint_type = 'PRIMARY KEY'", [catalog, table]).fetchone()[0])


def copy_results(con: duckdb.DuckDBPyConnection, source: Path, *, only_trials: list[str] | None = None) -> dict[str, int]:
    """Copy `source`'s results into the database `con` writes. `only_trials` (seeding a shard) limits
    the trials, their rows and verdicts to those; spec bookkeeping is then not copied. Returns the
    rows added per table."""
    target = con.execute("SELECT current_database()").fetchone()[0]
    try:
        # ATTACH takes no parameters: the path as a SQL string literal (a folder's name may hold a quote).
        literal = "'" + str(source).replace("'", "''") + "'"
        con.execute(f"ATTACH {literal} AS src (READ_ONLY)")
    except duckdb.IOException as exc:
        raise MergeError(f"cannot read {source}: {' '.join(str(exc).split())[:300]}") from None
    try:
        missing = set(tables(con, "src")) - set(tables(con, target))
        if missing:
            raise MergeError(f"{source} has tables {sorted(missing)} that {target} lacks (different migrations)")
        con.execute("CREATE OR REPLACE TEMP TABLE wanted (trial_id VARCHAR)")
        if only_trials is not None:
            con.executemany("INSERT INTO wanted VALUES (?)", [(t,) for t in only_trials])
        scope = "" if only_trials is None else " WHERE trial_id IN (SELECT trial_id FROM wanted)"
        copied = [t for t in tables(con, "src") if only_trials is None or t not in SPEC_TABLES]
        before = {t: _count(con, t) for t in copied}
        with transaction(con):
            # Trials the target does not hold as finished come in, with their rows and verdicts.
            con.execute(f"DELETE FROM trials WHERE status = 'error' AND trial_id IN (SELECT trial_id FROM src.trials{scope})")
            con.execute(f"CREATE OR REPLACE TEMP TABLE incoming AS SELECT trial_id FROM src.trials{scope}"
                        f"{' AND' if scope else ' WHERE'} trial_id NOT IN (SELECT trial_id FROM trials)")
            for table in copied:
                _copy_table(con, target, table, only_trials is not None)
        return {t: _count(con, t) - n for t, n in before.items()}
    finally:
        con.execute("DETACH src")


def _copy_table(con: duckdb.DuckDBPyConnection, target: str, table: str, seeding: bool) -> None:
    incoming = "trial_id IN (SELECT trial_id FROM incoming)"
    if table == "verdicts":
        # Verdicts on the source's trials travel with them; gold-set verdicts are not a trial's.
        subjects = "(s.subject_id IN (SELECT trial_id FROM incoming) OR starts_with(s.subject_id, 'gold/'))"
        key = " AND ".join(f"v.{c} = s.{c}" for c in VERDICT_KEY)
        con.execute(f"DELETE FROM verdicts v WHERE v.status = 'error' AND EXISTS "
                    f"(SELECT 1 FROM src.verdicts s WHERE {key} AND {subjects})")
        con.execute(f"INSERT OR IGNORE INTO verdicts BY NAME SELECT * FROM src.verdicts s WHERE {subjects}")
    elif table in ("responses", *SPEC_TABLES):
        con.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM src.{table}")
    elif table == "trials":
        con.execute(f"INSERT OR IGNORE INTO trials BY NAME SELECT * FROM src.trials WHERE {incoming}")
    elif table == "calls":  # the incoming trials' calls, and the judges' calls on gold items
        con.execute(f"INSERT OR IGNORE INTO calls BY NAME SELECT * FROM src.calls WHERE {incoming}"
                    " OR starts_with(trial_id, 'gold/')")
    elif has_column(con, "src", table, "trial_id"):  # a scenario's rows of a trial
        con.execute(f"DELETE FROM {table} WHERE {incoming}")
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM src.{table} WHERE {incoming}")
    elif seeding:
        return  # spec-keyed scenario data (e.g. imported traces) is recreated by the job itself
    elif has_primary_key(con, target, table):
        con.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM src.{table}")
    else:
        raise MergeError(f"table {table} has neither a trial_id column nor a primary key: the merge cannot "
                         "tell new rows from copies (give it a primary key in its migration)")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
