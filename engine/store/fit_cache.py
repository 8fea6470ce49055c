"""Stored results of expensive fits (table `fit_cache`, migration 0005), keyed by a content hash of
what they depend on: the exact input data, the settings and a code version (the caller builds the
key with `fit_key`). A report opens the database read-only: there a stored result is read, and a
missing one is computed and not stored. Results are written where the store is writable (after a
run, an import or a regrade; see Scenario.cache_analyses)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

import duckdb
import numpy as np
import pandas as pd

from engine.kernel.hashing import canonical_json

TABLE = "fit_cache"


def frame_digest(df: pd.DataFrame, columns: list[str]) -> str:
    """SHA-256 of the rows of `df[columns]` as a multiset: the values exactly (floats bit for bit),
    independent of row order, which for a large study comes from an unordered join. A fit sees the
    same data in any order."""
    keys, parts = [], []
    for name in columns:
        values = df[name]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            array = values.to_numpy(dtype=np.float64)
            keys.append(array)
            parts.append((name, "f8", None, array))
        else:
            codes, uniques = pd.factorize(values, sort=True)  # labels in sorted order, not order of appearance
            keys.append(codes)
            parts.append((name, "str", canonical_json([str(u) for u in uniques]), codes.astype(np.int64)))
    order = np.lexsort(keys[::-1]) if len(df) else np.arange(0)
    digest = hashlib.sha256(canonical_json([len(df), columns]).encode())
    for name, kind, labels, array in parts:
        digest.update(f"\x00{name}\x00{kind}\x00{labels or ''}\x00".encode())
        digest.update(np.ascontiguousarray(array[order]).astype("<f8" if kind == "f8" else "<i8").tobytes())
    return digest.hexdigest()


def fit_key(kind: str, data_digest: str, settings: dict[str, Any]) -> str:
    """The key of one fit: its kind, its input data's digest and its settings (which should name the
    code version and the versions of the libraries that compute it)."""
    return hashlib.sha256(canonical_json({"kind": kind, "data": data_digest, "settings": settings}).encode()).hexdigest()


def read_only(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute("SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return bool(row and row[0])


def _has_table(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
                            " AND schema_name = 'main' AND table_name = ?", [TABLE]).fetchone()[0])


def get(con: duckdb.DuckDBPyConnection, key: str) -> Any | None:
    """The stored result under `key` (decoded JSON), or None (also for a database from before the table)."""
    if not _has_table(con):
        return None
    row = con.execute(f"SELECT result FROM {TABLE} WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else None


def put(con: duckdb.DuckDBPyConnection, key: str, kind: str, result: Any) -> bool:
    """Store a JSON-serialisable result; False when the database is read-only or lacks the table."""
    if read_only(con) or not _has_table(con):
        return False
    con.execute(f"INSERT INTO {TABLE} (key, kind, result) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                [key, kind, json.dumps(result, allow_nan=False)])
    return True


def cached(con: duckdb.DuckDBPyConnection | None, key: str, kind: str, compute: Callable[[], Any],
           dump: Callable[[Any], Any], load: Callable[[Any], Any]) -> Any:
    """load(stored result) when there is one; otherwise compute(), stored as dump(result) when the
    database is writable. Without a connection, just compute()."""
    if con is None:
        return compute()
    stored = get(con, key)
    if stored is not None:
        return load(stored)
    result = compute()
    put(con, key, kind, dump(result))
    return result


def of_kind(con: duckdb.DuckDBPyConnection, kind: str) -> list[tuple[str, Any]]:
    """Every stored (key, result) of one kind, newest first (none for a database from before the table)."""
    if not _has_table(con):
        return []
    rows = con.execute(f"SELECT key, result FROM {TABLE} WHERE kind = ? ORDER BY created_at DESC", [kind]).fetchall()
    return [(key, json.loads(result)) for key, result in rows]
