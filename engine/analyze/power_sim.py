"""Simulated studies of one comparison or one cell, analysed by the report's own code: the check of
every precision and power statement (engine/analyze/report_power.py) by simulating the design it is
about, seeded, with its Monte Carlo error and draw count.

Rates: each cluster of each arm draws its rate from a Beta with the arm's mean and intra-cluster
correlation icc (ICC = 1 / (a + b + 1)), its units are Bernoulli draws of that rate; arms are
independent (no pairing gain) unless rho is given for a layout of one pair per cluster (the joint
0/1 probabilities of `paired_cells`). Means: normal values with a cluster effect of variance
icc * sd^2, the two arms' cluster effects and unit noise correlated by rho when paired."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import pandas as pd

from engine.analyze.report_power import REPORT, Layout, Procedure
from engine.analyze.stats import unit_estimate
from engine.kernel.contracts import Metric
from engine.plan.power import paired_cells

Kind = Literal["proportion", "mean"]


@dataclass(frozen=True)
class Simulated:
    """A share (or a mean) over simulated studies, with its Monte Carlo standard error."""

    value: float
    se: float
    draws: int
    quantile_90: float = math.nan

    def __str__(self) -> str:
        return f"{self.value:.4f} ± {self.se:.4f} (MC SE, {self.draws} draws)"


def _rates(rng: np.random.Generator, rate: float, clusters: int, per: int, icc: float) -> np.ndarray:
    """clusters x per 0/1 outcomes."""
    if icc <= 0:
        cluster_rates = np.full(clusters, rate)
    elif icc >= 1:
        cluster_rates = (rng.random(clusters) < rate).astype(float)
    else:
        scale = 1 / icc - 1
        cluster_rates = rng.beta(rate * scale, (1 - rate) * scale, clusters) if 0 < rate < 1 else np.full(clusters, rate)
    return (rng.random((clusters, per)) < cluster_rates[:, None]).astype(float)


def _correlated(rng: np.random.Generator, shape: tuple[int, ...], rho: float) -> tuple[np.ndarray, np.ndarray]:
    shared = rng.standard_normal(shape)
    return (math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.standard_normal(shape),
            math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.standard_normal(shape))


def simulate_arms(rng: np.random.Generator, layout: Layout, kind: Kind, first: float, second: float, *,
                  sd: float = 1.0, icc: float = 0.0, rho: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One simulated study: the two arms as the report's `compare` reads them (key, value, cluster).
    `first`/`second` are the arms' rates (proportions) or means."""
    k = layout.clusters
    per = layout.n // k
    if per * k != layout.n:
        raise ValueError("a simulated layout has clusters of equal size")
    if kind == "proportion":
        if rho and layout.paired:
            if layout.clustered:
                raise NotImplementedError("paired 0/1 outcomes with a pairing correlation, one pair per cluster only")
            cells = rng.choice(4, size=layout.n, p=np.array(paired_cells(first, second, rho)) / sum(
                paired_cells(first, second, rho)))
            a, b = (cells <= 1).astype(float), np.isin(cells, (0, 2)).astype(float)
        else:
            a, b = _rates(rng, first, k, per, icc).ravel(), _rates(rng, second, k, per, icc).ravel()
    else:
        between = rho if layout.paired else 0.0
        ua, ub = _correlated(rng, (k, 1), between)
        ea, eb = _correlated(rng, (k, per), between)
        a = (first + sd * (math.sqrt(icc) * ua + math.sqrt(1 - icc) * ea)).ravel()
        b = (second + sd * (math.sqrt(icc) * ub + math.sqrt(1 - icc) * eb)).ravel()
    (key_a, cluster_a), (key_b, cluster_b) = _labels(k, per, layout.paired)
    return (pd.DataFrame({"key": key_a, "value": a, "cluster": cluster_a}),
            pd.DataFrame({"key": key_b, "value": b, "cluster": cluster_b}))


@lru_cache(maxsize=32)
def _labels(k: int, per: int, paired: bool) -> tuple[tuple[pd.Series, pd.Series], tuple[pd.Series, pd.Series]]:
    """(key, cluster) labels of each arm's units: shared keys when paired, none shared otherwise. Kept
    as columns, so a simulated study does not convert them to pandas strings again."""
    cluster = np.repeat(np.arange(k), per).astype(str)
    keys = np.char.add(np.char.add(cluster, "|"), np.tile(np.arange(per), k).astype(str))
    if paired:
        return (pd.Series(keys), pd.Series(cluster)), (pd.Series(keys), pd.Series(cluster))
    return ((pd.Series(np.char.add("a", keys)), pd.Series(np.char.add("a", cluster))),
            (pd.Series(np.char.add("b", keys)), pd.Series(np.char.add("b", cluster))))


def _share(hits: list[bool]) -> Simulated:
    p = float(np.mean(hits))
    return Simulated(p, math.sqrt(max(p * (1 - p), 1e-12) / len(hits)), len(hits))


def simulate_power(layout: Layout, kind: Kind, first: float, second: float, *, sd: float = 1.0, icc: float = 0.0,
                   rho: float = 0.0, procedure: Procedure = REPORT, draws: int = 1000, seed: int = 0) -> Simulated:
    """Share of simulated studies in which the report's 95% interval of first - second excludes 0 (no
    interval: not detected)."""
    rng = np.random.default_rng(seed)
    metric = Metric("simulated", "simulated", kind, "", "")
    hits = []
    for draw in range(draws):
        a, b = simulate_arms(rng, layout, kind, first, second, sd=sd, icc=icc, rho=rho)
        d = procedure.difference(a, b, metric, draw)
        hits.append(bool(not math.isnan(d.low) and (d.low > 0 or d.high < 0)))
    return _share(hits)


def cell_interval(kind: Kind, values: np.ndarray, clusters: np.ndarray, seed: int) -> tuple[float, float]:
    """A cell's 95% interval as engine/analyze/metrics.cell_estimates computes it (`unit_estimate`): over
    the units, or over clusters where one holds several units."""
    recurring = len(np.unique(clusters)) < len(values)
    est = unit_estimate(kind, values, seed, clusters if recurring else None)
    return est.low, est.high


def simulate_halfwidth(n: int, clusters: int, kind: Kind, value: float, *, sd: float = 1.0, icc: float = 0.0,
                       draws: int = 500, seed: int = 0) -> Simulated:
    """Mean (and 90th percentile) half-width of a cell's interval over simulated studies of n units in
    `clusters` clusters with rate (or mean) `value`."""
    rng = np.random.default_rng(seed)
    layout = Layout(n, clusters, paired=True)
    widths = []
    for draw in range(draws):
        a, _ = simulate_arms(rng, layout, kind, value, value, sd=sd, icc=icc)
        low, high = cell_interval(kind, a["value"].to_numpy(), a["cluster"].to_numpy(), draw)
        widths.append((high - low) / 2)
    w = np.asarray(widths)
    return Simulated(float(w.mean()), float(w.std(ddof=1) / math.sqrt(draws)), draws, float(np.quantile(w, 0.9)))
