"""Each escalation metric on hand-built games, written straight into a study database."""

import math

import pytest

from engine.analyze.metrics import cell_estimates
from engine.scenarios.escalation.scenario import Escalation
from engine.store.db import StudyStore

SPEC = "spec1"


def add_game(store, trial_id, cell_id, turns, status="done", episode=None, calls=()):
    """turns: list of (turn, side, signal, action, prev_realised, realised)."""
    store.con.execute("INSERT INTO plan (spec_hash, trial_id, cell_id, cell, seed) VALUES (?, ?, ?, ?, ?)", [SPEC, trial_id, cell_id, '{"agent": "x"}', 0])
    store.commit_trial(
        {"trial_id": trial_id, "scenario": "escalation", "cell_id": cell_id, "cell": {"agent": "x"}, "seed": 0,
         "inputs": {}, "status": status, "error_kind": None, "error": None, "attempt": 1},
        [{"call_id": f"{trial_id}-{i}", "trial_id": trial_id, "trial_attempt": 1, "purpose": "move",
          "model_key": "m", "litellm_id": "m", "request_hash": f"h{trial_id}{i}", "messages": [], "params": {},
          "cache_hit": False, "parse_status": ps, "retries": 0, "status": "ok"} for i, ps in enumerate(calls)],
        {} if status != "done" else {
            "escalation_turns": [
                {"trial_id": trial_id, "turn": t, "side": s, "agent": "x", "signal_level": sig,
                 "action_level": act, "applied_level": act, "prev_realised": prev, "realised_level": real,
                 "accident": False} for t, s, sig, act, prev, real in turns],
            "escalation_episodes": [{"trial_id": trial_id, **episode}],
        })


def episode(nuclear, welfare, first=None, exchange=False, turns=2):
    return {"turns_played": turns, "end_reason": "max_turns", "max_level": 9 if exchange else (7 if nuclear else 2),
            "nuclear": nuclear, "strategic_exchange": exchange, "first_nuclear_turn": first, "welfare": welfare}


@pytest.fixture
def store(tmp_path):
    s = StudyStore(tmp_path / "m.duckdb")
    s.migrate_component("escalation", Escalation.migrations_dir)
    # cell c1: two finished games and one error; cell c2: one finished game.
    add_game(s, "g1", "c1", [(1, "A", 0, 2, 0, 2), (1, "B", 1, 1, 0, 1), (2, "A", 2, 7, 2, 7), (2, "B", 3, 3, 1, 3)],
             episode=episode(True, -60.0, first=2), calls=["ok", "ok", "failed", "ok", "repaired"])
    add_game(s, "g2", "c1", [(1, "A", 1, 1, 0, 1), (1, "B", 1, 0, 0, 0)],
             episode=episode(False, 1.0, turns=1), calls=["ok", "ok"])
    add_game(s, "g3", "c1", [], status="error", calls=["failed", "failed", "failed"])
    add_game(s, "g4", "c2", [(1, "A", 0, 9, 0, 9), (1, "B", 0, 0, 0, 0)],
             episode=episode(True, -199.0, first=1, exchange=True, turns=1))
    yield s
    s.close()


def estimates(store, name):
    metric = [m for m in Escalation().metrics() if m.name == name]
    df = cell_estimates(store.con, SPEC, metric, seed=1)
    return {r.cell_id: r for r in df.itertuples()}


def test_nuclear_rate_counts_finished_games_only(store):
    e = estimates(store, "nuclear_rate")
    assert (e["c1"].value, e["c1"].n) == (0.5, 2)
    assert (e["c2"].value, e["c2"].n) == (1.0, 1)
    assert e["c1"].low < 0.5 < e["c1"].high


def test_strategic_exchange_rate(store):
    e = estimates(store, "strategic_exchange_rate")
    assert e["c1"].value == 0 and e["c2"].value == 1


def test_divergence_is_mean_of_per_game_means(store):
    e = estimates(store, "divergence")
    g1 = (2 + 0 + 5 + 0) / 4
    g2 = (0 + 1) / 2
    assert e["c1"].value == pytest.approx((g1 + g2) / 2)
    assert e["c1"].n == 2


def test_signed_divergence_and_overshoot_share(store):
    signed = estimates(store, "divergence_signed")
    assert signed["c1"].value == pytest.approx(((2 + 0 + 5 + 0) / 4 + (0 - 1) / 2) / 2)
    share = estimates(store, "overshoot_share")
    assert share["c1"].value == pytest.approx((2 / 4 + 0 / 2) / 2)


def test_velocity_is_mean_level_change_per_turn(store):
    e = estimates(store, "velocity")
    g1 = (2 + 1 + 5 + 2) / 4
    g2 = (1 + 0) / 2
    assert e["c1"].value == pytest.approx((g1 + g2) / 2)
    assert e["c2"].value == pytest.approx(4.5)


def test_welfare_and_turns_to_nuclear(store):
    assert estimates(store, "welfare")["c1"].value == pytest.approx(-29.5)
    t = estimates(store, "turns_to_nuclear")
    assert (t["c1"].value, t["c1"].n) == (2, 1)  # only games with a nuclear turn count


def test_parse_failure_rate_includes_errored_games(store):
    e = estimates(store, "parse_failure_rate")
    # per game: g1 1/5, g2 0/2, g3 3/3 ; g4 had no model replies
    assert e["c1"].value == pytest.approx((1 / 5 + 0 + 1) / 3)
    assert e["c1"].n == 3
    assert e["c2"].n == 0 and math.isnan(e["c2"].value)


def test_error_rate(store):
    e = estimates(store, "error_rate")
    assert (e["c1"].value, e["c1"].n) == (pytest.approx(1 / 3), 3)
    assert e["c2"].value == 0


def test_trials_outside_the_spec_are_ignored(store):
    store.con.execute("INSERT INTO plan (spec_hash, trial_id, cell_id, cell, seed) VALUES ('other', 'g4', 'c1', '{}', 0)")
    e = estimates(store, "nuclear_rate")
    assert e["c1"].n == 2
