"""Primary and exploratory model contrasts. The primary family is what a study names before the data:
the pairs its spec lists, or, when it lists none, each model against a reference (the study's first
model unless it names one; the many-to-one design of treatment contrasts, k - 1 comparisons for k
models). Holm's correction runs across the primary family only. Every other pair is exploratory: a
family of its own with its own Holm correction, compared pooled over the conditions when there are
several (one row per pair; the per-condition breakdown is for the primary pairs), shown apart.

Each pair is computed by `contrasts_of` on its two models' units, the named model first, so a row is
A − B as named and reads exactly what a table of every pair would (same units, same derived seed).
A pure function of a units frame (`keyed_units`), as the calibration needs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import pandas as pd

from engine.analyze.paired import Cluster, Contrast, PairedContrasts, contrasts_of
from engine.analyze.paired_stats import holm
from engine.kernel.contracts import Metric

Pair = tuple[str, str]


@dataclass(frozen=True)
class ContrastFamilies:
    """The primary rows (Holm across them), the exploratory rows (Holm across them, apart), how the
    primary pairs were chosen and what the units were (`design`, whose `contrasts` are both families)."""

    design: PairedContrasts
    models: list[str]                 # the models of the units, in their order
    primary: list[Contrast]
    exploratory: list[Contrast]
    pairs: list[Pair]                 # the primary pairs, A − B, in the order asked
    rule: Literal["named", "reference"]
    reference: str | None             # the reference model of the "reference" rule
    absent: list[Pair]                # primary pairs with a model the units lack (no row)
    other_pairs: int                  # the pairs not in the primary family (compared when exploratory)
    exploratory_pooled: bool          # exploratory rows are pooled over the conditions


def primary_pairs(models: list[str], named: list[Pair] | None, reference: str | None) -> tuple[list[Pair], str | None]:
    """The primary pairs: the named ones as given, else each model minus the reference (`reference`,
    or the first of `models`, the study's order), with the reference itself left out."""
    if named:
        return list(dict.fromkeys((str(a), str(b)) for a, b in named)), None
    if not models:
        return [], reference
    ref = reference if reference is not None else models[0]
    return [(m, ref) for m in models if m != ref], ref


def _with_holm(rows: list[Contrast]) -> list[Contrast]:
    return [replace(c, holm_p=p) for c, p in zip(rows, holm([c.difference.p for c in rows]))]


def pair_contrasts(units: pd.DataFrame, metric: Metric, pair: Pair, model_factors: tuple[str, ...], cluster: Cluster,
                   item_name: str, seed: int, by_condition: bool, pooled: bool) -> list[Contrast]:
    """A − B of one pair within each condition and/or pooled, as `contrasts_of` gives them (its Holm
    p is over this pair's rows only: the caller corrects over its family)."""
    a, b = pair
    subset = pd.concat([units[units["model"] == a], units[units["model"] == b]])
    if subset.empty or a == b:
        return []
    return contrasts_of(subset, metric, model_factors, cluster, item_name, seed, by_condition, pooled).contrasts


def contrast_families(units: pd.DataFrame, metric: Metric, model_factors: tuple[str, ...], cluster: Cluster,
                      item_name: str, seed: int = 0, *, named: list[Pair] | None = None,
                      reference: str | None = None, by_condition: bool = True, pooled: bool = True,
                      exploratory: bool = True) -> ContrastFamilies:
    """The primary and (with `exploratory`) exploratory contrasts of `units` (as `keyed_units` makes
    them), each family Holm-corrected on its own."""
    models = list(dict.fromkeys(units["model"]))
    conditions = list(dict.fromkeys(units["condition"]))
    pairs, ref = primary_pairs(models, named, reference)
    present = set(models)
    absent = [p for p in pairs if p[0] not in present or p[1] not in present]
    primary: list[Contrast] = []
    for pair in pairs:
        if pair not in absent:
            primary += pair_contrasts(units, metric, pair, model_factors, cluster, item_name, seed, by_condition,
                                      pooled)
    chosen = {frozenset(p) for p in pairs}
    others = [(a, b) for i, a in enumerate(models) for b in models[i + 1:] if frozenset((a, b)) not in chosen]
    pool_only = pooled and len(conditions) > 1
    rest: list[Contrast] = []
    if exploratory:
        for pair in others:
            rest += pair_contrasts(units, metric, pair, model_factors, cluster, item_name, seed,
                                   by_condition and not pool_only, pooled)
    primary, rest = _with_holm(primary), _with_holm(rest)
    design = PairedContrasts(metric, primary + rest, model_factors, conditions, cluster, item_name,
                             int(units["cluster"].nunique()), bool((units["item"] != "").any()))
    return ContrastFamilies(design, models, primary, rest, pairs, "named" if named else "reference", ref, absent,
                            len(others), pool_only)
