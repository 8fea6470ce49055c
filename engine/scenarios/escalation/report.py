"""Report pieces only the escalation scenario has: transcripts and data-driven caveats."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.report.markdown import escape, table
from engine.report.sections import Rendered, Section, register_section
from engine.spec.schema import Strict

_SCRIPTED = "scripted:"


def _first_games(ctx, rule: str, limit: int) -> list[tuple]:
    """(trial_id, agent, persona, seed) of the example games chosen by the rule, in plan order."""
    nuclear_only = rule == "first_nuclear_per_model"
    rows = ctx.con.execute(
        "SELECT t.trial_id, t.cell->>'agent' AS agent, coalesce(t.cell->>'persona', 'default') AS persona,"
        " t.seed, e.first_nuclear_turn, p.rowid AS ord"
        " FROM trials t JOIN plan p ON p.trial_id = t.trial_id AND p.spec_hash = ?"
        " JOIN escalation_episodes e ON e.trial_id = t.trial_id"
        " WHERE t.status = 'done' AND NOT starts_with(t.cell->>'agent', ?)"
        + (" AND e.nuclear" if nuclear_only else "") + " ORDER BY t.seed, ord",
        [ctx.spec_hash, _SCRIPTED]).fetchall()
    chosen, seen = [], set()
    for trial_id, agent, persona, seed, _first, _ord in rows:
        key = agent if nuclear_only else (agent, persona)
        if key not in seen:
            seen.add(key)
            chosen.append((trial_id, agent, persona, seed))
    return chosen[:limit]


@register_section
class Transcripts(Section):
    """Example games chosen by a stated rule; every model-written string is escaped."""

    type = "transcripts"

    class Options(Strict):
        type: str
        rule: Literal["first_nuclear_per_model", "first_per_cell"] = "first_nuclear_per_model"
        max_examples: int = Field(default=6, gt=0)

    def render(self, ctx, options) -> Rendered:
        rule_text = {"first_nuclear_per_model": "for each model, the lowest-seed game that reached a nuclear level",
                     "first_per_cell": "for each model and persona, the lowest-seed finished game"}[options.rule]
        parts = ["## Appendix: example transcripts", escape(f"Chosen by rule: {rule_text}.")]
        games = _first_games(ctx, options.rule, options.max_examples)
        if not games:
            parts.append(escape("No game matched the rule."))
        for i, (trial_id, agent, persona, seed) in enumerate(games):
            model = ctx.spec.models[agent].display_name if agent in ctx.spec.models else agent
            turns = ctx.con.execute(
                "SELECT turn, side, signal_level, action_level, realised_level, accident, coalesce(levers, ''),"
                " coalesce(parse_status, ''), coalesce(reasoning, '') FROM escalation_turns WHERE trial_id = ?"
                " ORDER BY turn, side", [trial_id]).fetchall()
            rows = [(t, s, sig, act, f"{real}{' (accident)' if acc else ''}", lev, ps, reason)
                    for t, s, sig, act, real, acc, lev, ps, reason in turns]
            parts.append(f"### {escape(model)}, persona {escape(persona)}, seed {seed}")
            parts.append(table(["Turn", "Side", "Signal", "Action", "Realised", "Levers", "Parse", "Reasoning"],
                               rows, f"Transcript: {model}, {persona}, seed {seed}.", f"tbl-transcript-{i}",
                               ["r", "l", "r", "r", "r", "l", "l", "l"], widths=[5, 5, 6, 6, 9, 9, 6, 54]))
        return Rendered("\n\n".join(parts))


def escalation_caveats(ctx) -> list[str]:
    out = []
    nulls = [c for c in ctx.cells.itertuples() if c.cell.get("agent") == "scripted:null"]
    for c in nulls:
        est = ctx.estimate(c.cell_id, "nuclear_rate")
        if est.n:
            out.append(f"Control: the always-hold policy reached a nuclear level in {est.value:.0%} of {est.n} games "
                       "(what the rules and fog produce with no agent escalating).")
    row = ctx.con.execute(
        "SELECT count(*), avg(e.accident::INT) FROM escalation_turns e JOIN trials t ON t.trial_id = e.trial_id"
        " JOIN plan p ON p.trial_id = t.trial_id AND p.spec_hash = ? WHERE t.status = 'done'",
        [ctx.spec_hash]).fetchone()
    if row[0]:
        fog = ctx.loaded.scenario_params.fog_probability
        out.append(f"Fog of war: {row[1]:.1%} of {row[0]:,} side-turns were accidental one-level escalations "
                   f"(fog_probability {fog:g}); realised levels, and so nuclear rate, velocity and welfare, include "
                   "them, while divergence uses the chosen action.")
    if any(not c.is_control and len(ctx.scenario.cell_models(c.cell)) == 1 for c in ctx.cells.itertuples()):
        out.append("In mirror matches both sides are the same model, so per-game metrics pool its two sides; "
                   "the two sides are not independent observations.")
    return out
