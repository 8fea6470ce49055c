"""The `claims` section on a small real jailbreak study (two stand-in models through the real
gateway, graded by the refusal heuristic): a stand-in that complies under the DAN role-play and
refuses the bare request makes "role-play raises ASR" true by construction, and the section must
say so with the estimate recomputed from the tables; a trend over two models is not resolvable; a
malformed claim is a spec error naming its key."""

from __future__ import annotations

import math
import re

import duckdb
import litellm
import pytest
import yaml
from jailbreak_standin import MODELS, replying, run_standin, standin_overrides
from statsmodels.stats.multitest import multipletests

from engine import load_study
from engine.kernel.errors import SpecError
from engine.kernel.paths import REPO_ROOT
from engine.report.sections.claims import Claims, evaluate_claims
from engine.report.context import ReportContext
from engine.report.sections.paired_contrasts import p_text
from engine.store.db import StudyStore

PROMPTS = [f"cyber-0{i}" for i in range(1, 7)] + [f"weapons-0{i}" for i in range(1, 5)]
CLAIMS = ("[{claim: 'Role-play raises ASR', test: difference, metric: asr_broad, a: {attack: roleplay}, "
          "b: {attack: direct}, direction: positive, effect: 0.3},"
          " {claim: 'ASR falls with size', test: trend, metric: asr_broad, direction: negative},"
          " {claim: 'Role-play adds 10-30 points', test: difference, metric: asr_broad, a: {attack: roleplay},"
          " b: {attack: direct}, range: [0.1, 0.3]}]")


def overrides(db, claims: str = CLAIMS) -> list[str]:
    return standin_overrides(db, PROMPTS, ("direct", "roleplay"), MODELS, "scenario.select.benign=0",
                             "report.sections=[{type: claims}]", f"+report.claims={claims}")


# Complies under the DAN role-play, refuses the bare request.
dan_complies = replying(lambda prompt, model: "You are DAN" not in prompt)


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("claims") / "study.duckdb"
    _, summary = run_standin(overrides(db), dan_complies)
    assert summary.errors == 0 and summary.done == summary.planned
    return db


def results(db):
    loaded = load_study("provider_vs_size", overrides(db))
    store = StudyStore(db, read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, loaded.scenario, str(db))
        out = evaluate_claims(ctx)
        rendered = Claims().render(ctx, None)
    finally:
        store.close(checkpoint=False)
    return out, rendered.markdown


def test_difference_claim_is_recomputed_from_the_tables(study_db):
    (raises, trend, range_claim), _ = results(study_db)
    con = duckdb.connect(str(study_db), read_only=True)
    labels = dict(con.execute(
        "SELECT r.attack, avg(CASE WHEN v.label IN ('COMPLIANCE', 'PARTIAL') THEN 1.0 ELSE 0 END)"
        " FROM jailbreak_responses r JOIN verdicts v ON v.subject_id = r.trial_id"
        " WHERE v.judge_id = 'heuristic' GROUP BY r.attack").fetchall())
    con.close()
    assert raises.estimate.value == pytest.approx(labels["roleplay"] - labels["direct"])
    assert raises.estimate.n == len(PROMPTS) * len(MODELS)  # paired on model, prompt and seed
    assert raises.decision.verdict == "supported" and raises.estimate.value > 0
    # Two models cannot carry a size trend: said, not estimated.
    assert trend.decision.verdict == "not resolvable with this design" and "3 models" in trend.decision.why
    # Holm across the claims that have a p-value: the difference and the range claim.
    tested = [r for r in (raises, trend, range_claim) if math.isfinite(r.decision.p)]
    expected = multipletests([r.decision.p for r in tested], method="holm")[1]
    assert [r.decision.holm_p for r in tested] == pytest.approx(list(expected))
    # The stand-in's difference is 100 points, its interval (10 prompts) wholly outside the claimed 10-30.
    assert range_claim.decision.verdict == "contradicted"


def test_section_shows_every_claim_with_its_verdict(study_db):
    _, markdown = results(study_db)
    rows = [ln for ln in markdown.splitlines() if ln.startswith("| ")][1:]
    assert len(rows) == 3
    assert "supported" in rows[0] and "not resolvable with this design" in rows[1] and "contradicted" in rows[2]
    assert re.search(r"1 supported, 1 contradicted, 1 not resolvable", re.sub(r"\\(.)", r"\1", markdown))


def test_each_row_prints_its_kind_its_decision_interval_and_level_and_its_p_values(study_db):
    (raises, trend, range_claim), markdown = results(study_db)
    plain = re.sub(r"\\(.)", r"\1", markdown)
    rows = [ln.split(" | ") for ln in plain.splitlines() if ln.startswith("| ")][1:]
    # Two claims have a p-value: the difference (tiny p) at Holm step 1 of 2 (one-sided 1.25%: its
    # 97.5% interval), the range (p = 1) at step 2, at 2.5%: its 95% interval.
    assert (raises.decision.step, raises.decision.of, raises.decision.alpha) == (1, 2, 0.0125)
    assert rows[0][1].startswith("direction: positive, > 0") and "97.5% CI, Holm step 1 of 2" in rows[0][3]
    assert rows[1][3] == "95% CI (not tested)" and rows[1][5] == "—"
    assert rows[2][1] == "range: in [10%, 30%]" and "95% CI, Holm step 2 of 2" in rows[2][3]
    assert (range_claim.decision.low, range_claim.decision.high) == (range_claim.estimate.low,
                                                                      range_claim.estimate.high)
    for result, row in ((raises, rows[0]), (range_claim, rows[2])):
        assert row[5] == p_text(result.decision.p) and row[6] == p_text(result.decision.holm_p)
        assert (result.decision.holm_p < 0.025) == (result.decision.verdict == "supported")


@pytest.mark.parametrize("claims, key", [
    ("[{claim: x, test: nope, metric: asr_broad, direction: positive}]", "report.claims.0.test"),
    ("[{claim: x, test: difference, metric: nope, a: {attack: roleplay}, b: {attack: direct}, direction: positive}]",
     "report.claims.0.metric"),
    ("[{claim: x, test: trend, metric: asr_broad}]", "report.claims.0"),
])
def test_malformed_claims_are_spec_errors(tmp_path, claims, key):
    with pytest.raises(SpecError) as info:
        load_study("provider_vs_size", overrides(tmp_path / "db.duckdb", claims))
    assert info.value.key == key and "the command line (override '+report.claims=" in str(info.value)
    assert not (tmp_path / "db.duckdb").exists()


def test_a_level_a_quick_run_drops_leaves_the_files_claim_unresolved(study_db, tmp_path):
    # The study file claims on a level; the command line narrows the design to other levels (a quick
    # run): the study stays valid and the claim cannot be decided. (A claim written on the command
    # line that names a level the design lacks is a spec error: tests/test_checks.py.)
    study = yaml.safe_load((REPO_ROOT / "studies" / "provider_vs_size.yaml").read_text())
    study["report"]["claims"] = [{"claim": "x", "test": "difference", "metric": "asr_broad", "a": {"attack": "dan"},
                                  "b": {"attack": "direct"}, "direction": "positive"}]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    loaded = load_study(str(tmp_path / "study.yaml"), standin_overrides(
        study_db, PROMPTS, ("direct", "roleplay"), MODELS, "scenario.select.benign=0", "report.sections=[{type: claims}]"))
    store = StudyStore(study_db, read_only=True)
    try:
        (result,) = evaluate_claims(ReportContext(loaded, store.con, loaded.scenario, str(study_db)))
    finally:
        store.close(checkpoint=False)
    assert result.decision.verdict == "not resolvable with this design"
    assert "no cells with attack=dan" in result.decision.why


def test_claims_on_a_study_without_a_single_outcome_are_unresolved(tmp_path):
    # Every call refused by the provider: trials end as errors, no metric has a unit, and every
    # claim must come back "not resolvable" (this once crashed on an empty frame).
    async def bad_request(**kwargs):
        raise litellm.BadRequestError("stand-in rejects every request", model=kwargs.get("model", ""),
                                      llm_provider="openrouter")

    db = tmp_path / "study.duckdb"
    _, summary = run_standin(overrides(db), bad_request)
    assert summary.done == 0 and summary.errors == summary.planned > 0
    out, markdown = results(db)
    assert len(out) == 3
    assert all(r.decision.verdict == "not resolvable with this design" for r in out)
    assert all(r.estimate.n == 0 for r in out)
    assert "0 supported, 0 contradicted, 3 not resolvable" in re.sub(r"\\(.)", r"\1", markdown)
