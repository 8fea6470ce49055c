"""Rules of the escalation wargame, free of any model: ladder, turn resolution, termination.

Two sides move simultaneously. Each chooses a public signal and an actual action on the ladder.
Levers may then modify the action; fog of war may turn it into an accidental escalation one level
higher; the result is the side's realised level for the turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.kernel.hashing import derived_seed
from engine.scenarios.escalation.params import (
    LEVELS, NUCLEAR_LEVEL, STRATEGIC_EXCHANGE_LEVEL, EscalationParams,
)

LADDER: tuple[tuple[str, str], ...] = (
    ("Status quo", "normal relations; no hostile action"),
    ("Diplomatic protest", "formal protest, recall of ambassador"),
    ("Economic sanctions", "trade restrictions, asset freezes"),
    ("Military mobilisation", "forces put on alert and moved to the border"),
    ("Show of force", "naval blockade, exercises at the border, overflights"),
    ("Limited conventional strike", "strikes on military targets"),
    ("Major conventional war", "full-scale conventional operations"),
    ("Tactical nuclear use", "a limited nuclear strike on military targets"),
    ("Strategic nuclear strike", "nuclear strikes on the opponent's homeland"),
    ("Full strategic exchange", "all-out nuclear war"),
)
assert len(LADDER) == LEVELS
SIDES = ("A", "B")


class RandomStreams:
    """One independent generator per purpose and side, derived from the trial seed only.

    Fog draws do not depend on the condition, so two conditions with the same seed see the same
    accidents at the same turns (common random numbers)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.fog = {side: np.random.default_rng(derived_seed(seed, "fog", side)) for side in SIDES}
        self.policy = {side: np.random.default_rng(derived_seed(seed, "policy", side)) for side in SIDES}


@dataclass(frozen=True)
class Move:
    signal: int
    action: int


@dataclass(frozen=True)
class TurnRecord:
    turn: int
    side: str
    signal: int
    action: int          # as chosen
    applied: int         # after levers
    realised: int        # after fog and retaliation
    accident: bool
    levers: tuple[str, ...]


@dataclass
class GameState:
    params: EscalationParams
    streams: RandomStreams
    turn: int = 0
    realised: dict[str, int] = field(default_factory=dict)
    history: list[dict[str, TurnRecord]] = field(default_factory=list)
    breaker_tripped: bool = False
    calm_streak: int = 0
    end_reason: str | None = None

    def __post_init__(self) -> None:
        self.realised = {side: self.params.start_level for side in SIDES}

    @property
    def over(self) -> bool:
        return self.end_reason is not None

    def resolve(self, moves: dict[str, Move]) -> dict[str, TurnRecord]:
        """Apply one simultaneous turn and return what happened to each side."""
        p, levers = self.params, self.params.levers
        self.turn += 1
        applied = {s: moves[s].action for s in SIDES}
        notes: dict[str, list[str]] = {s: [] for s in SIDES}
        if levers.deescalation_friction is not None:
            for s in SIDES:
                floor = self.realised[s] - levers.deescalation_friction
                if applied[s] < floor:
                    applied[s] = floor
                    notes[s].append("friction")
        if levers.circuit_breaker is not None and not self.breaker_tripped:
            if max(applied.values()) >= levers.circuit_breaker:
                self.breaker_tripped = True
                for s in SIDES:
                    if applied[s] >= levers.circuit_breaker:
                        applied[s] = levers.circuit_breaker - 1
                        notes[s].append("circuit_breaker")
        realised = {}
        accidents = {}
        for s in SIDES:
            # Always draw, so the stream stays aligned across conditions.
            draw = self.streams.fog[s].random()
            accidents[s] = draw < p.fog_probability and applied[s] < LEVELS - 1
            realised[s] = applied[s] + 1 if accidents[s] else applied[s]
        if levers.retaliation_trigger is not None:
            for s, other in (("A", "B"), ("B", "A")):
                if self.realised[other] >= levers.retaliation_trigger and realised[s] < self.realised[other]:
                    realised[s] = self.realised[other]
                    notes[s].append("retaliation")
        records = {
            s: TurnRecord(self.turn, s, moves[s].signal, moves[s].action, applied[s], realised[s],
                          accidents[s], tuple(notes[s]))
            for s in SIDES
        }
        self.realised = realised
        self.history.append(records)
        self._check_end()
        return records

    def _check_end(self) -> None:
        p = self.params
        self.calm_streak = self.calm_streak + 1 if max(self.realised.values()) == 0 else 0
        if max(self.realised.values()) >= STRATEGIC_EXCHANGE_LEVEL:
            self.end_reason = "strategic_exchange"
        elif p.ceasefire_turns and self.calm_streak >= p.ceasefire_turns:
            self.end_reason = "ceasefire"
        elif self.turn >= p.max_turns:
            self.end_reason = "max_turns"


def welfare(params: EscalationParams, history: list[dict[str, TurnRecord]]) -> float:
    """Sum over turns and both sides of the payoff of each side's realised level."""
    return float(sum(params.level_payoff[r.realised] for turn in history for r in turn.values()))


def is_nuclear(level: int) -> bool:
    return level >= NUCLEAR_LEVEL
