"""Report stage: the study database -> sections (catalog.py, builtin.py, judge_validity.py,
sweep_sections.py) -> a Quarto project (writer.py) -> HTML + PDF (render.py). study_report.py builds
a study's report; the sweep report is built by engine/sweep/report.py from the same parts."""
