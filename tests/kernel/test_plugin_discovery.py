"""One way in for every plug-in: the `engine.plugins` entry-point group. A third-party package installed
beside the engine (a real dist-info on sys.path) is discovered with its scenario, judge kind, report
section and claim test, from a package whose `__init__.py` lists nothing; the engine's own plug-ins
come through the same group (its pyproject.toml); a scoped registry forgets all of it afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import engine
from engine.kernel.registry import REGISTRY, checkout_entry_points, plugin_targets

PACKAGE = "dice_plugins"
MODULES = {
    "__init__.py": '"""Dice: a third-party plug-in package (lists no modules)."""\n',
    "scenario.py": '''
from typing import Literal
import engine

class DiceParams(engine.Strict):
    name: Literal["dice"]

@engine.register_scenario
class Dice(engine.Scenario):
    name = "dice"
    version = "1"
    Params = DiceParams
    def trial_inputs(self, spec, params, cell):
        return {}
    def estimate(self, inputs):
        return []
    async def run(self, trial, ctx):
        return engine.TrialOutcome()
    def metrics(self):
        return []
''',
    "kinds/__init__.py": "",
    "kinds/judge.py": '''
import engine

@engine.register_judge
class Even(engine.Judge):
    kind = "dice_even"
    async def grade(self, subject, ctx):
        raise NotImplementedError
    def describe(self):
        return "even or odd"
''',
    "kinds/section.py": '''
import engine

@engine.register_section
class Tally(engine.Section):
    type = "dice_tally"
    def render(self, ctx, options):
        return engine.Rendered("")

@engine.register_claim_test
class Fair(engine.ClaimTest):
    test = "dice_fair"
''',
}


def install(root: Path) -> Path:
    """The package and its dist-info (METADATA, entry_points.txt), as pip would leave them."""
    for rel, text in MODULES.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    info = root / f"{PACKAGE}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dice-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[engine.plugins]\ndice = {PACKAGE}\n")
    return root


def registered() -> set[tuple[str, str]]:
    return {(kind, e.full_name) for kind in ("scenario", "judge", "section", "claim") for e in REGISTRY.entries(kind)}


def test_an_installed_package_registers_through_its_entry_point_and_the_scope_forgets_it(tmp_path, monkeypatch):
    before = registered()
    expected = {("scenario", "dice"), ("judge", "dice_even"), ("section", "dice_tally"), ("claim", "dice_fair")}
    assert not expected & before
    with REGISTRY.scoped():
        monkeypatch.syspath_prepend(str(install(tmp_path)))
        assert f"{PACKAGE}" in plugin_targets()
        assert registered() - before == expected
        assert f"{PACKAGE}.kinds.judge" in sys.modules  # found by walking the package
        # The stages' lookups see them too.
        from engine.judging.catalog import judge_kinds
        from engine.report.catalog import section_types

        assert "dice_even" in judge_kinds("escalation") and "dice_tally" in section_types("escalation")
    assert registered() == before
    assert not [m for m in sys.modules if m.startswith(PACKAGE)]


def test_the_engine_registers_its_own_plugins_through_the_same_entry_points():
    name, own = checkout_entry_points()
    assert name == "llm-study-engine" and "engine.scenarios" in own
    targets = plugin_targets()
    assert set(own) <= set(targets)
    entries = [e for kind in ("scenario", "judge", "section", "claim") for e in REGISTRY.entries(kind)]
    assert len(entries) > 20
    outside = [e.full_name for e in entries
               if not any(e.obj.__module__ == t or e.obj.__module__.startswith(t + ".") for t in targets)]
    assert not outside, f"registered by a module no entry point names: {outside}"


def test_every_module_of_every_scenario_is_discovered_without_an_import_list():
    REGISTRY.entries("scenario")
    folder = Path(engine.__file__).parent / "scenarios"
    modules = [".".join(p.relative_to(folder.parents[1]).with_suffix("").parts).removesuffix(".__init__")
               for p in folder.glob("*/**/*.py") if (p.parent / "__init__.py").exists()]
    assert len(modules) > 20
    assert not [m for m in modules if m not in sys.modules]


def test_a_name_registered_in_a_scope_is_free_again_after_it(plugin_registry):
    for _ in range(2):  # a new class each time: a second class under a taken name would be refused
        class Tally(engine.Section):
            type = "scoped_tally"

            def render(self, ctx, options):
                return engine.Rendered("")

        with REGISTRY.scoped():
            engine.register_section(Tally)
            assert ("section", "scoped_tally") in registered()
        assert ("section", "scoped_tally") not in registered()
