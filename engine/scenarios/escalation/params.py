"""Settings of the escalation wargame (the `scenario:` block of a study)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from engine.kernel.records import Strict

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


class Framing(Strict):
    """A framing condition (engine/scenarios/escalation/conf/framing/): text added to both sides' system prompt ('' adds nothing)."""

    text: str = ""


class Governance(Strict):
    """A governance regime (engine/scenarios/escalation/conf/governance/): text added to both sides' system prompt, and the rule
    changes it brings (levers set here override the scenario's; null leaves them as they are)."""

    text: str = ""
    levers: Levers = Levers()
    ceasefire_turns: int | None = Field(default=None, ge=1)

    def rule_changes(self) -> dict[str, int]:
        """The rules this regime changes, e.g. {'circuit_breaker': 7}; empty for a text-only regime."""
        out = {k: v for k, v in self.levers.model_dump().items() if v is not None}
        if self.ceasefire_turns is not None:
            out["ceasefire_turns"] = self.ceasefire_turns
        return out


class PairingSide(Strict):
    persona: str = "default"
    # Only side B may be played by a scripted policy ('scripted:<policy>'); null: the cell's agent.
    agent: str | None = None


class Pairing(Strict):
    """Who plays each side (engine/scenarios/escalation/conf/pairing/): side A is always the cell's agent; side B is the same
    agent (a mirror match, perhaps under another persona) or a scripted policy."""

    description: str = ""
    a: PairingSide = PairingSide()
    b: PairingSide = PairingSide()

    @model_validator(mode="after")
    def _a_is_the_cells_agent(self) -> "Pairing":
        if self.a.agent is not None:
            raise ValueError("pairing side 'a' is always the cell's agent; set 'agent' on side 'b' only")
        return self


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
    # 'instructed': LLM agents are told to stay at 0 in the window (scripted agents obey);
    # 'forced': the rules set both sides' moves to 0 in the window and no agent is asked.
    cooperation_mode: Literal["instructed", "forced"] = "instructed"
    # The game ends in a ceasefire when both sides' realised levels are 0 for this many
    # consecutive turns; 0 switches the rule off.
    ceasefire_turns: int = Field(default=0, ge=0)
    # Payoff to one side for one turn at each realised level; welfare sums it over sides and turns.
    level_payoff: list[float] = Field(min_length=LEVELS, max_length=LEVELS)
    levers: Levers = Levers()
    situation: str
    personas: dict[str, Persona]
    # Levels of the `framing`, `governance` and `pairing` factors: text in the scenario's conf/ (one file each),
    # listed in engine/scenarios/escalation/conf/scenario/escalation_series.yaml.
    framings: dict[str, Framing] = {}
    governance_regimes: dict[str, Governance] = {}
    pairings: dict[str, Pairing] = {}
    # Set per cell from the `framing` and `governance` factors (or here, for every cell).
    framing_text: str = ""
    governance_text: str = ""

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
        for name, pairing in self.pairings.items():
            for side in ("a", "b"):
                persona = getattr(pairing, side).persona
                if persona not in self.personas:
                    raise ValueError(f"pairing '{name}' side {side}: unknown persona '{persona}' (known: "
                                     f"{', '.join(sorted(self.personas))})")
        return self
