"""A stored calibration is keyed on the code its numbers come from: for a claim test plug-in that is its
whole package (a scenario's folder), since its worlds call the plug-in's own analysis modules; a
checkout moved elsewhere keeps the key."""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.report.calibration_setup import code_digest, plugin_sources
from engine.scenarios.jailbreak import calibration as jailbreak_calibration


def test_a_scenarios_claim_code_covers_its_whole_folder():
    names = plugin_sources(jailbreak_calibration.__file__)
    assert "jailbreak/provider_units.py" in names and "jailbreak/analysis/asr.py" in names
    assert all(n.startswith("jailbreak/") for n in names)


def _package(root: Path, helper: str) -> Path:
    pkg = root / "my_claims"
    (pkg / "stats").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stats" / "__init__.py").write_text("")
    (pkg / "stats" / "ratio.py").write_text(helper)
    (pkg / "worlds.py").write_text("from my_claims.stats.ratio import f\n")
    return pkg / "worlds.py"


def test_an_edit_to_any_module_of_a_plugin_changes_the_key_and_a_move_does_not(tmp_path):
    worlds = _package(tmp_path / "a", "def f(x):\n    return x\n")
    before = code_digest((str(worlds),))
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(tmp_path / "a", moved)
    assert code_digest((str(moved / "my_claims" / "worlds.py"),)) == before
    (worlds.parent / "stats" / "ratio.py").write_text("def f(x):\n    return 2 * x\n")
    assert code_digest((str(worlds),)) != before
