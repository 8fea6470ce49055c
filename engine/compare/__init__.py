"""Compare two finished studies, two spec versions of one study, or one design on two versions of a
model: B - A per matched cell and metric with paired intervals where trials share seeds and items,
what differs between the specs, and a comparison report (HTML and PDF)."""

from engine.compare.comparison import Comparison, compare_studies

__all__ = ["Comparison", "compare_studies"]
