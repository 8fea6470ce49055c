"""The calibration check simulates the jailbreak study's provider claims (variance_share,
provider_risk_ratio, provider_best) on the write-up's own design (21 models of 12 providers, its
prompts and attacks): planted worlds at each claim's boundary and where it holds, each model's log-odds
drawn about its provider's with a stated SD (issue 21: the models a provider makes differ), analysed
by the report's own code."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.analyze.calibration import MODEL_SD, calibrate_claim, claim_worlds
from engine.analyze.claim_stats import FAMILYWISE
from engine.cli import main
from engine.plan.compile import compile_plan
from engine.report.sections.calibration import claim_rows, provenance
from engine.scenarios.jailbreak.calibration import logit_for, population_rate
from engine.study import load_study

PANEL = ["model_set=openrouter_provider_panel"]
PROVIDER_TESTS = ("variance_share", "provider_risk_ratio", "provider_best")


@pytest.fixture(scope="module")
def plan():
    return compile_plan(load_study("provider_vs_size", PANEL))


_BASES: dict[int, tuple] = {}  # id(plan) -> (plan, its bases): the plan kept, so its id is not reused


def cases(plan, model_sd=MODEL_SD):
    """The study's provider claims as the calibration simulates them (no paired contrasts: quick); the
    metrics' bases (the plan's precision, a second per call) computed once per plan."""
    from engine.report.calibration_setup import _basis, _claims

    if id(plan) not in _BASES:
        _BASES[id(plan)] = (plan, _basis(plan, None))
    return {c.test: c for c in _claims(plan, _BASES[id(plan)][1], model_sd) if c.test in PROVIDER_TESTS}


def test_the_provider_claims_are_simulated_on_the_study_design(plan):
    found = cases(plan)
    assert set(found) == set(PROVIDER_TESTS)
    for case in found.values():
        worlds = claim_worlds(case, 0.1)
        assert not isinstance(worlds, str), (case.test, worlds)
        assert worlds.nulls and worlds.effect is not None
        assert all(f"log-odds SD {MODEL_SD:g}" in w.how for w in [*worlds.nulls, worlds.effect]), case.test
    # Each world's draw is a study of the design, decided by the report's own claim test.
    out = calibrate_claim(found["provider_risk_ratio"], 4, 3, 0.1, lambda n: None)
    assert "reason" not in out and out["null"]["supported"]["draws"] == 4
    assert out["null"]["truth"] == pytest.approx(4.0)  # the picked pair's planted ratio: at the boundary
    assert "4 times the lowest" in out["null_how"]
    row = claim_rows({"claims": [out]})[0]
    assert "not simulated" not in row[-1] and "vs 2.5%" in row[2]


def test_a_provider_rate_is_its_models_mean_rate():
    for rate, sd in ((0.1, 0.5), (0.6, 1.0), (0.3, 0.0)):
        logit = logit_for(rate, sd)
        models = 1 / (1 + np.exp(-(logit + sd * np.random.default_rng(0).standard_normal(400_000))))
        assert population_rate(logit, sd) == pytest.approx(rate, abs=1e-9)
        assert models.mean() == pytest.approx(rate, abs=3e-3)


def test_a_providers_models_differ_by_the_stated_sd(plan):
    """Within a provider, its models' simulated ASRs spread more with a larger model SD (drawn anew in
    every simulated study), and not at all beyond sampling noise with none."""
    def spread(model_sd: float) -> float:
        case = cases(plan, model_sd)["provider_best"]
        world = claim_worlds(case, 0.0).nulls[0]
        rng, sds = np.random.default_rng(5), []
        for draw in range(6):
            units, _ = world.draw(rng, draw)
            tied = units.models[units.models["provider"].isin(["OpenAI", "Mistral", "Nvidia"])]
            sds.append(tied.groupby("provider")["asr"].std().mean())
        return float(np.mean(sds))
    none, wide = spread(0.0), spread(1.5)
    assert wide > 1.8 * none, (none, wide)


def test_the_section_states_the_model_sd_and_the_cli_checks_it(capsys):
    text = provenance({"draws": 10, "seed": 0, "computed_at": "now", "data": "assumed", "icc": 0.1, "model_sd": 0.7},
                      "provider_vs_size")
    assert "SD 0.7" in text and "--model-sd" in text
    assert main(["calibrate", "provider_vs_size", "--model-sd", "-1", "--no-progress"]) == 2
    assert "--model-sd" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("test", PROVIDER_TESTS)
def test_the_provider_claims_hold_their_level_when_models_differ(plan, test):
    """At every boundary world, false support within 2 Monte Carlo SE of the nominal one-sided 2.5%; the
    variance share's interval covers its no-effect value at the null; power above the false support."""
    draws = 120
    out = calibrate_claim(cases(plan)[test], draws, 11, 0.1, lambda n: None)
    print(test, out["boundaries"], out["null"]["coverage"], out["effect"]["supported"], out["effect"]["coverage"])
    for boundary in out["boundaries"]:
        f = boundary["supported"]
        assert f["value"] <= FAMILYWISE + 2 * math.sqrt(FAMILYWISE * (1 - FAMILYWISE) / draws), boundary
    if test == "variance_share":
        assert out["null"]["coverage"]["value"] >= 0.93 - 2 * out["null"]["coverage"]["se"]
