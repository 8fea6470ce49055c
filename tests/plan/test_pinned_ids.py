"""Every shipped study keeps its spec hash and trial ids: pinned values, recomputed in a fresh process.

tests/data/pinned_ids.json was written from a pristine copy of the code before the plan was made
faster (issue 11), so a change to how ids are computed, however it is optimised, shows here:

    git archive HEAD | tar -x -C /tmp/headcopy && cp tests/plan/test_pinned_ids.py /tmp/headcopy/tests/plan/
    cd /tmp/headcopy && .venv/bin/python tests/plan/test_pinned_ids.py --write /work/main/tests/data/pinned_ids.json

Only ever regenerate it from code whose ids are known to be right (the point is that they never move).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ANALYSIS_ONLY_ARGS

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "data" / "pinned_ids.json"

# Studies that cannot be composed with no overrides at all: the analysis-only study needs its file.
REQUIRED_OVERRIDES = ANALYSIS_ONLY_ARGS
# Besides the studies as shipped: a few overridden plans, and the two 100,000-trial plans of
# bench/plan_scale.py (slow: compiled only with -m slow).
EXTRA_CASES = [
    ("model_size", ["design.seeds=3", "generation.temperature=1.0"], False),
    ("provider_vs_size", ["design.seeds=2", "scenario.select.per_category=2"], False),
    ("cooperation_window", ["scenario.ceasefire_turns=0"], False),
    ("model_size", ["design.seeds=10000"], True),
    ("provider_vs_size", ["scenario.select.per_category=null", "scenario.select.benign=null",
                          "design.factors.attack=[direct,roleplay,refusal_suppression,prefix_injection,"
                          "hypothetical,format_lock]", "design.seeds=131"], True),
]

# Control agents added to shipped designs after the ids were pinned (issue 13: the fog-only control).
# Their cells' trials are new, so the pinned ids are compared with those cells left out: every trial
# pinned keeps its id. A design that gained such a cell has another spec hash, given here.
ADDED_AGENTS = ["scripted:hold_last"]
MOVED_SPEC_HASHES = {
    ("model_size", ()): "fd21610903d9436b",
    ("cooperation_window", ()): "3ab21b2645c3c7e4",
    ("governance_sweep", ()): "9bceef12ba2bb773",
    ("prompt_framing", ()): "04c4917e30c4c3da",
    ("temperature_deception", ()): "b4dd718f151c9b2e",
    ("model_size", ("design.seeds=3", "generation.temperature=1.0")): "1dccbdaec4628b1c",
    ("cooperation_window", ("scenario.ceasefire_turns=0",)): "f2c94bfbc2a65c8c",
    ("model_size", ("design.seeds=10000",)): "6774e754e056399b",
}

# Issue 20: the local model entries name their prompt format (Gemma 3 270M, a base model, runs with
# Gemma's turn format; instruction_tuned: false) and the offline judge sets judge with the
# instruction-tuned SmolLM2. Every study with a local model has another spec hash, pinned in the
# fixture as a case's spec_hash_since_issue_20; no trial id moves.

# Runs in a fresh interpreter in the repository (only load_study and compile_plan, which every
# version of the code has): prints one JSON object per case; trials of ADDED_AGENTS' cells are
# counted apart (none in code from before they existed).
PROBE = r"""
import hashlib, json, sys
from engine.plan.compile import compile_plan
from engine import load_study
added = set(json.loads(sys.argv[2]))
for name, overrides in json.loads(sys.argv[1]):
    loaded = load_study(name, overrides)
    trials = compile_plan(loaded).trials
    ids = sorted(t.trial_id for t in trials if t.cell.get("agent") not in added)
    print(json.dumps({"study": name, "overrides": overrides, "spec_hash": loaded.spec_hash,
                      "trials": len(ids), "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
                      "first_ids": ids[:3], "added_trials": len(trials) - len(ids)}), flush=True)
"""


def shipped_cases() -> list[tuple[str, list[str], bool]]:
    names = sorted(p.stem for p in (REPO / "studies").glob("*.yaml"))
    return [(n, REQUIRED_OVERRIDES.get(n, []), False) for n in names] + EXTRA_CASES


def probe(cases: list[tuple[str, list[str]]], repo: Path = REPO) -> list[dict]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(repo)}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(cases), json.dumps(ADDED_AGENTS)], cwd=repo,
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def pinned() -> list[dict]:
    return json.loads(FIXTURE.read_text())["cases"]


def _key(case: dict) -> tuple[str, tuple[str, ...]]:
    return case["study"], tuple(case["overrides"])


def test_fixture_covers_every_shipped_study():
    studies = {p.stem for p in (REPO / "studies").glob("*.yaml")}
    pinned_plain = {c["study"] for c in pinned() if c["overrides"] == REQUIRED_OVERRIDES.get(c["study"], [])}
    assert studies <= pinned_plain, f"studies without pinned ids: {sorted(studies - pinned_plain)}"


def _compare(large: bool) -> None:
    # The cases of the studies in studies/: a deleted study's pinned case is not checked.
    present = {p.stem for p in (REPO / "studies").glob("*.yaml")}
    want = [c for c in pinned() if c.get("large", False) == large and c["study"] in present]
    assert want
    got = {_key(c): c for c in probe([[c["study"], c["overrides"]] for c in want])}
    fields = ("spec_hash", "trials", "ids_sha256", "first_ids")
    expected = [{**c, "spec_hash": c.get("spec_hash_since_issue_20") or MOVED_SPEC_HASHES.get(_key(c), c["spec_hash"])}
                for c in want]
    diffs = [f"{c['study']} {c['overrides']}: {f} {c[f]!r} -> {got[_key(c)][f]!r}"
             for c in expected for f in fields if got[_key(c)][f] != c[f]]
    assert not diffs, "pinned spec hashes / trial ids changed:\n" + "\n".join(diffs)
    # The ids compared are not all of them exactly where a design gained a control cell.
    added = {_key(c) for c in want if got[_key(c)]["added_trials"]}
    assert added == {_key(c) for c in want} & set(MOVED_SPEC_HASHES), added


def test_shipped_studies_keep_spec_hash_and_trial_ids():
    _compare(large=False)


@pytest.mark.slow
def test_100k_trial_bench_plans_keep_their_ids():
    _compare(large=True)


if __name__ == "__main__":
    # python tests/plan/test_pinned_ids.py --write PATH: pin the values of the code this file sits in.
    if len(sys.argv) != 3 or sys.argv[1] != "--write":
        sys.exit(__doc__)
    cases = shipped_cases()
    results = probe([[n, o] for n, o, _ in cases])
    for result, (_, _, large) in zip(results, cases):
        result["large"] = large
        result.pop("added_trials")
    Path(sys.argv[2]).write_text(json.dumps({
        "note": "Spec hashes and trial ids of the shipped studies, pinned from the code before issue 11 "
                "(see tests/plan/test_pinned_ids.py). Never regenerate from code whose ids may have moved.",
        "cases": results}, indent=1) + "\n")
    print(f"pinned {len(results)} cases to {sys.argv[2]}")
