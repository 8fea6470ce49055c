"""The jailbreak scenario's contract cases (tests/test_scenario_contract.py): the two analysis-only
imports, and one harmful and one benign behaviour under one attack on SmolLM2, graded by the refusal
heuristic (no judge model)."""

from conftest import analysis_only_args
from shipped import REPO, Case

TRACES = REPO / "tests" / "data" / "traces_small.csv"
JAILBREAK_LOCAL = ("scenario.select.ids=[cyber-01,benign-01]", "design.factors.attack=[direct]",
                   "design.factors.model=[smollm2_135m]", "generation.max_tokens=24", "~judges.smollm2",
                   "primary_judge=heuristic")

CASES = [
    Case("import", "provider_vs_size_import", (f"scenario.traces_file.path={TRACES}",), imports=True),
    Case("inspect_import", "provider_vs_size_inspect",
         tuple(analysis_only_args("provider_vs_size_inspect", REPO)), imports=True),
    Case("provider_vs_size_local", "provider_vs_size", JAILBREAK_LOCAL, slow=True),
]
