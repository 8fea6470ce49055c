"""Scripted policies and the reply parser."""

import numpy as np
import pytest

from engine.scenarios.escalation.agents import POLICIES, Observation, parse_reply, scripted_decision


def obs(own=0, opp=0, coop=False) -> Observation:
    return Observation("A", 3, own, opp, [], coop)


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("policy, own, opp, expected", [
    ("null", 4, 6, (0, 0)),
    ("hold_last", 4, 6, (4, 4)),
    ("hold_last", 0, 9, (0, 0)),
    ("hawk", 3, 0, (4, 4)),
    ("hawk", 9, 0, (9, 9)),
    ("dove", 0, 4, (0, 0)),
    ("dove", 0, 5, (0, 2)),
    ("tit_for_tat", 1, 5, (5, 5)),
    ("calculating", 2, 4, (4, 5)),
    ("calculating", 6, 1, (5, 6)),
])
def test_scripted_policies(policy, own, opp, expected):
    move = scripted_decision(policy, obs(own, opp), RNG, start=0).move
    assert (move.signal, move.action) == expected


def test_random_policy_uses_its_stream_reproducibly():
    a = [scripted_decision("random", obs(), np.random.default_rng(5), 0).move for _ in range(3)]
    b = [scripted_decision("random", obs(), np.random.default_rng(5), 0).move for _ in range(3)]
    assert a == b
    moves = {scripted_decision("random", obs(), np.random.default_rng(s), 0).move for s in range(20)}
    assert len(moves) > 5


def test_scripted_agents_obey_cooperation_window():
    for name in POLICIES:
        move = scripted_decision(name, obs(3, 6, coop=True), RNG, 0).move
        assert (move.signal, move.action) == (0, 0)


@pytest.mark.parametrize("text, status, levels", [
    ('{"reasoning": "hold", "signal_level": 2, "action_level": 3}', "ok", (2, 3)),
    ('Sure! ```json\n{"signal_level": 1, "action_level": 1}\n```', "repaired", (1, 1)),
    ('{"signal_level": "4", "action_level": 5}', "repaired", (4, 5)),
    ('{"reasoning": "line one\nline two", "signal_level": 0, "action_level": 1}', "repaired", (0, 1)),
    ('{"signal_level": 4, "action_level": 10}', "failed", None),
    ('{"signal_level": -1, "action_level": 0}', "failed", None),
    ('{"signal_level": true, "action_level": 0}', "failed", None),
    ('{"signal_level": 2}', "failed", None),
    ("I choose level 3", "failed", None),
    ("", "failed", None),
    ('[1, 2]', "failed", None),
])
def test_parse_reply(text, status, levels):
    value, got = parse_reply(text)
    assert got == status
    if levels is None:
        assert value is None  # a failure is never read as level 0
    else:
        assert (value["signal_level"], value["action_level"]) == levels
