"""Gold sets: responses labelled by hand, shipped with the project, to measure each judge's
accuracy and agreement (Cohen's kappa). A gold item is judged like any stored response."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.kernel.errors import SpecError
from engine.kernel.registry import REGISTRY
from engine.kernel.records import JudgeSubject
from engine.spec.schema import Rubric

GOLD_PREFIX = "gold/"


@dataclass(frozen=True)
class GoldItem:
    gold_id: str
    request: str
    response: str
    label: str


def gold_dirs() -> list[Path]:
    """The scenarios' gold-set folders (each scenario ships the gold sets of its rubrics)."""
    return [e.obj.gold_dir for e in REGISTRY.entries("scenario") if e.obj.gold_dir is not None]


def gold_path(rubric: Rubric) -> Path | None:
    """The gold-set file a rubric names, in whichever scenario's gold folder holds it."""
    if not rubric.gold:
        return None
    found = [folder / rubric.gold for folder in gold_dirs() if (folder / rubric.gold).is_file()]
    return found[0] if found else Path(rubric.gold)


def load_gold(rubric: Rubric) -> list[GoldItem]:
    path = gold_path(rubric)
    if path is None:
        return []
    if not path.exists():
        known = sorted(p.name for folder in gold_dirs() for p in folder.glob("*.jsonl"))
        raise SpecError(f"gold set {rubric.gold} is in no scenario's gold folder (known: {', '.join(known)})",
                        key="rubric.gold")
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
