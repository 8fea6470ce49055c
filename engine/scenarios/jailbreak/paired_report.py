"""The `paired_asr` section: the paired model contrasts of engine/report/sections/paired_contrasts.py, drawn
from the jailbreak trace table instead of the study's trials, so an analysis-only study (a traces
file or Inspect logs) gets them too. Two traces are a pair when they share the attack and the prompt;
in a study's own runs also the rest of the cell and the seed, in imported traces the repeat (an
Inspect epoch). The cluster is the prompt (it recurs under every attack and repeat)."""

from __future__ import annotations

import json
from typing import Literal

import pandas as pd

from engine.analyze.paired import keyed_units
from engine.kernel.contracts import Rendered
from engine.kernel.records import Strict
from engine.kernel.registry import register_section
from engine.report.markdown import escape
from engine.report.sections.paired_contrasts import (ContrastUnits, PairedContrastsSection, check_family_options,
                                            check_model_names)
from engine.scenarios.jailbreak.analysis.asr import evaluable_harmful
from engine.scenarios.jailbreak.analysis.data import jailbreak_data
from engine.scenarios.jailbreak.scenario import imported_source


def design_of(ctx, traces: pd.DataFrame, own_runs: bool) -> pd.DataFrame:
    """Each trace's condition (a dict of levels) and seed. A study's own traces take both from the plan
    (the cell without its model, e.g. attack and temperature). Imported ones have the attack as their
    condition and, as seed, which repeat of its (model, attack, prompt) the trace is in the order of the
    file or logs (an Inspect sample's epochs), so the n-th of model A pairs with the n-th of model B,
    never every repeat with every other. Numbered before any trace is left out, so an errored repeat
    keeps its place. `order`: the plan's order (models and conditions appear as in the other tables),
    or the file's."""
    if own_runs:
        plan = {trial: (json.loads(cell), seed, n) for n, (trial, cell, seed) in enumerate(ctx.con.execute(
            "SELECT trial_id, cell, seed FROM plan WHERE spec_hash = ? ORDER BY coalesce(position, rowid)", [ctx.spec_hash]).fetchall())}
        cells = [plan[t] for t in traces["trial_id"]]
        conditions = [{k: v for k, v in cell.items() if str(v) not in map(str, ctx.scenario.cell_models(cell))}
                      for cell, _, _ in cells]
        return pd.DataFrame({"condition": conditions, "seed": [seed for _, seed, _ in cells],
                             "order": [n for _, _, n in cells]}, index=traces.index)
    repeat = traces.groupby(["model", "attack", "prompt_id"], sort=False).cumcount()
    return pd.DataFrame({"condition": [{"attack": str(a)} for a in traces["attack"]], "seed": repeat,
                         "order": range(len(traces))}, index=traces.index)


@register_section
class PairedAsrSection(PairedContrastsSection):
    """Pairs of models compared on the prompts both were attacked with, per attack and pooled:
    difference of ASR (the study's tier unless `tier` says), paired interval, McNemar or sign-flip p,
    Holm p; the primary contrasts as a table and a forest plot, the exploratory rest summarised."""

    type = "paired_asr"
    shows_results = True
    registered_options = ("tier", "attacks", "models", "by_condition", "pooled", "primary", "reference")

    class Options(Strict):
        type: str
        tier: Literal["strict", "broad", "functional"] | None = None
        title: str | None = None
        attacks: list[str] | None = None
        models: list[str] | None = None
        by_condition: bool = True
        pooled: bool = True
        primary: list[tuple[str, str]] | None = None
        reference: str | None = None
        exploratory: bool = True
        caption: str | None = None

    def check(self, options, scenario, key):
        check_family_options(options, key)  # names the traces lack in `attacks`/`models` are reported in the section

    def check_study(self, options, loaded, key):
        imported = imported_source(loaded.scenario_params)  # read once: the design check has read it already
        if imported is None:
            check_model_names(options, list(loaded.spec.models), key, "the models of its spec")
        else:
            models = list(dict.fromkeys(imported[0]["model"].astype(str)))
            check_model_names(options, models, key, f"the models of {loaded.scenario_params.import_path}")

    def first_model(self, loaded, options) -> str | None:
        imported = imported_source(loaded.scenario_params)
        if imported is None:
            return super().first_model(loaded, options)
        return next((m for m in imported[0]["model"].astype(str) if options.models is None or m in options.models),
                    None)

    def render(self, ctx, options) -> Rendered:
        rendered = super().render(ctx, options)
        traces = jailbreak_data(ctx).traces
        unknown = [f"{what} {name}" for what, names, known in (("attack", options.attacks, traces["attack"]),
                                                               ("model", options.models, traces["model"]))
                   for name in names or [] if name not in set(known.astype(str))]
        if unknown:
            rendered.markdown += "\n\n*" + escape(f"Not in the traces, so not compared: {', '.join(unknown)}.") + "*"
        return rendered

    def contrast_units(self, ctx, options) -> ContrastUnits:
        data = jailbreak_data(ctx)
        tier = options.tier or data.params.tier
        design = design_of(ctx, data.traces, data.imported_from is None)
        traces = evaluable_harmful(data.traces, tier)
        traces = traces.loc[design.loc[traces.index, "order"].sort_values(kind="stable").index]
        if options.attacks is not None:
            traces = traces[traces["attack"].isin(options.attacks)]
        if options.models is not None:
            traces = traces[traces["model"].isin(options.models)]
        rows = [{"model": str(t.model), "condition": design.at[i, "condition"], "seed": int(design.at[i, "seed"]),
                 "item": str(t.prompt_id), "value": float(t.success), "trial_id": str(i)}
                for i, t in zip(traces.index, traces.itertuples())]
        units, cluster = keyed_units(rows, ctx.scenario.randomised_unit or "item")
        return ContrastUnits(units, ctx.metrics[f"asr_{tier}"], ("model",), cluster, "prompt")
