"""Values from the files an analysis-only study imports (a traces file, Inspect logs): hostile until
checked. Names and labels become table cells, chart labels and file names downstream, and a
parameter count becomes a log-scale axis; so each is checked here, where the error can still name
the file, the row or sample, and the key."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

# Characters no name or label may hold: C0 and C1 controls (NUL aborts the chart converter), lone
# surrogates (a JSON "\ud800" or an undecodable byte; no encoder writes them), line and paragraph separators.
FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
# An item's id may be a prompt's own text, lines and tabs included; the rest is forbidden there too.
FORBIDDEN_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def display_path(path: str | Path) -> str:
    """A file name as it can be printed and stored: bytes that are not UTF-8 (a name written in another
    encoding, which Python keeps as lone surrogates) as backslash escapes, e.g. 'log\\xff.eval'."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def forbidden_character(text: str, pattern: re.Pattern = FORBIDDEN_CHARACTERS) -> str | None:
    """The first character of `text` that `pattern` forbids, as U+XXXX, or None."""
    found = pattern.search(text)
    return f"U+{ord(found[0]):04X}" if found else None


def escaped(text: str, limit: int = 80) -> str:
    """`text` with its control characters and non-ASCII written as escapes, quoted: for an error."""
    return "'" + text[:limit].encode("unicode_escape", "backslashreplace").decode("ascii") + "'"


class NoText(ValueError):
    """Message content with parts but no text part (only an image, audio, reasoning...)."""


def content_text(value: Any) -> Any:
    """Message content given as a list of parts ([{"type": "text", "text": ...}, {"type": "image", ...}],
    as Inspect and OpenAI-style APIs write it; also as JSON text, as a CSV cell holds it) as its text:
    the text parts joined by newlines, as Inspect's ChatMessage.text does. Other parts carry no text
    and are left out; content with no text part at all raises NoText. Any other value is returned
    as it is."""
    parts = value
    if isinstance(value, str):
        stripped = value.strip()
        if not stripped.startswith(("[", "{")) or '"type"' not in stripped:
            return value
        try:
            parts = json.loads(stripped)
        except ValueError:
            return value
    if isinstance(parts, np.ndarray):  # a list column of a Parquet file
        parts = parts.tolist()
    if isinstance(parts, dict):
        parts = [parts]
    if not isinstance(parts, (list, tuple)) or not parts or \
            not all(isinstance(p, dict) and isinstance(p.get("type"), str) for p in parts):
        return value
    texts = [p.get("text") for p in parts if p["type"] == "text"]
    if not texts:
        kinds = ", ".join(sorted({p["type"] for p in parts}))
        raise NoText(f"message content with no text part (only {kinds})")
    if not all(isinstance(t, str) for t in texts):
        return value
    return "\n".join(texts)


def parameter_count(value: Any) -> float | None:
    """A parameter count in billions: a finite real number > 0, given as a number or as text (not a
    boolean, which JSON and Parquet would let pass as 1). None for a missing value (null, empty, NaN);
    ValueError for anything else."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, (bool, np.bool_)):
        raise ValueError("a boolean, not a number")
    if isinstance(value, (int, float, np.integer, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError("not a number") from None
    else:
        raise ValueError(f"not a number (a {type(value).__name__})")
    if not math.isfinite(number) or number <= 0:
        raise ValueError("not a finite number greater than 0")
    return number
