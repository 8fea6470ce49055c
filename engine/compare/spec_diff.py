"""What differs between two resolved specs, key by key (dotted keys; a list is one value), each key
put in the class that says what its change can do: decide the trials, decide the grading, only
name or place the study (it changes the spec hash, not a result), or nothing at all (how results are
obtained and shown: the report and executor blocks and the planning assumptions, left out of the
spec hash and out of the listing). Values come from specs with their secrets masked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from engine.spec.load import PLANNING_KEYS

Kind = Literal["trials", "grading", "identity", "cosmetic"]
KIND_TITLES: dict[str, str] = {
    "trials": "Keys that decide the trials (scenario, design, the models played, generation)",
    "grading": "Keys that decide the grading (judges)",
    "identity": "Keys that name or place the study (they change the spec hash, not a result)",
}
# Parts of a spec that only say how results are obtained or shown (left out of the spec hash).
COSMETIC_PARTS = ("report", "executor")
TRIAL_PARTS = ("scenario", "design", "generation")
GRADING_PARTS = ("judges", "primary_judge", "judge_set")
ABSENT = "(absent)"
_MISSING = object()
VALUE_CHARS = 80


@dataclass(frozen=True)
class KeyChange:
    key: str
    a: str  # the value shown, or ABSENT
    b: str
    kind: Kind


def differing(a: Any, b: Any, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted key, A's value, B's value) for every value that differs: mappings are compared key by
    key, a key only one side has is one change (its whole value), a list is one value."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key in a and key in b:
                yield from differing(a[key], b[key], path)
            else:
                yield path, a.get(key, _MISSING), b.get(key, _MISSING)
    elif a != b or type(a) is not type(b):
        yield prefix, a, b


def shown(value: Any) -> str:
    """A value on one line, at most VALUE_CHARS characters (a longer one says its length)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= VALUE_CHARS else f"{text[:VALUE_CHARS - 1]}… ({len(text)} chars)"


def kind_of(key: str, played_models: set[str]) -> Kind:
    parts = key.split(".")
    head = parts[0]
    if head in COSMETIC_PARTS or (head == "design" and len(parts) > 1 and parts[1] in PLANNING_KEYS):
        return "cosmetic"
    if head in TRIAL_PARTS or (head == "models" and len(parts) > 1 and parts[1] in played_models):
        return "trials"
    if head in GRADING_PARTS:
        return "grading"
    return "identity"


def spec_diff(a: dict[str, Any], b: dict[str, Any], played_models: set[str]) -> list[KeyChange]:
    """Every key whose value differs (or that one spec lacks), in A's key order then B's new keys.
    `played_models`: model keys that play in a cell of either spec (another model entry changing
    changes no trial)."""
    return [KeyChange(key, ABSENT if va is _MISSING else shown(va), ABSENT if vb is _MISSING else shown(vb),
                      kind_of(key, played_models)) for key, va, vb in differing(a, b)]
