"""The agentic-misalignment scenario's contract case (tests/test_scenario_contract.py): one condition,
one sample on SmolLM2; the classifiers' gold sets (64 more judge calls) are left out."""

from shipped import Case

AGENTIC_LOCAL = ("design.factors.model=[smollm2_135m]", "design.factors.goal_conflict=[explicit]",
                 "design.factors.threat=[replacement]", "design.factors.safety_instructions=[off]", "design.seeds=1",
                 "generation.max_tokens=48",
                 *(f"judges.{j}.rubric.gold=null" for j in ("structure", "blackmail_llm", "deliberation_llm")))

CASES = [Case("blackmail_local", "blackmail_subfrontier", AGENTIC_LOCAL, slow=True)]
