"""Time report rendering (HTML + PDF) for a 120-trial study.

    .venv/bin/python bench/report_timing.py

Builds a real 120-trial study database with scripted agents (seconds), then times the report:
queries, intervals, charts, .qmd, pandoc HTML, pandoc -> typst -> PDF. Also times the report of
results/model_size.duckdb when a `make study` has produced it. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SCRIPTED_120 = [
    "design.factors.agent=[scripted:hawk, scripted:dove, scripted:random, scripted:calculating]",
    "~design.factors.persona",
    "design.controls=[{agent: [scripted:null, scripted:tit_for_tat]}]", "design.seeds=20",
    "report.sections=[{type: summary}, {type: design}, {type: headline_table, title: Results},"
    " {type: chart, metric: nuclear_rate, x: agent, rows: all}, {type: chart, metric: divergence, x: agent, rows: all},"
    " {type: caveats}, {type: reproducibility}, {type: transcripts}]",
]


def time_report(overrides: list[str]) -> float:
    from engine import build_report

    started = time.perf_counter()
    build_report("model_size", overrides, force_pandoc=True)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*SCRIPTED_120, f"store.path={tmp}/b.duckdb", f"report.output_dir={tmp}/report"]
        subprocess.run([sys.executable, "-m", "engine", "run", "model_size", *overrides, "--no-progress",
                        "--no-report"], cwd=REPO, check=True, capture_output=True)
        seconds = time_report(overrides)
        print(f"report of a 120-trial study (HTML + PDF, 2 charts): {seconds:.1f} s")
    if (REPO / "results" / "model_size.duckdb").exists():
        with tempfile.TemporaryDirectory() as tmp:
            seconds = time_report([f"report.output_dir={tmp}/report"])
            print(f"report of results/model_size.duckdb (100 trials, full write-up): {seconds:.1f} s")


if __name__ == "__main__":
    main()
