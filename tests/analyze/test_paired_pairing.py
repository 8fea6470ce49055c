"""Pairing detected from a planned study database: two small real studies (stand-in models through
the real gateway; no model is called), checked against pairs formed independently in SQL.

- jailbreak (items: prompts x attacks): pairs share the attack and the prompt; the cluster is the
  prompt, so pooled rows hold one pair per attack in each cluster and are resampled by prompt;
- escalation (no items: seeds): pairs share the persona and the seed; the cluster is the seed;
- a model whose items were changed has no partner: its rows are unpaired (MOVER of the two arms'
  exact limits, correlation 0).
Every row's p is the inversion of its own interval (engine/analyze/stats.py `inverted_p`)."""

import json
import math
import re
import shutil

import duckdb
import litellm
import pytest
from jailbreak_standin import MODELS, refuses_by_hash, standin_overrides
from scipy import stats

from engine import load_study
from engine.analyze.paired import paired_contrasts, paired_units
from engine.analyze.paired_stats import INVERTED, newcombe_phi
from engine.analyze.stats import inverted_p
from engine.execute.gateway import Gateway
from engine.store.db import StudyStore
from engine.study import run_study

PROMPTS = [f"cyber-0{i}" for i in range(1, 7)] + [f"weapons-0{i}" for i in range(1, 5)] + \
          [f"benign-0{i}" for i in range(1, 5)]
ATTACKS = ("direct", "roleplay")


def exact(x: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson 95% from scipy's beta quantiles."""
    return (0.0 if x == 0 else stats.beta.ppf(0.025, x, n - x + 1)), (1.0 if x == n else stats.beta.ppf(0.975, x + 1, n - x))


def mover_by_hand(x1: int, n1: int, x2: int, n2: int, phi: float) -> tuple[float, float]:
    """Newcombe's method 10 with Clopper-Pearson limits (Zou & Donner's MOVER), written out."""
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = exact(x1, n1), exact(x2, n2)
    down = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    up = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, p1 - p2 - down), min(1.0, p1 - p2 + up)


def consistent(difference) -> None:
    """Rule 1: the printed p inverts the printed interval's family."""
    assert difference.test == INVERTED and difference.p == pytest.approx(inverted_p(difference.interval_at))
    assert (difference.p < 0.05) == (not difference.low <= 0 <= difference.high)


def jailbreak_overrides(db) -> list[str]:
    return standin_overrides(db, PROMPTS, ATTACKS, MODELS, "report.sections=[{type: caveats}]")


@pytest.fixture(scope="module")
def jailbreak_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("paired_jb") / "study.duckdb"
    _, summary, _ = run_study("provider_vs_size", jailbreak_overrides(db), show_progress=False,
                              gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=refuses_by_hash))
    assert summary.errors == 0 and summary.done == summary.planned == len(MODELS) * len(ATTACKS) * len(PROMPTS)
    return db


def contrasts_of(study: str, overrides: list[str], db, metric: str, **kwargs):
    loaded = load_study(study, overrides)
    store = StudyStore(db, read_only=True)
    try:
        m = next(x for x in loaded.scenario.metrics() if x.name == metric)
        params = loaded.scenario.metric_params(loaded.spec)
        units = paired_units(store.con, loaded.spec_hash, loaded.scenario, m, params)
        result = paired_contrasts(store.con, loaded.spec_hash, loaded.scenario, m, params, **kwargs)
    finally:
        store.close(checkpoint=False)
    return units, result


def sql_pairs(db, metric_values: dict[str, float], condition: str) -> list[tuple]:
    """(condition level, pairing id, smollm2 value, gemma value), paired in SQL on the trials' inputs."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        f"SELECT a.cell->>'{condition}', coalesce(a.inputs->'item'->>'prompt_id', a.seed::VARCHAR), a.trial_id,"
        " b.trial_id FROM trials a JOIN trials b ON a.cell->>'model' = ? AND b.cell->>'model' = ?"
        f" AND a.cell->>'{condition}' = b.cell->>'{condition}' AND a.seed = b.seed"
        " AND coalesce(a.inputs->'item'->>'prompt_id', '') = coalesce(b.inputs->'item'->>'prompt_id', '')",
        list(MODELS)).fetchall()
    con.close()
    return [(c, k, metric_values[ta], metric_values[tb]) for c, k, ta, tb in rows
            if ta in metric_values and tb in metric_values]


def test_jailbreak_pairs_share_attack_and_prompt_and_cluster_on_the_prompt(jailbreak_db):
    (units, factors, cluster), result = contrasts_of("provider_vs_size", jailbreak_overrides(jailbreak_db),
                                                     jailbreak_db, "asr_broad")
    assert factors == ("model",) and cluster == "item" and result.item_name == "prompt"
    values = dict(zip(units["trial_id"], units["value"]))
    pairs = sql_pairs(jailbreak_db, values, "attack")
    assert result.n_clusters == len({k for _, k, _, _ in pairs}) > 0
    by_scope = {c.condition: c for c in result.contrasts}
    assert set(by_scope) == {f"attack={a}" for a in ATTACKS} | {None}
    for attack in ATTACKS:
        mine = [(a, b) for c, _, a, b in pairs if c == attack]
        row = by_scope[f"attack={attack}"]
        n10 = sum(a == 1 and b == 0 for a, b in mine)
        n01 = sum(a == 0 and b == 1 for a, b in mine)
        n11 = sum(a == 1 and b == 1 for a, b in mine)
        assert row.paired and not row.clustered and row.n_pairs == len(mine)
        assert (row.a_only, row.b_only) == (n10, n01)
        assert row.difference.value == pytest.approx((n10 - n01) / len(mine))
        n00, n = len(mine) - n11 - n10 - n01, len(mine)
        assert row.difference.interval == "paired MOVER of Clopper-Pearson limits"
        assert (row.difference.low, row.difference.high) == pytest.approx(
            mover_by_hand(n11 + n10, n, n11 + n01, n, newcombe_phi(n11, n10, n01, n00)))
        consistent(row.difference)
    pooled = by_scope[None]
    # Each prompt holds one pair per attack: clustered on prompts (Korn-Graubard limits).
    assert pooled.paired and pooled.clustered and pooled.n_pairs == len(pairs)
    assert pooled.clusters == len({k for _, k, _, _ in pairs}) and pooled.clusters < pooled.n_pairs
    assert pooled.difference.interval == "paired MOVER of Korn-Graubard limits"
    consistent(pooled.difference)
    assert pooled.difference.value == pytest.approx(sum(a - b for _, _, a, b in pairs) / len(pairs))
    # Holm across the three comparisons, by hand.
    ps = sorted(c.difference.p for c in result.contrasts)
    holm = [min(1.0, max((3 - j) * ps[j] for j in range(i + 1))) for i in range(3)]
    assert sorted(c.holm_p for c in result.contrasts) == pytest.approx(holm)


def test_changed_items_are_compared_unpaired(jailbreak_db, tmp_path):
    db = tmp_path / "study.duckdb"
    shutil.copy(jailbreak_db, db)
    con = duckdb.connect(str(db))
    for trial_id, inputs in con.execute("SELECT trial_id, inputs FROM trials WHERE cell->>'model' = ?",
                                        [MODELS[1]]).fetchall():
        inputs = json.loads(inputs)
        inputs["item"]["prompt_id"] = "other-" + inputs["item"]["prompt_id"]
        con.execute("UPDATE trials SET inputs = ? WHERE trial_id = ?", [json.dumps(inputs), trial_id])
    con.close()
    (units, _, _), result = contrasts_of("provider_vs_size", jailbreak_overrides(jailbreak_db), db, "asr_broad",
                                         pooled=False)
    assert len(result.contrasts) == len(ATTACKS)
    for row in result.contrasts:
        assert not row.paired and row.n_pairs == 0 and row.a_only is None
        subset = units[units["condition"] == row.condition]
        a, b = subset[subset["model"] == MODELS[0]]["value"], subset[subset["model"] == MODELS[1]]["value"]
        xa, xb = int(a.sum()), int(b.sum())
        assert (row.n_a, row.n_b) == (len(a), len(b))
        assert row.difference.interval == "independent MOVER of Clopper-Pearson limits"
        assert (row.difference.low, row.difference.high) == pytest.approx(mover_by_hand(xa, len(a), xb, len(b), 0.0))
        consistent(row.difference)


ESCALATION_SEEDS = 10


def escalation_overrides(db) -> list[str]:
    out = [f"design.factors.agent=[{','.join(MODELS)}]", "design.factors.persona=[default,adversarial]",
           "design.controls=[{agent: [scripted:null]}]", f"design.seeds={ESCALATION_SEEDS}", "scenario.max_turns=2",
           f"store.path={db}", "report.sections=[{type: caveats}]"]
    for key in MODELS:
        out += [f"models.{key}.litellm_id=openrouter/stand-in/{key}", f"~models.{key}.weights", f"++models.{key}.chat_template=null"]
    return out


async def escalates(**kwargs):
    turn = int(re.search(r"Turn (\d+) of", kwargs["messages"][1]["content"]).group(1))
    content = json.dumps({"reasoning": "stand-in", "signal_level": 0, "action_level": turn})
    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": content}}],
                                 usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})


@pytest.fixture(scope="module")
def escalation_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("paired_esc") / "study.duckdb"
    _, summary, _ = run_study("model_size", escalation_overrides(db), show_progress=False,
                              gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=escalates))
    assert summary.errors == 0
    # Plant nuclear outcomes that depend on model, persona and seed, so pairs differ.
    con = duckdb.connect(str(db))
    for trial_id, cell, seed in con.execute("SELECT trial_id, cell, seed FROM trials").fetchall():
        cell = json.loads(cell)
        nuclear = (seed * (3 if cell["agent"] == MODELS[0] else 5) + len(cell.get("persona", ""))) % 3 == 0
        con.execute("UPDATE escalation_episodes SET nuclear = ? WHERE trial_id = ?", [nuclear, trial_id])
        # and signals that make divergence differ by model, persona and seed
        signal = (seed + len(cell.get("persona", ""))) % 3 if cell["agent"] == MODELS[0] else 0
        con.execute("UPDATE escalation_turns SET signal_level = ? WHERE trial_id = ?", [signal, trial_id])
    con.close()
    return db


def test_escalation_pairs_share_persona_and_seed_and_cluster_on_the_seed(escalation_db):
    (units, factors, cluster), result = contrasts_of("model_size", escalation_overrides(escalation_db),
                                                     escalation_db, "nuclear_rate")
    assert factors == ("agent",) and cluster == "seed" and not result.has_items
    assert set(units["model"]) == set(MODELS)  # the scripted control is not a model
    assert result.n_clusters == ESCALATION_SEEDS
    values = dict(zip(units["trial_id"], units["value"]))
    con = duckdb.connect(str(escalation_db), read_only=True)
    rows = con.execute("SELECT a.cell->>'persona', a.seed, a.trial_id, b.trial_id FROM trials a JOIN trials b"
                       " ON a.cell->>'agent' = ? AND b.cell->>'agent' = ? AND a.seed = b.seed"
                       " AND a.cell->>'persona' = b.cell->>'persona'", list(MODELS)).fetchall()
    con.close()
    pairs = [(p, s, values[a], values[b]) for p, s, a, b in rows]
    by_scope = {c.condition: c for c in result.contrasts}
    for persona in ("default", "adversarial"):
        row = by_scope[f"persona={persona}"]
        mine = [(a, b) for p, _, a, b in pairs if p == persona]
        assert row.paired and not row.clustered and row.n_pairs == len(mine) == ESCALATION_SEEDS
        assert (row.a_only, row.b_only) == (sum(a > b for a, b in mine), sum(a < b for a, b in mine))
        x1, x2 = sum(a for a, _ in mine), sum(b for _, b in mine)
        n11 = sum(a == b == 1 for a, b in mine)
        phi = newcombe_phi(n11, row.a_only, row.b_only, len(mine) - n11 - row.a_only - row.b_only)
        assert (row.difference.low, row.difference.high) == pytest.approx(
            mover_by_hand(int(x1), len(mine), int(x2), len(mine), phi))
        consistent(row.difference)
    pooled = by_scope[None]
    assert pooled.clustered and pooled.clusters == ESCALATION_SEEDS and pooled.n_pairs == 2 * ESCALATION_SEEDS
    assert pooled.difference.value == pytest.approx(sum(a - b for _, _, a, b in pairs) / len(pairs))
    if pooled.a_only + pooled.b_only:
        assert not math.isnan(pooled.difference.low) and pooled.difference.low <= pooled.difference.value


def test_escalation_means_are_paired_by_seed_with_a_sign_flip_test(escalation_db):
    """Divergence (a mean): per persona, the mean of the 10 paired differences with the studentized
    bootstrap over them; pooled, over the seeds (clusters of two pairs)."""
    (units, _, _), result = contrasts_of("model_size", escalation_overrides(escalation_db), escalation_db,
                                         "divergence")
    con = duckdb.connect(str(escalation_db), read_only=True)
    per_game = dict(con.execute("SELECT trial_id, avg(abs(action_level - signal_level)) FROM escalation_turns"
                                " WHERE NOT forced GROUP BY trial_id").fetchall())
    rows = con.execute("SELECT a.cell->>'persona', a.trial_id, b.trial_id FROM trials a JOIN trials b"
                       " ON a.cell->>'agent' = ? AND b.cell->>'agent' = ? AND a.seed = b.seed"
                       " AND a.cell->>'persona' = b.cell->>'persona'", list(MODELS)).fetchall()
    con.close()
    by_scope = {c.condition: c for c in result.contrasts}
    for persona in ("default", "adversarial"):
        diffs = [per_game[a] - per_game[b] for p, a, b in rows if p == persona]
        row = by_scope[f"persona={persona}"]
        assert row.n_pairs == len(diffs) == ESCALATION_SEEDS and not row.clustered
        assert row.difference.value == pytest.approx(sum(diffs) / len(diffs))
        assert row.difference.interval == "studentized cluster bootstrap of the paired differences"
        if len(set(diffs)) > 1:
            assert row.difference.low <= row.difference.value <= row.difference.high
            consistent(row.difference)
        else:  # every pair differs by the same amount: no spread to studentize
            assert math.isnan(row.difference.low) and "same value" in row.difference.note
    pooled = by_scope[None]
    assert pooled.clustered and pooled.clusters == ESCALATION_SEEDS
    assert pooled.difference.interval == "studentized cluster bootstrap of the paired differences"
    consistent(pooled.difference)
    assert pooled.difference.low <= pooled.difference.value <= pooled.difference.high


def test_a_scenario_that_declares_independent_trials_is_not_clustered(escalation_db, monkeypatch):
    """randomised_unit = 'trial': every pair is its own cluster, so pooled rows use the paired MOVER of
    exact limits over all pairs."""
    loaded = load_study("model_size", escalation_overrides(escalation_db))
    monkeypatch.setattr(type(loaded.scenario), "randomised_unit", "trial")
    (_, _, cluster), result = contrasts_of("model_size", escalation_overrides(escalation_db), escalation_db,
                                           "nuclear_rate")
    pooled = next(c for c in result.contrasts if c.condition is None)
    assert cluster == "trial" and not pooled.clustered and pooled.clusters == pooled.n_pairs == 2 * ESCALATION_SEEDS
    assert pooled.difference.interval == "paired MOVER of Clopper-Pearson limits"
    consistent(pooled.difference)
