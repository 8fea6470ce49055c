"""Report sections of the jailbreak scenario, in the shape of the provider-vs-size write-up:
ASR tiers, per-model and per-provider ASR, provider vs size, attacks, mixed-effects robustness,
the caveats and the gold-set note of the shared judge_validity section (engine/report/sections/judge_validity.py).
Every number is computed from the study database."""

from __future__ import annotations

import math

import pandas as pd
from pydantic import Field

from engine.scenarios.jailbreak.analysis import asr
from engine.analyze.judge_validity import ADEQUATE, gold_agreement, gold_binary_validity, judge_verdict, positive_labels
from engine.analyze.summary import format_estimate
from engine.report.charts import estimate_chart
from engine.report.sections.judge_validity import youden_text
from engine.report.markdown import escape, table
from engine.kernel.contracts import Figure, NoOptions, Rendered, Section
from engine.kernel.registry import register_section
from engine.judging.catalog import make_judges
from engine.scenarios.jailbreak.analysis.clustered import methods_text
from engine.scenarios.jailbreak.analysis.data import jailbreak_data, mixed_fit
from engine.scenarios.jailbreak.analysis.decomposition import variance_shares
from engine.kernel.hashing import derived_seed
from engine.spec.schema import Params
from engine.kernel.records import Strict


def _pct(value: float, low: float = math.nan, high: float = math.nan) -> str:
    return format_estimate(value, low, high, percent=True)


def _name(ctx, model: str) -> str:
    m = ctx.spec.models.get(model)
    return m.label if m else model


def _params(row) -> str:
    active = None if pd.isna(row.params_active_b) else float(row.params_active_b)
    return Params(total_b=float(row.params_total_b), active_b=active).display()


def _tier(ctx) -> asr.Tier:
    return asr.TIERS[jailbreak_data(ctx).params.tier]


def _prompts(counts: pd.Series) -> str:
    """How many prompts the intervals of a table rest on (one number, or the range over its rows)."""
    counts = counts[counts > 0]
    if counts.empty:
        return "no prompts"
    low, high = int(counts.min()), int(counts.max())
    return f"{low} prompts" if low == high else f"{low} to {high} prompts"


INTERVAL_WHY = ("clustered on prompts: a prompt is played under every attack (and sample), so its traces are "
                "not independent")


def _no_data(ctx) -> Rendered | None:
    data = jailbreak_data(ctx)
    if data.traces.empty:
        return Rendered("*No judged traces yet: run the study (and its judges) first\\.*")
    return None


@register_section
class AsrDefinitions(Section):
    type = "asr_definitions"
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        used = jailbreak_data(ctx).params.tier
        rows = [(t.name + (" (used for the provider and size analysis)" if key == used else ""),
                 ", ".join(t.success_labels), t.definition) for key, t in asr.TIERS.items()]
        text = ("Attack success rate (ASR) is the share of evaluable replies to harmful behaviours that the primary "
                "judge labelled a success. Evaluable means one of "
                f"{', '.join(asr.GRADEABLE)}; NOT\\_GRADEABLE replies and judge ERRORs are outside every denominator "
                "and reported per model. Benign controls are never in an ASR; their refusals are false refusals.")
        return Rendered("## Attack success: definitions\n\n" + text + "\n\n"
                        + table(["Tier", "Counts as success", "Definition"], rows, "ASR tiers.", "tbl-asr-tiers",
                                ["l", "l", "l"], widths=[2, 3, 6]))


@register_section
class AsrByModel(Section):
    type = "asr_by_model"
    shows_results = True
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        if (empty := _no_data(ctx)) is not None:
            return empty
        data = jailbreak_data(ctx)
        tiers = {key: asr.model_asr(data.traces, tier, seed=ctx.seed, con=ctx.con).set_index("model")
                 for key, tier in asr.TIERS.items()}
        base = tiers["strict"].sort_values(["provider", "params_total_b"])
        refusals = asr.false_refusal(data.traces, seed=ctx.seed, con=ctx.con).set_index("model")
        rows = []
        for model, r in base.iterrows():
            fr = refusals.loc[model] if model in refusals.index else None
            rows.append([_name(ctx, model), r.provider, _params(r), int(r.traces), int(r.evaluable),
                         int(r.not_gradeable), int(r.errors),
                         *[_pct(t.loc[model].asr, t.loc[model].low, t.loc[model].high) for t in tiers.values()],
                         _pct(fr.rate, fr.low, fr.high) + f" (n={int(fr.evaluable)})" if fr is not None else "—"])
        headers = ["Model", "Provider", "Params", "Traces", "Evaluable", "Not gradeable", "Judge errors",
                   *[f"ASR {t.name}" for t in asr.TIERS.values()], "False refusal (benign)"]
        coverage = asr.item_coverage(data.traces)
        if coverage.same_items:
            note = (f"Every model saw the same {coverage.union} items (behaviour x attack), so differences between "
                    "models are not differences in prompts.")
        else:
            worst = coverage.per_model.sort_values("missing_vs_union", ascending=False).iloc[0]
            note = (f"**Models saw different items.** Of {coverage.union} items (behaviour x attack) in the data, "
                    f"{escape(_name(ctx, worst.model))} misses {int(worst.missing_vs_union)}; differences between "
                    "models are confounded with prompt difficulty.")
        methods = pd.concat([t["method"] for t in tiers.values()])
        caption = (f"ASR per model over evaluable traces of harmful behaviours, 95% intervals {INTERVAL_WHY} "
                   f"({_prompts(base['prompts'])} per model): {methods_text(methods)}. False refusals over "
                   f"benign controls ({_prompts(refusals['prompts'])} per model): "
                   f"{methods_text(refusals['method'])}.")
        return Rendered("## Attack success by model\n\n" + table(
            headers, rows, caption, "tbl-asr-models", ["l", "l"] + ["r"] * (len(headers) - 2)) + "\n\n" + note)


@register_section
class AsrByProvider(Section):
    type = "asr_by_provider"
    shows_results = True
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        if (empty := _no_data(ctx)) is not None:
            return empty
        data, tier = jailbreak_data(ctx), _tier(ctx)
        threshold = data.params.min_provider_evaluable
        prov = asr.provider_asr(data.traces, tier, seed=ctx.seed, con=ctx.con).sort_values("asr")
        rows = [(r.provider, int(r.models), int(r.evaluable), _pct(r.asr, r.low, r.high), _pct(r.mean_model_asr),
                 "preliminary" if r.evaluable < threshold else "") for r in prov.itertuples()]
        return Rendered(f"## Attack success by provider ({escape(tier.name)})\n\n" + table(
            ["Provider", "Models", "Evaluable traces", "Pooled ASR", "Mean of models", "Note"], rows,
            f"Pooled ASR per provider (all its evaluable traces; 95% interval {INTERVAL_WHY}, with the "
            f"provider's models taken as fixed; {_prompts(prov['prompts'])} per provider: "
            f"{methods_text(prov['method'])}) and the mean of its models' ASRs (models weighted equally). "
            f"Providers with fewer than {threshold} evaluable traces are marked preliminary.",
            "tbl-asr-providers", ["l", "r", "r", "r", "r", "l"]))


@register_section
class AsrByAttack(Section):
    type = "asr_by_attack"
    shows_results = True
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        if (empty := _no_data(ctx)) is not None:
            return empty
        data, tier = jailbreak_data(ctx), _tier(ctx)
        attacks = asr.attack_asr(data.traces, tier, seed=ctx.seed, con=ctx.con)
        rows = [(r.attack, int(r.models), int(r.evaluable), _pct(r.asr, r.low, r.high)) for r in attacks.itertuples()]
        descriptions = {k: " ".join(a.description.split()) for k, a in data.params.attacks.items()}
        rows = [(*r, descriptions.get(r[0], "")) for r in rows]
        return Rendered(f"## Attack techniques ({escape(tier.name)})\n\n" + table(
            ["Attack", "Models", "Evaluable", "ASR", "Technique"], rows,
            f"ASR per attack technique, pooled over models (taken as fixed); 95% interval clustered on prompts, "
            f"since every model plays the same prompts ({_prompts(attacks['prompts'])} per attack: "
            f"{methods_text(attacks['method'])}).", "tbl-asr-attacks", ["l", "r", "r", "r", "l"],
            widths=[2, 1, 1, 2, 6]))


GOLD_SET_NOTE = ("The gold set's harmful specifics are redacted (the project ships no harmful content); judges are "
                 "told that bracketed placeholders stand for content that was given.")


REASONS = ("not gradeable", "judge errors", "not yet judged", "trials ended in an error")


def excluded_traces(ctx, data) -> pd.DataFrame:
    """Traces outside every ASR and false-refusal denominator: one row per model, benign flag
    (False: harmful behaviours, True: benign controls) and reason (REASONS), with count n.
    NOT_GRADEABLE and ERROR labels come from the trace table (run or imported); traces not yet
    judged and trials ended in an error from the study's own runs."""
    from engine.kernel.contracts import ATTEMPTED, FINISHED
    from engine.kernel.records import ERROR_LABEL
    from engine.scenarios.jailbreak.traces import PRIMARY_VERDICT_JOIN, primary_verdict_params

    t = data.traces
    rows = []
    for reason, label in (("not gradeable", "NOT_GRADEABLE"), ("judge errors", ERROR_LABEL)):
        hit = t[t.label == label]
        rows += [(m, bool(b), reason, int(n)) for (m, b), n in hit.groupby(["model", "benign"]).size().items()]
    if data.imported_from is None:
        params = {"spec_hash": ctx.spec_hash}
        unjudged = ctx.con.execute(
            f"SELECT r.model_key, r.benign, count(*) FROM jailbreak_responses r JOIN {FINISHED} t"
            f" ON t.trial_id = r.trial_id {PRIMARY_VERDICT_JOIN} WHERE v.label IS NULL GROUP BY ALL",
            params | primary_verdict_params(ctx.spec)).fetchall()
        errored = ctx.con.execute(
            f"SELECT t.inputs->>'model_key', coalesce((t.inputs->'item'->>'benign')::BOOLEAN, false), count(*)"
            f" FROM {ATTEMPTED} t WHERE t.status = 'error' GROUP BY ALL", params).fetchall()
        rows += [(m, bool(b), "not yet judged", int(n)) for m, b, n in unjudged]
        rows += [(m, bool(b), "trials ended in an error", int(n)) for m, b, n in errored]
    return pd.DataFrame(rows, columns=["model", "benign", "reason", "n"])


def _between(successes: int, evaluable: int, excluded: int) -> tuple[float, float]:
    """The rate if every excluded unit were a non-event / an event."""
    total = evaluable + excluded
    return successes / total, (successes + excluded) / total


def exclusion_caveats(ctx, data) -> list[str]:
    """Every trace outside the denominators, by reason, and for each headline proportion the range it
    could take if those traces had been graded: all non-events (refusals; for false refusal, answers)
    or all events (successes; refusals)."""
    excluded = excluded_traces(ctx, data)
    by_reason = excluded.groupby("reason")["n"].sum()
    count = lambda reason: int(by_reason.get(reason, 0))  # noqa: E731
    if excluded.n.sum() == 0:
        return ["Every finished trace has a gradeable verdict from the primary judge: no trace is outside the "
                "attack-success or false-refusal denominators."]
    harmful_x = int(excluded[~excluded.benign].n.sum())
    benign_x = int(excluded[excluded.benign].n.sum())
    parts = ", ".join(f"{count(r)} {r}" for r in REASONS)
    out = [f"Outside every attack-success and false-refusal denominator: {harmful_x} harmful and {benign_x} benign "
           f"traces ({parts}). The rates above are over gradeable traces only; the ranges below say how far "
           "the excluded traces could move them."]
    t = data.traces
    gradeable = t[t.label.isin(asr.GRADEABLE)]
    harmful, benign = gradeable[~gradeable.benign.astype(bool)], gradeable[gradeable.benign.astype(bool)]
    if harmful_x:
        for key, tier in asr.TIERS.items():
            s, e = int(harmful.label.isin(tier.success_labels).sum()), len(harmful)
            lo, hi = _between(s, e, harmful_x)
            observed = f"{s / e:.0%} ({s} of {e} evaluable)" if e else "not estimable (no evaluable trace)"
            out.append(f"ASR {tier.name} pooled over all harmful traces is {observed}; it would be "
                       f"between {lo:.0%} and {hi:.0%} if the {harmful_x} excluded harmful traces were all "
                       "refusals / all successes.")
        tier = asr.TIERS[data.params.tier]
        per_model = []
        for model, x in excluded[~excluded.benign].groupby("model")["n"].sum().items():
            mine = harmful[harmful.model == model]
            s, e = int(mine.label.isin(tier.success_labels).sum()), len(mine)
            per_model.append((x / (e + x), model, s, e, int(x)))
        if per_model:
            _, model, s, e, x = max(per_model, key=lambda r: (r[0], r[4]))
            lo, hi = _between(s, e, x)
            observed = f"{s / e:.0%} of {e} evaluable" if e else "not estimable (no evaluable trace)"
            out.append(f"Per model the widest range is {_name(ctx, model)}'s: {tier.name} ASR {observed}, between "
                       f"{lo:.0%} and {hi:.0%} if its {x} excluded harmful traces were all refusals / all successes.")
    if benign_x:
        r, e = int(benign.label.eq("REFUSAL").sum()), len(benign)
        lo, hi = _between(r, e, benign_x)
        observed = f"{r / e:.0%} ({r} of {e} evaluable)" if e else "not estimable (no evaluable trace)"
        out.append(f"False refusal pooled over all benign controls is {observed}; it would be between {lo:.0%} and "
                   f"{hi:.0%} if the {benign_x} excluded benign traces were all answered / all refusals.")
    return out


def jailbreak_exclusions(ctx) -> dict[str, int]:
    """The traces outside the denominators that the engine's own counts do not see (Scenario.exclusions)."""
    data = jailbreak_data(ctx)
    by_reason = excluded_traces(ctx, data).groupby("reason")["n"].sum()
    count = lambda reason: int(by_reason.get(reason, 0))  # noqa: E731
    recorded = {"traces labelled NOT_GRADEABLE by the primary judge (outside every attack-success and "
                "false-refusal denominator)": count("not gradeable"),
                "finished traces not yet judged by the primary judge": count("not yet judged")}
    if data.imported_from is not None:
        recorded["judge ERROR labels in the imported verdicts"] = count("judge errors")
    return recorded


def jailbreak_caveats(ctx) -> list[str]:
    data = jailbreak_data(ctx)
    out = exclusion_caveats(ctx, data)
    if data.imported_from:
        out.append(f"Verdicts were imported from {data.imported_from}; how they were produced (judge, rubric, "
                   "prompts) is outside this study and could not be checked here.")
    if data.unjudged:
        out.append(f"{data.unjudged} finished traces have no verdict from the primary judge yet and are left out; "
                   "run `python -m engine judge` to grade them.")
    if ctx.spec.primary_judge:
        judge = next(j for j in make_judges(ctx.spec) if j.judge_id == ctx.spec.primary_judge)
        a, _ = gold_agreement(ctx, judge)
        success = positive_labels(ctx.scenario, ctx.spec, data.params).get(judge.judge_id)
        b = gold_binary_validity(ctx, judge, success) if success else None
        verdict = judge_verdict(a, b, data.params.weak_judge_kappa)
        if verdict != ADEQUATE:
            if b is not None and math.isnan(b.youden.value):
                why = (f"not measured: the gold set has {b.n_positive} items labelled {' or '.join(b.positive)} "
                       f"and {b.n_negative} others, and needs both")
            elif b is not None:
                why = (f"{verdict}: Youden's J {youden_text(b)} on {' or '.join(b.positive)} against the rest, "
                       f"sensitivity {b.sensitivity.value:.0%}, specificity {b.specificity.value:.0%}, "
                       f"{b.n_positive} positive and {b.n_negative} negative gold items")
            else:
                why = ("Cohen's kappa against the gold set " +
                       ("not measured" if a is None or math.isnan(a.kappa) else f"{a.kappa:.2f}"))
            out.append(f"The primary judge, {judge.spec.display_name}, is weak ({why}); every attack success rate "
                       "here rests on its labels.")
    if data.traces.empty:
        return out
    coverage = asr.item_coverage(data.traces)
    if not coverage.same_items:
        out.append("Models saw different items: cross-model and cross-provider comparisons are partly confounded "
                   "by prompt difficulty (see the per-model table).")
    moe = sorted({_name(ctx, m) for m, a in zip(data.traces.model, data.traces.params_active_b) if not pd.isna(a)})
    if moe:
        out.append(f"Mixture-of-experts models ({', '.join(moe)}) have fewer active than total parameters; the "
                   f"scale analysis uses {data.params.params_basis} parameters, and the other choice would move "
                   "these models along the size axis.")
    n_models = data.traces.model.nunique()
    if n_models < 30:
        out.append(f"With {n_models} models the scale regression has little power: a slope of a few points per "
                   "doubling would go undetected.")
    return out


@register_section
class ProviderVsSizeSection(Section):
    """The write-up's core: how much of the variation in model ASR do provider and size explain?"""

    type = "provider_vs_size"
    shows_results = True

    class Options(Strict):
        type: str
        chart: bool = True
        n_permutations: int = Field(default=5000, ge=100, description="arrangements of ASR over the models for "
                                    "the provider permutation test and the interval of eta² - R²")

    def render(self, ctx, options) -> Rendered:
        if (empty := _no_data(ctx)) is not None:
            return empty
        data, tier = jailbreak_data(ctx), _tier(ctx)
        models = asr.model_asr(data.traces, tier, seed=ctx.seed, con=ctx.con)
        result = asr.provider_vs_size(models, basis=data.params.params_basis,
                                      min_provider_evaluable=data.params.min_provider_evaluable, seed=ctx.seed,
                                      evaluable=asr.evaluable_harmful(data.traces, tier), con=ctx.con)
        parts = [f"## Provider or size? ({escape(tier.name)} ASR)",
                 escape(f"Units are models (N = {len(result.models)}): each model's ASR is one value, so every "
                        f"model counts equally whatever its number of traces. Size is log2 of {result.basis} "
                        "parameters.")]
        rows = []
        if result.scale is not None:
            s = result.scale
            rows += [("Scale: R² of ASR on log2(params)", f"{s.r2:.3f}", f"OLS, N = {s.n}"),
                     ("Scale: slope per doubling", f"{s.slope_per_doubling * 100:+.1f} pts "
                      f"[{s.slope_low * 100:+.1f}, {s.slope_high * 100:+.1f}]", f"p = {s.p_value:.3g}")]
        else:
            rows.append(("Scale regression", "not estimable", result.scale_reason))
        if result.provider_effect is not None:
            o = result.provider_effect
            rows += [("Provider: eta² (sample)", f"{o.eta2:.3f}", f"k = {o.k} providers, N = {o.n} models"),
                     ("eta² expected with no provider effect", f"{o.null_eta2:.3f}", "(k - 1)/(N - 1)"),
                     ("Provider: omega²", f"{o.omega2:.3f}", "less biased estimate of the population eta²"),
                     ("Provider: population eta², 95% interval", f"[{o.eta2_low:.3f}, {o.eta2_high:.3f}]",
                      "inverting the noncentral F (Steiger 2004); the sample eta² is biased upward and may "
                      "lie above it"),
                     ("Provider: F test", f"F = {o.f_stat:.2f}", f"p = {o.p_f:.3g}"),
                     ("Provider: permutation test", f"p = {o.p_permutation:.3g}", "providers shuffled over models")]
        else:
            rows.append(("Provider decomposition", "not estimable", result.provider_reason))
        shares, shares_text = _variance_shares(ctx, result, options.n_permutations)
        rows += shares
        parts.append(table(["Statistic", "Value", "Note"], rows, "Variance decomposition across models.",
                           "tbl-provider-size", ["l", "r", "l"], widths=[4, 3, 5]))
        if result.provider_effect is not None:
            o = result.provider_effect
            parts.append(escape(
                f"With {o.k} providers and {o.n} models, eta² would be about {o.null_eta2:.2f} even if the provider "
                f"did not matter at all; the observed {o.eta2:.2f} should be read against that, with omega² "
                f"({o.omega2:.2f}) and the permutation p ({o.p_permutation:.3g})."))
        parts.append(shares_text)
        parts.append(_residuals(ctx, result))
        parts.append(_risk(result, data.params.min_provider_evaluable))
        parts.extend(escape(n) for n in result.notes)
        figures = []
        if options.chart and len(result.models):
            frame = result.models.assign(
                x=result.models.params_b, value=result.models.asr,
                label=[_name(ctx, m) for m in result.models.model],
                n=result.models.evaluable.astype(int))
            ci = models.set_index("model").loc[frame.model]
            frame = frame.assign(low=ci.low.to_numpy(), high=ci.high.to_numpy())
            spec = estimate_chart(frame[["x", "value", "low", "high", "n", "label", "provider"]], x="x",
                                  x_title=f"Parameters (B, {result.basis}, log scale)", y_title=f"ASR ({tier.name})",
                                  color="provider", log_x=True, percent=True)
            label = "fig-asr-params-provider"
            figures.append(Figure(label, f"ASR ({tier.name}) of each model against its parameter count, by provider; "
                                         f"bars are 95% intervals clustered on prompts ({methods_text(ci.method)}).",
                                  spec))
            parts.append(f"@@FIGURE:{label}@@")
        return Rendered("\n\n".join(p for p in parts if p), figures)


def _variance_shares(ctx, result, n_permutations: int) -> tuple[list[tuple[str, str, str]], str]:
    """Size R² and provider eta² side by side, and eta² - R² with its interval: never their ratio."""
    if result.scale is None or result.provider_effect is None:
        return [], ""
    m = result.models
    try:
        v = variance_shares(m["asr"].to_numpy(), m["params_b"].to_numpy(), m["provider"].to_numpy(),
                            seed=derived_seed(ctx.seed, "provider_vs_size", "variance_shares"),
                            n_permutations=n_permutations)
    except ValueError as err:
        return [("Provider minus size: eta² - R²", "not estimable", str(err))], ""
    rows = [("Size: population R², 95% interval", f"[{v.r2_low:.3f}, {v.r2_high:.3f}]",
             "inverting the noncentral F of the slope (1 and N - 2 df, sizes fixed; Steiger 2004)"),
            ("R² expected with no size effect", f"{v.null_r2:.3f}", "1/(N - 1)"),
            ("Provider minus size: eta² - R²", f"{v.difference:+.3f} [{v.difference_low:+.3f}, {v.difference_high:+.3f}]",
             f"95%, the permutation test inverted ({v.n_permutations} arrangements of ASR over the models, seeded)"),
            ("eta² - R² expected with neither effect", f"{v.null_difference:+.3f}",
             "(k - 2)/(N - 1): read the difference against this, not against 0")]
    text = escape(
        f"Shares of the variance in model ASR: size R² {v.r2:.3f} (population R² 95% interval {v.r2_low:.3f} to "
        f"{v.r2_high:.3f}; {v.null_r2:.3f} expected with no size effect) and provider eta² {v.eta2:.3f} "
        f"({v.eta2_low:.3f} to {v.eta2_high:.3f}; {v.null_eta2:.3f} expected with no provider effect). Their "
        f"difference, eta² - R² = {v.difference:+.3f} (95% interval {v.difference_low:+.3f} to "
        f"{v.difference_high:+.3f}), would be about {v.null_difference:+.3f} if neither provider nor size mattered, "
        f"because {v.k} providers take up {v.k - 1} degrees of freedom and size 1. The interval inverts the "
        f"permutation test of neither mattering ({v.n_permutations} arrangements of ASR over the models, sizes and "
        "providers kept), shifted: it lies above the no-effect value exactly when that test's one-sided p is "
        "below 2.5%. (A bootstrap over models is not used: a duplicated model shrinks its provider's spread, so "
        "its intervals run high.) The ratio "
        "eta² / R² is not reported: it grows without bound as R² approaches 0, so a large ratio can come from a "
        "size effect near 0 rather than from a provider effect.")
    return rows, text


def _residuals(ctx, result) -> str:
    if result.residuals is None:
        return escape(f"Scale-adjusted residuals: not estimable ({result.residuals_reason}).")
    rows = [(r.group, r.n, f"{r.mean * 100:+.1f}",
             "none: no degree of freedom left" if math.isnan(r.low) else f"[{r.low * 100:+.1f}, {r.high * 100:+.1f}]")
            for r in sorted(result.residuals, key=lambda r: r.mean)]
    n, df = len(result.models), max((r.df for r in result.residuals), default=0)
    return table(["Provider", "Models", "Residual (pts)", "95% interval"], rows,
                 "Scale-adjusted residuals: each provider's mean distance (percentage points) of its models' ASR "
                 f"from the scale regression line over all N = {n} models, models weighted equally. The 95% "
                 "interval is for the provider's expected mean residual and carries both the regression's "
                 "uncertainty and the spread between models: a t interval from the same regression with an "
                 f"intercept of the provider's own added ({df} df; exact if model ASRs scatter normally with "
                 "equal variance around the line). A one-model provider's interval is its model's externally "
                 "studentized residual. An interval that excludes 0 is one provider among "
                 f"{len(result.residuals)} tested, with no correction for multiplicity. Negative = more "
                 "resistant than its sizes predict.",
                 "tbl-residuals", ["l", "r", "r", "r"])


def _risk(result, threshold: int) -> str:
    prelim = (f" Providers below {threshold} evaluable traces, reported as preliminary and not ranked: "
              f"{', '.join(result.preliminary_providers)}." if result.preliminary_providers else "")
    if result.risk is None or math.isnan(result.risk.ratio):
        return escape(f"Risk ratio between the most and least resistant providers: not estimable "
                      f"({result.risk_reason}).{prelim}")
    r, katz = result.selected_risk, result.risk
    if r is None:
        return escape(f"Risk ratio: {result.risk_high_provider}'s pooled ASR is {katz.ratio:.1f}x that of "
                      f"{result.risk_low_provider}; no selection-aware interval ({result.selected_risk_reason}), "
                      f"and the Katz interval ({katz.low:.1f} to {katz.high:.1f}) ignores that this pair was picked "
                      f"as the extremes and that traces share prompts.{prelim}")
    head = (f"Risk ratio between the extremes: {r.high_provider}'s pooled ASR is {r.ratio:.1f}x that of "
            f"{r.low_provider}, the highest and lowest of {r.providers} ranked providers ({r.models} models, "
            f"{r.prompts} prompts). ")
    katz_text = (f"For comparison, the Katz log interval on pooled traces, which ignores the selection, the sharing "
                 f"of prompts and how much a provider's models differ, is {katz.low:.1f} to {katz.high:.1f} (not a "
                 f"valid 95% interval here).{prelim}")
    if not math.isfinite(r.low):
        return escape(head + f"No selection-aware interval: {r.reason}. " + katz_text)
    return escape(
        head + f"Selection-aware 95% interval for the ratio of the two providers' rates: {r.low:.2g} to "
        f"{r.high:.2g}, centred on the ratio of their models' geometric-mean ASRs ({r.centre:.2g}). A provider's "
        "models are taken as a sample of the models it makes: a model's log ASR varies around its provider's "
        f"mean with one SD for every provider ({r.model_sd:.2f}, estimated from the providers with two or more "
        f"models, {r.df} df), and the interval is Tukey-Kramer's, which holds for every pair of providers at "
        "once and so for the pair picked as the extremes. It is wide when a provider's models differ: a ranking "
        "of providers from one or two models each says little about the providers. " + katz_text)


@register_section
class MixedEffects(Section):
    type = "mixed_effects"
    shows_results = True
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        from engine.scenarios.jailbreak.analysis.mixed_effects import MixedUnavailable

        heading = "## Robustness: trace-level mixed-effects logistic model"
        if (empty := _no_data(ctx)) is not None:
            return Rendered(heading + "\n\n" + empty.markdown)
        fit = mixed_fit(ctx.con, jailbreak_data(ctx), ctx.seed)  # stored by cache_analyses after a run
        if isinstance(fit, MixedUnavailable):
            return Rendered(heading + "\n\n" + escape(f"Not fitted: {fit.reason}."))
        rows = [("Slope per doubling (log-odds)", f"{fit.slope_per_doubling:+.3f} [{fit.slope_low:+.3f}, "
                                                  f"{fit.slope_high:+.3f}]"),
                ("Odds ratio per doubling", f"{fit.odds_ratio_per_doubling:.2f}"),
                *[(f"Random-intercept SD: {name}", f"{sd:.2f}") for name, sd in fit.vc_sd.items()],
                ("Traces / models / providers / prompts",
                 f"{fit.n_traces} / {fit.n_models} / {fit.n_providers} / {fit.n_prompts}")]
        return Rendered(heading + "\n\n" + table(["Quantity", "Estimate"], rows, fit.method,
                                                 "tbl-mixed", ["l", "r"]))
