"""Report pieces only the escalation scenario has: transcripts, what the rules force, the text of
each condition, and data-driven caveats."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from engine.report.sections.builtin import design_levels
from engine.report.markdown import MODEL_TEXT_LIMIT, bullet_list, escape, model_text, model_text_note, table
from engine.kernel.contracts import Rendered, Section
from engine.kernel.registry import register_section
from engine.kernel.records import Strict
from engine.scenarios.escalation.fog_report import fog_caveats

_SCRIPTED = "scripted:"


def _condition(cell: dict[str, Any]) -> str:
    """A cell's factor levels other than its agent, e.g. 'persona default' or 'pairing hawk_vs_dove,
    cooperation_window 3'."""
    parts = [f"{k} {v}" for k, v in cell.items() if k != "agent"]
    return ", ".join(parts) or "persona default"


def _first_games(ctx, rule: str, limit: int) -> list[tuple]:
    """(trial_id, agent, condition, seed) of the example games chosen by the rule, in plan order."""
    nuclear_only = rule == "first_nuclear_per_model"
    rows = ctx.con.execute(
        "SELECT t.trial_id, t.cell->>'agent' AS agent, t.cell::VARCHAR AS cell,"
        " t.seed, e.first_nuclear_turn, coalesce(p.position, p.rowid) AS ord"
        " FROM trials t JOIN plan p ON p.trial_id = t.trial_id AND p.spec_hash = ?"
        " JOIN escalation_episodes e ON e.trial_id = t.trial_id"
        " WHERE t.status = 'done' AND NOT starts_with(t.cell->>'agent', ?)"
        + (" AND e.nuclear" if nuclear_only else "") + " ORDER BY t.seed, ord",
        [ctx.spec_hash, _SCRIPTED]).fetchall()
    chosen, seen = [], set()
    for trial_id, agent, cell, seed, _first, _ord in rows:
        condition = _condition(json.loads(cell))
        key = agent if nuclear_only else (agent, condition)
        if key not in seen:
            seen.add(key)
            chosen.append((trial_id, agent, condition, seed))
    return chosen[:limit]


@register_section
class Transcripts(Section):
    """Example games chosen by a stated rule; every model-written string goes through `model_text`
    (capped at `max_chars`, control and bidi characters made visible) and is escaped."""

    type = "transcripts"
    shows_results = True

    class Options(Strict):
        type: str
        rule: Literal["first_nuclear_per_model", "first_per_cell"] = "first_nuclear_per_model"
        max_examples: int = Field(default=6, gt=0)
        max_chars: int = Field(default=MODEL_TEXT_LIMIT, gt=0, description="most characters of a reasoning shown")

    def render(self, ctx, options) -> Rendered:
        rule_text = {"first_nuclear_per_model": "for each model, the lowest-seed game that reached a nuclear level",
                     "first_per_cell": "for each model and condition (persona and any other factor), the "
                                       "lowest-seed finished game"}[options.rule]
        parts = ["## Appendix: example transcripts",
                 escape(f"Chosen by rule: {rule_text}. {model_text_note(options.max_chars)}")]
        games = _first_games(ctx, options.rule, options.max_examples)
        if not games:
            parts.append(escape("No game matched the rule."))
        for i, (trial_id, agent, condition, seed) in enumerate(games):
            model = ctx.spec.models[agent].label if agent in ctx.spec.models else agent
            turns = ctx.con.execute(
                "SELECT turn, side, signal_level, action_level, realised_level, accident,"
                " concat_ws(',', CASE WHEN forced THEN 'forced' END, levers),"
                " coalesce(parse_status, ''), coalesce(reasoning, '') FROM escalation_turns WHERE trial_id = ?"
                " ORDER BY turn, side", [trial_id]).fetchall()
            rows = [(t, s, sig, act, f"{real}{' (accident)' if acc else ''}", lev, ps,
                     model_text(reason, options.max_chars))
                    for t, s, sig, act, real, acc, lev, ps, reason in turns]
            parts.append(f"### {escape(model)}, {escape(condition)}, seed {seed}")
            parts.append(table(["Turn", "Side", "Signal", "Action", "Realised", "Levers", "Parse", "Reasoning"],
                               rows, f"Transcript: {model}, {condition}, seed {seed}.", f"tbl-transcript-{i}",
                               ["r", "l", "r", "r", "r", "l", "l", "l"], widths=[5, 5, 6, 6, 9, 9, 6, 54]))
        return Rendered("\n\n".join(parts))


# -- what the rules force ---------------------------------------------------------------------

def _cell_games(ctx) -> list[tuple[Any, Any]]:
    """(cell row, the game that cell plays) for every cell of the study, in plan order."""
    params = ctx.loaded.scenario_params
    return [(c, ctx.scenario._game_params(params, c.cell)) for c in ctx.cells.itertuples()]


def window_groups(ctx) -> list[dict[str, Any]]:
    """Cells grouped by the rules that decide what their cooperation window forces, each with the
    rules-only verdict, and with the games this study played: how many the rules end inside the
    window given each seed's own fog draws, and how many did."""
    from engine.scenarios.escalation.forced import seed_ends_in_window, window_verdict

    if "window_groups" in ctx.shared:
        return ctx.shared["window_groups"]
    groups: dict[tuple, dict[str, Any]] = {}
    for c, game in _cell_games(ctx):
        key = (game.cooperation_window, game.max_turns, game.ceasefire_turns, game.fog_probability,
               game.cooperation_mode, tuple(sorted(game.levers.model_dump().items())))
        group = groups.setdefault(key, {"game": game, "verdict": window_verdict(game), "cells": [],
                                        "games": 0, "predicted": 0, "observed": 0, "models": 0})
        group["cells"].append(c)
        rows = ctx.con.execute(
            "SELECT t.seed, e.turns_played FROM trials t JOIN plan p ON p.trial_id = t.trial_id AND p.spec_hash = ?"
            " JOIN escalation_episodes e ON e.trial_id = t.trial_id WHERE t.status = 'done' AND p.cell_id = ?",
            [ctx.spec_hash, c.cell_id]).fetchall()
        for seed, turns_played in rows:
            group["games"] += 1
            group["models"] += 0 if c.is_control else 1
            if game.cooperation_window:
                group["predicted"] += seed_ends_in_window(game, int(seed)) is not None
                group["observed"] += turns_played <= game.cooperation_window
    out = sorted(groups.values(), key=lambda g: (g["game"].cooperation_window, g["game"].ceasefire_turns))
    ctx.shared["window_groups"] = out
    return out


@register_section
class ForcedByRules(Section):
    """Per cooperation window N: which results the game's own rules decide before any agent moves
    (e.g. a ceasefire rule that ends every game whose sides stay at 0 for k <= N turns)."""

    type = "forced_by_rules"
    shows_results = True

    class Options(Strict):
        type: str
        title: str = "Results forced by the rules"

    def render(self, ctx, options) -> Rendered:
        groups = window_groups(ctx)
        parts = [f"## {escape(options.title)}"]
        windows = [g for g in groups if g["game"].cooperation_window]
        if not windows:
            parts.append(escape("No cooperation window in this study: no result is forced by a window."))
            return Rendered("\n\n".join(parts))
        forced = [g for g in windows if g["verdict"].forced]
        levels = lambda gs: ", ".join(str(g["game"].cooperation_window) for g in gs)  # noqa: E731
        if forced:
            lead = (f"Forced by the rules: with cooperation window N = {levels(forced)}, the rules end games inside "
                    "the window before any agent moves, so those games' results are not measurements of the agents. "
                    f"Not forced: N = {levels([g for g in groups if not g['verdict'].forced]) or 'none'}.")
        else:
            lead = ("No cooperation window in this study lets the rules end a game by themselves; the held turns still "
                    "add to welfare by construction and shorten the time left for escalation.")
        parts.append(escape(lead + " Computed from the rules alone (every fog outcome enumerated through the game's "
                            "own turn resolution), then checked against the games played."))
        rows = []
        payoff0 = groups[0]["game"].level_payoff[0]
        for g in groups:
            v = g["verdict"]
            rows.append((v.window, v.free_turns, f"{v.ceasefire_turns} calm turns" if v.ceasefire_turns else "off",
                         f"{v.p_rules_end:.1%}" if v.window else "—",
                         f"{g['predicted']} of {g['games']}" if v.window else "—",
                         f"{g['observed']} of {g['games']}" if v.window else "—", v.label))
        parts.append(table(["Window N", "Free turns", "Ceasefire rule", "Ended by the rules (probability)",
                            "Ended by the rules (these seeds)", "Ended in the window (observed)", "Verdict"], rows,
                           "Per cooperation window: the probability, over fog draws, that the rules alone end a game "
                           "inside the window; how many of this study's finished games the rules end there given each "
                           "seed's own fog draws; and how many did.", "tbl-forced-by-rules",
                           ["r", "r", "l", "r", "r", "r", "l"]))
        parts.append(bullet_list(escape(f"N = {g['verdict'].window}: {g['verdict'].reason(payoff0)}") for g in groups))
        mismatch = [g for g in windows if g["predicted"] != g["observed"]]
        if mismatch:
            parts.append(escape(f"The games played do not match the rules' prediction for N = {levels(mismatch)}: "
                                "games ended inside the window by something other than the window's rules."))
        return Rendered("\n\n".join(parts))


# -- the text of each condition ----------------------------------------------------------------

@register_section
class Conditions(Section):
    """The text (and rule changes) of every framing, governance, pairing and persona level the
    design uses, as the models read it."""

    type = "conditions"
    shows_results = True

    class Options(Strict):
        type: str
        title: str = "Conditions"

    def render(self, ctx, options) -> Rendered:
        spec, params = ctx.spec, ctx.loaded.scenario_params
        parts = [f"## {escape(options.title)}"]
        framings = design_levels(spec, "framing")
        if framings:
            parts.append(table(["Framing", "Text added to the system prompt"],
                               [(f, params.framings[f].text or "(none)") for f in framings],
                               "Framing levels (engine/scenarios/escalation/conf/framing/): a paragraph of both sides' system prompt.",
                               "tbl-framings", ["l", "l"], widths=[20, 80]))
        regimes = design_levels(spec, "governance")
        if regimes:
            rows = []
            for r in regimes:
                regime = params.governance_regimes[r]
                rules = ", ".join(f"{k}={v}" for k, v in regime.rule_changes().items()) or "none"
                rows.append((r, regime.text or "(none)", rules))
            parts.append(table(["Governance", "Text added to the system prompt", "Rule changes"], rows,
                               "Governance levels (engine/scenarios/escalation/conf/governance/): text for the models, and rule changes that "
                               "apply to every agent, scripted ones included.", "tbl-governance", ["l", "l", "l"],
                               widths=[18, 62, 20]))
        pairings = design_levels(spec, "pairing")
        if pairings:
            rows = []
            for name in pairings:
                pairing = params.pairings[name]
                rows.append((name, f"the cell's model, persona {pairing.a.persona}",
                             pairing.b.agent or f"the same model, persona {pairing.b.persona}"))
            parts.append(table(["Pairing", "Side A", "Side B"], rows,
                               "Pairings (engine/scenarios/escalation/conf/pairing/): who plays each side.", "tbl-pairings", ["l", "l", "l"]))
        personas = design_levels(spec, "persona") + design_levels(spec, "opponent_persona")
        personas += [getattr(params.pairings[p], side).persona for p in pairings for side in ("a", "b")
                     if not (side == "b" and params.pairings[p].b.agent)]
        personas = list(dict.fromkeys(personas))
        if personas:
            parts.append(table(["Persona", "Text (end of the system prompt)"],
                               [(p, params.personas[p].text) for p in personas],
                               "Personas (engine/scenarios/escalation/conf/persona/) the design uses.", "tbl-personas", ["l", "l"],
                               widths=[20, 80]))
        if len(parts) == 1:
            parts.append(escape("This design has no framing, governance, pairing or persona factor."))
        return Rendered("\n\n".join(parts))


# -- a metric against a design factor ----------------------------------------------------------

# -- caveats -----------------------------------------------------------------------------------

def escalation_caveats(ctx) -> list[str]:
    out = fog_caveats(ctx)
    row = ctx.con.execute(
        "SELECT count(*), avg(e.accident::INT) FROM escalation_turns e JOIN trials t ON t.trial_id = e.trial_id"
        " JOIN plan p ON p.trial_id = t.trial_id AND p.spec_hash = ? WHERE t.status = 'done'",
        [ctx.spec_hash]).fetchone()
    if row[0]:
        fog = ctx.loaded.scenario_params.fog_probability
        out.append(f"Fog of war: {row[1]:.1%} of {row[0]:,} side-turns were accidental one-level escalations "
                   f"(fog_probability {fog:g}); realised levels, and so nuclear rate, velocity and welfare, include "
                   "them, while divergence uses the chosen action.")
    params = ctx.loaded.scenario_params
    same_model = [c for c in ctx.cells.itertuples() if not c.is_control
                  and len({a for a, _ in ctx.scenario.side_setup(params, c.cell).values()}) == 1]
    if same_model:
        if any("pairing" in c.cell for c in ctx.cells.itertuples()):
            out.append("When both sides are the same model (mirror matches and same-model pairings), per-game metrics "
                       "pool its two sides; the two sides are not independent observations.")
        else:
            out.append("In mirror matches both sides are the same model, so per-game metrics pool its two sides; "
                       "the two sides are not independent observations.")
    out += _rule_caveats(ctx)
    return out


def _rule_caveats(ctx) -> list[str]:
    """Where the game's rules, not the agents, decide part of a result."""
    out = []
    groups = window_groups(ctx)
    forced = [g for g in groups if g["game"].cooperation_window and g["verdict"].forced]
    if forced:
        k = sorted({g["game"].ceasefire_turns for g in forced})
        levels = ", ".join(str(g["game"].cooperation_window) for g in forced)
        played = sum(g["observed"] for g in forced)
        total = sum(g["games"] for g in forced)
        out.append(f"Results forced by the rules: with ceasefire_turns = {', '.join(map(str, k))}, cooperation windows "
                   f"N = {levels} end games by ceasefire inside the window, before any agent moves ({played} of {total} "
                   "finished games at those N). Their nuclear rate, welfare and divergence are set by the rules, not "
                   "measured; see 'Results forced by the rules'.")
    windows = [g for g in groups if g["game"].cooperation_window]
    if not windows:
        out.append("Results forced by the rules: none by a cooperation window, as this design has none (checked from "
                   "the rules alone).")
    if windows and not forced:
        out.append("Cooperation windows hold both sides at level 0 for their first N turns: welfare gains from those "
                   "turns by construction and nuclear use can only come in the turns after; compare the scripted "
                   "controls, which show what the window does with no model.")
    regimes = [r for r in design_levels(ctx.spec, "governance")
               if ctx.loaded.scenario_params.governance_regimes[r].rule_changes()]
    if regimes:
        changes = "; ".join(f"{r}: " + ", ".join(f"{k}={v}" for k, v in
                                                 ctx.loaded.scenario_params.governance_regimes[r].rule_changes().items())
                            for r in regimes)
        out.append(f"Governance levels that change the rules ({changes}) act on every agent, scripted ones included; "
                   "part of their effect comes from the rule itself (e.g. a ceasefire ends calm games early, leaving "
                   "fewer turns in which to escalate), not from how models read the text. The scripted controls under "
                   "each level show what the rule does alone.")
    return out
