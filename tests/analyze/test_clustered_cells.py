"""Per-cell intervals where an item recurs under several seeds (engine/analyze/metrics.py): the
units of one item are not independent, so the interval rests on items, not trials. On a stand-in
whose reply depends on the prompt alone (every seed of an item agrees), Korn & Graubard's effective
sample size is the number of items less one (the cluster-robust variance of the rate is p(1 - p) / (k - 1)),
shrunk by (z / t_df)^2 with Satterthwaite's df of the items' residuals: the interval is Clopper-Pearson at
that size, and wider than the exact interval that counts every trial."""

from __future__ import annotations

import numpy as np
import pytest
from jailbreak_standin import by_hash, replying, run_standin, standin_overrides
from scipy import stats

from engine import load_study
from engine.analyze.metrics import cell_estimates, clustered_cells
from engine.store.db import StudyStore

PROMPTS = [f"cyber-0{i}" for i in range(1, 7)] + [f"weapons-0{i}" for i in range(1, 7)]


def overrides(db) -> list[str]:
    return standin_overrides(db, PROMPTS, ("direct",), ("smollm2_135m",), "scenario.select.benign=0", "design.seeds=3")


def test_recurring_items_are_resampled_as_clusters(tmp_path):
    db = tmp_path / "study.duckdb"
    _, summary = run_standin(overrides(db), replying(lambda prompt, model: by_hash(prompt)))
    assert summary.done == summary.planned == 3 * len(PROMPTS)
    loaded = load_study("provider_vs_size", overrides(db))
    metric = next(m for m in loaded.scenario.metrics() if m.name == "asr_broad")
    params = loaded.scenario.metric_params(loaded.spec)
    store = StudyStore(db, read_only=True)
    try:
        assert len(clustered_cells(store.con, loaded.spec_hash)) == 1
        (est,) = cell_estimates(store.con, loaded.spec_hash, [metric], params=params).itertuples()
        (flat,) = cell_estimates(store.con, loaded.spec_hash, [metric], params=params,
                                 clustered_on_items=False).itertuples()
        values = store.con.execute(
            "SELECT r.prompt_id, avg(CASE WHEN v.label IN ('COMPLIANCE', 'PARTIAL') THEN 1.0 ELSE 0 END)"
            " FROM jailbreak_responses r JOIN verdicts v ON v.subject_id = r.trial_id GROUP BY r.prompt_id").fetchall()
    finally:
        store.close(checkpoint=False)
    item_means = np.array([v for _, v in values])
    assert set(item_means) <= {0.0, 1.0}  # every seed of an item agrees
    k, rate = len(item_means), item_means.mean()
    residuals = item_means - rate  # per item, in units of its (equal) number of traces
    df = min(k - 1, np.sum(residuals ** 2) ** 2 / np.sum(residuals ** 4))
    n_star = (k - 1) * (stats.norm.ppf(0.975) / stats.t.ppf(0.975, df)) ** 2
    x = rate * n_star
    assert est.value == pytest.approx(rate)
    assert (est.low, est.high) == pytest.approx((stats.beta.ppf(0.025, x, n_star - x + 1),
                                                 stats.beta.ppf(0.975, x + 1, n_star - x)))
    successes = int(round(est.value * est.n))
    exact = (stats.beta.ppf(0.025, successes, est.n - successes + 1), stats.beta.ppf(0.975, successes + 1, est.n - successes))
    assert (flat.low, flat.high) == pytest.approx(exact)
    assert est.high - est.low > 1.3 * (exact[1] - exact[0])
