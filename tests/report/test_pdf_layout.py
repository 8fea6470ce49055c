"""The PDF keeps each table's caption on the page where its table starts (the typst preamble makes the
caption, above the table, stick to it), checked by asking typst where each caption and table landed:
on documents built so that some captions fall at a page's foot, and on a rendered report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.report.render import TYPST_PREAMBLE

typst = pytest.importorskip("typst")

# Test-only rules recording the page of every table caption and of every table's first row.
PROBE = """#show figure.caption.where(kind: table): it => [#context [#metadata((what: "caption", page: here().page())) <probe>]#it]
#show table: it => [#context [#metadata((what: "table", page: here().page())) <probe>]#it]
"""


def apart(typ: Path) -> tuple[int, int]:
    """(tables, tables whose caption is on another page than their first row)."""
    probed = typ.with_name("probed.typ")
    probed.write_text(PROBE + typ.read_text())
    items = json.loads(typst.query(str(probed), "<probe>", field="value", root=str(typ.parent)))
    tables = separated = 0
    caption_page = None
    for item in items:
        if item["what"] == "caption":
            caption_page = item["page"]
        elif caption_page is not None:
            tables += 1
            separated += item["page"] != caption_page
            caption_page = None
    return tables, separated


def filler_document(preamble: str) -> str:
    """Paragraphs of growing length, each followed by a captioned table, so captions meet page ends."""
    parts = [preamble]
    for i in range(40):
        parts.append(" ".join(["Words that fill the page."] * (3 + 7 * i % 23)))
        rows = ", ".join(f"[row {r}], [{r * i}]" for r in range(6))
        parts.append(f"#figure(table(columns: 2, {rows}), kind: table, caption: [Table caption {i}])")
    return "\n\n".join(parts)


def test_the_preamble_keeps_every_caption_with_its_table(tmp_path):
    old = TYPST_PREAMBLE.replace("#show figure.caption.where(kind: table): it => block(sticky: true, it)", "")
    assert old != TYPST_PREAMBLE
    (tmp_path / "old.typ").write_text(filler_document(old))
    tables, separated = apart(tmp_path / "old.typ")
    assert tables == 40 and separated > 0  # without the rule, captions are left at a page's foot
    (tmp_path / "new.typ").write_text(filler_document(TYPST_PREAMBLE))
    assert apart(tmp_path / "new.typ") == (40, 0)


def test_a_rendered_reports_tables_keep_their_captions(tmp_path, monkeypatch):
    from engine import load_study
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    study = tmp_path / "tables.yaml"
    study.write_text(
        "defaults: [base, {model_set: local_ladder}, {scenario: escalation}, {executor: local}, _self_]\n"
        "name: tables\ntitle: Many tables\n"
        "design:\n  factors:\n    agent: [scripted:hawk, scripted:dove, scripted:tit_for_tat, scripted:calculating,"
        " scripted:random, scripted:null]\n    fog_probability: [0.0, 0.1]\n  seeds: 3\n"
        "scenario:\n  max_turns: 3\n")
    assert main(["run", str(study), "--no-progress", "--formats", "pdf"]) == 0
    out = Path(load_study(str(study)).spec.report.output_dir)
    tables, separated = apart(out / "index.typ")
    assert tables >= 3 and separated == 0
