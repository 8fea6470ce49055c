"""What a judge plug-in provides. The judge stage knows judges only through this interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from engine.errors import SpecError
from engine.hashing import content_hash
from engine.spec.schema import JudgeSpec, ModelEntry

if TYPE_CHECKING:
    from engine.execute.context import CallContext
    from engine.scenarios.base import CallEstimate, JudgeSubject

# A judge that could not give a verdict (provider failure, unparseable reply) says so with this
# label: it is never read as one of the rubric's labels, and it is outside every denominator.
ERROR_LABEL = "ERROR"


@dataclass(frozen=True)
class Grade:
    label: str
    rationale: str | None = None
    score: float | None = None
    call_id: str | None = None


class Judge(ABC):
    kind: ClassVar[str]

    def __init__(self, judge_id: str, spec: JudgeSpec):
        self.judge_id = judge_id
        self.spec = spec

    def check(self) -> None:
        """Raise SpecError(key=...) (keys relative to the judge) for a configuration it cannot use."""
        if ERROR_LABEL in self.spec.rubric.labels:
            raise SpecError(f"'{ERROR_LABEL}' is reserved for judge failures", key="rubric.labels")

    @property
    def rubric_version(self) -> str:
        return self.spec.rubric.key

    @property
    def fingerprint(self) -> str:
        """Everything that determines a verdict: verdicts are stored and looked up under it, so a
        judge whose model, settings or rubric text changed never reuses old verdicts."""
        model = self.spec.model
        # Options enter only when set, so judges without any keep the fingerprint (and verdicts) they had.
        options = {"options": self.spec.options} if self.spec.options else {}
        # The gold-set file scores the judge; it does not change a verdict, so it is left out (as None).
        rubric = {**self.spec.rubric.model_dump(), "gold": None}
        return content_hash({
            "kind": self.kind, "rubric": rubric,
            "model": model.litellm_id if model else None,
            "weights": model.weights.sha256 if model and model.weights else None,
            "temperature": self.spec.temperature, "max_tokens": self.spec.max_tokens,
            "max_response_chars": self.spec.max_response_chars, **options}, 12)

    @property
    def verdict_key(self) -> dict[str, str]:
        """The columns that identify this judge's verdicts (the rest of the key is the subject)."""
        return {"judge_id": self.judge_id, "rubric_version": self.rubric_version,
                "judge_fingerprint": self.fingerprint}

    @property
    def model_key(self) -> str:
        """Key of the judge's model among the gateway's models (kept apart from the models under test)."""
        return f"judge:{self.judge_id}"

    def models(self) -> dict[str, ModelEntry]:
        return {self.model_key: self.spec.model} if self.spec.model else {}

    def estimate(self, subjects: int) -> "CallEstimate | None":
        """Worst-case calls and tokens to grade this many subjects (None: the judge calls no model)."""
        return None

    @abstractmethod
    async def grade(self, subject: "JudgeSubject", ctx: "CallContext") -> Grade:
        """One verdict. Raise ProviderError or ParseFailure when no verdict could be had."""

    @abstractmethod
    def describe(self) -> str:
        """One sentence for the report's methods: what this judge does."""
