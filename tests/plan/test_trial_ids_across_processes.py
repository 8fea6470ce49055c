"""Trial ids and spec hashes are the same in every process: they are content hashes, so they must not
depend on Python's per-process hash randomisation (set iteration order, hash()), on the working
directory, or on anything else a fresh interpreter picks anew. Two fresh processes with different
PYTHONHASHSEED values compile the plans of the shipped studies and must agree, id for id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ANALYSIS_ONLY_ARGS

REPO = Path(__file__).resolve().parents[2]
# Analysis-only studies plan no trials (their outcomes are imported); every other shipped study is
# compared, so a new study is covered without editing this list.
STUDIES = sorted(p.stem for p in (REPO / "studies").glob("*.yaml") if p.stem not in ANALYSIS_ONLY_ARGS)
# A variant whose ids must differ from its base: the comparison can tell plans apart.
VARIANT = ("model_size", ["design.seeds=3"])

CHILD = """
import json, sys
from engine import compile_plan, load_study

cases = json.loads(sys.argv[1])
out = {}
for label, study, overrides in cases:
    loaded = load_study(study, overrides)
    plan = compile_plan(loaded)
    out[label] = {"spec_hash": loaded.spec_hash,
                  "trials": [[t.trial_id, t.cell_id, t.seed] for t in plan.trials]}
out["_str_hash"] = hash("trial")  # differs between the processes: their hash seeds did differ
print(json.dumps(out))
"""


def cases() -> list[list]:
    return [[study, study, []] for study in STUDIES] + [["variant", VARIANT[0], VARIANT[1]]]


def plans_in_fresh_process(hash_seed: str, cwd: Path) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases())], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_trial_ids_and_spec_hashes_agree_across_processes(tmp_path):
    assert len(STUDIES) >= 5 and "model_size" in STUDIES
    # The second process also runs from another directory: ids must not depend on where it runs.
    first = plans_in_fresh_process("0", REPO)
    second = plans_in_fresh_process("12345", tmp_path)
    assert first.pop("_str_hash") != second.pop("_str_hash")  # the two really hash strings differently
    assert set(first) == set(second) == {*STUDIES, "variant"}
    for label in first:
        a, b = first[label], second[label]
        assert a["trials"], f"{label} plans no trials"
        assert len({t[0] for t in a["trials"]}) == len(a["trials"]), f"{label} repeats a trial id"
        assert a["spec_hash"] == b["spec_hash"], label
        assert a["trials"] == b["trials"], label  # same ids, cells and seeds, in the same order

    # The comparison can fail: another seed count is another spec with other trials (and keeps the
    # trials of the seeds both have).
    base, variant = first["model_size"], first["variant"]
    assert variant["spec_hash"] != base["spec_hash"]
    base_ids, variant_ids = {t[0] for t in base["trials"]}, {t[0] for t in variant["trials"]}
    assert variant_ids != base_ids and variant_ids < base_ids
    assert {t[2] for t in variant["trials"]} == {0, 1, 2}
