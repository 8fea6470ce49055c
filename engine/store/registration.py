"""Pre-registration records (tables of migration 0007): what a study's report tests, hashed before the
study's first data, and every later change of it.

`register` runs before the first trial of a study (and before an analysis-only study's import), and
again at every later run, regrade and report. The first call records the settings and their hash.
A later call with other settings re-registers them while the study has no data yet (nothing was seen,
so nothing is amended: a run killed before its first trial and started again with edited claims is
still registered before any data); once there is data, it records an amendment: the old and new hash,
which keys changed, when, and which command saw it first. The same settings again record nothing.

"Data" is a trial of the study on record, or, for an analysis-only study, an import that began
(`mark_imported`, called before the import: "before any data" then means before the import into this
database; the file existed, and may have been read, before)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import duckdb

from engine.kernel.hashing import content_hash
from engine.store.db import transaction


@dataclass(frozen=True)
class Registration:
    study: str
    settings_hash: str
    settings: dict[str, Any]
    spec_hash: str
    registered_at: datetime
    before_data: bool
    imported_at: datetime | None


@dataclass(frozen=True)
class Amendment:
    number: int
    old_hash: str
    new_hash: str
    changes: list[dict[str, Any]]  # {key, old, new}; no "old" for an added key, no "new" for a removed one
    seen_at: datetime
    command: str


def settings_hash(settings: dict[str, Any]) -> str:
    return content_hash(settings, 16)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists as {dotted key: value}; a list of plain values (a range, a pair of
    models) is one value."""
    if isinstance(tree, dict):
        items = [(str(k), v) for k, v in tree.items()]
    elif isinstance(tree, list) and any(isinstance(v, (dict, list)) for v in tree):
        items = [(str(i), v) for i, v in enumerate(tree)]
    else:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else key))
    if not items and prefix:
        out[prefix] = tree
    return out


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """What differs between two settings trees, key by key, in key order."""
    a, b = flatten(old), flatten(new)
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key in a and key in b and a[key] == b[key]:
            continue
        out.append({"key": key, **({"old": a[key]} if key in a else {}), **({"new": b[key]} if key in b else {})})
    return out


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def has_data(con: duckdb.DuckDBPyConnection, study: str) -> bool:
    """Whether the study has a trial on record or an import that began."""
    trial = con.execute("SELECT EXISTS (SELECT 1 FROM trials t JOIN plan p ON p.trial_id = t.trial_id"
                        " JOIN studies s ON s.spec_hash = p.spec_hash WHERE s.name = ?)", [study]).fetchone()[0]
    imported = con.execute("SELECT EXISTS (SELECT 1 FROM registrations WHERE study = ? AND imported_at IS NOT NULL)",
                           [study]).fetchone()[0]
    return bool(trial or imported)


def register(con: duckdb.DuckDBPyConnection, study: str, settings: dict[str, Any], spec_hash: str,
             command: str) -> str:
    """Record `settings` for `study` (see the module's docstring). Returns what was done: 'registered',
    're-registered' (changed before any data), 'amended' or 'unchanged'."""
    digest = settings_hash(settings)
    with transaction(con):
        row = con.execute("SELECT settings_hash, settings FROM registrations WHERE study = ?", [study]).fetchone()
        if row is None:
            # A study with runs on record before its first registration (a database older than this
            # table) was not registered before its data.
            earlier = con.execute("SELECT count(*) FROM studies WHERE name = ?", [study]).fetchone()[0]
            con.execute("INSERT INTO registrations (study, settings_hash, settings, spec_hash, registered_at,"
                        " before_data) VALUES (?, ?, ?, ?, ?, ?)",
                        [study, digest, json.dumps(settings), spec_hash, _now(), not earlier])
            return "registered"
        last = con.execute("SELECT number, new_hash, settings FROM registration_amendments WHERE study = ?"
                           " ORDER BY number DESC LIMIT 1", [study]).fetchone()
        current_hash, current = (last[1], json.loads(last[2])) if last else (row[0], json.loads(row[1]))
        if current_hash == digest:
            return "unchanged"
        if last is None and not has_data(con, study):
            con.execute("UPDATE registrations SET settings_hash = ?, settings = ?, spec_hash = ?, registered_at = ?"
                        " WHERE study = ?", [digest, json.dumps(settings), spec_hash, _now(), study])
            return "re-registered"
        con.execute("INSERT INTO registration_amendments (study, number, old_hash, new_hash, changes, settings,"
                    " spec_hash, seen_at, command) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [study, (last[0] if last else 0) + 1, current_hash, digest,
                     json.dumps(changes(current, settings)), json.dumps(settings), spec_hash, _now(), command])
        return "amended"


def mark_imported(con: duckdb.DuckDBPyConnection, study: str) -> None:
    """An analysis-only study's import begins: from now on the study has data."""
    con.execute("UPDATE registrations SET imported_at = ? WHERE study = ? AND imported_at IS NULL", [_now(), study])


def _has_tables(con: duckdb.DuckDBPyConnection) -> bool:
    """A database written before migration 0007 (read-only, so not migrated) has no registrations."""
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'registrations'"
                            " AND database_name = current_database()").fetchone()[0])


def registration(con: duckdb.DuckDBPyConnection, study: str) -> Registration | None:
    if not _has_tables(con):
        return None
    row = con.execute("SELECT study, settings_hash, settings, spec_hash, registered_at, before_data, imported_at"
                      " FROM registrations WHERE study = ?", [study]).fetchone()
    if row is None:
        return None
    return Registration(row[0], row[1], json.loads(row[2]), row[3], row[4], bool(row[5]), row[6])


def amendments(con: duckdb.DuckDBPyConnection, study: str) -> list[Amendment]:
    if not _has_tables(con):
        return []
    rows = con.execute("SELECT number, old_hash, new_hash, changes, seen_at, command FROM registration_amendments"
                       " WHERE study = ? ORDER BY number", [study]).fetchall()
    return [Amendment(n, old, new, json.loads(changed), seen, command) for n, old, new, changed, seen, command in rows]
