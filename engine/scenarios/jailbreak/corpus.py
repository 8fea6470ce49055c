"""Prompt corpora for the jailbreak study: the corpus the project ships, and importers for public
behaviour sets (JailbreakBench, HarmBench, StrongREJECT, AdvBench) read from a file the user supplies.

The project ships no third-party data; the importers only read the public datasets' column layouts.
Every importer goes through `_read_rows` and `_build`, so errors look the same whatever the format.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

BUILTIN_PATH = Path(__file__).parent / "data" / "corpus_v1.jsonl"
FORMATS = ("builtin", "jailbreakbench", "harmbench", "strongreject", "advbench", "jsonl")
# Suffixes read as JSON lines (one object per line); anything else is read as CSV.
JSON_LINES_SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True)
class Behaviour:
    prompt_id: str  # unique and stable within a corpus, e.g. 'cyber-03', 'jbb-012'
    text: str  # the request itself; never an answer
    category: str  # harm category; benign controls use 'benign'
    source: str  # 'llm-study-engine corpus v1', 'JailbreakBench', ... or the user's file name
    benign: bool  # a control the model SHOULD answer (measures false refusals)


class CorpusError(Exception):
    """A corpus file cannot be used. The message names the file and, when known, the row and column."""

    def __init__(self, message: str, *, file: str, where: str | None = None):
        self.message = message
        self.file = file
        self.where = where
        super().__init__(str(self))

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.where, self.message) if part)


@dataclass(frozen=True)
class _Row:
    """One record of a corpus file, whatever its format, with what an error needs to point at it."""

    file: str
    number: int  # 1-based among data rows; the public sets' prompt ids are built from it
    where: str  # 'row 3 (line 4)' for CSV, 'line 3' for JSON lines
    field_word: str  # 'column' for CSV, 'key' for JSON
    values: dict[str, object]

    def error(self, message: str, key: str | None = None) -> CorpusError:
        where = f"{self.where}, {self.field_word} '{key}'" if key else self.where
        return CorpusError(message, file=self.file, where=where)

    def get(self, key: str, *, required: bool = True) -> str:
        value = self.values.get(key)
        if value is not None and not isinstance(value, str):
            raise self.error(f"expected a string, found {type(value).__name__}", key)
        text = (value or "").strip()
        if required and not text:
            raise self.error("empty value", key)
        return text


def _missing(required: tuple[str, ...], found: list[str], word: str) -> str | None:
    absent = [key for key in required if key not in found]
    return f"missing required {word}s {absent} (expected {list(required)}; found {found})" if absent else None


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        header: list[str] | None = None
        number = 0
        while True:
            line = reader.line_num + 1  # a quoted field may span lines: report where the record starts
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise CorpusError(f"not valid CSV: {exc}", file=str(path), where=f"line {reader.line_num}") from exc
            if not cells:
                continue
            if header is None:
                header = [cell.strip() for cell in cells]
                if problem := _missing(required, header, "column"):
                    raise CorpusError(problem, file=str(path), where=f"line {line} (header)")
                continue
            number += 1
            where = f"row {number} (line {line})"
            if len(cells) != len(header):
                raise CorpusError(f"{len(cells)} values but the header has {len(header)} columns "
                                  "(unquoted comma?)", file=str(path), where=where)
            yield _Row(str(path), number, where, "column", dict(zip(header, cells)))


def _json_rows(path: Path, required: tuple[str, ...]) -> Iterator[_Row]:
    with path.open(encoding="utf-8-sig") as handle:
        number = 0
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"line {line}"
            try:
                values = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"not valid JSON: {exc.msg} (column {exc.colno})",
                                  file=str(path), where=where) from exc
            if not isinstance(values, dict):
                raise CorpusError("expected one JSON object per line (JSON lines)", file=str(path), where=where)
            if problem := _missing(required, list(values), "key"):
                raise CorpusError(problem, file=str(path), where=where)
            number += 1
            yield _Row(str(path), number, where, "key", values)


def _read_rows(path: str | Path, required: tuple[str, ...], *, json_lines: bool | None = None) -> Iterator[_Row]:
    """Rows of a CSV or JSON-lines file that has the `required` columns; by default the suffix decides."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError("file not found", file=str(path))
    if json_lines is None:
        json_lines = path.suffix.lower() in JSON_LINES_SUFFIXES
    try:
        yield from (_json_rows if json_lines else _csv_rows)(path, required)
    except UnicodeDecodeError as exc:
        raise CorpusError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=str(path)) from exc


def _build(rows: Iterator[_Row], make: Callable[[_Row], Behaviour], file: str | Path) -> list[Behaviour]:
    """Apply `make` to every row, rejecting an empty file and duplicate prompt ids."""
    behaviours: list[Behaviour] = []
    first_seen: dict[str, str] = {}
    for row in rows:
        behaviour = make(row)
        if behaviour.prompt_id in first_seen:
            raise row.error(f"duplicate prompt_id '{behaviour.prompt_id}' (first at {first_seen[behaviour.prompt_id]})")
        first_seen[behaviour.prompt_id] = row.where
        behaviours.append(behaviour)
    if not behaviours:
        raise CorpusError("empty file: no rows", file=str(file))
    return behaviours


def _with_origin(name: str, origin: str) -> str:
    # Public sets often collect behaviours from earlier sets; keep that provenance.
    return f"{name} ({origin})" if origin else name


def _own_row(row: _Row) -> Behaviour:
    benign = row.values.get("benign", False)
    if not isinstance(benign, bool):
        raise row.error("must be true or false", "benign")
    return Behaviour(prompt_id=row.get("prompt_id"), text=row.get("text"), category=row.get("category"),
                     source=row.get("source", required=False) or Path(row.file).name, benign=benign)


def _jailbreakbench_row(row: _Row) -> Behaviour:
    return Behaviour(prompt_id=f"jbb-{row.number:03d}", text=row.get("Goal"), category=row.get("Category"),
                     source=_with_origin("JailbreakBench", row.get("Source", required=False)), benign=False)


def _harmbench_row(row: _Row) -> Behaviour:
    # Contextual behaviours refer to a passage; without it the request cannot be answered.
    context = row.get("ContextString", required=False)
    text = row.get("Behavior") + (f"\n\n{context}" if context else "")
    return Behaviour(prompt_id=f"hb-{row.get('BehaviorID')}", text=text, category=row.get("SemanticCategory"),
                     source="HarmBench", benign=False)


def _strongreject_row(row: _Row) -> Behaviour:
    return Behaviour(prompt_id=f"sr-{row.number:03d}", text=row.get("forbidden_prompt"),
                     category=row.get("category"),
                     source=_with_origin("StrongREJECT", row.get("source", required=False)), benign=False)


def _advbench_row(row: _Row) -> Behaviour:
    return Behaviour(prompt_id=f"adv-{row.number:03d}", text=row.get("goal"), category="unspecified",
                     source="AdvBench", benign=False)


# format -> (columns that must be present, row -> Behaviour)
_IMPORTERS: dict[str, tuple[tuple[str, ...], Callable[[_Row], Behaviour]]] = {
    "jailbreakbench": (("Goal", "Category"), _jailbreakbench_row),
    "harmbench": (("Behavior", "SemanticCategory", "BehaviorID"), _harmbench_row),
    "strongreject": (("category", "forbidden_prompt"), _strongreject_row),
    "advbench": (("goal",), _advbench_row),
    "jsonl": (("prompt_id", "text", "category"), _own_row),
}


def builtin_corpus() -> list[Behaviour]:
    """The corpus the project writes and ships (harmful requests and benign controls, no answers)."""
    required, make = _IMPORTERS["jsonl"]
    return _build(_read_rows(BUILTIN_PATH, required, json_lines=True), make, BUILTIN_PATH)


def load_corpus(fmt: str, path: str | Path | None = None) -> list[Behaviour]:
    """Behaviours of the builtin corpus (`fmt='builtin'`, no path) or of a user's file in format `fmt`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown corpus format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "builtin":
        if path is not None:
            raise ValueError("the builtin corpus takes no path")
        return builtin_corpus()
    if path is None:
        raise ValueError(f"corpus format {fmt!r} needs a path to the file")
    required, make = _IMPORTERS[fmt]
    return _build(_read_rows(path, required, json_lines=True if fmt == "jsonl" else None), make, path)
