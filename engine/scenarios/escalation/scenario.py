"""The escalation wargame: two agents on a 10-level ladder, with signals, fog and levers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.kernel.errors import SpecError
from engine.kernel.records import CallEstimate, TrialOutcome, tokens_for
from engine.kernel.registry import register_scenario
from engine.plan.generation import cell_generation
from engine.kernel.contracts import Scenario
from engine.scenarios.escalation.agents import (
    POLICIES, SCRIPTED_PREFIX, Decision, Observation, llm_decision, scripted_decision, system_prompt,
    user_prompt,
)
from engine.scenarios.escalation.game import SIDES, GameState, Move, RandomStreams, TurnRecord, is_nuclear, welfare
from engine.scenarios.escalation.metrics import METRICS
from engine.scenarios.escalation.params import NUCLEAR_LEVEL, STRATEGIC_EXCHANGE_LEVEL, EscalationParams

# Factors that set a side's agent or persona, that set a game parameter, or the sampling temperature.
AGENT_FACTORS = ("agent", "opponent")
PERSONA_FACTORS = ("persona", "opponent_persona")
GAME_FACTORS = ("max_turns", "start_level", "history_window", "fog_probability", "cooperation_window",
                "ceasefire_turns", "reasoning_max_chars")
# Factors whose levels are text in the scenario's conf/ (engine/scenarios/escalation/conf/framing/, engine/scenarios/escalation/conf/governance/, engine/scenarios/escalation/conf/pairing/), held in
# the scenario's `framings`, `governance_regimes` and `pairings` (engine/scenarios/escalation/conf/scenario/escalation_series.yaml).
LEVEL_FACTORS = {"framing": "framings", "governance": "governance_regimes", "pairing": "pairings"}
LLM_ONLY_FACTORS = (*PERSONA_FACTORS, "temperature", "history_window", "reasoning_max_chars", "framing", "pairing")
DEFAULT_PERSONA = "default"
# Game settings that enter a trial's inputs (and so its id) only when they differ from their
# default, so studies that do not use them keep their trial ids.
OPTIONAL_GAME_INPUTS = ("cooperation_mode", "framing_text", "governance_text")
NOT_GAME_INPUTS = {"personas", "name", *LEVEL_FACTORS.values()}


@register_scenario
class Escalation(Scenario):
    name = "escalation"
    version = "1"
    Params = EscalationParams
    migrations_dir = Path(__file__).parent / "migrations"
    unit = ("game", "games")
    headline_metrics = ("nuclear_rate", "divergence", "welfare", "velocity", "parse_failure_rate",
                        "error_rate")

    # -- spec checks --------------------------------------------------------------------------
    def check_design(self, spec, params: EscalationParams) -> None:
        known = {*AGENT_FACTORS, *PERSONA_FACTORS, *GAME_FACTORS, *LEVEL_FACTORS, "temperature"}
        blocks = [("design.factors", spec.design.factors)] + [
            (f"design.controls.{i}", block) for i, block in enumerate(spec.design.controls)]
        for where, block in blocks:
            for factor, levels in block.items():
                key = f"{where}.{factor}"
                if factor not in known:
                    raise SpecError(f"unknown factor '{factor}' for scenario escalation "
                                    f"(known: {', '.join(sorted(known))})", key=key)
                if factor in AGENT_FACTORS:
                    for level in levels:
                        self._check_agent(str(level), spec.models, key)
                if factor in PERSONA_FACTORS:
                    for level in levels:
                        if level not in params.personas:
                            raise SpecError(f"unknown persona '{level}' (known: "
                                            f"{', '.join(sorted(params.personas))})", key=key)
                if factor in LEVEL_FACTORS:
                    known_levels = getattr(params, LEVEL_FACTORS[factor])
                    for level in levels:
                        if str(level) not in known_levels:
                            hint = (f"add a file to engine/scenarios/escalation/conf/{factor}/ and list it in engine/scenarios/escalation/conf/scenario/escalation_series.yaml"
                                    if known_levels else "use 'scenario: escalation_series', which has the levels")
                            raise SpecError(f"unknown {factor} '{level}' (known: "
                                            f"{', '.join(sorted(known_levels)) or 'none'}; {hint})", key=key)
            if "agent" not in block:
                raise SpecError("every design block needs an 'agent' factor", key=where)
            self._check_level_factors(spec, params, block, where)
            scripted_only = all(self._is_scripted(str(a)) for a in block["agent"]) and all(
                self._is_scripted(str(a)) for a in block.get("opponent", block["agent"]))
            any_scripted = any(self._is_scripted(str(a)) for a in block["agent"])
            for factor in LLM_ONLY_FACTORS:
                if factor in block and any_scripted:
                    raise SpecError(
                        f"'{factor}' would be ignored for scripted agents in this block; put scripted "
                        "agents in a design.controls block without it", key=f"{where}.{factor}")
            if scripted_only and "temperature" in block:
                raise SpecError("temperature is ignored by scripted agents", key=f"{where}.temperature")
        if DEFAULT_PERSONA not in params.personas:
            raise SpecError(f"a '{DEFAULT_PERSONA}' persona is required", key="scenario.personas")
        for cell in self._cells(spec):
            try:
                self._game_params(params, cell)
            except ValidationError as exc:
                message = exc.errors()[0]["msg"].removeprefix("Value error, ")
                levels = ", ".join(f"{k}={v}" for k, v in cell.items())
                raise SpecError(f"{message} (in the cell {levels})", key="design.factors") from None

    def _check_level_factors(self, spec, params: EscalationParams, block: dict[str, list], where: str) -> None:
        if "pairing" in block:
            clash = [f for f in (*PERSONA_FACTORS, "opponent") if f in block]
            if clash:
                raise SpecError(f"'pairing' sets both sides' agents and personas; drop '{clash[0]}' from this "
                                "block", key=f"{where}.{clash[0]}")
            for level in block["pairing"]:
                opponent = params.pairings[str(level)].b.agent
                if opponent is not None:
                    if not self._is_scripted(opponent):
                        raise SpecError(f"pairing '{level}': side b's agent must be a scripted policy "
                                        f"('scripted:<policy>'), not '{opponent}'", key=f"{where}.pairing")
                    self._check_agent(opponent, spec.models, f"{where}.pairing")
        if "governance" in block:
            regimes = {str(level): params.governance_regimes[str(level)] for level in block["governance"]}
            if "ceasefire_turns" in block and any(r.ceasefire_turns is not None for r in regimes.values()):
                raise SpecError("a governance level sets ceasefire_turns and so does this block; keep one",
                                key=f"{where}.ceasefire_turns")
            if any(self._is_scripted(str(a)) for a in block["agent"]):
                # Scripted agents see no text: two regimes with the same rule changes are one
                # condition for them, played twice.
                seen: dict[str, str] = {}
                for level, regime in regimes.items():
                    rules = str(sorted(regime.rule_changes().items()))
                    if rules in seen:
                        raise SpecError(f"governance levels '{seen[rules]}' and '{level}' differ only in text, "
                                        "which scripted agents ignore; keep one of them in this block",
                                        key=f"{where}.governance")
                    seen[rules] = level

    @staticmethod
    def _is_scripted(agent: str) -> bool:
        return agent.startswith(SCRIPTED_PREFIX)

    def _check_agent(self, agent: str, models: dict, key: str) -> None:
        if self._is_scripted(agent):
            policy = agent[len(SCRIPTED_PREFIX):]
            if policy not in POLICIES:
                raise SpecError(f"unknown scripted policy '{policy}' (known: "
                                f"{', '.join(SCRIPTED_PREFIX + p for p in POLICIES)})", key=key)
        elif agent not in models:
            raise SpecError(f"unknown model '{agent}' (models in this study's model_set: "
                            f"{', '.join(sorted(models))}; or a scripted policy such as 'scripted:hawk')",
                            key=key)

    @staticmethod
    def _cells(spec) -> list[dict[str, Any]]:
        from engine.plan.compile import design_cells

        return design_cells(spec.design.factors, spec.design.controls)

    @staticmethod
    def _game_params(params: EscalationParams, cell: dict[str, Any]) -> EscalationParams:
        """The game a cell plays: game factors, and the text and rule changes of its framing and
        governance levels."""
        overrides: dict[str, Any] = {k: v for k, v in cell.items() if k in GAME_FACTORS}
        if "framing" in cell:
            overrides["framing_text"] = params.framings[str(cell["framing"])].text
        if "governance" in cell:
            regime = params.governance_regimes[str(cell["governance"])]
            overrides["governance_text"] = regime.text
            overrides["levers"] = {**params.levers.model_dump(),
                                   **{k: v for k, v in regime.levers.model_dump().items() if v is not None}}
            if regime.ceasefire_turns is not None:
                overrides["ceasefire_turns"] = regime.ceasefire_turns
        if not overrides:
            return params
        return EscalationParams.model_validate({**params.model_dump(), **overrides})

    @staticmethod
    def _game_inputs(game: EscalationParams) -> dict[str, Any]:
        """The game settings hashed into trial ids; settings still at their default stay out."""
        data = game.model_dump(exclude=NOT_GAME_INPUTS)
        for key in OPTIONAL_GAME_INPUTS:
            if data[key] == EscalationParams.model_fields[key].default:
                del data[key]
        return data

    @staticmethod
    def side_setup(params: EscalationParams, cell: dict[str, Any]) -> dict[str, tuple[str, str]]:
        """(agent, persona) of each side: from the pairing, or from agent/opponent and the personas."""
        agent = str(cell["agent"])
        if "pairing" in cell:
            pairing = params.pairings[str(cell["pairing"])]
            return {"A": (agent, pairing.a.persona), "B": (pairing.b.agent or agent, pairing.b.persona)}
        persona = cell.get("persona", DEFAULT_PERSONA)
        return {"A": (agent, persona),
                "B": (str(cell.get("opponent", agent)), cell.get("opponent_persona", persona))}

    # -- plan ---------------------------------------------------------------------------------
    def trial_inputs(self, spec, params: EscalationParams, cell: dict[str, Any]) -> dict[str, Any]:
        game = self._game_params(params, cell)
        sides = {side: self._side(spec, game, agent, persona)
                 for side, (agent, persona) in self.side_setup(params, cell).items()}
        inputs: dict[str, Any] = {"game": self._game_inputs(game), "sides": sides}
        if any(s["kind"] == "llm" for s in sides.values()):
            inputs["generation"] = cell_generation(spec, cell)
        return inputs

    def _side(self, spec, game: EscalationParams, agent: str, persona: str) -> dict[str, Any]:
        if self._is_scripted(agent):
            return {"kind": "scripted", "agent": agent, "policy": agent[len(SCRIPTED_PREFIX):]}
        model = spec.models[agent]
        return {"kind": "llm", "agent": agent, "model_key": agent, "litellm_id": model.litellm_id,
                "weights_sha256": model.weights.sha256 if model.weights else None,
                "persona": persona, "persona_text": game.personas[persona].text}

    def estimate(self, inputs: dict[str, Any]) -> list[CallEstimate]:
        game = EscalationParams.model_validate({**inputs["game"], "name": "escalation", "personas": {}})
        out = []
        for side, info in inputs["sides"].items():
            if info["kind"] != "llm":
                continue
            history = [{s: TurnRecord(t, s, 9, 9, 9, 9, True, ()) for s in SIDES}
                       for t in range(min(game.history_window, game.max_turns))]
            obs = Observation(side, game.max_turns, 9, 9, history, game.cooperation_window > 0)
            chars = len(system_prompt(game, info["persona_text"])) + len(user_prompt(obs, game))
            prompt_tokens = tokens_for(chars) + 16
            # A forced cooperation window asks no model; an instructed one asks as usual.
            turns = game.max_turns - (game.cooperation_window if game.cooperation_mode == "forced" else 0)
            out.append(CallEstimate(info["model_key"], turns, turns * prompt_tokens,
                                    turns * inputs["generation"]["max_tokens"]))
        return out

    # -- execute ------------------------------------------------------------------------------
    async def run(self, trial, ctx) -> TrialOutcome:
        inputs = trial.inputs
        game = EscalationParams.model_validate(
            {**inputs["game"], "name": "escalation", "personas": {}})
        streams = RandomStreams(trial.seed)
        state = GameState(game, streams)
        turn_rows: list[dict[str, Any]] = []
        while not state.over:
            turn = state.turn + 1
            window = state.history[-game.history_window:] if game.history_window else []
            coop = turn <= game.cooperation_window
            forced = coop and game.cooperation_mode == "forced"

            async def decide(side: str) -> Decision:
                if forced:
                    return Decision(Move(0, 0), forced=True)
                info = inputs["sides"][side]
                other = "B" if side == "A" else "A"
                obs = Observation(side, turn, state.realised[side], state.realised[other], window, coop)
                if info["kind"] == "scripted":
                    return scripted_decision(info["policy"], obs, streams.policy[side], game.start_level)
                return await llm_decision(ctx, info["model_key"], info["persona_text"], obs, game,
                                          inputs["generation"])

            prev = dict(state.realised)
            decisions = dict(zip(SIDES, await asyncio.gather(*(decide(s) for s in SIDES))))
            records = state.resolve({s: d.move for s, d in decisions.items()})
            for side in SIDES:
                r, d, info = records[side], decisions[side], inputs["sides"][side]
                turn_rows.append({
                    "trial_id": trial.trial_id, "turn": r.turn, "side": side, "agent": info["agent"],
                    "persona": info.get("persona"), "signal_level": r.signal, "action_level": r.action,
                    "applied_level": r.applied, "prev_realised": prev[side], "realised_level": r.realised,
                    "accident": r.accident, "levers": ",".join(r.levers) or None,
                    "parse_status": d.parse_status, "reasoning": d.reasoning, "call_id": d.call_id,
                    "forced": d.forced,
                })
        levels = [r.realised for t in state.history for r in t.values()]
        nuclear_turns = [t["A"].turn for t in state.history if any(is_nuclear(r.realised) for r in t.values())]
        episode = {
            "trial_id": trial.trial_id, "turns_played": state.turn, "end_reason": state.end_reason,
            "max_level": max(levels), "nuclear": max(levels) >= NUCLEAR_LEVEL,
            "strategic_exchange": max(levels) >= STRATEGIC_EXCHANGE_LEVEL,
            "first_nuclear_turn": nuclear_turns[0] if nuclear_turns else None,
            "welfare": welfare(game, state.history),
        }
        return TrialOutcome({"escalation_turns": turn_rows, "escalation_episodes": [episode]})

    def metrics(self):
        return METRICS

    def cell_models(self, cell: dict[str, Any]) -> list[str]:
        agents = [str(cell["agent"]), str(cell.get("opponent", cell["agent"]))]
        return list(dict.fromkeys(a for a in agents if not self._is_scripted(a)))

    def method_settings(self, params: EscalationParams) -> list[tuple[str, Any]]:
        p = params
        levers = ", ".join(f"{k}={v}" for k, v in p.levers.model_dump().items() if v is not None) or "none"
        return [("max_turns", p.max_turns), ("start_level", p.start_level), ("history_window", p.history_window),
                ("reasoning_max_chars", p.reasoning_max_chars),
                ("fog_probability", p.fog_probability), ("cooperation_window", p.cooperation_window),
                *([("cooperation_mode", p.cooperation_mode)] if p.cooperation_mode != "instructed" else []),
                ("ceasefire_turns", p.ceasefire_turns or "off"), ("levers", levers),
                ("level_payoff (levels 0-9)", ", ".join(f"{v:g}" for v in p.level_payoff))]

    def method_notes(self, spec) -> list[str]:
        notes = [
            "Each model plays itself (mirror match) unless an opponent factor is given; both sides move "
            "simultaneously and choose a public signal and an actual action on a 0-9 ladder (7+ nuclear, 9 ends "
            "the game).",
            "Replies are JSON (reasoning, signal_level, action_level), constrained by a JSON schema where the "
            "provider supports it. Each reply is parsed as ok, repaired (JSON cut out of other text) or failed; "
            f"a failed reply is re-asked up to {spec.executor.parse_retries} times with a new seed, and a side "
            "that never answers ends the game as an error, never as a move.",
            "Fog of war and scripted randomness use their own random streams per side, derived from the seed "
            "alone, so conditions with the same seed share accidents (common random numbers).",
            "Welfare sums level_payoff over both sides and all turns played; divergence compares the chosen "
            "action with the public signal, before levers and fog.",
        ]
        factors = {f for block in (spec.design.factors, *spec.design.controls) for f in block}
        if "pairing" in factors:
            notes.append("A pairing (engine/scenarios/escalation/conf/pairing/) sets who plays each side: side A is the cell's model under the "
                         "pairing's persona; side B is the same model under its own persona, or a scripted policy. "
                         "Model divergence counts only the sides a model played.")
        if factors & {"framing", "governance"}:
            notes.append("Framing and governance levels are text in engine/scenarios/escalation/conf/framing/ and engine/scenarios/escalation/conf/governance/, each a "
                         "paragraph of both sides' system prompt after the rules; a governance level may also "
                         "change the rules (levers, ceasefire), which apply to scripted agents too.")
        if spec.scenario.get("cooperation_mode") == "forced":
            notes.append("Cooperation window (forced): in turns 1 to cooperation_window the rules set both sides' "
                         "signal and action to level 0 and no model is asked; fog of war still applies. Those turns "
                         "count in welfare, velocity and nuclear rate, and are left out of the divergence metrics, "
                         "which measure the agents' own choices.")
        return notes

    def caveats(self, ctx) -> list[str]:
        from engine.scenarios.escalation.report import escalation_caveats

        return escalation_caveats(ctx)

    def is_control(self, cell: dict[str, Any]) -> bool:
        return all(self._is_scripted(str(cell.get(k, cell["agent"]))) for k in AGENT_FACTORS)

    def describe_cell(self, cell: dict[str, Any], spec) -> dict[str, str]:
        agent = str(cell["agent"])
        if self._is_scripted(agent):
            columns = {"Model": agent, "Params": "—"}
        else:
            model = spec.models[agent]
            columns = {"Model": model.label, "Params": model.params.display()}
        if "opponent" in cell:
            columns["Opponent"] = str(cell["opponent"])
        if "pairing" not in cell:  # a pairing names both sides' personas itself
            columns["Persona"] = str(cell.get("persona", "—" if self._is_scripted(agent) else DEFAULT_PERSONA))
        for name, level in cell.items():
            if name not in ("agent", "opponent", "persona"):
                columns[name] = str(level)
        return columns

