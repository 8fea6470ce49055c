"""`make snapshot` (reports/snapshot.py) captures the whole rendered page, however long, not a window of it."""

from __future__ import annotations

import importlib.util
import shutil
import struct
from pathlib import Path

import pytest

from engine import load_study
from engine.cli import main
from engine.kernel.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (make browser)")

STUDY = """\
defaults: [base, {model_set: local_ladder}, {scenario: escalation}, {executor: local}, _self_]
name: snapshot_study
title: "A long report"
design:
  factors:
    agent: [scripted:hawk, scripted:tit_for_tat, scripted:dove, scripted:calculating]
  seeds: 4
scenario:
  max_turns: 4
"""


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


def test_the_snapshot_is_the_whole_page(tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(STUDY)
    assert main(["run", str(tmp_path / "s.yaml"), "--no-progress", "--formats", "html"]) == 0
    html = Path(load_study(str(tmp_path / "s.yaml")).spec.report.output_dir) / "index.html"
    spec = importlib.util.spec_from_file_location("snapshot", REPO_ROOT / "reports" / "snapshot.py")
    snapshot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snapshot)
    png = snapshot.html_snapshot(html, tmp_path / "page.png")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=snapshot.CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(html.as_uri(), wait_until="networkidle")
        height = page.evaluate("document.documentElement.scrollHeight")
        browser.close()
    width, got = png_size(png)
    assert width == 1200 and height > 5000, height  # longer than the old fixed 5,000-pixel window
    assert abs(got - height) <= 0.02 * height, (got, height)
