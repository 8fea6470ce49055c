"""The jailbreak scenario: every model sees the same behaviours under the same attack techniques;
judges grade the stored responses; the analysis asks how much provider and size explain.

A trial is one trace: one behaviour x attack x model x sample (seed), single-turn."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from engine.kernel.errors import SpecError
from engine.kernel.records import CallEstimate, JudgeSubject, Trial, TrialOutcome, tokens_for
from engine.kernel.registry import register_scenario
from engine.kernel.contracts import Metric, Scenario, check_factors
from engine.plan.generation import model_inputs
from engine.scenarios.jailbreak.corpus import Behaviour, CorpusError, load_corpus
from engine.scenarios.jailbreak.imported_values import display_path
from engine.scenarios.jailbreak.metrics import METRICS, REQUESTS_COUNTED
from engine.scenarios.jailbreak.params import JailbreakParams
from engine.scenarios.jailbreak.traces import file_sha256, read_traces_file, primary_verdict_params


@lru_cache(maxsize=8)
def _corpus(fmt: str, path: str | None) -> tuple[Behaviour, ...]:
    return tuple(load_corpus(fmt, path))


def corpus(params: JailbreakParams) -> list[Behaviour]:
    try:
        return list(_corpus(params.corpus.format, params.corpus.path))
    except CorpusError as exc:
        raise SpecError(f"{exc.where + ': ' if exc.where else ''}{exc.message}", file=exc.file) from None
    except ValueError as exc:
        raise SpecError(str(exc), key="scenario.corpus") from None


def select(params: JailbreakParams) -> list[Behaviour]:
    """The behaviours a study plays, in corpus order; the same for every model and attack."""
    items = corpus(params)
    s = params.select
    if s.ids is not None:
        by_id = {b.prompt_id: b for b in items}
        missing = [i for i in s.ids if i not in by_id]
        if missing:
            raise SpecError(f"prompt ids not in the corpus: {', '.join(missing)}", key="scenario.select.ids")
        return [by_id[i] for i in s.ids]
    harmful = [b for b in items if not b.benign and (s.categories is None or b.category in s.categories)]
    if s.categories is not None:
        unknown = sorted(set(s.categories) - {b.category for b in items})
        if unknown:
            raise SpecError(f"categories not in the corpus: {', '.join(unknown)} (known: "
                            f"{', '.join(sorted({b.category for b in items if not b.benign}))})",
                            key="scenario.select.categories")
    if s.per_category is not None:
        seen: dict[str, int] = {}
        kept = []
        for b in harmful:
            seen[b.category] = seen.get(b.category, 0) + 1
            if seen[b.category] <= s.per_category:
                kept.append(b)
        harmful = kept
    benign = [b for b in items if b.benign]
    return harmful + (benign if s.benign is None else benign[:s.benign])


def imported_source(params: JailbreakParams) -> tuple[pd.DataFrame, str, str] | None:
    """Analysis-only studies: the imported trace table, the SHA-256 of its source, and a note on
    what was read (None: the study runs models)."""
    if params.traces_file is not None:
        source = params.traces_file
        return read_traces_file(source.path, source.format), file_sha256(source.path), ""
    if params.inspect_logs is not None:
        from engine.scenarios.jailbreak.inspect_import import read_inspect_logs

        logs = read_inspect_logs(params.inspect_logs)
        errored = f", {logs.errored} errored samples as ERROR" if logs.errored else ""
        return logs.traces, logs.sha256, f" ({logs.logs} Inspect logs{errored})"
    return None


@register_scenario
class Jailbreak(Scenario):
    name = "jailbreak"
    version = "1"
    Params = JailbreakParams
    migrations_dir = Path(__file__).parent / "migrations"
    gold_dir = Path(__file__).parent / "gold"
    unit = ("trace", "traces")
    headline_metrics = ("asr_strict", "asr_broad", "asr_functional", "false_refusal", "not_gradeable_rate",
                        "judge_error_rate", "error_rate")

    # -- spec checks --------------------------------------------------------------------------
    def check_design(self, spec, params: JailbreakParams) -> None:
        if spec.design.controls:
            raise SpecError("the jailbreak scenario has no control cells: benign requests are its controls",
                            key="design.controls")
        factors = spec.design.factors
        if params.import_path is not None:
            if params.traces_file is not None and params.inspect_logs is not None:
                raise SpecError("an analysis-only study imports one source: give scenario.traces_file or "
                                "scenario.inspect_logs, not both", key="scenario.inspect_logs")
            source = "scenario.traces_file" if params.traces_file is not None else "scenario.inspect_logs"
            if factors:
                raise SpecError(f"an analysis-only study ({source}) runs no models: leave "
                                "design.factors empty", key="design.factors")
            # Read it now, so a malformed file fails before any database is opened.
            imported_source(params)
            return
        check_factors(spec, {"model": spec.models, "attack": params.attacks, "temperature": None},
                      ("model", "attack"), self.name)
        if not select(params):
            raise SpecError("the selection leaves no behaviours to play", key="scenario.select")
        if spec.primary_judge is None:
            raise SpecError("a jailbreak study needs judges and a primary_judge (e.g. judge_set=local)",
                            key="primary_judge")

    # -- plan ---------------------------------------------------------------------------------
    def items(self, spec, params: JailbreakParams, cell: dict[str, Any]) -> list[dict[str, Any]]:
        if params.import_path is not None:
            return []
        return [{"prompt_id": b.prompt_id, "text": b.text, "category": b.category, "source": b.source,
                 "benign": b.benign} for b in select(params)]

    def trial_inputs(self, spec, params: JailbreakParams, cell: dict[str, Any]) -> dict[str, Any]:
        if not cell:
            return {}
        return {**model_inputs(spec, cell), "attack": str(cell["attack"]),
                "template": params.attacks[str(cell["attack"])].template, "system_prompt": params.system_prompt}

    def counts_in(self, metric: Metric, trial: Trial) -> bool:
        counted = REQUESTS_COUNTED.get(metric.name)
        if counted is None:
            return True
        return bool(trial.inputs.get("item", {}).get("benign")) == (counted == "benign")

    def estimate(self, inputs: dict[str, Any]) -> list[CallEstimate]:
        chars = len(inputs["template"]) + len(inputs["item"]["text"]) + len(inputs["system_prompt"] or "")
        return [CallEstimate(inputs["model_key"], 1, tokens_for(chars) + 16, inputs["generation"]["max_tokens"])]

    # -- execute ------------------------------------------------------------------------------
    async def run(self, trial, ctx) -> TrialOutcome:
        inputs, item = trial.inputs, trial.inputs["item"]
        prompt = inputs["template"].format(prompt=item["text"])
        messages = ([{"role": "system", "content": inputs["system_prompt"]}] if inputs["system_prompt"] else [])
        messages.append({"role": "user", "content": prompt})
        # Any text is a reply; whether it is a refusal, an answer or ungradeable is for the judges.
        reply = await ctx.chat(model_key=inputs["model_key"], messages=messages, purpose="respond",
                               generation=inputs["generation"], parse=lambda text: (text or "", "ok"))
        row = {"trial_id": trial.trial_id, "model_key": inputs["model_key"], "attack": inputs["attack"],
               "prompt_id": item["prompt_id"], "category": item["category"], "source": item["source"],
               "benign": item["benign"], "sample": trial.seed, "behaviour": item["text"], "prompt": prompt,
               "response_text": reply.value, "call_id": reply.call_id}
        return TrialOutcome({"jailbreak_responses": [row]})

    # -- judge, analyze -----------------------------------------------------------------------
    def judge_subjects(self, con, spec_hash: str) -> list[JudgeSubject]:
        from engine.kernel.contracts import FINISHED

        rows = con.execute(f"SELECT r.trial_id, r.behaviour, r.response_text FROM jailbreak_responses r"
                           f" JOIN {FINISHED} t ON t.trial_id = r.trial_id ORDER BY r.trial_id",
                           {"spec_hash": spec_hash}).fetchall()
        return [JudgeSubject(*row) for row in rows]

    def ingest(self, store, loaded) -> str | None:
        params: JailbreakParams = loaded.scenario_params
        imported = imported_source(params)
        if imported is None:
            return None
        df, sha256, note = imported
        df.insert(0, "row_number", range(1, len(df) + 1))
        df.insert(0, "spec_hash", loaded.spec_hash)
        source = display_path(params.import_path)  # a name that is not UTF-8 is stored with escapes
        df["source_file"], df["source_sha256"] = source, sha256
        from engine.store.db import transaction

        with transaction(store.con):
            store.con.execute("DELETE FROM jailbreak_imported_traces WHERE spec_hash = ?", [loaded.spec_hash])
            store.con.register("incoming", df)
            store.con.execute("INSERT INTO jailbreak_imported_traces BY NAME SELECT * FROM incoming")
            store.con.unregister("incoming")
        return (f"imported {len(df)} traces of {df.model.nunique()} models from {source} "
                f"(sha256 {sha256[:12]}){note}")

    def cache_analyses(self, store, loaded) -> None:
        from engine.report.context import ReportContext
        from engine.scenarios.jailbreak.analysis.data import cache_resampling, load_jailbreak_data, mixed_fit

        seed = ReportContext.__dataclass_fields__["seed"].default
        data = load_jailbreak_data(store.con, loaded)
        if data.traces.empty:  # the sections resample and fit nothing then
            return
        cache_resampling(store.con, data, seed)
        if any(s.get("type") == "mixed_effects" for s in loaded.spec.report.sections):
            mixed_fit(store.con, data, seed=seed)

    def metrics(self):
        return METRICS

    def metric_params(self, spec) -> dict[str, Any]:
        return primary_verdict_params(spec)

    def analysis_settings(self, spec, params: JailbreakParams) -> dict[str, Any]:
        # What the rates count (the tier), the size the scale analysis uses, and which providers the
        # risk ratio leaves out: changing one after the data changes what the claims test.
        return {"tier": params.tier, "params_basis": params.params_basis,
                "min_provider_evaluable": params.min_provider_evaluable}

    # -- report -------------------------------------------------------------------------------
    def describe_cell(self, cell: dict[str, Any], spec) -> dict[str, str]:
        if "model" not in cell:
            return {name: str(level) for name, level in cell.items()}
        model = spec.models[str(cell["model"])]
        columns = {"Model": model.label, "Provider": model.provider, "Params": model.params.display(),
                   "Attack": str(cell.get("attack", "—"))}
        for name, level in cell.items():
            if name not in ("model", "attack"):
                columns[name] = str(level)
        return columns

    def method_settings(self, params: JailbreakParams) -> list[tuple[str, Any]]:
        s = params.select
        return [("corpus", f"{params.corpus.format}" + (f" ({params.corpus.path})" if params.corpus.path else "")),
                ("selection", f"ids={s.ids}" if s.ids is not None else
                 ", ".join(f"{k}={v}" for k, v in s.model_dump().items() if v is not None) or "all"),
                ("system prompt", params.system_prompt or "none"),
                ("attack-success tier for the provider/size analysis", params.tier),
                ("parameter count used for scale", params.params_basis),
                ("minimum evaluable traces per provider", params.min_provider_evaluable)]

    def method_notes(self, spec) -> list[str]:
        from engine.judging.catalog import make_judges

        notes = ["Every model sees the same behaviours under the same attack templates (single turn); each "
                 "trace is one behaviour x attack x model x sample. Any reply text is stored; judges decide "
                 "whether it complied."]
        notes += [j.describe() for j in make_judges(spec)]
        if spec.primary_judge:
            notes.append(f"Attack success rates use the verdicts of {spec.judges[spec.primary_judge].display_name}; "
                         "a judge failure is its own verdict (ERROR), never a refusal.")
        return notes

    def exclusions(self, ctx) -> dict[str, int]:
        from engine.scenarios.jailbreak.report import jailbreak_exclusions

        return jailbreak_exclusions(ctx)

    def caveats(self, ctx) -> list[str]:
        from engine.scenarios.jailbreak.report import jailbreak_caveats

        return jailbreak_caveats(ctx)

    def weak_judge_kappa(self, params: JailbreakParams) -> float:
        return params.weak_judge_kappa

    def judge_reliance(self, spec, params: JailbreakParams) -> dict[str, str]:
        return {spec.primary_judge: "the attack success rates in this report"} if spec.primary_judge else {}

    def positive_labels(self, spec, params: JailbreakParams) -> dict[str, set[str]]:
        """The primary judge's labels that count as a successful attack at the analysis tier."""
        from engine.scenarios.jailbreak.analysis.asr import TIERS

        return {spec.primary_judge: set(TIERS[params.tier].success_labels)} if spec.primary_judge else {}

    def judged_rates(self, spec, params: JailbreakParams) -> dict[str, tuple[str, set[str]]]:
        """Every ASR tier and the false-refusal rate: shares of the primary judge's labels."""
        from engine.scenarios.jailbreak.analysis.asr import TIERS

        if not spec.primary_judge:
            return {}
        return {**{f"asr_{name}": (spec.primary_judge, set(t.success_labels)) for name, t in TIERS.items()},
                "false_refusal": (spec.primary_judge, {"REFUSAL"})}

    def judge_validity_notes(self, spec) -> list[str]:
        from engine.scenarios.jailbreak.report import GOLD_SET_NOTE

        return [GOLD_SET_NOTE]
