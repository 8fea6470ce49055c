"""A scenario is deleted by deleting its folders: on a copy of the tree without
engine/scenarios/agentic_misalignment/ (its code, conf/ groups, gold sets and migrations are all inside
it), without the studies that use it and without tests/scenarios/agentic_misalignment/ (its tests), with
no other file edited:
  - no file left under tests/ names the scenario, its studies, its conf options or its tables (the other
    tests derive their cases from the registry and the studies on disk, so theirs simply go);
  - `import engine` and the registry list exactly the remaining scenarios;
  - every remaining study composes and plans;
  - an escalation study (scripted agents) and the import study run and report;
  - every remaining test module imports and collects (`pytest --collect-only`).

The copy runs with the repository's interpreter, with the copy as working directory and first on
PYTHONPATH (the venv's editable install points at the original tree: the copy must win, and that is
checked first).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from conftest import analysis_only_args
from shipped import studies_by_scenario

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
SCENARIO = "agentic_misalignment"
NOT_COPIED = {".git", ".venv", "results", "outputs", "multirun"}  # and reports/ outputs (below)
# Files under tests/ that may still name what was deleted: this file, and the pinned ids of every study
# (tests/plan/test_pinned_ids.py checks the cases of the studies present).
MAY_NAME_IT = {"tests/test_scenario_deletion.py", "tests/data/pinned_ids.json"}
IMPORT_ARGS = analysis_only_args("provider_vs_size_import")
# cooperation_window with scripted agents only: no model is called (the design's model block needs an
# agent factor; pairings are for models only, and the scripted controls block is dropped to stay small).
SCRIPTED_COOPERATION = ["~design.factors.pairing", "design.factors.agent=[scripted:tit_for_tat,scripted:hawk]",
                        "design.factors.cooperation_window=[0,3]", "design.controls=[]", "design.seeds=1"]
# Runs engine.cli.main once per argv list (one process pays the imports once), printing a marker line and
# each command's exit code.
CLI_SCRIPT = r"""
import json, sys
from engine.cli import main
for argv in json.loads(sys.argv[1]):
    print(f"@@@ {json.dumps(argv)}", flush=True)
    code = main(argv)
    print(f"@@@ exit {code}", flush=True)
"""


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


def names_of(root: Path, scenario: str, studies: list[str]) -> list[str]:
    """What only the scenario defines: its name, its studies, its conf options and its tables."""
    folder = root / "engine" / "scenarios" / scenario
    options = {p.stem for p in (folder / "conf").rglob("*.yaml")}
    tables = {m for sql in (folder / "migrations").glob("*.sql")
              for m in re.findall(r"(?i)create\s+table\s+(?:if\s+not\s+exists\s+)?(\w+)", sql.read_text())}
    return sorted({scenario, *studies, *options, *tables})


def env_for(copy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTEST_ADDOPTS")}
    return {**env, "PYTHONPATH": str(copy), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONDONTWRITEBYTECODE": "1"}


def run(copy: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    python = str(PYTHON if PYTHON.exists() else sys.executable)
    return subprocess.run([python, *args], cwd=copy, env=env_for(copy), capture_output=True, text=True,
                          timeout=timeout)


def _tail(result: subprocess.CompletedProcess, n: int = 4000) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-n:]}\n--- stderr\n{result.stderr[-n:]}"


def cli(copy: Path, *commands: list[str]) -> list[tuple[list[str], int, str]]:
    """Each command through engine.cli.main in one process in the copy: (argv, exit code, its output)."""
    result = run(copy, "-c", CLI_SCRIPT, json.dumps(list(commands)))
    parts = re.split(r"^@@@ (.*)$", result.stdout, flags=re.M)  # ['', argv, out, exit n, '', argv, ...]
    found = [(json.loads(parts[i]), int(parts[i + 2].removeprefix("exit ")), parts[i + 1])
             for i in range(1, len(parts) - 2, 4)]
    assert result.returncode == 0 and [argv for argv, _, _ in found] == list(commands), _tail(result)
    return found


@pytest.fixture(scope="module")
def deleted(tmp_path_factory) -> tuple[Path, list[str]]:
    """The copy without the scenario, and the names only the scenario defined."""
    root = tmp_path_factory.mktemp("without_scenario") / "tree"
    assert copy_tree(root) > 100
    gone = root / "engine" / "scenarios" / SCENARIO
    assert (gone / "conf").is_dir() and (gone / "migrations").is_dir() and (gone / "gold").is_dir()
    studies = studies_by_scenario(root)[SCENARIO]
    assert studies, f"no study uses {SCENARIO}"
    names = names_of(root, SCENARIO, studies)
    shutil.rmtree(gone)
    for study in studies:
        (root / "studies" / f"{study}.yaml").unlink()
    shutil.rmtree(root / "tests" / "scenarios" / SCENARIO)
    (root / "results").mkdir()
    return root, names


@pytest.fixture(scope="module")
def copy(deleted) -> Path:
    return deleted[0]


def test_the_copy_imports_the_copy_and_registers_the_remaining_scenarios(copy):
    probe = run(copy, "-c", "import json, engine, engine.kernel.registry as r, engine.scenarios as s; "
                            "print(json.dumps([engine.__file__, r.__file__, list(s.__path__), r.scenario_names()]))")
    assert probe.returncode == 0, _tail(probe)
    engine_file, registry_file, scenario_path, names = json.loads(probe.stdout.strip().splitlines()[-1])
    assert Path(engine_file) == copy / "engine" / "__init__.py"
    assert Path(registry_file) == copy / "engine" / "kernel" / "registry.py"
    assert [Path(p) for p in scenario_path] == [copy / "engine" / "scenarios"]
    on_disk = sorted(p.parent.name for p in (copy / "engine" / "scenarios").glob("*/__init__.py"))
    assert names == on_disk and SCENARIO not in names and len(names) >= 2


def test_no_remaining_test_names_the_deleted_scenario(deleted):
    copy, names = deleted
    assert {SCENARIO, "agentic_responses", "blackmail_subfrontier", "blackmail_structure_v1"} <= set(names)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
    hits = []
    for path in sorted((copy / "tests").rglob("*")):
        rel = str(path.relative_to(copy))
        if path.is_file() and rel not in MAY_NAME_IT:
            text = path.read_bytes().decode("utf-8", errors="ignore")
            hits += [f"{rel}:{i}: {line.strip()[:160]}" for i, line in enumerate(text.splitlines(), 1)
                     if pattern.search(line)]
    assert not hits, ("tests outside tests/scenarios/" + SCENARIO + "/ still name it (move them there, or derive "
                      "their cases from the registry):\n" + "\n".join(hits))


def test_every_remaining_study_composes_and_plans(copy):
    studies = sorted(p.stem for p in (copy / "studies").glob("*.yaml"))
    assert len(studies) >= 5 and "cooperation_window" in studies and "provider_vs_size_import" in studies
    results = cli(copy, *(["plan", s, *analysis_only_args(s)] for s in studies))
    failed = {argv[1]: f"exit {code}\n{out[-1500:]}" for argv, code, out in results if code != 0 or "cells" not in out}
    assert not failed, "\n\n".join(f"{k}:\n{v}" for k, v in failed.items())


def test_an_escalation_study_runs_and_reports_with_scripted_agents(copy, tmp_path):
    db, out = tmp_path / "cw.duckdb", tmp_path / "report"
    args = [*SCRIPTED_COOPERATION, f"store.path={db}", f"report.output_dir={out}"]
    (plan, run_, report) = cli(copy, ["plan", "cooperation_window", *args],
                               ["run", "cooperation_window", *args, "--no-progress", "--no-report"],
                               ["report", "cooperation_window", *args, "--formats", "html"])
    assert plan[1] == 0 and re.search(r"model calls ≤ 0\b", plan[2]), plan
    assert run_[1] == 0 and report[1] == 0, (run_, report)
    con = duckdb.connect(str(db), read_only=True)
    statuses = dict(con.execute("SELECT status, count(*) FROM trials GROUP BY status").fetchall())
    episodes = con.execute("SELECT count(*) FROM escalation_episodes").fetchone()[0]
    tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    calls = con.execute("SELECT count(*) FROM calls").fetchone()[0]
    con.close()
    assert statuses == {"done": 4} and episodes == 4 and calls == 0
    assert not any(t.startswith("agentic") for t in tables), tables
    html = (out / "index.html").read_text()
    assert "scripted:hawk" in html and "scripted:tit_for_tat" in html


def test_the_import_study_runs_and_reports(copy, tmp_path):
    db, out = tmp_path / "import.duckdb", tmp_path / "report"
    args = [*IMPORT_ARGS, f"store.path={db}", f"report.output_dir={out}"]
    (run_, report) = cli(copy, ["run", "provider_vs_size_import", *args, "--no-progress", "--no-report"],
                         ["report", "provider_vs_size_import", *args, "--formats", "html"])
    assert run_[1] == 0 and report[1] == 0, (run_, report)
    assert "imported 7 traces" in run_[2], run_
    con = duckdb.connect(str(db), read_only=True)
    traces = con.execute("SELECT count(*) FROM jailbreak_imported_traces").fetchone()[0]
    con.close()
    assert traces == 7
    html = (out / "index.html").read_text()
    assert "Attack success by model" in html and "Provider or size?" in html


def test_every_remaining_test_module_imports_and_collects(copy, tmp_path):
    result = run(copy, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                 f"--basetemp={tmp_path / 'inner'}", timeout=900)
    assert result.returncode == 0, _tail(result, 8000)
    summary = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"\d+ tests collected in .*", summary), summary
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert collected and not any(f"scenarios/{SCENARIO}/" in line for line in collected)
    modules = {line.split("::")[0] for line in collected}
    assert "tests/test_scenario_contract.py" in modules and "tests/plan/test_pinned_ids.py" in modules
