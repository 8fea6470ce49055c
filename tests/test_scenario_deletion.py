"""A scenario is deleted by deleting its folder: on a copy of the tree without
engine/scenarios/agentic_misalignment/ (its code, conf/ groups, gold sets and migrations are all inside
it), without the studies that use it and without the tests that use it, every remaining study plans,
an escalation study and the import study run and report, and the remaining (not slow) tests pass.

The copy runs with the repository's interpreter, with the copy as working directory and first on
PYTHONPATH (the venv's editable install points at the original tree: the copy must win, and that is
checked first).

The tests that use the deleted scenario, decided per file (found by grepping tests/**/*.py for
agentic_misalignment, blackmail, leaking and the deleted studies' names):
  deleted whole, they test the scenario itself:
    tests/scenarios/agentic_misalignment/  (test_agentic.py, test_agentic_variants.py)
  trimmed, the tests (or parametrized cases) that use the scenario are cut, the rest stays:
    tests/test_checks.py
      test_another_scenarios_judge_kind_is_a_spec_error  (the agentic judge kind blackmail_structure)
      test_a_temperature_factor_sets_each_cells_temperature_in_every_scenario  (loops over blackmail_subfrontier)
    tests/test_judged_studies_local.py  (slow anyway)
      test_agentic_run_stores_parsed_actions_and_three_classifier_verdicts
    tests/report/test_report.py
      test_inhibition_examples_are_cut_at_their_max_chars  (the agentic Inhibition section)
    tests/analyze/test_relative_reduction.py
      test_the_mitigation_section_prints_the_interval_and_says_when_it_is_not_estimable  (the agentic
      report's mitigation section)
    tests/analyze/test_judge_binary_validity.py
      test_scenarios_name_the_labels_their_rates_count  (asserts the agentic classifiers' positive labels)
    tests/spec/test_configs.py
      test_search_path_is_conf_then_each_scenario_conf_folder_in_order  (expects the agentic conf folder)
      test_a_missing_option_lists_the_group_options_of_every_folder  (expects the blackmail_structure judge)
      test_the_documented_commands_are_found  (expects the agentic studies' `scenario.source=inspect_evals`)
      test_documented_overrides_compose: its cases are README.md's commands, and README.md still documents
      the deleted studies; they are deselected by name (-k "not <study> ...") in the run below
      test_moved_groups_resolve_as_overrides: its 3 cases of blackmail_subfrontier / leaking_subfrontier
      test_file_for_names_the_folder_that_holds_the_option: its case of the agentic rubric
    tests/test_scenario_contract.py
      AGENTIC_LOCAL (the agentic run's overrides) and the agentic_misalignment entry of CASES: the
      contract then expects exactly the two remaining scenarios
  kept as is:
    tests/spec/test_spec.py  (maps judge sets called blackmail*/leaking* to the deleted studies; those judge
    sets go with the scenario's conf/judge_set/)
  data: tests/data/pinned_ids.json loses the pinned cases of the deleted studies.
After trimming, no remaining test file may mention the deleted scenario (but for tests/spec/test_spec.py's
line above): a new test that does must be added to the table.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml
from conftest import analysis_only_args

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
SCENARIO = "agentic_misalignment"
REMAINING_SCENARIOS = ["escalation", "jailbreak"]
NOT_COPIED = {".git", ".venv", "results", "outputs", "multirun"}  # and reports/ outputs (below)

DELETED_TESTS = [f"tests/scenarios/{SCENARIO}"]  # files or folders
TRIMMED_TESTS: dict[str, dict[str, list[str]]] = {
    "tests/test_checks.py": {"defs": ["test_another_scenarios_judge_kind_is_a_spec_error",
                                       "test_a_temperature_factor_sets_each_cells_temperature_in_every_scenario"]},
    "tests/test_judged_studies_local.py": {"defs": ["test_agentic_run_stores_parsed_actions_and_three_classifier_verdicts"]},
    "tests/report/test_report.py": {"defs": ["test_inhibition_examples_are_cut_at_their_max_chars"]},
    "tests/analyze/test_relative_reduction.py": {
        "defs": ["test_the_mitigation_section_prints_the_interval_and_says_when_it_is_not_estimable"]},
    "tests/analyze/test_judge_binary_validity.py": {"defs": ["test_scenarios_name_the_labels_their_rates_count"]},
    "tests/spec/test_configs.py": {
        "defs": ["test_search_path_is_conf_then_each_scenario_conf_folder_in_order",
                 "test_a_missing_option_lists_the_group_options_of_every_folder",
                 "test_the_documented_commands_are_found"],
        "cases": ["test_moved_groups_resolve_as_overrides", "test_file_for_names_the_folder_that_holds_the_option"]},
    "tests/test_scenario_contract.py": {"defs": ["AGENTIC_LOCAL"], "entries": ["CASES"]},
}
KEPT_MENTIONS = {"tests/spec/test_spec.py": 1}  # file -> lines allowed to mention the scenario
PINNED = "tests/data/pinned_ids.json"
IMPORT_ARGS = analysis_only_args("provider_vs_size_import")
# cooperation_window with scripted agents only: no model is called (the design's model block needs an
# agent factor; pairings are for models only, and the scripted controls block is dropped to stay small).
SCRIPTED_COOPERATION = ["~design.factors.pairing", "design.factors.agent=[scripted:tit_for_tat,scripted:hawk]",
                        "design.factors.cooperation_window=[0,3]", "design.controls=[]", "design.seeds=1"]


def mentions(study_names: list[str]) -> re.Pattern:
    return re.compile("|".join([SCENARIO, "blackmail", "leaking", *map(re.escape, study_names)]))


def copy_tree(dst: Path) -> int:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")
    n = 0
    for rel in filter(None, listed):
        parts = Path(rel).parts
        if parts[0] in NOT_COPIED or (parts[0] == "reports" and rel != "reports/snapshot.py"
                                      and parts[1:2] != ("templates",)):
            continue
        src = REPO / rel
        if not src.is_file():  # deleted in the work tree, not yet in the index
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
        n += 1
    return n


def studies_of(root: Path, scenario: str) -> list[str]:
    """Studies whose defaults pick one of the scenario's conf/scenario options, or that name it."""
    options = {p.stem for p in (root / "engine" / "scenarios" / scenario / "conf" / "scenario").glob("*.yaml")}
    assert scenario in options
    found = []
    for path in sorted((root / "studies").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        picks = [v for d in data.get("defaults", []) if isinstance(d, dict)
                 for k, v in d.items() if k.lstrip("/").split("@")[0] == "scenario"]
        named = (data.get("scenario") or {}).get("name")
        if any(p in options for p in picks) or named == scenario:
            found.append(path.stem)
    return found


def _cut(lines: list, first: int, col: int, last: int, end_col: int, what: str) -> None:
    """Blank the whole lines first..last (1-based), which must hold the cut node alone (and its comma)."""
    assert not lines[first - 1][:col].strip(), f"cannot cut {what} cleanly: {lines[first - 1]!r}"
    assert lines[last - 1][end_col:].strip() in ("", ","), f"cannot cut {what} cleanly: {lines[last - 1]!r}"
    for i in range(first - 1, last):
        lines[i] = None


def _top_level(tree: ast.Module) -> dict[str, ast.stmt]:
    out: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    out[target.id] = node
    return out


def trim(path: Path, what: dict[str, list[str]], pattern: re.Pattern) -> list[str]:
    """Cut from a test file: `defs`, top-level tests (or constants) by name; `cases`, the parametrized
    cases of the named tests that mention the scenario; `entries`, the entries of the named
    module-level dicts that mention it."""
    text = path.read_text()
    tree = ast.parse(text)
    lines: list = text.splitlines(keepends=True)
    defs = _top_level(tree)
    cut = []

    def need(name: str) -> ast.stmt:
        assert name in defs, f"{path.name}: no top-level {name} (update TRIMMED_TESTS)"
        return defs[name]

    for name in what.get("defs", []):
        node = need(name)
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        col = node.col_offset if first == node.lineno else 0
        _cut(lines, first, col, node.end_lineno, node.end_col_offset, name)
        cut.append(name)
    for name in what.get("cases", []):
        n_cut = 0
        for deco in getattr(need(name), "decorator_list", []):
            if isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize" and len(deco.args) > 1 \
                    and isinstance(deco.args[1], (ast.List, ast.Tuple)):
                for elt in deco.args[1].elts:
                    if pattern.search(ast.get_source_segment(text, elt) or ""):
                        _cut(lines, elt.lineno, elt.col_offset, elt.end_lineno, elt.end_col_offset, f"a case of {name}")
                        n_cut += 1
        assert n_cut, f"{path.name}: no case of {name} mentions the scenario (update TRIMMED_TESTS)"
        cut.append(f"{name}: {n_cut} case(s)")
    for name in what.get("entries", []):
        value = need(name).value
        assert isinstance(value, ast.Dict), f"{path.name}: {name} is no dict literal"
        n_cut = 0
        for key, val in zip(value.keys, value.values):
            assert key is not None, f"{path.name}: {name} has a ** entry"
            if pattern.search(ast.get_source_segment(text, key) or "") or pattern.search(ast.get_source_segment(text, val) or ""):
                _cut(lines, key.lineno, key.col_offset, val.end_lineno, val.end_col_offset, f"an entry of {name}")
                n_cut += 1
        assert n_cut, f"{path.name}: no entry of {name} mentions the scenario (update TRIMMED_TESTS)"
        cut.append(f"{name}: {n_cut} entr(y/ies)")
    out = "".join(line for line in lines if line is not None)
    ast.parse(out)
    path.write_text(out)
    return cut


def env_for(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS")}
    return {**env, "PYTHONPATH": str(copy), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONDONTWRITEBYTECODE": "1"}


def run(copy: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    python = str(PYTHON if PYTHON.exists() else sys.executable)
    return subprocess.run([python, *args], cwd=copy, env=env_for(copy), capture_output=True, text=True,
                          timeout=timeout)


def engine(copy: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return run(copy, "-m", "engine", *args, timeout=timeout)


def _tail(result: subprocess.CompletedProcess, n: int = 4000) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-n:]}\n--- stderr\n{result.stderr[-n:]}"


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("without_scenario") / "tree"
    assert copy_tree(root) > 100
    gone = root / "engine" / "scenarios" / SCENARIO
    assert (gone / "conf").is_dir() and (gone / "migrations").is_dir() and (gone / "gold").is_dir()
    studies = studies_of(root, SCENARIO)
    assert studies, f"no study uses {SCENARIO}"
    shutil.rmtree(gone)
    for study in studies:
        (root / "studies" / f"{study}.yaml").unlink()
    for rel in DELETED_TESTS:
        assert (root / rel).exists(), f"{rel} is gone (update DELETED_TESTS)"
        shutil.rmtree(root / rel) if (root / rel).is_dir() else (root / rel).unlink()
    pattern = mentions(studies)
    for rel, what in TRIMMED_TESTS.items():
        trim(root / rel, what, pattern)
    pinned = json.loads((root / PINNED).read_text())
    before = len(pinned["cases"])
    pinned["cases"] = [c for c in pinned["cases"] if c["study"] not in studies]
    assert len(pinned["cases"]) < before
    (root / PINNED).write_text(json.dumps(pinned, indent=1) + "\n")
    # Every remaining mention of the scenario in the tests is one decided on above.
    left = {}
    for path in sorted((root / "tests").rglob("*.py")):
        rel = str(path.relative_to(root))
        if rel == "tests/test_scenario_deletion.py":
            continue
        hits = [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
                if pattern.search(line)]
        if len(hits) > KEPT_MENTIONS.get(rel, 0):
            left[rel] = hits
    assert not left, f"tests still using {SCENARIO} after the deletion (decide for them in this file): {left}"
    (root / "results").mkdir()
    return root


def test_the_copy_imports_the_copy_and_finds_two_scenarios(copy):
    probe = run(copy, "-c", "import json, engine, engine.kernel.registry as r, engine.scenarios as s; "
                            "print(json.dumps([engine.__file__, r.__file__, list(s.__path__), r.scenario_names()]))")
    assert probe.returncode == 0, _tail(probe)
    engine_file, registry_file, scenario_path, names = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(engine_file) == copy / "engine" / "__init__.py"
    assert Path(registry_file) == copy / "engine" / "kernel" / "registry.py"
    assert [Path(p) for p in scenario_path] == [copy / "engine" / "scenarios"]
    assert names == REMAINING_SCENARIOS


def test_every_remaining_study_plans(copy):
    studies = sorted(p.stem for p in (copy / "studies").glob("*.yaml"))
    assert len(studies) >= 5 and "cooperation_window" in studies and "provider_vs_size_import" in studies
    failed = {}
    for study in studies:
        result = engine(copy, "plan", study, *analysis_only_args(study))
        if result.returncode != 0 or "cells" not in result.stdout:
            failed[study] = _tail(result, 1500)
    assert not failed, "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())


def test_an_escalation_study_runs_and_reports_with_scripted_agents(copy, tmp_path):
    db, out = tmp_path / "cw.duckdb", tmp_path / "report"
    args = [*SCRIPTED_COOPERATION, f"store.path={db}", f"report.output_dir={out}"]
    plan = engine(copy, "plan", "cooperation_window", *args)
    assert plan.returncode == 0 and re.search(r"model calls ≤ 0\b", plan.stdout), _tail(plan)
    result = engine(copy, "run", "cooperation_window", *args, "--no-progress", "--no-report")
    assert result.returncode == 0, _tail(result)
    con = duckdb.connect(str(db), read_only=True)
    statuses = dict(con.execute("SELECT status, count(*) FROM trials GROUP BY status").fetchall())
    episodes = con.execute("SELECT count(*) FROM escalation_episodes").fetchone()[0]
    tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    calls = con.execute("SELECT count(*) FROM calls").fetchone()[0]
    con.close()
    assert statuses == {"done": 4} and episodes == 4 and calls == 0
    assert not any(t.startswith("agentic") for t in tables), tables
    report = engine(copy, "report", "cooperation_window", *args, "--formats", "html")
    assert report.returncode == 0, _tail(report)
    html = (out / "index.html").read_text()
    assert "scripted:hawk" in html and "scripted:tit_for_tat" in html


def test_the_import_study_runs_and_reports(copy, tmp_path):
    db, out = tmp_path / "import.duckdb", tmp_path / "report"
    args = [*IMPORT_ARGS, f"store.path={db}", f"report.output_dir={out}"]
    result = engine(copy, "run", "provider_vs_size_import", *args, "--no-progress", "--no-report")
    assert result.returncode == 0, _tail(result)
    assert "imported 7 traces" in result.stdout + result.stderr, _tail(result)
    con = duckdb.connect(str(db), read_only=True)
    traces = con.execute("SELECT count(*) FROM jailbreak_imported_traces").fetchone()[0]
    con.close()
    assert traces == 7
    report = engine(copy, "report", "provider_vs_size_import", *args, "--formats", "html")
    assert report.returncode == 0, _tail(report)
    html = (out / "index.html").read_text()
    assert "Attack success by model" in html and "Provider or size?" in html


def test_the_remaining_tests_pass(copy, tmp_path):
    # Test ids that carry a deleted study's name (README.md's documented commands) are deselected.
    deleted = studies_of(REPO, SCENARIO)
    started = time.monotonic()
    result = run(copy, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", "-x",
                 "-k", " and ".join(f"not {s}" for s in deleted), f"--basetemp={tmp_path / 'inner'}", timeout=1800)
    took = time.monotonic() - started
    assert result.returncode == 0, f"after {took:.0f} s:\n{_tail(result, 8000)}"
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary and "error" not in summary, summary
    print(f"remaining tests in the copy: {summary} ({took:.0f} s)")
