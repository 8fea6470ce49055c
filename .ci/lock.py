"""Write requirements.lock from the packages installed in the venv, one section per part of the
install: `[base]` is what pyproject.toml's dependencies need (transitively), `[ray]`, `[slurm]`,
`[inspect]` and `[test]` what each extra adds on top of base. `make lock` runs it after
`make install-all`; `.ci/section.py` (via the Makefile) installs a section.

Run with the venv's python: `.venv/bin/python .ci/lock.py > requirements.lock`."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("ray", "slurm", "inspect", "test")
SELF = "llm-study-engine"
# The venv's own tools: never pinned (a package that lists them would downgrade the venv's pip).
TOOLS = ("pip", "setuptools", "wheel")


def closure(roots: list[str]) -> dict[str, str]:
    """Canonical name -> installed version of `roots` and everything they need, extras included."""
    found: dict[str, str] = {}
    todo = [(Requirement(r), None) for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req, parent_extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": parent_extra or ""}):
            continue
        name = canonicalize_name(req.name)
        if (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        dist = metadata.distribution(req.name)
        found[name] = dist.version
        for child in dist.requires or []:
            child_req = Requirement(child)
            if child_req.marker is None or "extra" not in str(child_req.marker):
                todo.append((child_req, None))
            else:
                todo.extend((child_req, extra) for extra in req.extras)
    for name in (SELF, *TOOLS):
        found.pop(canonicalize_name(name), None)
    return found


def pinned(name: str, version: str) -> str:
    return f"{name}=={version}"


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = closure(project["dependencies"])
    print("# Exact versions of everything the project installs, transitive included, in sections: base\n"
          "# is what `make study` needs; each extra's section is what it adds to base (the extras of\n"
          "# pyproject.toml). Written by `make lock` (.ci/lock.py); installed by the Makefile one section\n"
          "# at a time with --no-deps. A line starting with '# [' opens a section.")
    print("# [base]")
    print("\n".join(pinned(n, v) for n, v in sorted(base.items())))
    for extra in EXTRAS:
        added = {n: v for n, v in closure(project["optional-dependencies"][extra]).items() if n not in base}
        print(f"# [{extra}]")
        print("\n".join(pinned(n, v) for n, v in sorted(added.items())))


if __name__ == "__main__":
    sys.exit(main())
