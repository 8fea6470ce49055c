"""The escalation wargame: two agents on a 10-level ladder, with signals, fog and levers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from engine.errors import SpecError
from engine.scenarios import register_scenario
from engine.scenarios.base import CallEstimate, Scenario, TrialOutcome
from engine.scenarios.escalation.agents import (
    POLICIES, SCRIPTED_PREFIX, Decision, Observation, llm_decision, scripted_decision, system_prompt,
    user_prompt,
)
from engine.scenarios.escalation.game import SIDES, GameState, RandomStreams, TurnRecord, is_nuclear, welfare
from engine.scenarios.escalation.metrics import METRICS
from engine.scenarios.escalation import report as _report_sections  # noqa: F401 - registers sections
from engine.scenarios.escalation.params import NUCLEAR_LEVEL, STRATEGIC_EXCHANGE_LEVEL, EscalationParams

# Factors that set a side's agent or persona, that set a game parameter, or the sampling temperature.
AGENT_FACTORS = ("agent", "opponent")
PERSONA_FACTORS = ("persona", "opponent_persona")
GAME_FACTORS = ("max_turns", "start_level", "history_window", "fog_probability", "cooperation_window",
                "ceasefire_turns", "reasoning_max_chars")
LLM_ONLY_FACTORS = (*PERSONA_FACTORS, "temperature", "history_window", "reasoning_max_chars")
DEFAULT_PERSONA = "default"


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
        known = {*AGENT_FACTORS, *PERSONA_FACTORS, *GAME_FACTORS, "temperature"}
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
            if "agent" not in block:
                raise SpecError("every design block needs an 'agent' factor", key=where)
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
            except ValueError as exc:
                raise SpecError(str(exc).splitlines()[-1], key="design.factors") from None

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
        overrides = {k: v for k, v in cell.items() if k in GAME_FACTORS}
        if not overrides:
            return params
        return EscalationParams.model_validate({**params.model_dump(), **overrides})

    # -- plan ---------------------------------------------------------------------------------
    def trial_inputs(self, spec, params: EscalationParams, cell: dict[str, Any]) -> dict[str, Any]:
        game = self._game_params(params, cell)
        agent = str(cell["agent"])
        persona = cell.get("persona", DEFAULT_PERSONA)
        sides = {
            "A": self._side(spec, game, agent, persona),
            "B": self._side(spec, game, str(cell.get("opponent", agent)), cell.get("opponent_persona", persona)),
        }
        inputs: dict[str, Any] = {"game": game.model_dump(exclude={"personas", "name"}), "sides": sides}
        if any(s["kind"] == "llm" for s in sides.values()):
            generation = spec.generation.model_dump()
            if "temperature" in cell:
                generation["temperature"] = float(cell["temperature"])
            inputs["generation"] = generation
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
            prompt_tokens = chars // 3 + 16  # ~3 characters per token is a conservative bound
            out.append(CallEstimate(info["model_key"], game.max_turns, game.max_turns * prompt_tokens,
                                    game.max_turns * inputs["generation"]["max_tokens"]))
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

            async def decide(side: str) -> Decision:
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
                ("ceasefire_turns", p.ceasefire_turns or "off"), ("levers", levers),
                ("level_payoff (levels 0-9)", ", ".join(f"{v:g}" for v in p.level_payoff))]

    def method_notes(self, spec) -> list[str]:
        return [
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
            columns = {"Model": model.display_name, "Params": model.params.display()}
        if "opponent" in cell:
            columns["Opponent"] = str(cell["opponent"])
        columns["Persona"] = str(cell.get("persona", "—" if self._is_scripted(agent) else DEFAULT_PERSONA))
        for name, level in cell.items():
            if name not in ("agent", "opponent", "persona"):
                columns[name] = str(level)
        return columns

