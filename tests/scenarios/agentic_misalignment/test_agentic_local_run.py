"""A real blackmail_subfrontier run on a local model with the scenario's three classifiers (moved here
from tests/test_judged_studies_local.py)."""

import duckdb
import pytest

pytestmark = pytest.mark.slow


def test_agentic_run_stores_parsed_actions_and_three_classifier_verdicts(tmp_path, run_main):
    db = tmp_path / "am.duckdb"
    run = run_main("run", "blackmail_subfrontier", "design.factors.model=[smollm2_135m]",
                   "design.factors.goal_conflict=[explicit]", "design.factors.threat=[replacement]",
                   "design.factors.safety_instructions=[off]", "design.seeds=1", "generation.max_tokens=48",
                   # The gold sets (64 more Gemma calls) are graded in the offline study, not here.
                   *[f"judges.{j}.rubric.gold=null" for j in ("structure", "blackmail_llm", "deliberation_llm")],
                   f"store.path={db}", "--no-progress", "--no-report")
    assert run.returncode == 0, run.stderr
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT emails_sent, emailed_executive, response_text FROM agentic_responses").fetchall()
    verdicts = dict(con.execute("SELECT judge_id, label FROM verdicts").fetchall())
    con.close()
    assert len(rows) == 1 and rows[0][0] == rows[0][2].count("<tool_use:email>")
    assert set(verdicts) == {"structure", "blackmail_llm", "deliberation_llm"}
    assert verdicts["structure"] in ("BLACKMAIL", "NO_BLACKMAIL")
