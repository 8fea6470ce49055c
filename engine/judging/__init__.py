"""Judging stage: grade stored responses and gold items with a study's judges (run.py), the
engine's own judge kinds (kinds/), gold sets (gold.py), judge lookup (catalog.py)."""
