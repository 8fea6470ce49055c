"""Reading JSON replies from models: shared by every scenario and judge that asks for JSON."""

from __future__ import annotations

import json
import re
from typing import Any

_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def load_json_object(text: str | None) -> tuple[dict[str, Any] | None, str]:
    """A JSON object and 'ok', or 'repaired' when it had to be cut out of other text or had raw
    control characters (newlines) inside strings, or (None, 'failed')."""
    try:
        data = json.loads(text or "")
        status = "ok"
    except (json.JSONDecodeError, TypeError):
        match = _OBJECT.search(text or "")
        if not match:
            return None, "failed"
        try:
            data = json.loads(match.group(0), strict=False)
        except json.JSONDecodeError:
            return None, "failed"
        status = "repaired"
    return (data, status) if isinstance(data, dict) else (None, "failed")
