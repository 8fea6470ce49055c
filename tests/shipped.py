"""What the repository ships, found on disk rather than listed by hand, so that a scenario deleted with
its folder, its studies and tests/scenarios/<name>/ simply drops out of every test that loops over them:
the studies of each scenario, the commands the README and the studies document, and each scenario's
contract cases (tests/scenarios/<name>/contract_cases.py)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def study_choices(path: Path) -> dict[str, str]:
    """The group choices of a study file's defaults list, e.g. {'scenario': 'escalation', 'judge_set': 'local'}."""
    data = yaml.safe_load(path.read_text()) or {}
    return {k.lstrip("/").split("@")[0]: v for d in data.get("defaults", []) if isinstance(d, dict)
            for k, v in d.items() if isinstance(v, str)}


def studies_by_scenario(root: Path = REPO) -> dict[str, list[str]]:
    """Scenario name -> the studies in root/studies/ whose defaults pick one of its conf/scenario options
    (engine/scenarios/<name>/conf/scenario/<option>.yaml), sorted."""
    found: dict[str, list[str]] = {}
    for path in sorted((root / "studies").glob("*.yaml")):
        option = study_choices(path).get("scenario")
        for scenario_conf in sorted((root / "engine" / "scenarios").glob(f"*/conf/scenario/{option}.yaml")):
            found.setdefault(scenario_conf.parents[2].name, []).append(path.stem)
    return found


def documented_commands(root: Path = REPO) -> list[tuple[str, str, list[str]]]:
    """Every `make study|plan|regrade STUDY=x ARGS="..."` of the README and the studies' comments (a
    study's comment `ARGS="..."` alone is for that study), as (where, study, overrides). Sweeps (-m)
    are left out: a swept value is no single override."""
    sources = [(root / "README.md", None)] + [(p, p.stem) for p in sorted((root / "studies").glob("*.yaml"))]
    found = []
    for path, default_study in sources:
        lines = [re.sub(r"^#\s?", "", line) if path.suffix == ".yaml" else line
                 for line in path.read_text().splitlines()]
        text = re.sub(r"\\\n\s*", " ", "\n".join(lines))  # continuation lines
        for match in re.finditer(r'(?:make\s+(?:study|plan|regrade)\s+STUDY=(\w+)\s+)?ARGS="([^"]*)"', text):
            study = match.group(1) or default_study
            args = [a for a in shlex.split(match.group(2)) if a != "..."]
            if study and args and "-m" not in args and "=" in "".join(args):
                found.append((str(path.relative_to(root)), study, args))
    return found


@dataclass(frozen=True)
class Case:
    """One tiny real run of a shipped study that exercises a scenario's contract (tests/test_scenario_contract.py)."""
    name: str
    study: str
    overrides: tuple[str, ...]
    slow: bool = False
    imports: bool = False  # analysis-only: the study imports its outcomes and plans no trials


def contract_cases(scenario: str, root: Path = REPO) -> list[Case]:
    """The CASES of tests/scenarios/<scenario>/contract_cases.py (none if the file is missing)."""
    path = root / "tests" / "scenarios" / scenario / "contract_cases.py"
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location(f"contract_cases_{scenario}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CASES)
