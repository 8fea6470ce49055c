"""The table the README shows for `make study STUDY=model_size` is the one the shipped study prints:
every line of the README's block (but an elision line starting with '...') is a line of what
`python -m engine summary model_size` prints to a log, in the same order. Needs the study's database
(`make study STUDY=model_size` writes results/model_size.duckdb); skipped without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import load_study
from engine.cli import main
from engine.kernel.paths import REPO_ROOT

MARK = "`make study` prints a block per design cell"


def readme_block() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    after = text[text.index(MARK):]
    body = after[after.index("```\n") + 4:]
    return body[:body.index("```")].rstrip("\n").splitlines()


def test_the_readme_names_the_table_it_shows():
    lines = readme_block()
    assert lines and lines[0].startswith("Does model size matter for safety?")


def test_the_readme_table_is_the_printed_one(capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    database = Path(load_study("model_size").spec.store.path)
    if not database.exists():
        pytest.skip(f"{database} does not exist: run `make study STUDY=model_size` first")
    assert main(["summary", "model_size"]) == 0
    printed = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    at = 0
    for line in readme_block():
        if line.startswith("..."):
            continue
        assert line.rstrip() in printed[at:], f"README line not printed (in this order): {line!r}"
        at = printed.index(line.rstrip(), at) + 1
