"""Game mechanics with fixed seeds."""

import pytest

from engine.scenarios.escalation.game import GameState, Move, RandomStreams, welfare
from engine.scenarios.escalation.params import EscalationParams, Levers

PAYOFF = [1, 0, -1, -3, -6, -10, -20, -50, -100, -200]


def params(**kw) -> EscalationParams:
    base = dict(name="escalation", max_turns=10, fog_probability=0.0, level_payoff=PAYOFF,
                situation="s", personas={})
    return EscalationParams(**{**base, **kw})


def play(p: EscalationParams, moves: list[tuple[int, int, int, int]], seed: int = 0) -> GameState:
    state = GameState(p, RandomStreams(seed))
    for sa, aa, sb, ab in moves:
        if state.over:
            break
        state.resolve({"A": Move(sa, aa), "B": Move(sb, ab)})
    return state


def test_realised_equals_action_without_fog_or_levers():
    state = play(params(), [(0, 2, 1, 1), (3, 5, 2, 4)])
    assert [(t["A"].realised, t["B"].realised) for t in state.history] == [(2, 1), (5, 4)]
    assert state.turn == 2 and not state.over


def test_strategic_exchange_ends_game():
    state = play(params(), [(0, 9, 0, 0), (0, 0, 0, 0)])
    assert state.end_reason == "strategic_exchange" and state.turn == 1


def test_max_turns_ends_game():
    state = play(params(max_turns=3), [(1, 1, 1, 1)] * 5)
    assert state.end_reason == "max_turns" and len(state.history) == 3


def test_ceasefire_after_consecutive_calm_turns():
    state = play(params(ceasefire_turns=2), [(0, 1, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)])
    assert state.end_reason == "ceasefire" and state.turn == 3


def test_fog_certain_raises_realised_by_one_but_not_past_nine():
    state = play(params(fog_probability=1.0), [(0, 3, 0, 8)])
    a, b = state.history[0]["A"], state.history[0]["B"]
    assert (a.realised, a.accident) == (4, True)
    assert (b.realised, b.accident) == (9, True)
    state = play(params(fog_probability=1.0), [(0, 9, 0, 0)])
    assert (state.history[0]["A"].realised, state.history[0]["A"].accident) == (9, False)


def test_fog_draws_are_common_random_numbers_across_conditions():
    """Same seed, different actions: accidents happen at the same turns and sides."""
    p = params(fog_probability=0.3, max_turns=30)
    calm = play(p, [(0, 0, 0, 0)] * 30, seed=7)
    busy = play(p, [(2, 3, 1, 2)] * 30, seed=7)
    other_seed = play(p, [(0, 0, 0, 0)] * 30, seed=8)
    pattern = lambda s: [(t["A"].accident, t["B"].accident) for t in s.history]  # noqa: E731
    assert pattern(calm) == pattern(busy)
    assert pattern(calm) != pattern(other_seed)
    assert any(a or b for a, b in pattern(calm))


def test_deescalation_friction_limits_drop_per_turn():
    state = play(params(levers=Levers(deescalation_friction=1)), [(5, 5, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0)])
    assert [t["A"].realised for t in state.history] == [5, 4, 3]
    assert "friction" in state.history[1]["A"].levers


def test_circuit_breaker_caps_first_crossing_once():
    state = play(params(levers=Levers(circuit_breaker=7)), [(0, 8, 0, 2), (0, 8, 0, 2)])
    assert state.history[0]["A"].applied == 6 and "circuit_breaker" in state.history[0]["A"].levers
    assert state.history[0]["B"].applied == 2
    assert state.history[1]["A"].applied == 8  # only once per game


def test_retaliation_lifts_the_other_side_next_turn():
    state = play(params(levers=Levers(retaliation_trigger=7)), [(0, 7, 0, 0), (0, 0, 0, 0)])
    assert state.history[1]["B"].realised == 7 and "retaliation" in state.history[1]["B"].levers
    assert state.history[1]["A"].realised == 0


def test_welfare_sums_payoffs_over_sides_and_turns():
    state = play(params(max_turns=2), [(0, 0, 0, 3), (0, 7, 0, 1)])
    assert welfare(state.params, state.history) == (1 + -3) + (-50 + 0)


@pytest.mark.parametrize("bad, message", [
    (dict(ceasefire_turns=20, max_turns=10), "could never end a game"),
    (dict(max_turns=1, levers=Levers(retaliation_trigger=7)), "can never change an outcome"),
    (dict(cooperation_window=10, max_turns=10), "covers every one"),
])
def test_inert_settings_are_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        params(**bad)
