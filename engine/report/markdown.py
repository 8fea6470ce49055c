"""Markdown building blocks. Any text that did not come from this project (model replies, and
anything read back from the database) goes through `escape` or `code_block`, so it renders as
text in HTML and PDF and can never inject markup, script or typst code."""

from __future__ import annotations

import re
from typing import Iterable, Sequence

_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$@~^&:;\"'=/%,?])")


def escape(text: object) -> str:
    """Backslash-escape every ASCII punctuation mark (pandoc reads each as a literal character)."""
    flat = " ".join(str(text).split())  # newlines would start new Markdown blocks
    return _PUNCT.sub(r"\\\1", flat)


def code_block(text: str, language: str = "") -> str:
    """A fenced block longer than any backtick run inside, so the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], caption: str | None = None,
          label: str | None = None, align: Sequence[str] | None = None,
          widths: Sequence[int] | None = None) -> str:
    """A pipe table; cells are escaped. `label` makes it a numbered, cross-referenceable table.
    `widths` (relative) fixes column widths: pandoc reads them from the dashes of a separator line
    longer than its column limit."""
    headers = [escape(h) for h in headers]
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    dashes = [max(3, round(w * 100 / sum(widths))) for w in widths] if widths else [3] * len(headers)
    marks = {"l": lambda n: ":" + "-" * n, "r": lambda n: "-" * n + ":", "c": lambda n: ":" + "-" * n + ":"}
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks[a](n) for a, n in zip(align, dashes)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(escape(c) for c in row) + " |")
    if caption:
        lines.append("")
        lines.append(f": {escape(caption)}" + (f" {{#{label}}}" if label else ""))
    return "\n".join(lines)


def bullet_list(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)
