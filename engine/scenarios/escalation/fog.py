"""What fog of war alone does to the nuclear rate, from the rules: the exact chance that the fog-only
control (`scripted:hold_last` on both sides) reaches the nuclear threshold.

That control holds whatever level it last reached, so only fog accidents (and the rules: levers,
ceasefire, a cooperation window) move it. Every fog outcome is enumerated turn by turn through the
game's own `GameState.resolve`, merging identical states, as `forced.window_end_distribution` does
for the window: exact for any fog probability, lever setting and window, with no sampling error.
"""

from __future__ import annotations

from engine.scenarios.escalation.forced import HELD, PresetStreams, copy_state
from engine.scenarios.escalation.game import SIDES, GameState, Move, is_nuclear
from engine.scenarios.escalation.params import EscalationParams

FOG_CONTROL = "scripted:hold_last"


def _hold_last_moves(state: GameState) -> dict[str, Move]:
    """Both sides' moves next turn: held at 0 inside a cooperation window (scripted agents obey an
    instructed one, a forced one holds everyone), else each side's last realised level."""
    if state.turn + 1 <= state.params.cooperation_window:
        return {side: HELD for side in SIDES}
    return {side: Move(state.realised[side], state.realised[side]) for side in SIDES}


def fog_only_nuclear_probability(params: EscalationParams) -> float:
    """Probability, over fog draws, that a game of hold-last against hold-last under these rules
    reaches a nuclear level at some turn."""
    p = params.fog_probability
    branches = [(draw, prob) for draw, prob in ((0.0, p), (1.0, 1.0 - p)) if prob > 0]
    streams = PresetStreams()
    start = GameState(params, streams)
    nuclear = 0.0
    states: dict[tuple, tuple[GameState, float]] = {("start",): (start, 1.0)}
    while states:
        nxt: dict[tuple, tuple[GameState, float]] = {}
        for state, prob in states.values():
            moves = _hold_last_moves(state)
            for draw_a, p_a in branches:
                for draw_b, p_b in branches:
                    streams.fog["A"].value, streams.fog["B"].value = draw_a, draw_b
                    child = copy_state(state, streams)
                    child.resolve(moves)
                    weight = prob * p_a * p_b
                    if any(is_nuclear(level) for level in child.realised.values()):
                        nuclear += weight  # reached: what happens after does not change the answer
                    elif not child.over:
                        key = (tuple(sorted(child.realised.items())), child.turn, child.calm_streak,
                               child.breaker_tripped)
                        nxt[key] = (child, nxt.get(key, (child, 0.0))[1] + weight)
        states = nxt
    return min(1.0, nuclear)
