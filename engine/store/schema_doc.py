"""The database's documented schema, generated from the migrations (core, then each scenario's folder
found on disk): `python -m engine.store.schema_doc > docs/schema.md` (`make docs`). A test fails when
docs/schema.md and what the migrations build differ."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import duckdb

from engine.kernel.paths import SCENARIOS_DIR
from engine.store.db import CORE_MIGRATIONS, migrate


def components() -> list[tuple[str, Path]]:
    """(component, migrations folder): the core's, then each scenario's in name order."""
    return [("core", CORE_MIGRATIONS), *((p.parent.name, p) for p in sorted(SCENARIOS_DIR.glob("*/migrations"))
                                        if p.is_dir())]


def created_by(folder: Path) -> dict[str, str]:
    """table -> the migration file that creates it."""
    out = {}
    for sql in sorted(folder.glob("*.sql")):
        for table in re.findall(r"CREATE TABLE(?: IF NOT EXISTS)?\s+(\w+)", sql.read_text(), re.I):
            out.setdefault(table, sql.name)
    return out


def schema_markdown() -> str:
    con = duckdb.connect()
    lines = ["# The study database's tables", "",
             "Generated from the migrations by `make docs` (engine/store/schema_doc.py); do not edit by hand.",
             "One DuckDB file per study; each component's migrations are applied in order and recorded in",
             "`schema_migrations`.", ""]
    try:
        for component, folder in components():
            migrate(con, component, folder)
            lines += [f"## {component} ({folder.relative_to(SCENARIOS_DIR.parents[1])})", ""]
            for table, file in created_by(folder).items():
                columns = con.execute("SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                                      " WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
                lines += [f"### `{table}` ({file})", "", "| column | type | null |", "| --- | --- | --- |"]
                lines += [f"| `{name}` | {kind} | {'yes' if nullable == 'YES' else 'no'} |"
                          for name, kind, nullable in columns]
                lines.append("")
    finally:
        con.close()
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(schema_markdown())
