"""Load the jobs' shard databases into the study database (DuckDB has one writer per file, so jobs
never write it directly). Idempotent: merging a shard twice changes nothing."""

from __future__ import annotations

from pathlib import Path

import duckdb

from engine.store.db import transaction

# Outcome tables: a finished result already in the study database is kept; an errored one is
# replaced by the shard's. Everything else is content-addressed and merged insert-or-ignore.
TRIAL_TABLE, VERDICT_TABLE = "trials", "verdicts"
VERDICT_KEY = ("subject_id", "judge_id", "rubric_version", "judge_fingerprint")


def tables(con: duckdb.DuckDBPyConnection, catalog: str) -> list[str]:
    return [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_schema = 'main'"
        " ORDER BY table_name", [catalog]).fetchall() if t != "schema_migrations"]


def columns(con: duckdb.DuckDBPyConnection, catalog: str, table: str) -> list[str]:
    return [c for (c,) in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_catalog = ? AND table_name = ?",
        [catalog, table]).fetchall()]


def merge_shard(con: duckdb.DuckDBPyConnection, shard: Path) -> dict[str, int]:
    """Rows added per table. The study database must have every table of the shard (same migrations)."""
    main = con.execute("SELECT current_database()").fetchone()[0]
    con.execute(f"ATTACH '{shard}' AS shard (READ_ONLY)")
    try:
        missing = set(tables(con, "shard")) - set(tables(con, main))
        if missing:
            raise RuntimeError(f"{shard} has tables the study database lacks: {sorted(missing)}")
        before = {t: _count(con, t) for t in tables(con, "shard")}
        with transaction(con):
            con.execute("DELETE FROM trials WHERE status = 'error' AND trial_id IN (SELECT trial_id FROM shard.trials)")
            key = " AND ".join(f"v.{c} = s.{c}" for c in VERDICT_KEY)
            con.execute(f"DELETE FROM verdicts v WHERE v.status = 'error' AND EXISTS "
                        f"(SELECT 1 FROM shard.verdicts s WHERE {key})")
            # The shard's trials the study database does not hold as finished come in with their rows.
            con.execute("CREATE OR REPLACE TEMP TABLE incoming AS SELECT trial_id FROM shard.trials"
                        " WHERE trial_id NOT IN (SELECT trial_id FROM trials)")
            for table in tables(con, "shard"):
                if table != TRIAL_TABLE and "trial_id" in columns(con, "shard", table) and table != "calls":
                    con.execute(f"DELETE FROM {table} WHERE trial_id IN (SELECT trial_id FROM incoming)")
                    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM shard.{table}"
                                " WHERE trial_id IN (SELECT trial_id FROM incoming)")
                elif table == TRIAL_TABLE:
                    con.execute("INSERT INTO trials BY NAME SELECT * FROM shard.trials"
                                " WHERE trial_id IN (SELECT trial_id FROM incoming)")
                else:
                    con.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM shard.{table}")
        return {t: _count(con, t) - n for t, n in before.items()}
    finally:
        con.execute("DETACH shard")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
