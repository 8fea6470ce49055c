"""What `plan` promises, checked by simulating the design it is about and running the report's own
code on every simulated study (engine/analyze/power_sim.py: `compare` of engine/analyze/paired.py
for a difference, the cell interval of engine/analyze/metrics.py for a half-width). Each check is
seeded and allows 3 Monte Carlo standard errors (the test's, and the plan's own when its power was
simulated). A difference is detected when the report's 95% interval excludes 0."""

from __future__ import annotations

import math
import re

import pytest
from power_checks import PLAN_SE, assert_power_holds, layout_of, precision, row

from engine.analyze.power_sim import simulate_halfwidth, simulate_power
from engine.analyze.report_power import Layout
from engine.plan.power import PER_STUDY_DRAWS, POWER, centred_arms


# -- each rate counts its own units --------------------------------------------------------------

def test_each_rate_counts_its_own_units_and_the_half_width_holds_for_them():
    # provider_vs_size, 3 seeds: 8 harmful behaviours and 4 benign requests per cell, each under 3
    # seeds. ASR counts the 24 harmful traces (8 item clusters), false refusal the 12 benign ones (4
    # clusters). (Before: n = 36 for both, and one half-width for all three rates.)
    pp = precision("provider_vs_size", "design.seeds=3")
    cells = pp.cells.groupby("metric").first()
    assert (cells.loc["asr_broad", "n"], cells.loc["asr_broad", "clusters"]) == (24, 8)
    assert (cells.loc["false_refusal", "n"], cells.loc["false_refusal", "clusters"]) == (12, 4)
    assert (row(pp, "model pairs within each condition", "false_refusal").n,
            row(pp, "model pairs within each condition", "asr_broad").n) == (12, 24)
    for metric, draws in (("false_refusal", 600), ("asr_broad", 400)):
        r = cells.loc[metric]
        sim = simulate_halfwidth(int(r.n), int(r.clusters), "proportion", 0.5, icc=0.1, draws=draws, seed=7)
        print(f"{metric}: {r.n} traces in {r.clusters} clusters, stated mean half-width {r.halfwidth:.4f}; "
              f"simulated {sim}")
        assert abs(sim.value - r.halfwidth) <= 3 * sim.se


# -- power from the procedure the report uses ----------------------------------------------------

def test_few_item_clusters_still_state_an_mdd_that_holds():
    # The first design (40% power at the stated 33%): provider_vs_size with 3 seeds compares
    # two models on 24 harmful traces in 8 item clusters. The report's rate interval over clusters
    # (MOVER of Korn-Graubard limits) is given from 2 clusters on, so an MDD is stated, and holds.
    pp = precision("provider_vs_size", "design.seeds=3")
    r = row(pp, "model pairs within each condition", "asr_broad")
    assert (r.n, r.clusters) == (24, 8) and "MOVER of Korn-Graubard" in r.method
    assert_power_holds(r, draws=600, seed=1)


def test_a_mean_over_too_few_clusters_detects_nothing():
    # A mean over fewer than 10 clusters gets no interval (the studentized bootstrap undercovers): its
    # MDD is none, and simulated studies of the report's code detect nothing.
    pp = precision("provider_vs_size", "design.seeds=3")
    means = pp.comparisons[(pp.comparisons.kind == "mean") & (pp.comparisons.clusters < 10)]
    layout = Layout(24, 8, paired=True)
    sim = simulate_power(layout, "mean", 0.0, 3.0, sd=1.0, icc=0.1, draws=100, seed=1)
    assert sim.value == 0.0
    for _, r in means.iterrows():
        assert math.isnan(r.mdd_low) and r.why_none.startswith(f"none: {int(r.clusters)} clusters, no interval below")


def test_stated_mdd_has_its_power_with_seed_clusters():
    # The second design (57%): model_size's persona contrast, 20 pairs of games in 10 seed
    # clusters (two models per seed), analysed by the MOVER of Korn-Graubard limits over seeds.
    r = row(precision("model_size"), "levels of persona", "nuclear_rate")
    assert (r.n, r.clusters) == (20, 10) and r.method == f"{PER_STUDY_DRAWS:,} simulated studies, paired MOVER of Korn-Graubard limits"
    assert_power_holds(r, draws=800, seed=2)


def test_stated_mdd_has_its_power_with_item_clusters():
    # The third design (62%): two models on 16 harmful behaviours under 3 seeds (48 pairs in 16
    # item clusters).
    r = row(precision("provider_vs_size", "design.seeds=3", "scenario.select.per_category=2"),
            "model pairs within each condition", "asr_broad")
    assert (r.n, r.clusters) == (48, 16)
    assert_power_holds(r, draws=800, seed=3)


def test_ten_pair_model_contrasts_state_the_difference_they_detect():
    # model_size compares two models on 10 seeds (one game each): 90% vs 10% is detected most of the
    # time. (Before: "none <= 100%", the search went up from 50% only.)
    r = row(precision("model_size"), "model pairs within each condition", "nuclear_rate")
    assert (r.n, r.clusters) == (10, 10) and 0.4 < r.mdd_low < 0.8
    assert_power_holds(r, draws=1500, seed=5, icc=0.0)
    wide = simulate_power(layout_of(r), "proportion", 0.1, 0.9, draws=400, seed=6)
    print(f"10 pairs, 10% vs 90%: {wide}")
    assert wide.value >= POWER


def test_means_state_an_mdd_in_sd_units_that_holds():
    # No SD is known before data: the MDD of a mean is stated in SD units. (Before: "SD unknown".)
    pp = precision("model_size")
    r = row(pp, "model pairs within each condition", "divergence")
    assert r.sd_units and "SD unknown before data" in next(b for b in pp.bases if b.metric.name == "divergence").statement()
    assert_power_holds(r, draws=800, seed=8, icc=0.0)
    stated = row(precision("model_size", "design.assumed_sd={divergence: 2.0}"), "model pairs within each condition",
                 "divergence")
    assert not stated.sd_units and stated.mdd_low == pytest.approx(2 * r.mdd_low, rel=1e-3)


# -- a target half-width ------------------------------------------------------------------------

def test_the_jailbreak_target_is_stated_per_rate_and_holds():
    # The jailbreak design: provider_vs_size (8 harmful behaviours, 4 benign requests, one seed)
    # with design.target_halfwidth=0.10. (Before: 30 seeds for every rate, pooling harmful and benign
    # requests; 8 harmful behaviours under 30 seeds give a mean half-width above 10%.) The report's
    # interval of a rate over recurring items (Korn-Graubard, t with few clusters' df) cannot reach ±10%
    # over 8 items at an ICC of 0.1, nor over 4: the plan says to add items, and so does a simulation of
    # the report's code with 400 seeds.
    target = precision("provider_vs_size", "design.target_halfwidth=0.1").target
    asr = next(m for m in target.metrics if m.label == "ASR broad")
    refusal = next(m for m in target.metrics if m.label == "False refusal")
    assert asr.seeds is None and "8 items" in asr.note and "add items" in asr.note
    assert refusal.seeds is None and "4 items" in refusal.note
    for items, seed in ((8, 11), (4, 12)):
        many = simulate_halfwidth(items * 400, items, "proportion", 0.5, icc=0.1, draws=300, seed=seed)
        print(f"{items} items x 400 seeds, simulated {many}")
        assert many.value > 0.10 + 3 * many.se


def test_a_target_over_the_budget_is_flagged(capsys):
    from engine.cli import main

    # The write-up's six models, ±10%: the seeds it needs cost more than the study's $5 cap.
    args = ["plan", "model_size", "model_set=openrouter_size_paper", "design.target_halfwidth=0.1",
            "store.path=/nonexistent/x.duckdb"]
    assert main(args) == 0
    out = " ".join(capsys.readouterr().out.split())
    cost = float(re.search(r"cost ≤ \$([\d,.]+) exceeds", out)[1].replace(",", ""))
    assert cost > 5 and "OVER BUDGET" in out and "budget cap of $5 (executor.budget.max_usd)" in out
    assert main([*args, "executor.budget.max_usd=1000"]) == 0
    assert "OVER BUDGET" not in capsys.readouterr().out


def test_the_report_flags_a_target_over_the_budget():
    from types import SimpleNamespace

    from engine.report.precision import precision_markdown
    from engine.study import load_study

    loaded = load_study("model_size", ["model_set=openrouter_size_paper", "design.target_halfwidth=0.1",
                                       "store.path=/nonexistent/x.duckdb"])
    text = precision_markdown(SimpleNamespace(loaded=loaded, con=None, scenario=loaded.scenario))
    assert "OVER BUDGET" in text and "executor\\.budget\\.max\\_usd" in text


# -- power follows the procedure -----------------------------------------------------------------

def cluster_t_difference(a, b, metric, seed):
    """A reference for an interval built for few clusters (issue 21, helper B's suggestion): a t
    interval with clusters - 1 degrees of freedom on the clusters' mean paired differences."""
    import numpy as np
    from scipy import stats

    from engine.analyze.paired_stats import MIN_CLUSTERS, Difference

    merged = a.merge(b, on="key", suffixes=("_a", "_b"))
    diff = merged["value_a"].to_numpy() - merged["value_b"].to_numpy()
    means = (merged.assign(d=diff).groupby("cluster_a")["d"].mean()).to_numpy()
    k = len(means)
    if k < MIN_CLUSTERS:
        return Difference(float(diff.mean()), math.nan, math.nan, math.nan, "cluster t", "cluster t")
    half = stats.t.ppf(0.975, k - 1) * means.std(ddof=1) / np.sqrt(k)
    return Difference(float(means.mean()), means.mean() - half, means.mean() + half, math.nan, "cluster t",
                      "cluster t")


def test_power_follows_the_procedure_it_is_given():
    from dataclasses import replace

    from engine.analyze.report_power import CLUSTER_T, PERCENTILE, rate_mdd

    procedure = replace(CLUSTER_T, difference=cluster_t_difference)
    layout = Layout(48, 16, paired=True)
    mdd = rate_mdd(layout, 0.5, icc=0.1, procedure=procedure)
    assert mdd > rate_mdd(layout, 0.5, icc=0.1, procedure=PERCENTILE)  # a t interval is wider than a percentile one
    sim = simulate_power(layout, "proportion", *centred_arms(0.5, mdd), icc=0.1, procedure=procedure, draws=1000,
                         seed=9)
    tolerance = 3 * math.hypot(sim.se, PLAN_SE)
    print(f"cluster-level t, 48 pairs in 16 clusters: stated MDD {mdd:.4f}; simulated power {sim}; ±{tolerance:.4f}")
    assert abs(sim.value - POWER) <= tolerance
