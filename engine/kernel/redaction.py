"""Keys never reach the database, a log or a report: every string the engine stores or prints
about a call passes through `redact`.

What is redacted: the value of every environment variable a model entry names in `api_key_env`,
of the variables providers read their keys from (names ending in _API_KEY, _TOKEN, _SECRET...),
and anything shaped like a key (`sk-...`, `Bearer ...`) even when we never saw it.
"""

from __future__ import annotations

import os
import re
from typing import Iterable

MASK = "[REDACTED]"
_KEY_NAME = re.compile(r"(API_KEY|APIKEY|_KEY|_TOKEN|_SECRET|PASSWORD)$", re.IGNORECASE)
# Shapes of keys that may come back from a provider without being ours (a proxy's, a canary).
_KEY_SHAPES = re.compile(r"(?:\bsk-[A-Za-z0-9_\-]{8,}|\bBearer\s+[A-Za-z0-9._\-]{8,}|\bhf_[A-Za-z0-9]{16,}"
                         r"|\bAIza[A-Za-z0-9_\-]{20,}|\bxox[baprs]-[A-Za-z0-9\-]{10,})")
_MIN_SECRET = 6  # shorter values would blank ordinary words


class Redactor:
    def __init__(self, key_env_names: Iterable[str] = ()):
        names = set(key_env_names) | {n for n in os.environ if _KEY_NAME.search(n)}
        values = {os.environ.get(n, "") for n in names}
        # Longest first, so a key that contains another is masked whole.
        self.secrets = sorted((v for v in values if len(v) >= _MIN_SECRET), key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Mask this value too (a key read from a variable with an unusual name)."""
        if len(secret) >= _MIN_SECRET and secret not in self.secrets:
            self.secrets = sorted([*self.secrets, secret], key=len, reverse=True)

    def __call__(self, text: object) -> str:
        if not isinstance(text, str):  # a number or a map a provider sent where text belongs
            text = str(text)
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if "sk-" in text or "Bearer" in text or "hf_" in text or "AIza" in text or "xox" in text:
            text = _KEY_SHAPES.sub(MASK, text)
        return text


_default: Redactor | None = None


def redactor() -> Redactor:
    """The process's redactor (built on first use; `configure` adds a study's key variables)."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default


def configure(key_env_names: Iterable[str]) -> Redactor:
    global _default
    _default = Redactor(key_env_names)
    return _default


def redact(text: object) -> str | None:
    """`text` with every key masked; anything that is not a string is masked as its str()."""
    return None if text is None else redactor()(text)
