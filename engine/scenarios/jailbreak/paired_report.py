"""The `paired_asr` section: the paired model contrasts of engine/report/paired_contrasts.py, drawn
from the jailbreak trace table instead of the study's trials, so an analysis-only study (a traces
file or Inspect logs) gets them too. Two traces are a pair when they share the attack and the prompt;
the cluster is the prompt (it recurs under every attack)."""

from __future__ import annotations

from typing import Literal

from engine.analyze.paired import PairedContrasts, contrasts_of, keyed_units
from engine.kernel.records import Strict
from engine.kernel.registry import register_section
from engine.report.paired_contrasts import PairedContrastsSection
from engine.scenarios.jailbreak.analysis.asr import evaluable_harmful
from engine.scenarios.jailbreak.analysis.data import jailbreak_data


@register_section
class PairedAsrSection(PairedContrastsSection):
    """Each pair of models compared on the prompts both were attacked with, per attack and pooled:
    difference of ASR (the study's tier unless `tier` says), paired interval, McNemar or sign-flip p,
    Holm p, as a table and a forest plot."""

    type = "paired_asr"

    class Options(Strict):
        type: str
        tier: Literal["strict", "broad", "functional"] | None = None
        title: str | None = None
        attacks: list[str] | None = None
        models: list[str] | None = None
        by_condition: bool = True
        pooled: bool = True
        caption: str | None = None

    def check(self, options, scenario, key):
        pass  # every option is checked by its type

    def contrasts(self, ctx, options) -> PairedContrasts:
        data = jailbreak_data(ctx)
        tier = options.tier or data.params.tier
        traces = evaluable_harmful(data.traces, tier)
        if options.attacks is not None:
            traces = traces[traces["attack"].isin(options.attacks)]
        if options.models is not None:
            traces = traces[traces["model"].isin(options.models)]
        rows = [{"model": str(t.model), "condition": {"attack": str(t.attack)}, "seed": 0,
                 "item": str(t.prompt_id), "value": float(t.success), "trial_id": str(i)}
                for i, t in zip(traces.index, traces.itertuples())]
        units, cluster = keyed_units(rows, ctx.scenario.randomised_unit or "item")
        return contrasts_of(units, ctx.metrics[f"asr_{tier}"], ("model",), cluster, "prompt", ctx.seed,
                            options.by_condition, options.pooled)
