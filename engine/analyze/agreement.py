"""Agreement between two labellings of the same items (judge vs gold set, judge vs judge): Cohen's
kappa over all labels, and the binary validity (sensitivity, specificity, Youden's J) of the one
decision a rate makes, a label in the rate's positive set or not."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import confint_proportions_2indep

from engine.analyze.stats import Estimate, wilson


@dataclass(frozen=True)
class Agreement:
    n: int
    accuracy: float
    kappa: float
    kappa_low: float
    kappa_high: float
    confusion: pd.DataFrame  # rows: reference labels, columns: other labels


def agreement(reference: list[str], other: list[str], labels: list[str] | None = None) -> Agreement:
    """Raw agreement and Cohen's kappa (with its asymptotic 95% interval) over paired labels.

    The interval is statsmodels' normal approximation, kappa +- 1.96 SE, which on small or lopsided
    tables can reach past kappa's range (e.g. [0.44, 1.16] for 9 of 10 items agreeing): its ends
    are clipped to [-1, 1], since no agreement is better than perfect or worse than -1."""
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
    low, high = (float(np.clip(x, -1.0, 1.0)) for x in (result.kappa_low, result.kappa_upp))
    return Agreement(n, accuracy, float(result.kappa), low, high, confusion)


@dataclass(frozen=True)
class BinaryValidity:
    """One labelling (a judge) against a reference (the gold set), both collapsed to the decision a
    rate makes: is the label one of `positive` (e.g. COMPLIANCE or PARTIAL for broad attack success)?"""

    positive: tuple[str, ...]
    n_positive: int        # reference items with a positive label
    n_negative: int        # reference items with any other label
    true_positive: int     # positives the judge also labels positive
    false_positive: int    # negatives the judge labels positive
    sensitivity: Estimate  # true_positive / n_positive, Wilson 95% interval
    specificity: Estimate  # 1 - false_positive / n_negative, Wilson 95% interval
    youden: Estimate       # sensitivity + specificity - 1, Newcombe's hybrid score 95% interval


def youden(true_positive: int, n_positive: int, false_positive: int, n_negative: int,
           alpha: float = 0.05) -> Estimate:
    """Youden's J = sensitivity + specificity - 1 (Youden 1950, "Index for rating diagnostic tests",
    Cancer 3:32-35), with its interval. J is the difference of two independent proportions, the true
    positive rate among reference positives minus the false positive rate among reference negatives,
    so its interval is Newcombe's hybrid score interval for a difference of independent proportions
    (Newcombe 1998, Stat Med 17:873-890, method 10), which combines the two Wilson intervals and stays
    within [-1, 1]: statsmodels' confint_proportions_2indep(method="newcomb"). NaN when either
    group is empty (J is then undefined). N is both groups together."""
    n = n_positive + n_negative
    if n_positive == 0 or n_negative == 0:
        return Estimate(math.nan, math.nan, math.nan, n)
    low, high = confint_proportions_2indep(true_positive, n_positive, false_positive, n_negative,
                                           method="newcomb", compare="diff", alpha=alpha)
    value = true_positive / n_positive - false_positive / n_negative
    return Estimate(value, float(low), float(high), n)


def binary_validity(reference: list[str], other: list[str], positive: Iterable[str]) -> BinaryValidity:
    """Sensitivity, specificity (Wilson intervals) and Youden's J (Newcombe interval) of `other`
    against `reference` on the binary decision 'label in `positive`'. Every label outside `positive`
    is a negative, on both sides."""
    if len(reference) != len(other):
        raise ValueError(f"label lists differ in length: {len(reference)} vs {len(other)}")
    positive = tuple(sorted(set(positive)))
    if not positive:
        raise ValueError("no positive labels")
    ref = np.isin(np.asarray(reference, dtype=object), positive)
    hit = np.isin(np.asarray(other, dtype=object), positive)
    n_pos, n_neg = int(ref.sum()), int((~ref).sum())
    tp, fp = int((ref & hit).sum()), int((~ref & hit).sum())
    return BinaryValidity(positive, n_pos, n_neg, tp, fp, wilson(tp, n_pos), wilson(n_neg - fp, n_neg),
                          youden(tp, n_pos, fp, n_neg))
