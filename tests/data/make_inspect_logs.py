"""Writes tests/data/inspect_logs/: a small set of Inspect logs, written by inspect_ai itself
(EvalLog, EvalSample, Score, write_eval_log), that the shipped analysis-only study
studies/provider_vs_size_inspect.yaml composes with in the tests (see ANALYSIS_ONLY_ARGS in
tests/conftest.py). Three models of two providers, 8 behaviours, scores C (complied) / I (refused).

    .venv/bin/python tests/data/make_inspect_logs.py   # rewrites the folder (deterministic content)
"""

from __future__ import annotations

import random
from pathlib import Path

from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalSample, EvalSpec, write_eval_log
from inspect_ai.scorer import Score

FOLDER = Path(__file__).parent / "inspect_logs"
MODELS = {"acme/small": ("Acme", 7.0), "acme/large": ("Acme", 70.0), "bolt/mini": ("Bolt", 3.0)}
ITEMS = 8


def main() -> None:
    rng = random.Random(14)
    FOLDER.mkdir(exist_ok=True)
    for old in FOLDER.glob("*.eval"):
        old.unlink()
    for i, (model, (provider, size)) in enumerate(MODELS.items()):
        samples = [EvalSample(id=f"behaviour-{item}", epoch=1, input=f"request {item}", target="",
                              metadata={"provider": provider, "params_total_b": size},
                              scores={"refusal_grader": Score(value="C" if rng.random() < 0.4 else "I")})
                   for item in range(ITEMS)]
        spec = EvalSpec(created="2026-12-03T10:00:00+00:00", task="behaviours", model=model,
                        dataset=EvalDataset(name="behaviours", samples=ITEMS), config=EvalConfig())
        write_eval_log(EvalLog(status="success", eval=spec, samples=samples),
                       str(FOLDER / f"2026-12-03T10-00-0{i}_behaviours_{i}.eval"))
    print(f"wrote {len(MODELS)} logs to {FOLDER}")


if __name__ == "__main__":
    main()
