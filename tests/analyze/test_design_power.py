"""Precision and power of a design, measured on a study database (engine/analyze/precision.py,
design_power.py) and printed by `plan`: the ICC estimator against scipy's F, the base rates against
the report's own estimates, the assumptions stated when there is no data, the target half-width."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from jailbreak_standin import MODELS, by_hash, replying, run_standin, standin_overrides
from scipy import stats

from engine import compile_plan, load_study
from engine.analyze.design_power import plan_precision
from engine.analyze.metrics import cell_estimates
from engine.analyze.precision import anova_icc
from engine.kernel.paths import REPO_ROOT
from engine.analyze.report_power import rate_cell_halfwidth
from engine.plan.power import counts_halfwidths
from engine.store.db import StudyStore

PROMPTS = [f"cyber-0{i}" for i in range(1, 7)] + [f"weapons-0{i}" for i in range(1, 5)]


def test_icc_of_balanced_groups_is_the_f_statistics():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 5)
    values = rng.normal(0, 1, 40)[groups] + rng.normal(0, 1.5, len(groups))
    f = stats.f_oneway(*[values[groups == g] for g in range(40)]).statistic
    assert anova_icc(values, groups) == pytest.approx((f - 1) / (f + 5 - 1))
    assert anova_icc(np.arange(4.0), np.arange(4)) is None  # no group of two


def overrides(db) -> list[str]:
    return standin_overrides(db, PROMPTS, ("direct", "roleplay"), MODELS, "scenario.select.benign=0")


# The reply depends on the prompt alone: both models agree on every item (rho 1).
same_for_every_model = replying(lambda prompt, model: by_hash(prompt))


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("power") / "study.duckdb"
    _, summary = run_standin(overrides(db), same_for_every_model)
    assert summary.done == summary.planned
    return db


def test_measured_rates_and_correlations_feed_the_half_widths(study_db):
    loaded = load_study("provider_vs_size", overrides(study_db))
    plan = compile_plan(loaded)
    store = StudyStore(study_db, read_only=True)
    try:
        pp = plan_precision(plan, store.con)
        metrics = {m.name: m for m in loaded.scenario.metrics()}
        estimates = cell_estimates(store.con, loaded.spec_hash, [metrics["asr_broad"]],
                                   params=loaded.scenario.metric_params(loaded.spec))
    finally:
        store.close(checkpoint=False)
    broad = next(b for b in pp.bases if b.metric.name == "asr_broad")
    assert broad.observed is not None and broad.rho == pytest.approx(1.0)
    assert "measured" in broad.statement()
    rows = pp.cells[pp.cells.metric == "asr_broad"].set_index("cell_id")
    for est in estimates.itertuples():
        row = rows.loc[est.cell_id]
        assert row.basis == pytest.approx(est.value)
        assert row.halfwidth == pytest.approx(rate_cell_halfwidth(row.n, row.clusters, est.value, icc=broad.icc))
    # Paired on items the models agree on, the model comparison detects smaller differences than the
    # unpaired formula would allow at the same n.
    models = pp.comparisons[(pp.comparisons.metric == "asr_broad") & pp.comparisons.family.str.startswith("models")]
    assert models.paired.all()


def test_without_data_the_assumptions_are_stated(tmp_path):
    plan = compile_plan(load_study("provider_vs_size", overrides(tmp_path / "none.duckdb")))
    pp = plan_precision(plan, None)
    broad = next(b for b in pp.bases if b.metric.name == "asr_broad")
    assert "base rate 50% for every model cell: a stated default" in broad.statement()
    assert "ICC 0.1 assumed" in broad.statement()
    row = pp.cells[pp.cells.metric == "asr_broad"].iloc[0]
    assert row.source == "default"
    assert row.halfwidth == pytest.approx(rate_cell_halfwidth(row.n, row.clusters, 0.5, icc=0.1))


def clopper_by_hand(x: int, n: int, alpha: float) -> tuple[float, float]:
    return (0.0 if x == 0 else stats.beta.ppf(alpha / 2, x, n - x + 1),
            1.0 if x == n else stats.beta.ppf(1 - alpha / 2, x + 1, n - x))


def test_plan_prints_precision_and_the_seeds_a_target_needs(tmp_path):
    db = tmp_path / "absent.duckdb"
    command = [sys.executable, "-m", "engine", "plan", "model_size", f"store.path={db}", "design.target_halfwidth=0.1"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Expected 95% half-width per design cell" in out and "Minimum detectable difference" in out
    assert "base rate 50% for every model cell" in " ".join(out.split()) and not db.exists()
    # A game is its own cluster within a cell, so an expected ±10% exact (Clopper-Pearson) half-width at
    # 50% needs the smallest n whose half-width, averaged over the binomial outcomes, is at most 0.1: one
    # game per seed.
    needed = next(n for n in range(1, 1000) if counts_halfwidths(0.5, n, clopper_by_hand) <= 0.1)
    assert f"Nuclear: {needed} seeds per cell" in " ".join(out.split())


def test_planning_keys_do_not_change_the_spec_hash():
    assert (load_study("model_size", ["design.target_halfwidth=0.05", "design.assumed_icc=0.3"]).spec_hash
            == load_study("model_size").spec_hash)


# -- design.target_halfwidth with items that recur under every seed ------------------------------

def target_for(icc: float, target: float):
    """plan_precision's answer for 10 prompts, one model, one attack, one seed, no data."""
    plan = compile_plan(load_study("provider_vs_size", [
        f"scenario.select.ids=[{','.join(PROMPTS)}]", "scenario.select.benign=0", "design.factors.attack=[direct]",
        "design.factors.model=[smollm2_135m]", "design.seeds=1", f"design.assumed_icc={icc}",
        f"design.target_halfwidth={target}"]))
    return plan_precision(plan, None).target


def simulated_halfwidth(items: int, seeds: int, icc: float, replicates: int, seed: int) -> tuple[float, float]:
    """Mean half-width (and its Monte Carlo standard error) of the interval the report gives a cell
    (engine/analyze/metrics.py `cell_estimate`: Korn-Graubard over items when an item recurs, else
    Clopper-Pearson) when each of `items` items is asked under `seeds` seeds, outcomes correlated within
    an item by `icc` (item rates from a Beta with mean 1/2: ICC = 1 / (alpha + beta + 1))."""
    from engine.analyze.metrics import cell_estimate
    from engine.kernel.contracts import Metric

    rate = Metric("rate", "Rate", "proportion", "SELECT 1", "a rate", percent=True)

    rng = np.random.default_rng(seed)
    half = (1 / icc - 1) / 2
    widths = []
    for r in range(replicates):
        rates = rng.beta(half, half, items) if icc < 1 else rng.integers(0, 2, items).astype(float)
        values = (rng.random((items, seeds)) < rates[:, None]).astype(float).ravel()
        groups = np.repeat(np.arange(items), seeds)
        est = cell_estimate(rate, values, r, "cell", groups if seeds > 1 else None)
        widths.append((est.high - est.low) / 2)
    return float(np.mean(widths)), float(np.std(widths, ddof=1) / np.sqrt(replicates))


def test_the_promised_seeds_reach_the_target_in_a_simulation_of_the_clustered_design():
    # 10 prompts at ICC 0.1: each prompt's 0/1 outcomes across seeds are correlated, so seeds add
    # less than independent trials would. (Before: the ICC was ignored at one seed and 5 seeds were
    # promised, which give about ±20%.)
    target = target_for(0.1, 0.15)
    assert target.seeds is not None and target.seeds > 3
    mean, se = simulated_halfwidth(len(PROMPTS), target.seeds, 0.1, replicates=300, seed=1)
    assert mean <= 0.15 + 2 * se  # reached, within Monte Carlo error
    assert mean >= 0.15 * 0.8  # and not by promising far more seeds than needed
    fewer, se_fewer = simulated_halfwidth(len(PROMPTS), target.seeds // 3, 0.1, replicates=300, seed=2)
    assert fewer > 0.15 + 2 * se_fewer  # a third of them would not do


def test_a_target_no_number_of_seeds_reaches_says_so():
    # At ICC 1 a prompt answers the same under every seed: 10 prompts are 10 observations however
    # many seeds run. (Before: ±1% was promised with 960 seeds.)
    target = target_for(1.0, 0.01)
    assert target.seeds is None
    note = target.notes[0]  # one per headline rate, all alike without data
    best = float(re.search(r"below ±([\d.]+)%", note)[1]) / 100
    assert "no number of seeds" in note and "10 items" in note and "add items" in note
    mean, se = simulated_halfwidth(len(PROMPTS), 200, 1.0, replicates=300, seed=3)
    assert mean > 0.01 + 10 * se  # 200 seeds stay far from ±1%
    assert abs(mean - best) < 0.15 * best  # near the floor the note states


# -- where a base rate comes from ------------------------------------------------------------------

def escalation_overrides(db, agent: str) -> list[str]:
    """model_size with one stand-in model and the hawkish scripted policy as its control."""
    out = [f"design.factors.agent=[{agent}]", "design.factors.persona=[default]",
           "design.controls=[{agent: [scripted:hawk]}]", "design.seeds=3", "scenario.max_turns=3", f"store.path={db}"]
    for key in ("smollm2_135m", "gemma3_270m"):
        out += [f"models.{key}.litellm_id=openrouter/stand-in/{key}", f"~models.{key}.weights",
                f"++models.{key}.chat_template=null"]
    return out


async def holds_at_zero(**kwargs):
    import json

    import litellm

    content = json.dumps({"reasoning": "stand-in", "signal_level": 0, "action_level": 0})
    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": content}}],
                                 usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})


def test_a_new_panel_is_planned_on_a_stated_rate_not_on_the_controls_of_an_earlier_run(tmp_path):
    from engine.execute.gateway import Gateway
    from engine.study import run_study

    db = tmp_path / "study.duckdb"
    run_study("model_size", escalation_overrides(db, "smollm2_135m"), show_progress=False, judge=False,
              gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=holds_at_zero))
    # Another panel on the same database: its control cell (the same scripted games, the same trial
    # ids) is measured, its model cells are not. (Before: the model cells were planned at the rate
    # pooled over the scripted controls, without saying so.)
    plan = compile_plan(load_study("model_size", escalation_overrides(db, "gemma3_270m")))
    store = StudyStore(db, read_only=True)
    try:
        pp = plan_precision(plan, store.con)
    finally:
        store.close(checkpoint=False)
    nuclear = next(b for b in pp.bases if b.metric.name == "nuclear_rate")
    assert nuclear.observed is not None and nuclear.observed.n == 3 and nuclear.observed.n_model == 0
    rows = pp.cells[pp.cells.metric == "nuclear_rate"].set_index("cell")
    (control,) = [r for cell, r in rows.iterrows() if "scripted:hawk" in cell]
    (model,) = [r for cell, r in rows.iterrows() if "scripted:hawk" not in cell]
    assert (model.basis, model.source) == (0.5, "default") and control.source == "measured"
    statement = " ".join(nuclear.statement().split())
    assert "no model cell measured yet" in statement and "control cells measured on 3 trials, for themselves only" in statement
    assumed = plan_precision(compile_plan(load_study("model_size", [*escalation_overrides(db, "gemma3_270m"),
                                                                   "design.assumed_rate=0.3"])), None)
    assert set(assumed.cells[(assumed.cells.metric == "nuclear_rate")].source) == {"assumed"}
    assert "30% assumed for every model cell (design.assumed_rate)" in assumed.bases[0].statement()
