"""Time a 100,000-trial plan of two shipped studies (issue 11: <= 5 s and <= 1 GiB peak RSS).

    .venv/bin/python bench/plan_scale.py [escalation|jailbreak ...]

Each case runs in its own process (so peak RSS is that plan's): composes the study with overrides
that make it ~100,000 trials, then times compile_plan (trial ids) and estimate_plan (calls, tokens,
cost), as `make plan` does, and checks the ids against tests/data/pinned_ids.json. Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S, TARGET_RSS_MIB = 5.0, 1024.0
CASES = {
    # 10 cells (4 mirror matches, 6 scripted controls) x 10,000 seeds.
    "escalation": ("model_size", ["design.seeds=10000"]),
    # 2 models x 6 attacks = 12 cells x 64 behaviours x 131 seeds = 100,608 traces.
    "jailbreak": ("provider_vs_size", ["scenario.select.per_category=null", "scenario.select.benign=null",
                                       "design.factors.attack=[direct,roleplay,refusal_suppression,prefix_injection,"
                                       "hypothetical,format_lock]", "design.seeds=131"]),
}


def run_case(name: str) -> dict:
    from engine.plan.compile import compile_plan
    from engine.spec.load import load_spec
    from engine.study import estimate_plan

    study, overrides = CASES[name]
    t0 = time.perf_counter()
    loaded = load_spec(study, overrides)
    t1 = time.perf_counter()
    plan = compile_plan(loaded)
    t2 = time.perf_counter()
    est = estimate_plan(plan)
    t3 = time.perf_counter()
    ids = sorted(t.trial_id for t in plan.trials)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    pinned = {(c["study"], tuple(c["overrides"])): c["ids_sha256"]
              for c in json.loads((REPO / "tests/data/pinned_ids.json").read_text())["cases"]}
    expected = pinned.get((study, tuple(overrides)))
    return {"case": name, "study": study, "trials": len(plan.trials), "calls": est.calls,
            "load_s": t1 - t0, "compile_s": t2 - t1, "estimate_s": t3 - t2,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "ids": "match pinned" if digest == expected else ("not pinned" if expected is None else "DIFFER")}


def main(names: list[str]) -> None:
    for name in names or list(CASES):
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        out = subprocess.run([sys.executable, __file__, "--case", name], cwd=REPO, env=env, capture_output=True,
                             text=True)
        if out.returncode != 0:
            sys.exit(f"{name} failed:\n{out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        plan_s = r["compile_s"] + r["estimate_s"]
        print(f"{r['case']:10s} {r['study']} ({r['trials']:,} trials, {r['calls']:,} calls): "
              f"compile_plan {r['compile_s']:.2f} s + estimate_plan {r['estimate_s']:.2f} s = {plan_s:.2f} s "
              f"({plan_s / TARGET_S:.2f} x the {TARGET_S:g} s target; load_spec {r['load_s']:.2f} s more), "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB ({r['peak_rss_mib'] / TARGET_RSS_MIB:.2f} x 1 GiB), "
              f"ids {r['ids']}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(run_case(sys.argv[2])))
    else:
        unknown = [a for a in sys.argv[1:] if a not in CASES]
        if unknown:
            sys.exit(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
        main(sys.argv[1:])
