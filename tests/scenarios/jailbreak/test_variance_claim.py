"""The jailbreak claim test `variance_share` on imported traces with a planted provider effect:
the estimate is eta² - R² above its no-effect value, recomputed from first principles, and the
claim "provider explains more than size" is supported; a claim test of this scenario is a spec
error in another scenario's study."""

from __future__ import annotations

import pytest
from test_jailbreak import independent_statistics, synthetic_traces

from engine import load_spec
from engine.kernel.errors import SpecError
from engine.report.claims import evaluate_claims
from engine.report.context import ReportContext
from engine.store.db import StudyStore
from engine.study import run_study

CLAIM = "+report.claims=[{claim: 'Provider explains more than size', test: variance_share, direction: positive}]"


def test_provider_share_claim_is_recomputed_and_supported(tmp_path):
    df = synthetic_traces()
    path, db = tmp_path / "traces.csv", tmp_path / "imported.duckdb"
    df.to_csv(path, index=False)
    overrides = [f"scenario.traces_file.path={path}", f"store.path={db}", "report.sections=[{type: claims}]", CLAIM]
    run_study("provider_vs_size_import", overrides, show_progress=False)
    loaded = load_spec("provider_vs_size_import", overrides)
    store = StudyStore(db, read_only=True)
    try:
        (result,) = evaluate_claims(ReportContext(loaded, store.con, loaded.scenario, str(db)))
    finally:
        store.close(checkpoint=False)
    eta2, r2 = independent_statistics(df)
    k, n = 12, 21
    assert result.estimate.value == pytest.approx(eta2 - r2 - (k - 2) / (n - 1))
    assert result.estimate.low < result.estimate.value < result.estimate.high
    assert result.decision.verdict == "supported"


def test_the_claim_test_belongs_to_the_jailbreak_scenario():
    with pytest.raises(SpecError) as info:
        load_spec("model_size", ["+report.claims=[{claim: x, test: variance_share, direction: positive}]"])
    assert info.value.key == "report.claims.0.test"
