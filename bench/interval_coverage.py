"""Simulated coverage of every interval the report prints, over a wider grid than the tests
(tests/analyze/test_coverage.py, tests/scenarios/jailbreak/test_clustered.py run its hardest corners).

    .venv/bin/python bench/interval_coverage.py [reps]

Seeded; calls the functions the report calls. Prints, per design, the share of printed intervals that
covered the truth, how many were printed, and the Monte Carlo SE; asserts nothing. About a minute at
400 reps on one core.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logit

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from coverage_check import SHAPES, beta_binomial, paired_binary, paired_binary_truth  # noqa: E402

from engine.analyze.metrics import cell_estimate  # noqa: E402
from engine.analyze.paired import paired_difference  # noqa: E402
from engine.kernel.contracts import Metric  # noqa: E402

RATE = Metric("rate", "Rate", "proportion", "SELECT 1", "a rate", percent=True)
MEAN = Metric("score", "Score", "mean", "SELECT 1", "a mean")


def show(what: str, covered: int, printed: int, reps: int) -> None:
    cov = covered / printed if printed else math.nan
    se = math.sqrt(cov * (1 - cov) / printed) if printed else math.nan
    print(f"{what:<60} coverage {cov:6.3f} ± {se:.3f}  printed {printed}/{reps}")


def main(reps: int) -> None:
    rng = np.random.default_rng(2026)
    print("Clustered rates (Korn-Graubard)")
    for clusters in (4, 6, 10, 20, 40):
        for rate, icc in ((0.05, 0.5), (0.2, 0.5), (0.5, 0.2)):
            covered = printed = 0
            for rep in range(reps):
                values, cluster = beta_binomial(rng, clusters, 6, rate, icc)
                est = cell_estimate(RATE, values, rep, "c", cluster)
                if math.isfinite(est.low):
                    printed += 1
                    covered += est.low <= rate <= est.high
            show(f"  {clusters} clusters x 6, rate {rate}, ICC {icc}", covered, printed, reps)
    print("Means over units (studentized bootstrap)")
    for shape, (draw, truth) in SHAPES.items():
        for n in (10, 15, 30):
            covered = printed = 0
            for rep in range(reps):
                est = cell_estimate(MEAN, draw(rng, n).astype(float), rep, "c")
                if math.isfinite(est.low):
                    printed += 1
                    covered += est.low <= truth <= est.high
            show(f"  {shape}, {n} units", covered, printed, reps)
    print("Paired rate differences (MOVER of exact / Korn-Graubard limits)")
    for clusters, size, a, b, sd in ((4, 6, 0.7, 0.4, 1.0), (6, 2, 0.5, 0.5, 1.8), (10, 2, 0.7, 0.4, 1.0),
                                     (12, 2, 0.5, 0.5, 1.0), (20, 3, 0.3, 0.1, 1.0), (10, 1, 0.9, 0.5, 0.0)):
        truth = paired_binary_truth(logit(a), logit(b), sd)
        covered = printed = 0
        for rep in range(reps):
            va, vb, cluster = paired_binary(rng, clusters, size, logit(a), logit(b), sd)
            d = paired_difference(va, vb, cluster, "proportion", rep)
            if math.isfinite(d.low):
                printed += 1
                covered += d.low <= truth <= d.high
        show(f"  {clusters} clusters x {size}, rates {a}/{b}, cluster SD {sd}", covered, printed, reps)


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
