"""Judging stage: grade stored responses and gold items with a study's judges (run.py), the
engine's own judges (llm.py, refusal_heuristic.py), gold sets (gold.py), judge lookup (catalog.py)."""
