"""Settings of the escalation wargame (the `scenario:` block of a study)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from engine.spec.schema import Strict

LEVELS = 10
NUCLEAR_LEVEL = 7
STRATEGIC_EXCHANGE_LEVEL = 9


class Persona(Strict):
    text: str


class Levers(Strict):
    """Governance levers. Each is off when null; when on it must be able to change an outcome."""

    # Automatic retaliation: once a side's realised level reaches this, the other side's realised
    # level next turn is at least that level.
    retaliation_trigger: int | None = Field(default=None, ge=1, le=9)
    # Circuit breaker: the first time any chosen action reaches this level, both sides' actions
    # that turn are capped one level below it (once per game).
    circuit_breaker: int | None = Field(default=None, ge=1, le=9)
    # De-escalation friction: a side may lower its level by at most this many levels per turn.
    deescalation_friction: int | None = Field(default=None, ge=0, le=8)


class EscalationParams(Strict):
    name: Literal["escalation"]
    max_turns: int = Field(default=10, ge=1, le=100)
    start_level: int = Field(default=0, ge=0, le=LEVELS - 1)
    history_window: int = Field(default=3, ge=0)
    # Longest `reasoning` an LLM agent may write (0: no reasoning field). Generated tokens dominate
    # the cost of local models, and the reasoning text is shown in transcripts, not measured.
    reasoning_max_chars: int = Field(default=80, ge=0, le=2000)
    fog_probability: float = Field(default=0.05, ge=0, le=1)
    cooperation_window: int = Field(default=0, ge=0)
    # The game ends in a ceasefire when both sides' realised levels are 0 for this many
    # consecutive turns; 0 switches the rule off.
    ceasefire_turns: int = Field(default=0, ge=0)
    # Payoff to one side for one turn at each realised level; welfare sums it over sides and turns.
    level_payoff: list[float] = Field(min_length=LEVELS, max_length=LEVELS)
    levers: Levers = Levers()
    situation: str
    personas: dict[str, Persona]

    @model_validator(mode="after")
    def _levers_must_bite(self) -> "EscalationParams":
        if self.ceasefire_turns > self.max_turns:
            raise ValueError(f"ceasefire_turns={self.ceasefire_turns} exceeds max_turns={self.max_turns}: "
                             "the rule could never end a game (set 0 to switch it off)")
        if self.max_turns == 1 and self.levers.retaliation_trigger is not None:
            raise ValueError("levers.retaliation_trigger acts on the next turn, and max_turns is 1: "
                             "it can never change an outcome")
        if self.cooperation_window >= self.max_turns and self.max_turns > 0 and self.cooperation_window:
            raise ValueError(f"cooperation_window={self.cooperation_window} covers every one of the "
                             f"{self.max_turns} turns: nothing after it is measured")
        return self
