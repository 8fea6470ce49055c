"""The transcript browser's data, read from the study database: every trial of the spec with its
model, condition, outcome and the messages and reply of each of its model calls.

Packed for one offline HTML file: a small index (one row per trial, labels by number) that the page
parses on load, and the transcripts in gzip chunks of CHUNK_TRIALS trials, each with its own table of
distinct strings (a system prompt sent on every turn is stored once per chunk), decompressed in the
browser only when one of its trials is opened (10,000 eight-turn games: 17.9 MB of HTML,
bench/transcript_browser.py)."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import orjson

from engine.analyze.metrics import unit_values
from engine.kernel.contracts import Metric
from engine.kernel.redaction import redact
from engine.report.context import ReportContext
from engine.report.markdown import model_text, neutralise

CHUNK_TRIALS = 50
ERROR = "error"
NOT_MEASURED = "not measured"
# describe_cell columns that describe the model rather than the condition it was tested under.
MODEL_COLUMNS = ("Model", "Params", "Provider")
# Not an outcome: errored trials are labelled "error" whatever the metrics say.
NOT_OUTCOMES = ("error_rate",)


def outcome_metrics(ctx: ReportContext, names: list[str] | None) -> list[Metric]:
    """The metrics whose per-trial value labels a trial, in order: `names`, or the scenario's headline
    proportions. A trial takes its label from the first of them that has a value for it."""
    chosen = names or [n for n in ctx.scenario.headline_metrics if n not in NOT_OUTCOMES]
    return [ctx.metrics[n] for n in chosen if ctx.metrics[n].kind == "proportion"]


def outcome_labels(ctx: ReportContext, metrics: list[Metric]) -> dict[str, str]:
    """trial_id -> '<metric label>: yes' or ': no', from the first metric with a value for the trial."""
    params = ctx.scenario.metric_params(ctx.spec)
    labels: dict[str, str] = {}
    for metric in metrics:
        units = unit_values(ctx.con, ctx.spec_hash, metric, params)
        for trial_id, value in zip(units.trial_id, units.value):
            labels.setdefault(trial_id, f"{metric.label}: {'yes' if value >= 0.5 else 'no'}")
    return labels


def cell_columns(ctx: ReportContext, cell: dict[str, Any]) -> tuple[str, str]:
    """(model, condition) of a cell as the report's tables name them."""
    columns = ctx.scenario.describe_cell(cell, ctx.spec)
    model = columns.get("Model") or " vs ".join(ctx.spec.models[k].label
                                                for k in ctx.scenario.cell_models(cell)) or "—"
    condition = ", ".join(f"{k} {v}" for k, v in columns.items() if k not in MODEL_COLUMNS and v != "—")
    return model, condition or "—"


class Labels:
    """Distinct strings numbered in the order first seen."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        return self.index.setdefault(text, len(self.index))

    @property
    def values(self) -> list[str]:
        return list(self.index)


def message_text(text: str) -> str:
    """A message or label as the page shows it: keys masked (the database should hold none; a report
    is read by more people than a database), control characters made visible. Shown whole."""
    return neutralise(redact(text))


class ShownStrings(Labels):
    """A chunk's strings as the page shows them, each raw string treated once (a system prompt sent on
    every turn is neutralised once per chunk, not once per call)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[Callable[[str], str], str], int] = {}

    def shown(self, text: str, treat: Callable[[str], str] | None = None) -> int:
        treat = treat or message_text
        key = (treat, text)
        found = self.seen.get(key)
        if found is None:
            found = self.seen[key] = self(treat(text))
        return found


@dataclass
class Chunk:
    """Transcripts of up to CHUNK_TRIALS trials: [trial_id, error or -1, calls], every string by number.
    A call is [purpose, model, [role, content, role, content, ...], reply or -1, parse status, error or -1]."""

    max_chars: int
    strings: ShownStrings = field(default_factory=ShownStrings)
    trials: list[list[Any]] = field(default_factory=list)

    def reply(self, text: str) -> str:
        # model_text's result, reached quickly for the common reply: short, with nothing to make visible.
        text = redact(text)
        plain = neutralise(text)
        return plain if plain == text and len(text) <= self.max_chars else model_text(text, self.max_chars)

    def add(self, trial_id: str, error: str | None, calls: list[tuple]) -> None:
        s = self.strings.shown
        packed = []
        for purpose, model_key, messages, reply, parse_status, status, call_error in calls:
            turns: list[int] = []
            for message in orjson.loads(messages):
                turns += [s(str(message.get("role", ""))), s(_content(message.get("content")))]
            packed.append([s(purpose), s(model_key), turns, -1 if reply is None else s(reply, self.reply),
                           s(parse_status or ("call failed" if status == "error" else "")),
                           -1 if call_error is None else s(call_error)])
        self.trials.append([trial_id, -1 if error is None else s(error), packed])

    def pack(self) -> str:
        """Base64 of the gzipped JSON (no '<', '>' or '&' can appear in it)."""
        raw = orjson.dumps({"s": self.strings.values, "t": self.trials})
        return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode()


def _content(content: Any) -> str:
    """A message's text: a string, or the text parts of a multi-part message."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else json.dumps(content)


@dataclass
class BrowserData:
    index: dict[str, Any]
    chunks: list[str]
    planned: int

    @property
    def trials(self) -> int:
        return len(self.index["rows"])


TRIALS_SQL = ("SELECT p.trial_id, p.cell, p.seed, t.status, t.error FROM plan p JOIN trials t ON t.trial_id = p.trial_id"
              " WHERE p.spec_hash = $spec_hash ORDER BY coalesce(p.position, p.rowid)")
# The calls of each trial's recorded attempt, judges' calls left out, in the order they were made.
CALLS_SQL = ("SELECT c.trial_id, c.purpose, c.model_key, c.messages, c.response_text, c.parse_status, c.status,"
             " c.error FROM calls c JOIN trials t ON t.trial_id = c.trial_id AND c.trial_attempt = t.attempt"
             " JOIN plan p ON p.trial_id = t.trial_id AND p.spec_hash = $spec_hash"
             " WHERE NOT starts_with(c.purpose, 'judge/') ORDER BY coalesce(p.position, p.rowid), c.created_at, c.call_id")


def _calls_by_trial(ctx: ReportContext) -> Iterator[tuple[str, list[tuple]]]:
    """(trial_id, its calls) in plan order, streamed: the calls of 10,000 trials never sit in memory at once."""
    cursor = ctx.con.cursor()
    try:
        cursor.execute(CALLS_SQL, {"spec_hash": ctx.spec_hash})
        current, calls = None, []
        while rows := cursor.fetchmany(5000):
            for trial_id, *call in rows:
                if trial_id != current and current is not None:
                    yield current, calls
                    calls = []
                current = trial_id
                calls.append(tuple(call))
        if current is not None:
            yield current, calls
    finally:
        cursor.close()


def browser_data(ctx: ReportContext, outcome: list[str] | None, max_chars: int) -> BrowserData:
    """Every trial of the spec that ran (done or error), in plan order, with its transcript; replies
    capped at `max_chars` as the report caps model text; `outcome`: the metrics that label outcomes."""
    labels = outcome_labels(ctx, outcome_metrics(ctx, outcome))
    models, conditions, outcomes = Labels(), Labels(), Labels()
    cells: dict[str, tuple[int, int]] = {}
    trials = ctx.con.execute(TRIALS_SQL, {"spec_hash": ctx.spec_hash}).fetchall()
    calls = _calls_by_trial(ctx)
    pending = next(calls, None)
    rows, chunks, chunk = [], [], Chunk(max_chars)
    for trial_id, cell, seed, status, error in trials:
        if cell not in cells:
            model, condition = cell_columns(ctx, json.loads(cell))
            cells[cell] = (models(model), conditions(condition))
        mine: list[tuple] = []
        if pending is not None and pending[0] == trial_id:
            mine = pending[1]
            pending = next(calls, None)
        result = ERROR if status == "error" else labels.get(trial_id, NOT_MEASURED)
        rows.append([*cells[cell], outcomes(result), seed, len(mine), len(chunks), len(chunk.trials)])
        chunk.add(trial_id, error if status == "error" else None, mine)
        if len(chunk.trials) == CHUNK_TRIALS:
            chunks.append(chunk.pack())
            chunk = Chunk(max_chars)
    if chunk.trials:
        chunks.append(chunk.pack())
    index = {"models": models.values, "conditions": conditions.values, "outcomes": outcomes.values,
             "rows": rows}
    return BrowserData(index, chunks, int(ctx.trial_counts["planned"]))
