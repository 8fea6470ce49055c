"""Gold sets: responses labelled by hand, shipped with the project, to measure each judge's
accuracy and agreement (Cohen's kappa). A gold item is judged like any stored response."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SpecError
from engine.scenarios.base import JudgeSubject
from engine.spec.schema import Rubric

GOLD_DIR = Path(__file__).parent / "gold"
GOLD_PREFIX = "gold/"


@dataclass(frozen=True)
class GoldItem:
    gold_id: str
    request: str
    response: str
    label: str


def gold_path(rubric: Rubric) -> Path | None:
    return GOLD_DIR / rubric.gold if rubric.gold else None


def load_gold(rubric: Rubric) -> list[GoldItem]:
    path = gold_path(rubric)
    if path is None:
        return []
    if not path.exists():
        raise SpecError(f"gold set {path} does not exist (known: "
                        f"{', '.join(p.name for p in GOLD_DIR.glob('*.jsonl'))})", key="rubric.gold")
    items = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            item = GoldItem(str(row["gold_id"]), row["request"], row["response"], row["label"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SpecError(f"{path}: line {number}: not a gold item ({exc})", key="rubric.gold") from None
        if item.label not in rubric.labels:
            raise SpecError(f"{path}: line {number}: label '{item.label}' is not in rubric {rubric.key}",
                            key="rubric.gold")
        items.append(item)
    return items


def gold_subject_id(rubric: Rubric, gold_id: str) -> str:
    return f"{GOLD_PREFIX}{rubric.key}/{gold_id}"


def gold_subjects(rubric: Rubric) -> list[JudgeSubject]:
    return [JudgeSubject(gold_subject_id(rubric, g.gold_id), g.request, g.response) for g in load_gold(rubric)]
