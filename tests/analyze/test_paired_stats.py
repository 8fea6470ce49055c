"""The paired-contrast statistics against independent computations: Newcombe's paired interval
against a published value, a brute-force re-derivation and a coverage simulation; McNemar and the
sign-flip test against scipy's binomial test and full enumeration; the cluster permutation test
against enumeration; Holm against a hand computation; the cluster bootstrap's coverage (and the
naive interval's failure) by simulation of clustered pairs."""

import itertools
import math

import numpy as np
import pytest
from scipy import optimize, stats

from engine.analyze.paired_stats import (cluster_bootstrap_interval, cluster_permutation_p, holm, mcnemar_exact_p,
                                         newcombe_independent_interval, newcombe_paired_interval, sign_flip_p,
                                         two_sample_cluster_interval)

Z = stats.norm.ppf(0.975)


def test_newcombe_paired_matches_published_example():
    # Fagerland, Lydersen & Laake (2017), Statistical Analysis of Contingency Tables, ch. 8: complete
    # response before and after consolidation therapy (Cavo et al. 2012), table [[59, 6], [16, 80]];
    # Newcombe square-and-add interval -0.0621 (95% CI -0.1186 to -0.0046).
    low, high = newcombe_paired_interval(59, 6, 16, 80)
    assert (6 - 16) / 161 == pytest.approx(-0.0621, abs=5e-5)
    assert low == pytest.approx(-0.1186, abs=5e-5)
    assert high == pytest.approx(-0.0046, abs=5e-5)


def wilson_by_root(x: int, n: int) -> tuple[float, float]:
    """Wilson limits as the roots of the score equation |x/n - p| = z sqrt(p(1-p)/n)."""
    phat = x / n
    score = lambda p: (phat - p) ** 2 - Z ** 2 * p * (1 - p) / n  # noqa: E731
    # the score is 0 at phat itself when x is 0 or n: search from just inside
    low = 0.0 if x == 0 else optimize.brentq(score, 1e-15, phat - 1e-12, xtol=1e-14)
    high = 1.0 if x == n else optimize.brentq(score, phat + 1e-12, 1 - 1e-15, xtol=1e-14)
    return low, high


def newcombe_by_hand(a: int, b: int, c: int, d: int) -> tuple[float, float]:
    """Newcombe 1998 (Stat Med 17:2635), method 10, written from the paper: cells e=a, f=b, g=c,
    h=d; theta = (f - g)/n; phi from (eh - fg) with the n/2 continuity correction."""
    n = a + b + c + d
    p2, p3 = (a + b) / n, (a + c) / n
    l2, u2 = wilson_by_root(a + b, n)
    l3, u3 = wilson_by_root(a + c, n)
    denominator = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    corrected = max(cross - n / 2, 0) if cross > 0 else cross
    phi = 0.0 if denominator == 0 else corrected / math.sqrt(denominator)
    theta = (b - c) / n
    delta = math.sqrt((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u3 - p3) + (u3 - p3) ** 2)
    eps = math.sqrt((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p3 - l3) + (p3 - l3) ** 2)
    return theta - delta, theta + eps


@pytest.mark.parametrize("table", [(36, 12, 2, 0), (263, 15, 3, 20), (0, 5, 2, 13), (10, 0, 0, 10), (4, 9, 1, 0),
                                   (0, 0, 0, 7), (1, 1, 7, 12), (30, 2, 2, 30)])
def test_newcombe_paired_matches_brute_force(table):
    assert newcombe_paired_interval(*table) == pytest.approx(newcombe_by_hand(*table), abs=1e-9)


def test_newcombe_paired_covers_by_simulation():
    """40 correlated pairs, true difference 0.10: the interval should cover about 95% of the time
    (Newcombe reports near-nominal coverage; 400 replications give a standard error of 1.1 points,
    so [0.91, 0.99] is a loose band)."""
    rng = np.random.default_rng(1)
    probs = [0.30, 0.15, 0.05, 0.50]  # n11, n10, n01, n00
    truth = probs[1] - probs[2]
    covered = 0
    for _ in range(400):
        counts = rng.multinomial(40, probs)
        low, high = newcombe_paired_interval(*map(int, counts))
        covered += low <= truth <= high
    assert 0.91 <= covered / 400 <= 0.99


@pytest.mark.parametrize("n10,n01", [(6, 16), (0, 5), (7, 2), (12, 12), (1, 0), (30, 11)])
def test_mcnemar_exact_is_the_binomial_test_on_discordant_pairs(n10, n01):
    assert mcnemar_exact_p(n10, n01) == pytest.approx(stats.binomtest(n10, n10 + n01, 0.5).pvalue, rel=1e-12)


def test_mcnemar_published_example_and_no_discordant_pairs():
    # Fagerland et al. (2017): McNemar exact conditional test on the table above, P = 0.052479.
    assert mcnemar_exact_p(6, 16) == pytest.approx(0.052479, abs=5e-7)
    assert mcnemar_exact_p(0, 0) == 1.0


def test_sign_flip_with_one_pair_per_cluster_is_exact_mcnemar():
    diffs = np.array([1] * 7 + [-1] * 2 + [0] * 4, dtype=float)  # 13 pairs: 2^13 arrangements, enumerated
    p = sign_flip_p(diffs, np.arange(len(diffs)), seed=0)
    assert p == pytest.approx(stats.binomtest(7, 9, 0.5).pvalue, rel=1e-9)


def test_sign_flip_over_clusters_matches_enumeration():
    values = np.array([1, 1, 0, -1, 1, 1, 1, 0, 0, -1, 1, 1, 1, 0, 1], dtype=float)
    clusters = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5, 5, 5])
    totals = np.array([values[clusters == k].sum() for k in range(6)])
    observed = abs(totals.sum())
    flips = [abs((totals * np.array(signs)).sum()) for signs in itertools.product([1, -1], repeat=6)]
    expected = np.mean([f >= observed - 1e-12 for f in flips])
    assert sign_flip_p(values, clusters, seed=0) == pytest.approx(expected, rel=1e-9)


def test_cluster_permutation_matches_enumeration():
    """Three clusters per arm: every one of the C(6, 3) = 20 splits of the six clusters."""
    va = np.array([1, 0, 1, 1, 1, 0, 1], dtype=float)
    ca = np.array(["a", "a", "b", "b", "b", "c", "c"])
    vb = np.array([0, 0, 1, 0, 0, 0], dtype=float)
    cb = np.array(["d", "d", "e", "f", "f", "f"])
    sums = [va[ca == k].sum() for k in "abc"] + [vb[cb == k].sum() for k in "def"]
    sizes = [(ca == k).sum() for k in "abc"] + [(cb == k).sum() for k in "def"]

    def diff(group):
        rest = [i for i in range(6) if i not in group]
        mean = lambda idx: sum(sums[i] for i in idx) / sum(sizes[i] for i in idx)  # noqa: E731
        return mean(group) - mean(rest)

    observed = diff((0, 1, 2))
    splits = [diff(g) for g in itertools.combinations(range(6), 3)]
    # scipy's two-sided p doubles the smaller tail (capped at 1)
    less = np.mean([s <= observed + 1e-12 for s in splits])
    greater = np.mean([s >= observed - 1e-12 for s in splits])
    expected = min(1.0, 2 * min(less, greater))
    assert cluster_permutation_p(va, ca, vb, cb, seed=0) == pytest.approx(expected, rel=1e-9)


def holm_by_hand(p: list[float]) -> list[float]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    m, running, out = len(p), 0.0, [0.0] * len(p)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_hand_computation_and_skips_missing():
    p = [0.01, 0.04, 0.03, 0.005, 0.5, 0.02]
    assert holm(p) == pytest.approx(holm_by_hand(p))
    # By hand: sorted 0.005, 0.01, 0.02, 0.03, 0.04, 0.5 times 6, 5, 4, 3, 2, 1 = 0.03, 0.05, 0.08,
    # 0.09, 0.08, 0.5; running maximum 0.03, 0.05, 0.08, 0.09, 0.09, 0.5.
    assert holm(p) == pytest.approx([0.05, 0.09, 0.09, 0.03, 0.5, 0.08])
    with_missing = holm([0.01, math.nan, 0.04])
    assert math.isnan(with_missing[1]) and with_missing[0] == pytest.approx(0.02)
    assert with_missing[2] == pytest.approx(0.04)


def test_holm_equals_statsmodels_bit_for_bit_without_a_garbage_collection(monkeypatch):
    """The same adjusted p-values as statsmodels' `multipletests(method="holm")` (ties, sizes 1-60, values
    capped at 1), and no `gc.collect()` per call (statsmodels runs one: seconds per calibration)."""
    import gc

    from statsmodels.stats.multitest import multipletests

    collections = []
    # (statsmodels' own collection would take 0.4 s a call in this large process: counted, not run)
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(a) or 0)
    rng = np.random.default_rng(7)
    for size in [1, 2, 3, 5, 8, 13, 60] * 20:
        p = rng.choice([rng.uniform(0, 1), 0.01, 0.5, 1.0], size=size) * rng.uniform(0, 1, size) ** 3
        expected = list(multipletests(p, method="holm")[1])
        del collections[:]
        assert holm(list(p)) == expected
        assert collections == []


def clustered_pairs(rng, clusters: int, per_cluster: int, effects: tuple[float, float]):
    """Pairs of 0/1 outcomes in clusters (e.g. prompts under several attacks). Each cluster's
    difference in success probability is one of `effects` with equal chance, so the true mean
    difference is their average and pairs of one cluster are correlated."""
    base = rng.uniform(0.3, 0.5, clusters)
    effect = rng.choice(effects, clusters)
    pa = np.repeat(base + effect, per_cluster)
    pb = np.repeat(base, per_cluster)
    a = (rng.random(pa.size) < pa).astype(float)
    b = (rng.random(pb.size) < pb).astype(float)
    return a, b, np.repeat(np.arange(clusters), per_cluster)


def test_cluster_bootstrap_covers_clustered_pairs_where_newcombe_does_not():
    """30 clusters of 6 pairs, cluster effects -0.2 or +0.4 (truth 0.1). The cluster bootstrap
    should cover about 95% (percentile bootstrap over 30 clusters: a little under; 300 replications,
    SE 1.3 points: band [0.89, 0.99]); Newcombe's interval, which treats the 180 pairs as
    independent, misses far more often (it is about half as wide as it should be)."""
    rng = np.random.default_rng(7)
    truth, reps = 0.1, 300
    cluster_cover = naive_cover = 0
    for rep in range(reps):
        a, b, clusters = clustered_pairs(rng, 30, 6, (-0.2, 0.4))
        low, high = cluster_bootstrap_interval(a - b, clusters, seed=rep)
        cluster_cover += low <= truth <= high
        n11, n10 = int(((a == 1) & (b == 1)).sum()), int(((a == 1) & (b == 0)).sum())
        n01, n00 = int(((a == 0) & (b == 1)).sum()), int(((a == 0) & (b == 0)).sum())
        nl, nh = newcombe_paired_interval(n11, n10, n01, n00)
        naive_cover += nl <= truth <= nh
    assert 0.89 <= cluster_cover / reps <= 0.99
    assert naive_cover / reps < 0.85


def test_sign_flip_keeps_its_size_on_clustered_pairs_where_mcnemar_does_not():
    """Under a null with cluster effects -0.3 or +0.3 (mean 0), 30 clusters of 10 pairs, the
    sign-flip test over clusters rejects at about 5% (300 replications, SE 1.3 points: at most 9%);
    the exact McNemar test on the pooled pairs, which ignores the clusters, clearly more often
    (above 12%, over 5 standard errors from 5%)."""
    rng = np.random.default_rng(11)
    reps, flip_rejects, mcnemar_rejects = 300, 0, 0
    for rep in range(reps):
        a, b, clusters = clustered_pairs(rng, 30, 10, (-0.3, 0.3))
        flip_rejects += sign_flip_p(a - b, clusters, seed=rep, n_resamples=1999) < 0.05
        mcnemar_rejects += mcnemar_exact_p(int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())) < 0.05
    assert flip_rejects / reps <= 0.09
    assert mcnemar_rejects / reps > 0.12


def test_two_sample_cluster_bootstrap_covers_independent_clusters():
    """Two arms of 30 clusters of 4 units each, cluster rates drawn around 0.5 and 0.3: the
    interval for the difference should cover 0.2 about 95% of the time (band [0.89, 0.99])."""
    rng = np.random.default_rng(3)
    reps, covered = 300, 0
    for rep in range(reps):
        arms = []
        for centre in (0.5, 0.3):
            rates = np.repeat(np.clip(centre + rng.choice([-0.2, 0.2], 30), 0, 1), 4)
            arms.append(((rng.random(rates.size) < rates).astype(float), np.repeat(np.arange(30), 4)))
        low, high = two_sample_cluster_interval(*arms[0], *arms[1], seed=rep)
        covered += low <= 0.2 <= high
    assert 0.89 <= covered / reps <= 0.99


def test_newcombe_independent_is_the_hybrid_score_interval():
    """Newcombe (1998, Stat Med 17:873), method 10, by hand from two Wilson intervals."""
    x1, n1, x2, n2 = 7, 34, 1, 34
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = wilson_by_root(x1, n1), wilson_by_root(x2, n2)
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    assert newcombe_independent_interval(x1, n1, x2, n2) == pytest.approx((low, high), abs=1e-8)


def _wilson_family(x: int, n: int):
    return lambda alpha: wilson_by_root_at(x, n, alpha)


def wilson_by_root_at(x: int, n: int, alpha: float) -> tuple[float, float]:
    z = stats.norm.ppf(1 - alpha / 2)
    centre, half = (x + z * z / 2) / (n + z * z), z * math.sqrt(x * (n - x) / n + z * z / 4) / (n + z * z)
    return centre - half, centre + half


@pytest.mark.parametrize("table", [(59, 6, 16, 80), (3, 4, 1, 2), (0, 5, 0, 5), (10, 0, 3, 1), (2, 2, 2, 2)])
def test_mover_with_wilson_limits_and_newcombe_phi_is_newcombes_paired_interval(table):
    """The paired difference the report prints is MOVER (Newcombe's method 10) of each arm's own limits;
    with Wilson limits it must reproduce the validated Newcombe paired interval."""
    from engine.analyze.paired_stats import mover, newcombe_phi

    n11, n10, n01, n00 = table
    n = sum(table)
    family = mover((n11 + n10) / n, _wilson_family(n11 + n10, n), (n11 + n01) / n, _wilson_family(n11 + n01, n),
                   newcombe_phi(n11, n10, n01, n00))
    assert family(0.05) == pytest.approx(newcombe_paired_interval(n11, n10, n01, n00), abs=1e-9)


@pytest.mark.parametrize("a,b", [([1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1], [0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0]),
                                 ([1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 1, 0]), ([1] * 8, [1] * 8)])
def test_a_difference_p_is_the_inversion_of_its_own_interval(a, b):
    """Rule 1: `Difference.p` is where the family's end reaches 0, so p < 0.05 exactly when the 95%
    interval excludes 0, and `interval_at` gives every level (wider as alpha falls)."""
    from engine.analyze.paired import paired_difference

    d = paired_difference(np.array(a, float), np.array(b, float), np.arange(len(a)), "proportion", 0)
    assert (d.low, d.high) == pytest.approx(d.interval_at(0.05))
    assert (d.p < 0.05) == (not d.low <= 0 <= d.high)
    w90, w99 = d.interval_at(0.10), d.interval_at(0.01)
    assert w99[0] <= d.low <= w90[0] and w90[1] <= d.high <= w99[1]
    if d.p < 1:
        low, high = d.interval_at(d.p)
        assert min(abs(low), abs(high)) < 1e-4  # at alpha = p an end touches 0
    else:
        assert d.value == 0


def test_compare_pairs_the_units_the_merge_on_their_key_pairs():
    # `compare` matches distinct string keys by a dictionary instead of merging: the same rows in the same
    # order as the inner merge, whatever the overlap and order of the two arms; repeated keys still merge.
    import pandas as pd

    from engine.analyze.paired import shared_units

    rng = np.random.default_rng(4)
    for trial in range(200):
        n_a, n_b = rng.integers(0, 12, 2)
        pool = [f"k{i}" for i in rng.permutation(16)]
        keys_a = list(rng.choice(pool, n_a, replace=trial % 5 == 0))
        keys_b = list(rng.choice(pool, n_b, replace=False))
        a = pd.DataFrame({"key": keys_a, "value": rng.random(n_a), "cluster": [k[:2] for k in keys_a]})
        b = pd.DataFrame({"key": keys_b, "value": rng.random(n_b), "cluster": [k[-1] for k in keys_b]})
        merged = a.merge(b, on="key", suffixes=("_a", "_b"))
        va, vb, clusters = shared_units(a, b)
        assert np.array_equal(va, merged["value_a"].to_numpy()) and np.array_equal(vb, merged["value_b"].to_numpy())
        assert list(clusters) == list(merged["cluster_a"])
