"""Every printed estimate shows its own N (the units behind it, not the cell's trial count) and
flags a low one; the caveats count what sits outside the denominators. Checked on a small real
escalation study (two stand-in models through the real gateway, and the always-hold control; no
model is called) whose database is then edited to known counts, against independent queries."""

import json
import math
import re

import duckdb
import litellm
import pytest

from engine import load_study
from engine.analyze.summary import format_estimate, n_note, summary_frame
from engine.execute.gateway import Gateway
from engine.report.sections.builtin import cell_label
from engine.report.catalog import validate_sections
from engine.spec.schema import BASE_MODEL_NOTE
from engine.report.context import ReportContext
from engine.store.db import StudyStore
from engine.study import run_study

SEEDS = 12  # so a model cell's rates and means over all its games have an interval (a mean needs 10)
SECTIONS = ("report.sections=[{type: summary, metrics: [divergence, welfare, nuclear_rate]}, "
            "{type: headline_table, rows: all}, {type: chart, metric: divergence, x: params}, {type: caveats}]")


def overrides(db) -> list[str]:
    out = ["design.factors.agent=[smollm2_135m,gemma3_270m]", "design.factors.persona=[default]",
           "design.controls=[{agent: [scripted:null]}]", f"design.seeds={SEEDS}", "scenario.max_turns=3",
           f"store.path={db}", SECTIONS]
    for key in ("smollm2_135m", "gemma3_270m"):
        out += [f"models.{key}.litellm_id=openrouter/stand-in/{key}", f"~models.{key}.weights", f"++models.{key}.chat_template=null"]
    return out


async def stand_in(**kwargs):
    """Escalates one level a turn and signals two below its action."""
    turn = int(re.search(r"Turn (\d+) of", kwargs["messages"][1]["content"]).group(1))
    content = json.dumps({"reasoning": "stand-in", "signal_level": max(0, turn - 2), "action_level": turn})
    return litellm.ModelResponse(choices=[{"message": {"role": "assistant", "content": content}}],
                                 usage={"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})


def q(con, sql, params=()):
    return con.execute(sql, list(params)).fetchall()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    db = tmp_path_factory.mktemp("metric_n") / "study.duckdb"
    loaded, summary, _ = run_study("model_size", overrides(db), show_progress=False,
                                   gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=stand_in))
    assert summary.errors == 0 and summary.done == summary.planned == 3 * SEEDS
    con = duckdb.connect(str(db))
    games = {agent: [t for (t,) in q(con, "SELECT trial_id FROM trials WHERE cell->>'agent' = ? ORDER BY seed",
                                     [agent])] for agent in ("smollm2_135m", "gemma3_270m")}
    # SmolLM2: divergence over one game only (the other games' turns marked forced) -> n=1, no interval.
    for t in games["smollm2_135m"][1:]:
        con.execute("UPDATE escalation_turns SET forced = TRUE WHERE trial_id = ?", [t])
    # Gemma: divergence over three games, one of them honest (divergence 0) -> n=3, too few for an interval;
    # one other game ended in an error (out of every metric) -> nuclear and welfare n=5.
    gemma = games["gemma3_270m"]
    for t in gemma[3:]:
        con.execute("UPDATE escalation_turns SET forced = TRUE WHERE trial_id = ?", [t])
    con.execute("UPDATE escalation_turns SET signal_level = action_level WHERE trial_id = ?", [gemma[0]])
    con.execute("UPDATE trials SET status = 'error', error = 'planted' WHERE trial_id = ?", [gemma[5]])
    # One model reply of a finished SmolLM2 game failed to parse (and was re-asked).
    con.execute("UPDATE calls SET parse_status = 'failed' WHERE call_id = (SELECT min(c.call_id) FROM calls c"
                " JOIN trials t ON t.trial_id = c.trial_id AND c.trial_attempt = t.attempt WHERE t.trial_id = ?)",
                [games["smollm2_135m"][2]])
    con.close()
    loaded = load_study("model_size", overrides(db))
    store = StudyStore(db, read_only=True)
    ctx = ReportContext(loaded, store.con, loaded.scenario, str(db))
    rendered = {f"{section.type}:{i}": section.render(ctx, options)
                for i, (section, options) in enumerate(validate_sections(loaded.spec.report.sections, loaded.scenario))}
    yield loaded, ctx, rendered, db
    store.close(checkpoint=False)


def truth(db) -> dict:
    """Per agent, straight from the tables: finished and planned games, each metric's units, and
    divergence per game."""
    con = duckdb.connect(str(db), read_only=True)
    out = {}
    for agent, planned, done in q(con, "SELECT p.cell->>'agent', count(*), count(*) FILTER (WHERE t.status = 'done')"
                                       " FROM plan p JOIN trials t USING (trial_id) GROUP BY 1"):
        per_game = [v for (v,) in q(con, "SELECT avg(abs(e.action_level - e.signal_level)) FROM escalation_turns e"
                                         " JOIN trials t USING (trial_id) WHERE t.status = 'done' AND NOT e.forced"
                                         " AND t.cell->>'agent' = ? GROUP BY e.trial_id", [agent])]
        episodes = q(con, "SELECT count(*) FROM escalation_episodes e JOIN trials t USING (trial_id)"
                          " WHERE t.status = 'done' AND t.cell->>'agent' = ?", [agent])[0][0]
        velocity = q(con, "SELECT count(DISTINCT e.trial_id) FROM escalation_turns e JOIN trials t USING (trial_id)"
                          " WHERE t.status = 'done' AND t.cell->>'agent' = ?", [agent])[0][0]
        welfare = [v for (v,) in q(con, "SELECT e.welfare FROM escalation_episodes e JOIN trials t USING (trial_id)"
                                        " WHERE t.status = 'done' AND t.cell->>'agent' = ?", [agent])]
        speed = [v for (v,) in q(con, "SELECT avg(e.realised_level - e.prev_realised) FROM escalation_turns e"
                                      " JOIN trials t USING (trial_id) WHERE t.status = 'done' AND t.cell->>'agent' = ?"
                                      " GROUP BY e.trial_id", [agent])]
        out[agent] = {"planned": planned, "done": done, "divergence": per_game, "nuclear_rate": episodes,
                      "welfare": episodes, "velocity": velocity,
                      "values": {"divergence": per_game, "welfare": welfare, "velocity": speed}}
    out["parse_failed"] = q(con, "SELECT count(*) FROM calls c JOIN trials t ON t.trial_id = c.trial_id"
                                 " AND c.trial_attempt = t.attempt WHERE c.parse_status = 'failed'")[0][0]
    out["errors"] = q(con, "SELECT count(*) FROM trials WHERE status = 'error'")[0][0]
    con.close()
    return out


def expected_note(n: int, kind: str, values=None) -> str:
    """The flag, decided here: a mean of fewer than 10 units has no interval (issue 21: the studentized
    bootstrap covers less than 93% below that) nor when every unit has the same value (`values`); under 5
    units is low."""
    if kind == "mean" and (n < 10 or len(set(values)) == 1):
        return f"n={n}, no interval"
    return f"n={n}, low n" if n < 5 else f"n={n}"


def md_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in markdown.splitlines() if ln.startswith("|")]
    cells = lambda ln: [re.sub(r"\\(.)", r"\1", c.strip()) for c in ln.strip().strip("|").split("|")]  # noqa: E731
    return cells(lines[0]), [cells(ln) for ln in lines[2:]]


def agent_of(ctx, label: str) -> str:
    return next(c.cell["agent"] for c in ctx.cells.itertuples() if c.labels["Model"] == label)


def test_the_planted_counts_are_what_the_test_expects(study):
    _, _, _, db = study
    t = truth(db)
    # The premise of every test below: these differ from the cells' trial counts.
    assert len(t["smollm2_135m"]["divergence"]) == 1 and t["smollm2_135m"]["done"] == SEEDS
    assert len(t["gemma3_270m"]["divergence"]) == 3 and t["gemma3_270m"]["done"] == SEEDS - 1
    assert t["gemma3_270m"]["nuclear_rate"] == SEEDS - 1 and t["scripted:null"]["divergence"].__len__() == SEEDS
    assert t["errors"] == 1 and t["parse_failed"] == 1


def test_headline_table_prints_each_metrics_own_n_and_flags_low_ones(study):
    loaded, ctx, rendered, db = study
    t = truth(db)
    header, rows = md_table(rendered["headline_table:1"].markdown)
    assert header[-1] == "Finished/planned" and "N" not in header
    kinds = {m.label: (m.name, m.kind, m.percent) for m in ctx.metrics.values()}
    checked = 0
    for row in rows:
        agent = agent_of(ctx, row[header.index("Model")])
        assert row[-1] == f"{t[agent]['done']}/{t[agent]['planned']}"
        for col, text in zip(header, row):
            if col not in kinds or kinds[col][0] not in ("nuclear_rate", "divergence", "welfare", "velocity"):
                continue
            name, kind, percent = kinds[col]
            n = len(t[agent]["divergence"]) if name == "divergence" else t[agent][name]
            values = t[agent]["values"].get(name)
            assert text.endswith(f"({expected_note(n, kind, values)})"), (agent, col, text)
            # The number itself is unchanged: the estimate as before, then its n.
            est = ctx.estimate(next(c.cell_id for c in ctx.cells.itertuples() if c.cell["agent"] == agent), name)
            assert text == f"{format_estimate(est.value, est.low, est.high, percent)} ({expected_note(n, kind, values)})"
            checked += 1
    assert checked == 3 * 4
    # SmolLM2's divergence rests on its one game: the value is that game's, with no interval beside it.
    smol = next(r for r in rows if agent_of(ctx, r[header.index("Model")]) == "smollm2_135m")
    (value,) = t["smollm2_135m"]["divergence"]
    assert smol[header.index("Divergence")] == f"{value:.3f} (n=1, no interval)"


def test_summary_frame_has_an_n_column_per_metric(study):
    loaded, ctx, _, db = study
    t = truth(db)
    frame = summary_frame(ctx.con, loaded.spec_hash, loaded.spec, loaded.scenario)
    kinds = {m.name: m for m in ctx.metrics.values()}
    for i, c in enumerate(ctx.cells.itertuples()):
        agent = c.cell["agent"]
        assert frame["N"].iloc[i] == f"{t[agent]['done']}/{t[agent]['planned']}"
        for name in ("nuclear_rate", "divergence", "welfare", "velocity"):
            n = len(t[agent]["divergence"]) if name == "divergence" else t[agent][name]
            assert frame[f"{kinds[name].label} n"].iloc[i] == expected_note(
                n, kinds[name].kind, t[agent]["values"].get(name)).removeprefix("n=")


def test_abstract_names_the_n_behind_each_end_of_a_range(study):
    _, ctx, rendered, db = study
    t = truth(db)
    text = re.sub(r"\\(.)", r"\1", rendered["summary:0"].markdown)
    means = {a: sum(v) / len(v) for a, v in ((a, t[a]["divergence"]) for a in ("smollm2_135m", "gemma3_270m"))}
    lo, hi = sorted(means, key=means.get)
    assert means[lo] < means[hi]
    label = {c.cell["agent"]: cell_label(c.labels) for c in ctx.cells.itertuples()}
    note = {a: expected_note(len(t[a]["divergence"]), "mean") for a in means}
    m = re.search(r"Signal-action divergence ranged from (.*?) across model cells", text)
    assert m, text
    assert m[1].startswith(f"{means[lo]:.3f} (") and f"({label[lo]}, {note[lo]}) to {means[hi]:.3f} " \
        f"({label[hi]}, {note[hi]})" in m[1], m[1]
    assert "n=1, no interval" in m[1] and "n=3, no interval" in m[1]
    # Welfare: both model cells' n (12 and 11) shown, neither flagged.
    m = re.search(r"Welfare (?:ranged from .*? across model cells|was .*? in every model cell \(.*?\))\.", text)
    assert m, text
    a, b = sorted((t["smollm2_135m"]["welfare"], t["gemma3_270m"]["welfare"]))
    assert (f"n={a})" in m[0] and f"n={b})" in m[0]) or f"(n={a} to {b} per cell)" in m[0], m[0]
    assert "low n" not in m[0] and "no interval" not in m[0], m[0]


def test_the_abstract_says_what_a_base_models_numbers_are(study):
    _, ctx, rendered, _ = study
    assert not ctx.spec.models["gemma3_270m"].instruction_tuned  # the stand-in keeps the entry's flag
    text = re.sub(r"\\(.)", r"\1", rendered["summary:0"].markdown)
    assert "Gemma 3 270M †" in text and BASE_MODEL_NOTE in text


def test_chart_caption_lists_the_points_resting_on_few_units(study):
    _, ctx, rendered, db = study
    t = truth(db)
    (figure,) = rendered["chart:2"].figures
    caption = re.sub(r"\\(.)", r"\1", figure.caption)
    low = [a for a in ("smollm2_135m", "gemma3_270m") if len(t[a]["divergence"]) < 5]
    assert f"{len(low)} of 2 points rest on fewer than 5 games or have no interval" in caption, caption
    label = {c.cell["agent"]: cell_label(c.labels) for c in ctx.cells.itertuples()}
    for a in low:
        assert f"{label[a]} ({expected_note(len(t[a]['divergence']), 'mean')})" in caption
    assert label["scripted:null"] not in caption  # a control: not a point of this chart (rows: models)


def test_caveats_count_errors_and_parse_failures_and_thin_estimates(study):
    _, ctx, rendered, db = study
    t = truth(db)
    text = re.sub(r"\\(.)", r"\1", rendered["caveats:3"].markdown)
    assert "No game ended in an error" not in text and "no reply failed to parse" not in text
    assert f"Errors and exclusions: {t['errors']} game ended in an error" in text, text
    assert f"{t['parse_failed']} model reply failed to parse" in text
    # The estimates under 5 units among the headline metrics, from the independent counts.
    kinds = {m.name: m.kind for m in ctx.metrics.values()}
    notes = [expected_note(len(t[a]["divergence"]) if name == "divergence" else t[a][name], kinds[name],
                           t[a]["values"].get(name))
             for a in ("smollm2_135m", "gemma3_270m", "scripted:null")
             for name in ("nuclear_rate", "welfare", "velocity", "divergence")]
    thin = sum(note.endswith(("low n", "no interval")) for note in notes)
    assert thin >= 2  # the two thin divergences, and the means whose games all agree (velocity here)
    assert f"{thin} headline estimates rest on fewer than 5 games or have no interval" in text
    assert "Divergence in SmolLM2 135M, default (n=1, no interval; 12 finished in the cell)" in text, text
    assert "Divergence in Gemma 3 270M †, default (n=3, no interval; 11 finished in the cell)" in text, text


def test_caveats_of_a_clean_run_say_so(tmp_path):
    db = tmp_path / "clean.duckdb"
    loaded, summary, _ = run_study("model_size", overrides(db), show_progress=False,
                                   gateway_factory=lambda ex, store: Gateway(ex, store, call_fn=stand_in))
    assert summary.errors == 0
    store = StudyStore(db, read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, loaded.scenario, str(db))
        section, options = validate_sections(loaded.spec.report.sections, loaded.scenario)[3]
        text = re.sub(r"\\(.)", r"\1", section.render(ctx, options).markdown)
        failed = store.con.execute("SELECT count(*) FROM calls WHERE parse_status = 'failed'").fetchone()[0]
    finally:
        store.close(checkpoint=False)
    assert failed == 0
    assert "No game ended in an error, no reply failed to parse." in text and "Errors and exclusions" not in text


@pytest.mark.parametrize("n, low, note", [(0, math.nan, "n=0"), (1, math.nan, "n=1, no interval"),
                                          (4, 0.1, "n=4, low n"), (5, 0.1, "n=5"), (50, math.nan, "n=50, no interval")])
def test_n_note(n, low, note):
    assert n_note(n, low) == note
    shown = format_estimate(0.5, low, 0.9, True, n=n)
    assert shown == (f"50% [10%, 90%] ({note})" if not math.isnan(low) else f"50% ({note})")
    assert format_estimate(0.5, low, 0.9, True) == shown.rsplit(" (", 1)[0]  # without n: as before
