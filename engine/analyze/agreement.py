"""Agreement between two labellings of the same items (judge vs gold set, judge vs judge)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import cohens_kappa


@dataclass(frozen=True)
class Agreement:
    n: int
    accuracy: float
    kappa: float
    kappa_low: float
    kappa_high: float
    confusion: pd.DataFrame  # rows: reference labels, columns: other labels


def agreement(reference: list[str], other: list[str], labels: list[str] | None = None) -> Agreement:
    """Raw agreement and Cohen's kappa (with its asymptotic 95% interval) over paired labels."""
    if len(reference) != len(other):
        raise ValueError(f"label lists differ in length: {len(reference)} vs {len(other)}")
    if not reference:
        raise ValueError("no items to compare")
    labels = labels or sorted(set(reference) | set(other))
    confusion = pd.crosstab(pd.Categorical(reference, categories=labels),
                            pd.Categorical(other, categories=labels), dropna=False)
    confusion.index.name, confusion.columns.name = "reference", "other"
    table = confusion.to_numpy(dtype=float)
    n = int(table.sum())
    accuracy = float(np.trace(table) / n)
    expected = float((table.sum(axis=0) * table.sum(axis=1)).sum() / n**2)
    if math.isclose(expected, 1.0):
        # Both labellings use one and the same label: kappa is undefined.
        return Agreement(n, accuracy, math.nan, math.nan, math.nan, confusion)
    result = cohens_kappa(table)
    return Agreement(n, accuracy, float(result.kappa), float(result.kappa_low), float(result.kappa_upp), confusion)
