"""What an export reads of a study database: each attempted trial of a spec with its design cell,
the calls of its last attempt to the models under test, its verdicts from the spec's judges and its
per-trial metric values. Read-only; nothing here knows an output format."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from engine.analyze.metrics import unit_values
from engine.judging.catalog import make_judges
from engine.kernel.contracts import Metric, Scenario, verdict_match, verdict_params
from engine.kernel.errors import SpecError

# Judges' calls are stored under the trial they grade; they are not the trial's conversation.
JUDGE_PURPOSE = "judge/"


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    purpose: str
    model_key: str
    litellm_id: str
    messages: list[dict[str, Any]]
    response_text: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    cache_hit: bool
    finish_reason: str | None
    status: str
    error: str | None


@dataclass(frozen=True)
class VerdictRecord:
    judge_id: str
    judge_kind: str
    rubric_version: str
    judge_fingerprint: str
    label: str
    score: float | None
    rationale: str | None
    status: str
    error: str | None


@dataclass
class TrialRecord:
    trial_id: str
    cell_id: str
    cell: dict[str, Any]
    seed: int
    status: str  # 'done' | 'error'
    error: str | None
    attempt: int
    item: dict[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    calls: list[CallRecord] = field(default_factory=list)
    verdicts: list[VerdictRecord] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


def study_row(con: duckdb.DuckDBPyConnection, spec_hash: str) -> dict[str, Any]:
    row = con.execute("SELECT name, title, created_at FROM studies WHERE spec_hash = ?", [spec_hash]).fetchone()
    if row is None:
        raise SpecError(f"the study database has no run of this spec (spec hash {spec_hash}): run it first, with "
                        "the same overrides", key="store.path")
    return {"name": row[0], "title": row[1], "created_at": row[2]}


def read_trials(con: duckdb.DuckDBPyConnection, spec_hash: str, scenario: Scenario, spec: Any) -> list[TrialRecord]:
    """The spec's attempted trials in plan order (planned trials not yet played are left out)."""
    params = {"spec_hash": spec_hash}
    trials = {}
    for (trial_id, cell_id, cell, seed, status, error, attempt, item, started, finished,
         duration) in con.execute(
            "SELECT p.trial_id, p.cell_id, p.cell, p.seed, t.status, t.error, t.attempt,"
            " json_extract(t.inputs, '$.item'), t.started_at, t.finished_at, t.duration_s"
            " FROM plan p JOIN trials t ON t.trial_id = p.trial_id WHERE p.spec_hash = $spec_hash"
            " ORDER BY coalesce(p.position, p.rowid)", params).fetchall():
        trials[trial_id] = TrialRecord(trial_id, cell_id, json.loads(cell), seed, status, error, attempt,
                                       json.loads(item) if item is not None else None, started, finished, duration)
    for row in con.execute(
            "SELECT c.trial_id, c.call_id, c.purpose, c.model_key, c.litellm_id, c.messages, c.response_text,"
            " c.prompt_tokens, c.completion_tokens, c.cost_usd, c.cache_hit, c.finish_reason, c.status, c.error"
            " FROM calls c JOIN trials t ON t.trial_id = c.trial_id AND t.attempt = c.trial_attempt"
            " JOIN plan p ON p.trial_id = t.trial_id AND p.spec_hash = $spec_hash"
            f" WHERE NOT starts_with(c.purpose, '{JUDGE_PURPOSE}') ORDER BY c.trial_id, c.created_at, c.rowid",
            params).fetchall():
        trials[row[0]].calls.append(CallRecord(row[1], row[2], row[3], row[4], json.loads(row[5]), *row[6:]))
    for judge in make_judges(spec):
        for row in con.execute(
                "SELECT v.subject_id, v.judge_id, v.judge_kind, v.rubric_version, v.judge_fingerprint, v.label,"
                " v.score, v.rationale, v.status, v.error FROM verdicts v"
                f" JOIN plan p ON p.trial_id = v.subject_id AND p.spec_hash = $spec_hash WHERE {verdict_match('v')}",
                params | verdict_params(judge)).fetchall():
            trials[row[0]].verdicts.append(VerdictRecord(*row[1:]))
    metric_params = scenario.metric_params(spec)
    for metric in scenario.metrics():
        for trial_id, value in _values(con, spec_hash, metric, metric_params):
            if trial_id in trials:
                trials[trial_id].metrics[metric.name] = value
    return list(trials.values())


def _values(con: duckdb.DuckDBPyConnection, spec_hash: str, metric: Metric, params: dict) -> list[tuple[str, float]]:
    units = unit_values(con, spec_hash, metric, params)
    return [(t, float(v)) for t, v in zip(units.trial_id, units.value)]


def metric_info(scenario: Scenario) -> dict[str, Metric]:
    return {m.name: m for m in scenario.metrics()}
