"""The records that flow between the stages: a planned trial, what it may cost, what it produced,
what judges grade and what they said. Plain data; every stage may import them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict

# A judge that could not give a verdict (provider failure, unparseable reply) says so with this
# label: it is never read as one of the rubric's labels, and it is outside every denominator.
ERROR_LABEL = "ERROR"


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


def now() -> datetime:
    """The time stored with every row (UTC, naive: DuckDB's TIMESTAMP)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Trial:
    trial_id: str
    cell_id: str
    cell: dict[str, Any]
    seed: int
    inputs: dict[str, Any]


# Prompt tokens are estimated from characters at 3 per token, a conservative bound (English text
# averages about 4): estimates are upper bounds for the budget, never guesses below it.
CHARS_PER_TOKEN = 3


def tokens_for(chars: int) -> int:
    """Upper-bound token count of a prompt of `chars` characters."""
    return chars // CHARS_PER_TOKEN


@dataclass(frozen=True)
class CallEstimate:
    """Upper-bound call and token counts of one trial for one model, for `plan`."""

    model_key: str
    calls: int
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class JudgeSubject:
    """One stored response for judges to grade: what was asked and what the model answered."""

    subject_id: str
    request: str
    response: str


@dataclass
class TrialOutcome:
    """Rows for the scenario's own tables, written in the same transaction as the trial."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Grade:
    """One judge's verdict on one subject."""

    label: str
    rationale: str | None = None
    score: float | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class CachedResponse:
    """A provider's reply as the response cache keeps it (keyed by the request's hash)."""

    response_text: str
    raw_response: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_s: float
    finish_reason: str | None = None
