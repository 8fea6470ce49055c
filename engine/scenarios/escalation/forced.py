"""Which results of a cooperation window the game's own rules decide, before any agent moves.

In a forced window both sides are held at level 0 for the first N turns. If the rules can end a
game inside those N turns (a ceasefire after k calm turns, with k <= N), such a game's outcome is
set by the rules: no agent ever moved, so its nuclear rate, welfare and divergence are not
measurements of the agents. Everything here is computed from the rules alone (the same
`GameState.resolve` the games use), with no model and no scripted policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.scenarios.escalation.game import SIDES, GameState, Move, RandomStreams
from engine.scenarios.escalation.params import EscalationParams

HELD = Move(0, 0)  # the move of both sides inside a cooperation window


class PresetDraw:
    """Stands in for a side's fog generator: returns a preset draw."""

    def __init__(self) -> None:
        self.value = 1.0

    def random(self) -> float:
        return self.value


class PresetStreams:
    def __init__(self) -> None:
        self.fog = {side: PresetDraw() for side in SIDES}


def copy_state(state: GameState, streams) -> GameState:
    copy = GameState(state.params, streams, state.turn, {}, [], state.breaker_tripped, state.calm_streak,
                     state.end_reason)
    copy.realised = dict(state.realised)  # __post_init__ resets it to the start level
    return copy


def window_end_distribution(params: EscalationParams, window: int | None = None) -> dict[str | None, float]:
    """Exact distribution, over fog draws, of how a game stands once the first `window` turns are
    played with both sides held at level 0: the end reason, or None when the game goes on.

    Enumerates every fog outcome turn by turn (accident or not, per side) through the game's rules,
    merging identical states, so it is exact for any fog probability and lever setting."""
    n = params.cooperation_window if window is None else window
    p = params.fog_probability
    branches = [(draw, prob) for draw, prob in ((0.0, p), (1.0, 1.0 - p)) if prob > 0]
    streams = PresetStreams()
    states: dict[tuple, tuple[GameState, float]] = {}
    start = GameState(params, streams)
    states[("start",)] = (start, 1.0)
    for _ in range(n):
        nxt: dict[tuple, tuple[GameState, float]] = {}
        for state, prob in states.values():
            if state.over:
                key = ("over", state.end_reason)
                nxt[key] = (state, nxt.get(key, (state, 0.0))[1] + prob)
                continue
            for draw_a, p_a in branches:
                for draw_b, p_b in branches:
                    streams.fog["A"].value, streams.fog["B"].value = draw_a, draw_b
                    child = copy_state(state, streams)
                    child.resolve({side: HELD for side in SIDES})
                    key = (("over", child.end_reason) if child.over else
                           (tuple(sorted(child.realised.items())), child.calm_streak, child.breaker_tripped))
                    nxt[key] = (child, nxt.get(key, (child, 0.0))[1] + prob * p_a * p_b)
        states = nxt
    out: dict[str | None, float] = {}
    for state, prob in states.values():
        out[state.end_reason] = out.get(state.end_reason, 0.0) + prob
    return out


def seed_ends_in_window(params: EscalationParams, seed: int) -> str | None:
    """With this seed's own fog draws (the streams the game uses), how the rules end the game
    inside the window, or None when the agents get to move."""
    state = GameState(params, RandomStreams(seed))
    for _ in range(params.cooperation_window):
        state.resolve({side: HELD for side in SIDES})
        if state.over:
            return state.end_reason
    return None


@dataclass(frozen=True)
class WindowVerdict:
    window: int
    max_turns: int
    ceasefire_turns: int
    fog_probability: float
    mode: str
    free_turns: int                 # turns after the window, if the game is not over
    p_rules_end: float              # probability (over fog) that the rules end the game in the window
    end_reasons: dict[str, float] = field(default_factory=dict)

    @property
    def forced(self) -> bool:
        """Some games' outcomes are set by the rules alone (for agents held by the window)."""
        return self.p_rules_end > 0

    @property
    def all_forced(self) -> bool:
        return self.p_rules_end >= 1 - 1e-12

    @property
    def label(self) -> str:
        if not self.window:
            return "no window"
        if self.all_forced:
            return "forced: every game"
        if self.forced:
            share = f"{self.p_rules_end:.0%}" if self.p_rules_end < 0.995 else ">99%"
            return f"forced: {share} of games"
        return "measured after the window"

    def reason(self, payoff0: float) -> str:
        n, k = self.window, self.ceasefire_turns
        if not n:
            return "No cooperation window: every turn is the agents' own."
        who = ("every agent" if self.mode == "forced" else
               "scripted agents, which obey the instruction (models are only instructed and may not)")
        turns = "Turn 1 is" if n == 1 else f"Turns 1-{n} are"
        after = "turn" if self.free_turns == 1 else "turns"
        held = (f"{turns} held at level 0 for {who}: the {2 * n} side-turns add {2 * n * payoff0:+g} to welfare by "
                f"construction, and nuclear use can only come in the {self.free_turns} {after} after.")
        if not k:
            return held + " The ceasefire rule is off, so no game can end inside the window."
        if not self.forced:
            more = k - n
            return held + (f" The ceasefire rule needs {k} consecutive calm turns, more than the window's {n}, so no "
                           f"game ends inside it; but agents that then stay at 0 for {more} more "
                           f"turn{'s' if more > 1 else ''} end the game by ceasefire (fog permitting).")
        share = "every game" if self.all_forced else f"{self.p_rules_end:.1%} of games (over fog draws)"
        fog = ("" if self.all_forced else
               f" The rest had a fog accident (probability {self.fog_probability:g} per side-turn) that broke "
               f"the calm streak.")
        return held + (f" The ceasefire rule ends a game after {k} consecutive turns with both sides at 0, and "
                       f"{k} <= {n}: the rules end {share} inside the window before any agent moves. Those games' "
                       "results (no nuclear use, welfare from the held turns, no divergence) are forced by the "
                       f"rules, not measured.{fog}")


def window_verdict(params: EscalationParams) -> WindowVerdict:
    """From the rules alone: does this game's cooperation window decide outcomes by itself?"""
    dist = window_end_distribution(params)
    ended = {reason: prob for reason, prob in dist.items() if reason is not None and prob > 0}
    return WindowVerdict(params.cooperation_window, params.max_turns, params.ceasefire_turns,
                         params.fog_probability, params.cooperation_mode,
                         params.max_turns - params.cooperation_window, min(1.0, sum(ended.values())), ended)
