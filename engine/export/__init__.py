"""Export stage: a study database -> other tools' formats. Inspect logs (inspect_log.py) from the
trial records an export reads (trials.py)."""

from engine.export.inspect_log import Export, export_inspect

__all__ = ["Export", "export_inspect"]
