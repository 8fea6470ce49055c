"""Content hashes: the same content always gives the same id, across runs and machines."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(obj: Any, length: int = 20) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def derived_seed(*parts: Any) -> int:
    """A 31-bit seed derived from parts, for per-call and per-purpose random streams."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
