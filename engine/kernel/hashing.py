"""Content hashes: the same content always gives the same id, across runs and machines."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(obj: Any, length: int = 20) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def content_hashes(fixed: dict[str, Any], key: str, values: Iterable[Any], length: int = 20) -> list[str]:
    """`[content_hash({**fixed, key: v}, length) for v in values]`, hashing the same bytes, with
    `fixed` serialised once: the canonical JSON of the whole object is the sorted members of `fixed`
    with `key`'s member in its sorted place, so only that member is serialised per value."""
    values = list(values)
    if key in fixed or not all(isinstance(k, str) for k in (*fixed, key)):
        # Keys json.dumps would coerce to strings (and sort as non-strings): the plain way.
        return [content_hash({**fixed, key: v}, length) for v in values]
    names = sorted([*fixed, key])
    at = names.index(key)

    def members(names_: list[str]) -> str:
        return ",".join(f"{canonical_json(n)}:{canonical_json(fixed[n])}" for n in names_)

    before, after = members(names[:at]), members(names[at + 1:])
    head = hashlib.sha256(("{" + before + ("," if before else "") + canonical_json(key) + ":").encode())
    tail = (("," + after) if after else "") + "}"
    out = []
    for value in values:
        h = head.copy()
        # A plain int (a seed) is written as its repr by json.dumps; anything else goes through it.
        h.update(((str(value) if type(value) is int else canonical_json(value)) + tail).encode())
        out.append(h.hexdigest()[:length])
    return out


def derived_seed(*parts: Any) -> int:
    """A 31-bit seed derived from parts, for per-call and per-purpose random streams."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
