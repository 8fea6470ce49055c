"""The Rogan-Gladen correction for judge error, checked against independent computations: the
judge's forward model (a true rate through Se and Sp), the delta-method variance (Greenland 1988),
the Jeffreys interval (scipy's beta quantiles), the exact distribution of the resampled Youden's J,
and coverage by simulation of judged traces and gold sets with a known true rate."""

import math

import numpy as np
import pytest
from scipy import stats

from engine.analyze.agreement import binary_validity
from engine.analyze.misclassification import corrected_rate, rogan_gladen


def judged(truth: np.ndarray, se: float, sp: float, rng) -> np.ndarray:
    """What a judge with sensitivity `se` and specificity `sp` calls positive (True)."""
    u = rng.random(len(truth))
    return np.where(truth, u < se, u >= sp)


def gold_validity(n_pos: int, n_neg: int, se: float, sp: float, rng):
    """A gold set of n_pos positives and n_neg negatives graded by that judge."""
    truth = np.r_[np.ones(n_pos, bool), np.zeros(n_neg, bool)]
    calls = judged(truth, se, sp, rng)
    label = lambda x: ["YES" if v else "NO" for v in x]  # noqa: E731
    return binary_validity(label(truth), label(calls), {"YES"})


def validity_from_counts(tp: int, n_pos: int, fp: int, n_neg: int):
    gold = ["YES"] * n_pos + ["NO"] * n_neg
    calls = ["YES"] * tp + ["NO"] * (n_pos - tp) + ["YES"] * fp + ["NO"] * (n_neg - fp)
    return binary_validity(gold, calls, {"YES"})


def study(pi, se, sp, n, n_pos, n_neg, rng):
    traces = judged(rng.random(n) < pi, se, sp, rng).astype(float)
    return traces, gold_validity(n_pos, n_neg, se, sp, rng)


# ---------------------------------------------------------------- the estimator

@pytest.mark.parametrize("pi", [0.0, 0.05, 0.3, 0.77, 1.0])
@pytest.mark.parametrize("se, sp", [(0.8, 0.9), (0.6, 0.55), (0.99, 0.7)])
def test_rogan_gladen_inverts_the_judges_expected_rate(pi, se, sp):
    p = se * pi + (1 - sp) * (1 - pi)  # the forward model: what the judge reports in expectation
    assert rogan_gladen(p, se, sp) == pytest.approx(pi, abs=1e-12)


def test_rogan_gladen_clips_to_the_unit_interval_and_is_undefined_without_information():
    se, sp = 0.8, 0.9
    assert rogan_gladen(0.05, se, sp) == 0.0   # below 1 - Sp: the formula gives -0.0714
    assert rogan_gladen(0.95, se, sp) == 1.0   # above Se: the formula gives 1.2143
    assert math.isnan(rogan_gladen(0.4, 0.5, 0.5)) and math.isnan(rogan_gladen(0.4, 0.3, 0.6))
    grid = rogan_gladen(np.array([0.05, 0.31, 0.95]), np.array([0.8, 0.8, 0.8]), np.array([0.9, 0.9, 0.9]))
    assert grid == pytest.approx([0.0, 0.3, 1.0])


def test_a_large_study_recovers_the_true_rate_with_the_delta_method_interval_width():
    rng = np.random.default_rng(1)
    pi, se, sp, n, n_pos, n_neg = 0.3, 0.8, 0.9, 20_000, 2_000, 2_000
    traces, validity = study(pi, se, sp, n, n_pos, n_neg, rng)
    c = corrected_rate(traces, validity, seed=7, n_resamples=8000)
    assert c.raw.value == pytest.approx(se * pi + (1 - sp) * (1 - pi), abs=0.01)  # 0.31: the judged rate
    assert c.corrected.value == pytest.approx(pi, abs=0.015) and c.corrected.low < pi < c.corrected.high
    assert not c.clipped and c.degenerate == 0 and c.corrected.n == n and c.reason == ""
    # Greenland (1988): Var = [p(1-p)/n + pi^2 Se(1-Se)/n_pos + (1-pi)^2 Sp(1-Sp)/n_neg] / J^2, at the estimates.
    p, s, t, est = c.raw.value, validity.sensitivity.value, validity.specificity.value, c.corrected.value
    var = (p * (1 - p) / n + est ** 2 * s * (1 - s) / n_pos + (1 - est) ** 2 * t * (1 - t) / n_neg) / (s + t - 1) ** 2
    assert c.corrected.high - c.corrected.low == pytest.approx(2 * 1.959964 * math.sqrt(var), rel=0.08)


def test_the_interval_covers_the_true_rate_about_95_percent_of_the_time():
    # 300 simulated studies: 400 judged traces, a gold set of 80 positives and 80 negatives. The Monte
    # Carlo standard error of a 95% coverage over 300 replications is 1.3 points: accept 91% to 98.5%.
    rng = np.random.default_rng(2024)
    pi, se, sp, reps = 0.3, 0.8, 0.9, 300
    hits, estimates = 0, []
    for rep in range(reps):
        traces, validity = study(pi, se, sp, 400, 80, 80, rng)
        c = corrected_rate(traces, validity, seed=rep, n_resamples=1000)
        hits += c.corrected.low <= pi <= c.corrected.high
        estimates.append(c.corrected.value)
    assert 0.91 <= hits / reps <= 0.985, hits / reps
    assert np.mean(estimates) == pytest.approx(pi, abs=0.015)


def test_where_the_judge_biases_the_rate_the_raw_interval_misses_and_the_corrected_one_covers():
    # True rate 10%, Se = Sp = 0.8: the judge reports 26% in expectation.
    rng = np.random.default_rng(5)
    pi, reps, raw_hits, hits = 0.1, 200, 0, 0
    for rep in range(reps):
        traces, validity = study(pi, 0.8, 0.8, 500, 100, 100, rng)
        c = corrected_rate(traces, validity, seed=rep, n_resamples=1000)
        raw_hits += c.raw.low <= pi <= c.raw.high
        hits += c.corrected.low <= pi <= c.corrected.high
    assert raw_hits / reps < 0.02
    assert 0.9 <= hits / reps <= 0.99, hits / reps


# ---------------------------------------------------------------- flags and edges

def test_clipping_is_flagged_and_the_interval_stays_in_the_unit_interval():
    validity = validity_from_counts(80, 100, 10, 100)  # Se 0.8, Sp 0.9
    low = corrected_rate(np.r_[np.ones(6), np.zeros(94)], validity, seed=1)  # 6% < 1 - Sp
    assert low.corrected.value == 0.0 and low.clipped and low.corrected.low == 0.0 < low.corrected.high < 0.2
    # 2% is below 1 - Sp in nearly every draw (the traces' 97.5% Wilson end, 7%, is below the gold set's
    # lowest plausible 1 - Sp): every draw but a few is clipped to 0, and a [0%, 0%] interval would claim
    # certainty, so there is none.
    outside = corrected_rate(np.r_[np.ones(2), np.zeros(98)], validity, seed=1)
    assert outside.corrected.value == 0.0 and outside.clipped
    assert math.isnan(outside.corrected.low) and math.isnan(outside.corrected.high)
    high = corrected_rate(np.r_[np.ones(87), np.zeros(13)], validity, seed=1)  # 87% > Se
    assert high.corrected.value == 1.0 and high.clipped and 0.7 < high.corrected.low < high.corrected.high == 1.0
    inside = corrected_rate(np.r_[np.ones(31), np.zeros(69)], validity, seed=1)
    assert not inside.clipped and inside.corrected.value == pytest.approx((0.31 + 0.9 - 1) / 0.7)


def test_a_judge_no_better_than_chance_is_not_correctable():
    traces = np.r_[np.ones(30), np.zeros(70)]
    worse = corrected_rate(traces, validity_from_counts(25, 50, 28, 50), seed=0)  # J = 0.5 - 0.56 < 0
    assert worse.corrected is None and "is 0 or below" in worse.reason
    assert worse.raw.value == 0.3 and worse.youden.value == pytest.approx(-0.06)
    # J = 4/6 - 2/6 > 0, but on 12 gold items its interval reaches below 0.
    small = validity_from_counts(4, 6, 2, 6)
    assert small.youden.value > 0 >= small.youden.low
    thin = corrected_rate(traces, small, seed=0)
    assert thin.corrected is None and "reaches 0 or below" in thin.reason and "12 gold items" in thin.reason
    # A clear J, but a higher bar set: not correctable; at the default bar: corrected.
    clear = validity_from_counts(80, 100, 10, 100)
    assert corrected_rate(traces, clear, seed=0, min_youden=0.65).corrected is None
    assert corrected_rate(traces, clear, seed=0).corrected is not None
    no_pos = corrected_rate(traces, binary_validity(["NO"] * 5, ["NO"] * 5, {"YES"}), seed=0)
    assert no_pos.corrected is None and "no positive item" in no_pos.reason
    assert corrected_rate(traces, None, seed=0).reason == "no graded gold item"
    empty = corrected_rate([], clear, seed=0)
    assert empty.raw.n == 0 and empty.corrected is None and empty.reason == "no traces"
    with pytest.raises(ValueError, match="0/1"):
        corrected_rate([0.5, 1], clear, seed=0)


def test_zero_events_still_carry_the_traces_uncertainty_as_the_jeffreys_interval_does():
    # A near-exact gold set: the interval is the traces' Jeffreys interval passed through the correction.
    validity = validity_from_counts(9_000, 10_000, 100, 10_000)  # Se 0.9, Sp 0.99
    c = corrected_rate(np.zeros(50), validity, seed=3, n_resamples=20_000)
    assert c.corrected.value == 0.0 and c.clipped
    jeffreys_high = stats.beta.ppf(0.975, 0.5, 50.5)
    assert c.corrected.high > 0
    assert c.corrected.high == pytest.approx(rogan_gladen(jeffreys_high, 0.9, 0.99), abs=0.005)


def test_a_judge_without_error_on_the_gold_set_still_carries_the_gold_sets_uncertainty():
    traces = np.r_[np.ones(300), np.zeros(700)]
    perfect_small = corrected_rate(traces, validity_from_counts(10, 10, 0, 10), seed=4)
    perfect_large = corrected_rate(traces, validity_from_counts(10_000, 10_000, 0, 10_000), seed=4)
    assert perfect_small.corrected.value == perfect_large.corrected.value == pytest.approx(0.3)
    small_width = perfect_small.corrected.high - perfect_small.corrected.low
    assert small_width > 1.5 * (perfect_large.corrected.high - perfect_large.corrected.low)


def test_degenerate_resamples_are_counted_at_the_rate_of_the_exact_resampling_distribution():
    # Gold: 6 of 8 positives caught, 1 of 8 negatives flagged (J = 0.625, its interval above 0). A
    # resample has no correction when Se* + Sp* <= 1, i.e. TP* <= FP* with TP* ~ Bin(8, 6/8), FP* ~ Bin(8, 1/8).
    validity = validity_from_counts(6, 8, 1, 8)
    assert validity.youden.low > 0
    tp, fp = np.arange(9), np.arange(9)
    exact = sum(stats.binom.pmf(a, 8, 6 / 8) * stats.binom.pmf(b, 8, 1 / 8) for a in tp for b in fp if a <= b)
    c = corrected_rate(np.r_[np.ones(40), np.zeros(60)], validity, seed=9, n_resamples=40_000)
    assert exact > 0.002
    assert c.degenerate == pytest.approx(exact, abs=4 * math.sqrt(exact / 40_000))


def test_clustered_traces_resample_as_their_clusters():
    # Each of 200 items repeats 5 times with one outcome: the information is that of the 200 items, so
    # the clustered interval is the one of 200 single traces, and the unclustered one is too narrow.
    rng = np.random.default_rng(11)
    items = (rng.random(200) < 0.35).astype(float)
    validity = validity_from_counts(4_000, 5_000, 500, 5_000)  # a near-exact gold set: Se 0.8, Sp 0.9
    repeated, clusters = np.repeat(items, 5), np.repeat(np.arange(200), 5)
    once = corrected_rate(items, validity, seed=1, n_resamples=20_000).corrected
    clustered = corrected_rate(repeated, validity, seed=2, clusters=clusters, n_resamples=20_000).corrected
    naive = corrected_rate(repeated, validity, seed=3, n_resamples=20_000).corrected
    assert clustered.value == once.value and clustered.n == 1000
    assert (clustered.low, clustered.high) == pytest.approx((once.low, once.high), abs=0.01)
    assert naive.high - naive.low < 0.6 * (clustered.high - clustered.low)
    # Singleton clusters are the trace bootstrap itself.
    singles = corrected_rate(items, validity, seed=1, clusters=np.arange(200), n_resamples=20_000).corrected
    assert (singles.low, singles.high) == (once.low, once.high)


def test_the_interval_is_seeded():
    traces, validity = np.r_[np.ones(30), np.zeros(70)], validity_from_counts(40, 50, 5, 50)
    a, b = corrected_rate(traces, validity, seed=5), corrected_rate(traces, validity, seed=5)
    other = corrected_rate(traces, validity, seed=6)
    assert a == b and (a.corrected.low, a.corrected.high) != (other.corrected.low, other.corrected.high)
