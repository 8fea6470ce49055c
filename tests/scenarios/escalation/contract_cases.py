"""The escalation scenario's contract cases (tests/test_scenario_contract.py). Scripted agents only (no
model): two mirror-match games per policy, and the cooperation-window study's sections on scripted
pairs. The local-model case plays SmolLM2 against itself for two turns."""

from shipped import Case

ESCALATION_SCRIPTED = ("design.factors.agent=[scripted:hawk,scripted:tit_for_tat]", "~design.factors.persona",
                       "design.controls=[{agent:[scripted:null,scripted:random]}]", "design.seeds=2",
                       "scenario.max_turns=4")
COOPERATION_SCRIPTED = ("design.factors={agent:[scripted:hawk],cooperation_window:[0,2]}", "~design.factors.pairing",
                        "design.controls=[{agent:[scripted:null,scripted:random],cooperation_window:[0,2]}]",
                        "design.seeds=2", "scenario.max_turns=5")
ESCALATION_LOCAL = ("design.factors.agent=[smollm2_135m]", "design.factors.persona=[default]",
                    "design.controls=[{agent:[scripted:hawk]}]", "design.seeds=1", "scenario.max_turns=2",
                    "generation.max_tokens=48")

CASES = [
    Case("model_size_scripted", "model_size", ESCALATION_SCRIPTED),
    Case("cooperation_window_scripted", "cooperation_window", COOPERATION_SCRIPTED),
    Case("model_size_local", "model_size", ESCALATION_LOCAL, slow=True),
]
