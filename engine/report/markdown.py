"""Markdown building blocks. Any text that did not come from this project (model replies, and
anything read back from the database) goes through `escape` or `code_block`, so it renders as
text in HTML and PDF and can never inject markup, script or typst code. Text a model wrote goes
through `model_text` first: the one place that caps how much of a reply the report shows and makes
invisible control and bidi characters visible."""

from __future__ import annotations

import json
import re
import secrets
from itertools import chain
from typing import Any, Iterable, Sequence

from engine.spec.schema import BASE_MODEL_MARK, BASE_MODEL_NOTE

_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$@~^&:;\"'=/%,?])")

# The most of one model reply a report shows (sections with a `max_chars` option override it).
# Replies are stored whole in the database; a longer one is cut and ends with "(cut, N chars)".
MODEL_TEXT_LIMIT = 4000

# C0 controls except tab, newline and CR; DEL and the C1 controls; the Unicode bidi marks,
# embeddings, overrides and isolates; lone surrogates (no file can hold them) and the noncharacters
# U+FFFE and U+FFFF. Invisible or reordering in HTML and PDF (and some break the typst or HTML
# output, or the file), so each is shown as an escape a reader can see.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff\ufffe\uffff]")


def visible(char: str) -> str:
    """A character as an escape a reader can see: '\\x1b', 'U+202E'."""
    code = ord(char)
    return f"\\x{code:02x}" if code < 0xA0 else f"U+{code:04X}"


def neutralise(text: str) -> str:
    """Each control or bidi character replaced by a visible escape: '\\x1b', 'U+202E'."""
    return _UNSAFE.sub(lambda m: visible(m.group()), text)


def model_text(text: object, limit: int = MODEL_TEXT_LIMIT) -> str:
    """Text a model wrote, as the report shows it: control and bidi characters made visible, and at
    most `limit` characters of that; a longer reply is cut and ends with '(cut, N chars)', N being
    the reply's full length. Plain text: pass it on to `escape`, `table` or `code_block`."""
    raw = "" if text is None else str(text)
    out, room, pos = [], limit, 0
    for match in chain(_UNSAFE.finditer(raw), [None]):
        end = match.start() if match else len(raw)
        for piece, divisible in ((raw[pos:end], True), (visible(match.group()) if match else "", False)):
            if len(piece) > room:
                if divisible:  # an escape is never split
                    out.append(piece[:room])
                return "".join(out) + f" (cut, {len(raw)} chars)"
            out.append(piece)
            room -= len(piece)
        if match:
            pos = match.end()
    return "".join(out)


def model_text_note(limit: int = MODEL_TEXT_LIMIT) -> str:
    """The sentence that states the cap, for a section that shows model text (pass it to `escape`)."""
    return (f"Model text is shown up to {limit:,} characters per reply (the database keeps every reply whole); "
            "a longer reply is cut and ends with (cut, N chars), N being its full length. Control and "
            "bidirectional-text characters a model wrote are shown as escapes such as \\x1b or U+202E.")


def one_line(text: object) -> str:
    """Any text as one line of plain text: unsafe characters made visible (`neutralise`), every run
    of whitespace (newlines included) one space. What a chart label or a Markdown line may hold."""
    return " ".join(neutralise(str(text)).split())


def escape(text: object) -> str:
    """Backslash-escape every ASCII punctuation mark (pandoc reads each as a literal character).
    The one escape for any text this project did not write itself: model replies, anything read
    back from the database, and every string a study author writes (title, description, captions,
    claims, display names, factor levels): in the body, in tables and in the front matter."""
    return _PUNCT.sub(r"\\\1", one_line(text))  # a newline would start a new Markdown block


def code_block(text: str, language: str = "") -> str:
    """A fenced block longer than any backtick run inside, so the text cannot close it."""
    text = neutralise(text)
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
    base_model = False
    for row in rows:
        base_model = base_model or any(BASE_MODEL_MARK in str(c) for c in row)
        lines.append("| " + " | ".join(escape(c) for c in row) + " |")
    if base_model:  # a base model's numbers never appear without what they are
        caption = f"{caption} {BASE_MODEL_NOTE}" if caption else BASE_MODEL_NOTE
    if caption:
        lines.append("")
        lines.append(f": {escape(caption)}" + (f" {{#{label}}}" if label else ""))
    return "\n".join(lines)


# Raw HTML blocks the engine writes carry this per-process mark; the sanitize filter shows every
# other raw block as text (filters/sanitize.lua), so a string that missed `escape` still cannot place markup, script or typst.
RAW_TOKEN = secrets.token_hex(16)
RAW_MARK = f"<!-- engine-raw {RAW_TOKEN} -->"


def raw_html_block(html: str) -> str:
    """A pandoc/Quarto raw HTML block of the engine's own markup (never text from elsewhere: JSON in
    it goes through `json_script_text`); the fence is longer than any backtick run that starts a line."""
    runs = [len(line) - len(line.lstrip("`")) for line in html.splitlines()]
    fence = "`" * max(4, max(runs, default=0) + 1)
    return f"{fence}{{=html}}\n{RAW_MARK}\n{html}\n{fence}"


def json_script_text(data: Any) -> str:
    """JSON that can sit inside <script>: '<', '>' and '&' as \\u escapes, so no string can close the
    element or open a comment; JSON.parse reads them back as the same characters."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def bullet_list(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)
