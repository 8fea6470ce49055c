"""Report stage: the study database -> sections (catalog.py finds them; sections/ holds the engine's
own, claim_tests.py its claim tests) -> a Quarto project (writer.py) -> HTML + PDF (render.py).
study_report.py builds a study's report; the sweep report and its sections are beside the sweep
(engine/sweep/report.py, engine/sweep/sections.py), built from the same parts."""
