"""The calibration section reads the calibration `calibrate` stored for this spec and data, prints its
figures with draws, seed and how to recompute, and never shows one computed for other data or another
spec (a provider_vs_size stand-in run: loopback replies graded by the refusal heuristic)."""

from __future__ import annotations

import re

from jailbreak_standin import MODELS, refuses_by_hash, run_standin, standin_overrides

from engine.study import build_report, calibrate_study

PROMPTS = [f"cyber-0{i}" for i in range(1, 5)]
CLAIM = ("[{claim: 'Role-play raises ASR', test: difference, metric: asr_broad, a: {attack: roleplay}, "
         "b: {attack: direct}, direction: %s, effect: 0.3}]")
SECTIONS = "report.sections=[{type: paired_asr}, {type: claims}, {type: calibration}]"


def overrides(tmp_path, direction: str = "positive") -> list[str]:
    return standin_overrides(tmp_path / "study.duckdb", PROMPTS, ("direct", "roleplay"), MODELS,
                             "scenario.select.benign=0", SECTIONS, f"+report.claims={CLAIM % direction}",
                             f"report.output_dir={tmp_path / 'report'}")


def section(tmp_path, args, heading: str = "## Calibration") -> str:
    build_report("provider_vs_size", args, formats=("html",))
    text = " ".join(re.sub(r"\\(.)", r"\1", (tmp_path / "report" / "index.qmd").read_text()).split())
    return text[text.index(heading):]


def power_cell(tmp_path, args) -> str:
    """The claims table's "Power; MDD" cell of the claim."""
    text = section(tmp_path, args, "## Claims")
    cells = text.split("| Role-play raises ASR |", 1)[1].split(" | ")
    return cells[6]


def test_the_section_shows_the_calibration_of_this_spec_and_data_only(tmp_path):
    args = overrides(tmp_path)
    run_standin(args, refuses_by_hash)
    assert "No calibration of this design on the current data is stored" in section(tmp_path, args)
    assert "MDD" in power_cell(tmp_path, args) and "simulated" not in power_cell(tmp_path, args)  # none stored yet

    _, result, stored = calibrate_study("provider_vs_size", args, draws=10, seed=7)
    assert stored and result["data"] == "measured"
    text = section(tmp_path, args)
    assert "10 simulated studies per figure, seed 7" in text and "calibrate provider_vs_size --draws N" in text
    assert "Role-play raises ASR" in text and "vs 2.5%" in text and "per-cell rate 95% CI" in text, text
    assert "measured on the study's data" in text
    # The claims table prints, beside the stated (normal-approximation) power, the share of simulated studies
    # at the effect in which the claim was supported: the calibration's own figure, with its draws.
    power = next(c for c in result["claims"] if c["claim"] == "Role-play raises ASR")["effect"]["supported"]
    figure = f"{100 * power['value']:.1f}% ± {100 * power['se']:.1f} (10)"
    assert f"simulated {figure}" in power_cell(tmp_path, args)
    assert f"(simulated: supported in {figure} simulated studies at that effect)" in section(tmp_path, args, "## Claims")

    calibrate_study("provider_vs_size", args, draws=12, seed=7)  # more draws: shown instead
    assert "12 simulated studies per figure" in section(tmp_path, args)

    # Another spec version on the same database: its own calibration or none, never the other's.
    other = overrides(tmp_path, "negative")
    run_standin(other, refuses_by_hash)
    assert "No calibration of this design on the current data is stored" in section(tmp_path, other)


def test_a_run_with_calibrate_stores_the_default_calibration_its_report_shows(tmp_path):
    # `make study` runs with --calibrate: the report then shows the design's calibration at the default
    # draws, computed on the data the run just stored.
    from engine.execute.gateway import Gateway
    from engine.report.sections.calibration import DEFAULT_DRAWS
    from engine.study import run_study

    args = overrides(tmp_path)
    run_study("provider_vs_size", args, show_progress=False, calibrate=True,
              gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=refuses_by_hash))
    text = section(tmp_path, args)
    assert f"{DEFAULT_DRAWS} simulated studies per figure" in text and "measured on the study's data" in text


def _claim(simulated, stated=None, decided=1.0):
    """A calibrated claim as engine.analyze.calibration returns it (figures: value, se, draws)."""
    fig = lambda v, se: {"value": v, "se": se, "draws": 80}  # noqa: E731
    null = {"supported": fig(0.0, 0.0), "decided": fig(1.0, 0.0), "coverage": fig(0.975, 0.017), "truth": 0.0,
            "clipped": False, "no_verdict_reason": None}
    effect = {"how": "the stated effect", "supported": fig(*simulated), "decided": fig(decided, 0.0),
              "stated_power": fig(*stated) if stated else None, "clipped": False}
    return {"claim": "c", "test": "difference", "kind": "direction", "nominal": 0.025, "null": null,
            "null_how": "no effect", "effect": effect}


def test_a_stated_power_the_simulation_does_not_reproduce_is_flagged_and_little_power_is_said():
    from engine.report.sections.calibration import claim_rows

    # model_size's persona claim on the 2026-12-06 run: 5% simulated against 17% stated (normal approximation)
    note = claim_rows({"claims": [_claim((0.05, 0.024), (0.17, 0.01))]})[0][-1]
    assert "STATED POWER NOT REPRODUCED: 5% simulated, 17% stated" in note and "little power" in note
    assert claim_rows({"claims": [_claim((0.78, 0.046), (0.80, 0.01))]})[0][-1] == "ok"  # within MC error
    assert "little power" not in claim_rows({"claims": [_claim((0.0, 0.0), decided=0.0)]})[0][-1]  # untestable
