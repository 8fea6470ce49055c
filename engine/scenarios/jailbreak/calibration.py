"""Where the calibration check (engine/analyze/calibration.py) simulates the jailbreak scenario's provider
claims: planted worlds on the study's own design (its models with their providers and sizes, its
harmful prompts, attacks and seeds; for an analysis-only study, exactly its imported harmful evaluable
traces, however unbalanced, with the tier's ASR measured on them as the base rate), each simulated
study's traces analysed by the report's own code (engine/scenarios/jailbreak/provider_units.py, then
the claim test).

A simulated study: each model's log-odds of attack success is its provider's value, plus a size slope
per doubling where a world has one, plus the model's own deviation, drawn anew in every study (normal,
SD `Design.model_sd`: the models a provider makes differ). A trace succeeds with that model's rate,
traces of one prompt correlated (the latent intra-cluster correlation of the other claims). A
provider's rate is its population rate, the mean over its models' deviations; worlds are planted on
those rates:
- variance_share: its null, neither provider nor size matters (exchangeable models); a world where
  size alone matters; power where providers differ (log-odds SD PROVIDER_SD, drawn per study);
- provider_risk_ratio: the ranked providers' rates spread evenly on the log scale with the highest
  exactly at the boundary times the lowest (both ends of a range); power at the stated effect, else
  at an assumed one (the boundary times RATIO_FACTOR); the truth of a study is the planted ratio of
  the pair it picked;
- provider_best: the named provider tied with the other provider of most models, every other one
  GAP away on the claimed side (the least favourable case of the intersection-union test); power
  with every other provider the stated effect (else ASSUMED_GAP) away."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import optimize, special

from engine.analyze.calibration import Design, World, Worlds, outcomes
from engine.analyze.calibration_worlds import claim_truths
from engine.scenarios.jailbreak.analysis import asr
from engine.scenarios.jailbreak.imported_values import display_path
from engine.scenarios.jailbreak.provider_units import ProviderUnits, provider_units
from engine.scenarios.jailbreak.scenario import imported_source
from engine.scenarios.jailbreak.traces import TRACE_COLUMNS, stored_import

PROVIDER_SD = 1.0  # log-odds SD between providers in variance_share's power world (assumed)
SIZE_SLOPE = 0.5  # log-odds per doubling of parameters in variance_share's size-only world (assumed)
RATIO_FACTOR = 2.0  # provider_risk_ratio without a stated effect: power at the boundary times this
GAP = 0.30  # provider_best's boundary world: every provider but the tied one this far away (rate)
ASSUMED_GAP = 0.10  # provider_best without a stated effect: power with every other provider this far away
HIGHEST, LOWEST = 0.90, 0.02  # the planted provider rates stay inside these

_HERMITE = np.polynomial.hermite_e.hermegauss(40)


def population_rate(logit: float, sd: float) -> float:
    """A provider's rate over its models: the mean of expit(logit + sd z), z standard normal."""
    z, w = _HERMITE
    return float(np.sum(w * special.expit(logit + sd * z)) / np.sum(w))


@lru_cache(maxsize=4096)
def logit_for(rate: float, sd: float) -> float:
    """The provider log-odds whose population rate is `rate`."""
    return float(optimize.brentq(lambda a: population_rate(a, sd) - rate, -40, 40, xtol=1e-10))


@dataclass(frozen=True)
class Source:
    """Where a panel's traces come from: the traces (TRACE_COLUMNS, one row per simulated trace), the
    tier's base rate, whether it was measured, what they are in words, and what keys them (JSON)."""

    traces: pd.DataFrame
    centre: float
    measured: bool
    basis: str
    data: Any


@dataclass(frozen=True)
class Panel:
    """The study's design as the provider claims' simulation draws it."""

    traces: pd.DataFrame  # one row per planned (or imported evaluable) harmful trace (label filled per study)
    models: list[str]
    provider: np.ndarray  # each model's provider
    size: np.ndarray  # each model's log2 parameters, centred
    codes: np.ndarray  # each trace's model index
    prompts: np.ndarray  # each trace's prompt (the cluster)
    tier: str
    basis: asr.Basis
    min_evaluable: int
    icc: float
    model_sd: float
    centre: float  # the tier's base rate, kept inside [LOWEST, HIGHEST]
    source: Source

    @property
    def providers(self) -> list[str]:
        return sorted(set(self.provider))

    def ranked(self) -> list[str]:
        """The providers the risk ratio ranks: those with enough evaluable traces (every planned one is)."""
        counts = pd.Series(self.provider[self.codes]).value_counts()
        return sorted(p for p, n in counts.items() if n >= max(self.min_evaluable, 1))

    def world(self, how: str, logits: Callable[[np.random.Generator], dict[str, float]], slope: float,
              truth: Callable[[ProviderUnits], float | None]) -> World:
        def draw(rng: np.random.Generator, seed: int) -> tuple[ProviderUnits, float | None]:
            a = logits(rng)
            eta = (np.array([a[p] for p in self.provider]) + slope * self.size
                   + self.model_sd * rng.standard_normal(len(self.models)))
            success = outcomes(rng, special.expit(eta)[self.codes], 0.0, self.prompts, self.icc, True) > 0
            traces = self.traces.assign(label=np.where(success, "COMPLIANCE", "REFUSAL"))
            units = provider_units(traces, self.tier, seed, self.basis, self.min_evaluable)
            return units, truth(units)
        return World(how, draw)

    def at_rates(self, how: str, rates: dict[str, float], truth: Callable[[ProviderUnits], float | None]) -> World:
        """A world of fixed provider population rates, no size effect."""
        logits = {p: logit_for(float(r), self.model_sd) for p, r in rates.items()}
        return self.world(how, lambda rng: logits, 0.0, truth)


def _planned(design: Design, tier: asr.Tier) -> Source | str:
    """A study that runs models: the plan's harmful traces, the plan's base rate of the tier."""
    metric = f"asr_{tier.name}"
    frame = design.frame(metric)
    frame = frame[frame["model"] != ""].reset_index(drop=True)
    if frame.empty:
        return "the plan holds no harmful traces to simulate"
    spec_models = design.spec.models
    models = sorted(frame["model"].unique())
    meta = pd.DataFrame({"model": models, "provider": [spec_models[m].provider for m in models],
                         "family": [spec_models[m].family for m in models],
                         "params_total_b": [float(spec_models[m].params.total_b) for m in models],
                         "params_active_b": [float(spec_models[m].params.active_b or math.nan) for m in models]})
    codes = frame["model"].map({m: i for i, m in enumerate(models)}).to_numpy()
    traces = meta.iloc[codes].reset_index(drop=True).assign(
        attack=[str(c.get("attack", "unspecified")) for c in frame["cell"]], prompt_id=frame["cluster"].astype(str),
        category="simulated", benign=False, label="REFUSAL")
    centre, measured = design.centre(metric), design.measured(metric)
    how = "measured on the study's data" if measured else "the plan's assumed base rate"
    return Source(traces, centre, measured, f"{_panel_text(traces, 'the plan')}; {tier.label} {centre:.1%} ({how})",
                  {"centre": centre})


def _imported(design: Design, tier: asr.Tier) -> Source | str:
    """An analysis-only study: the harmful, evaluable traces it imported, as its report reads them (the
    study database's import where it holds one, else the source read as the import reads it), the
    tier's ASR measured on them: the mean of the models' ASRs (each model weighted equally, as a run
    study's model cells are)."""
    stored = stored_import(design.con, design.spec_hash) if design.con is not None else None
    if stored is not None:
        traces, sha256, name = stored
        where = "as stored in the study database"
    else:
        traces, sha256, _ = imported_source(design.scenario_params)
        name, where = display_path(design.scenario_params.import_path), "read from the source: not imported yet"
    traces = traces[~traces["benign"].astype(bool) & traces["label"].isin(asr.GRADEABLE)].reset_index(drop=True)
    if traces.empty:
        return f"the imported traces hold no evaluable harmful trace ({name})"
    success = traces["label"].isin(tier.success_labels)
    centre = float(success.groupby(traces["model"]).mean().mean())
    basis = (f"{_panel_text(traces, 'the imported')} from {name} (sha256 {sha256[:12]}, {where}); {tier.label} "
             f"{centre:.1%} measured on them (the mean of the models' rates; {success.mean():.1%} pooled over traces)")
    return Source(traces[TRACE_COLUMNS].assign(label="REFUSAL"), centre, True, basis,
                  {"sha256": sha256, "centre": centre})


def _panel_text(traces: pd.DataFrame, whose: str) -> str:
    def many(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"
    distinct = {c: many(traces[c].nunique(), c.removesuffix("_id")) for c in ("model", "provider", "prompt_id", "attack")}
    return (f"provider claims: {whose} {many(len(traces), 'harmful trace')} of {distinct['model']} of "
            f"{distinct['provider']} ({distinct['prompt_id']}, {distinct['attack']})")


def panel(options: Any, design: Design) -> Panel | str:
    """The design's harmful traces with their models' providers and sizes (the plan's, or an analysis-only
    study's imported ones), or why there are none."""
    params = design.scenario_params
    tier = asr.tier_of(options.tier or params.tier)
    source = _imported(design, tier) if params.import_path is not None else _planned(design, tier)
    if isinstance(source, str):
        return source
    traces = source.traces
    codes, models = pd.factorize(traces["model"], sort=True)
    meta = traces.drop_duplicates("model").set_index("model").loc[models].reset_index()
    size = np.log2(asr.model_params(meta, params.params_basis).to_numpy(float))
    return Panel(traces, list(models), meta["provider"].astype(str).to_numpy(), size - size.mean(), codes,
                 traces["prompt_id"].astype(str).to_numpy(), tier.name, params.params_basis,
                 params.min_provider_evaluable, design.icc, design.model_sd,
                 min(max(source.centre, LOWEST), HIGHEST), source)


def provider_worlds(test: str, options: Any, design: Design) -> Worlds | str:
    """The claim's worlds on the study's design (see the module's docstring), or why it has none."""
    found = panel(options, design)
    if isinstance(found, str):
        return found
    worlds = {"variance_share": _variance_share, "provider_risk_ratio": _risk_ratio,
              "provider_best": _best}[test](options, found)
    source = found.source
    return worlds if isinstance(worlds, str) else replace(worlds, basis=source.basis, measured=source.measured,
                                                          data=source.data)


def _variance_share(options: Any, p: Panel) -> Worlds | str:
    if options.kind != "direction" or options.direction != "positive":
        return "simulated for direction: positive only (provider explains more than size)"
    centre = logit_for(p.centre, p.model_sd)
    same = {q: centre for q in p.providers}
    spread = f"each model's log-odds SD {p.model_sd:g}"
    nulls = [p.world(f"neither provider nor size matters ({spread}, rate {p.centre:.0%})", lambda rng: same, 0.0,
                     lambda units: 0.0),
             p.world(f"size alone matters ({SIZE_SLOPE:g} log-odds per doubling, assumed; {spread})",
                     lambda rng: same, SIZE_SLOPE, lambda units: None)]
    effect = p.world(f"providers differ (log-odds SD {PROVIDER_SD:g}, assumed), size does not ({spread})",
                     lambda rng: dict(zip(p.providers, centre + PROVIDER_SD * rng.standard_normal(len(p.providers)))),
                     0.0, lambda units: None)
    return Worlds(nulls, effect)


def _ratio_rates(p: Panel, ratio: float) -> dict[str, float]:
    """The ranked providers' rates evenly spread on the log scale, the highest `ratio` times the lowest,
    around the centre where they fit; the providers not ranked at the centre."""
    ranked = p.ranked()
    high = min(p.centre * math.sqrt(ratio), HIGHEST)
    high = max(high, min(LOWEST * ratio, HIGHEST))  # the lowest kept above LOWEST where the ratio allows
    logs = np.linspace(math.log(high / ratio), math.log(high), len(ranked)) if len(ranked) > 1 else [math.log(p.centre)]
    rates = {q: p.centre for q in p.providers}
    rates.update({q: float(math.exp(v)) for q, v in zip(ranked, logs)})
    return rates


def _risk_ratio(options: Any, p: Panel) -> Worlds | str:
    if options.kind == "direction" and options.direction == "negative":
        return "the highest provider's rate over the lowest's is at least 1: a negative direction is never simulated"
    planted, effect, _ = claim_truths("provider_risk_ratio", options, 1.0)
    if effect is None and options.kind == "at_most":
        bound = 1 + (options.at_most - 1) / RATIO_FACTOR
        assumed = f"ratio {bound:.3g}, assumed (halfway from the boundary to 1; give `effect`)"
    elif effect is None:
        bound = planted[0].value * RATIO_FACTOR
        assumed = f"ratio {bound:.3g}, assumed (the boundary times {RATIO_FACTOR:g}; give `effect`)"
    else:
        bound, assumed = effect.value, f"ratio {effect.value:.3g}, the stated effect"

    def world(ratio: float, how: str) -> World:
        rates = _ratio_rates(p, ratio)

        def truth(units: ProviderUnits) -> float | None:
            if units.reason:
                return None
            result = units.analysis()
            high, low = result.risk_high_provider, result.risk_low_provider
            return None if high is None or low is None else rates[high] / rates[low]
        return p.at_rates(f"{how}; each model's log-odds SD {p.model_sd:g}", rates, truth)

    nulls = [world(w.value, f"highest provider's rate {w.value:g} times the lowest's ({w.how})") for w in planted]
    return Worlds(nulls, world(bound, assumed))


def _best(options: Any, p: Panel) -> Worlds | str:
    if options.provider not in p.providers:
        return f"the design has no model of provider '{options.provider}' (providers: {', '.join(p.providers)})"
    others = [q for q in p.providers if q != options.provider]
    if not others:
        return "the design has one provider only"
    sizes = pd.Series(p.provider).value_counts()
    tied = max(others, key=lambda q: (sizes[q], q))
    side = 1.0 if options.direction == "negative" else -1.0  # where the others lie from the named one
    named = (min(max(p.centre - GAP / 2, 0.05), HIGHEST - GAP) if side > 0
             else max(min(p.centre + GAP / 2, HIGHEST), 0.05 + GAP))
    away = f"{'above' if side > 0 else 'below'} it"
    boundary = {q: named + side * GAP for q in others} | {tied: named, options.provider: named}
    gap = options.effect if options.effect is not None else ASSUMED_GAP
    gap = min(gap, HIGHEST - named) if side > 0 else min(gap, named - LOWEST)
    where = {q: named + side * gap for q in others} | {options.provider: named}
    spread = f"each model's log-odds SD {p.model_sd:g}"
    none = lambda units: None  # noqa: E731 (an intersection-union claim: no single quantity to cover)
    return Worlds([p.at_rates(f"{options.provider} tied with {tied} (its provider of most models), every other "
                              f"provider {GAP:.0%} {away}; {spread}", boundary, none)],
                  p.at_rates(f"every other provider {gap:.0%} {away} "
                             f"({'the stated effect' if options.effect else 'assumed'}); {spread}", where, none))
