"""docs/schema.md is what the migrations build: each component on disk (the core and each scenario) has
its section, equal to what engine/store/schema_doc.py generates (`make docs` rewrites it); the README's
database section names every core table."""

from __future__ import annotations

import re

from engine.kernel.paths import REPO_ROOT
from engine.store.schema_doc import components, created_by, schema_markdown

DOC = REPO_ROOT / "docs" / "schema.md"


def sections(text: str) -> dict[str, str]:
    parts = re.split(r"^## (\S+) \(.*\)$", text, flags=re.M)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2])}


def test_the_documented_schema_is_the_migrations():
    documented, generated = sections(DOC.read_text()), sections(schema_markdown())
    for component, _ in components():
        assert documented.get(component) == generated[component], (
            f"docs/schema.md's {component} section differs from its migrations: run `make docs`")


def test_the_readme_names_every_core_table():
    readme = (REPO_ROOT / "README.md").read_text()
    database = readme[readme.index("## The database"):readme.index("## The report")]
    core = dict(components())["core"]
    missing = [t for t in created_by(core) if f"`{t}`" not in database]
    assert not missing, f"README's database section does not name {missing}"
