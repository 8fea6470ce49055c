"""The write-up's claims as tested verdicts: each entry of `report.claims` is decided by its claim
test, with the estimate and its interval, the test and p-value (Holm-corrected across the claims),
the power the design had, and a verdict (engine/analyze/claim_stats.decide)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from engine.analyze.claim_stats import Decision, decide, decision_p
from engine.analyze.paired_stats import holm
from engine.kernel.contracts import ClaimEstimate, ClaimOptions, ClaimTest, Rendered, Scenario, Section
from engine.kernel.errors import SpecError
from engine.kernel.registry import REGISTRY, register_section
from engine.report.claim_tests import missing_level  # (and registers the engine's claim tests)
from engine.report.markdown import bullet_list, escape, table
from engine.report.paired_contrasts import p_text


def claim_test_names(scenario: str) -> list[str]:
    return [e.name for e in REGISTRY.visible("claim", scenario)]


def validate_claims(raw_claims: list[dict[str, Any]], scenario: Scenario, spec, *,
                    levels: bool = False) -> list[tuple[ClaimTest, ClaimOptions]]:
    """Check every claim before any run: its test, its options and what they name (whether or not
    the report lists the `claims` section that shows them); the claimed range or effect against the
    values the estimate can take; with `levels`, the factor levels it names against the design (else
    a claim on a level the design lacks is left unresolved when it is decided)."""
    out = []
    for i, raw in enumerate(raw_claims):
        key = f"report.claims.{i}"
        if not isinstance(raw, dict) or "test" not in raw:
            raise SpecError("each claim needs a 'test'", key=key)
        entry = REGISTRY.find("claim", str(raw["test"]), scenario.name)
        if entry is None or entry.owner not in ("", scenario.name):
            raise SpecError(f"unknown claim test '{raw['test']}' (known: {', '.join(claim_test_names(scenario.name))})",
                            key=f"{key}.test")
        test = entry.obj()
        try:
            options = test.Options.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            raise SpecError(message, key=f"{key}.{where}" if where else key) from None
        test.check(options, scenario, spec, key)
        check_scale(options, test.scale(options, scenario), key)
        missing = missing_level(options, spec) if levels else None
        if missing:
            raise SpecError(f"{missing[1]}: the claim could never be decided", key=f"{key}.{missing[0]}")
        out.append((test, options))
    return out


def check_scale(options: ClaimOptions, scale: tuple[float, float] | None, key: str) -> None:
    """A claimed range, or an effect in the claimed direction, within the values the estimate can take."""
    if scale is None:
        return
    low, high = scale
    shown = f"[{low:g}, {high:g}]"
    if options.range is not None and not (low <= options.range[0] and options.range[1] <= high):
        raise SpecError(f"range {list(options.range)} goes outside {shown}, the values this estimate can take "
                        "(rates are fractions: 0.4, not 40)", key=f"{key}.range")
    room = high if options.direction == "positive" else -low
    if options.effect is not None and options.direction is not None and options.effect > room:
        raise SpecError(f"an effect of {options.effect:g} in the {options.direction} direction is beyond {shown}, "
                        "the values this estimate can take (rates are fractions: 0.2, not 20)", key=f"{key}.effect")


@dataclass(frozen=True)
class ClaimResult:
    options: ClaimOptions
    estimate: ClaimEstimate
    decision: Decision


def evaluate_claims(ctx) -> list[ClaimResult]:
    """Every claim's estimate, then Holm's correction across the claims that have a p-value, then
    the verdicts."""
    checked = validate_claims(ctx.spec.report.claims, ctx.scenario, ctx.spec)
    estimates = [(options, test.estimate(ctx, options)) for test, options in checked]
    pvalues = [decision_p(est, options) for options, est in estimates]
    tested = [i for i, p in enumerate(pvalues) if math.isfinite(p)]
    adjusted = dict(zip(tested, holm([pvalues[i] for i in tested])))
    return [ClaimResult(options, est, decide(est, options, pvalues[i], adjusted.get(i, math.nan)))
            for i, (options, est) in enumerate(estimates)]


def _amount(x: float, percent: bool) -> str:
    if not math.isfinite(x):
        return "—"
    if percent:
        return f"{x * 100:.1f}%" if abs(x) < 0.1 else f"{x:.0%}"
    return f"{x:.3g}"


def estimate_text(est: ClaimEstimate) -> str:
    if est.reason is not None and not math.isfinite(est.value):
        return f"— (n={est.n})"
    body = _amount(est.value, est.percent)
    if math.isfinite(est.low):
        body += f" [{_amount(est.low, est.percent)}, {_amount(est.high, est.percent)}]"
    return f"{body} (n={est.n})"


def claimed_text(options: ClaimOptions, percent: bool) -> str:
    if options.range is not None:
        return f"in [{_amount(options.range[0], percent)}, {_amount(options.range[1], percent)}]"
    size = f", ≥ {_amount(options.effect, percent)}" if options.effect is not None else ""
    return f"{options.direction}{size}"


def power_text(r: ClaimResult) -> str:
    d, percent = r.decision, r.estimate.percent
    mdd = f"MDD {_amount(d.mdd, percent)}" if math.isfinite(d.mdd) else ""
    power = f"{d.power:.0%}" if math.isfinite(d.power) else ""
    return "; ".join(x for x in (power, mdd) if x) or "—"


@register_section
class Claims(Section):
    """The study's `report.claims`, each with its estimate, test, Holm-corrected p, power and verdict."""

    type = "claims"

    def render(self, ctx, options) -> Rendered:
        results = evaluate_claims(ctx)
        if not results:
            return Rendered("## Claims\n\nThis study lists no claims (`report.claims`).")
        rows = [(r.options.claim, claimed_text(r.options, r.estimate.percent), estimate_text(r.estimate),
                 r.estimate.test, p_text(r.decision.p), p_text(r.decision.holm_p), power_text(r),
                 r.decision.verdict) for r in results]
        counts = {v: sum(r.decision.verdict == v for r in results) for v in
                  ("supported", "contradicted", "not resolvable with this design")}
        intro = (f"Each claim of the write-up, decided by the test named with it on this study's data: "
                 f"{counts['supported']} supported, {counts['contradicted']} contradicted, "
                 f"{counts['not resolvable with this design']} not resolvable with this design. p-values are "
                 f"two-sided tests of no effect (for a claimed range, two one-sided tests of an effect outside "
                 f"it), Holm-corrected across the {sum(math.isfinite(r.decision.holm_p) for r in results)} "
                 f"claims that have one. Power is the design's at the claimed effect (or, for a range, with "
                 f"the effect at its centre), from the estimate's standard error; MDD is the effect it detects "
                 f"with 80% power at alpha 0.05. A directional claim whose test does not reject and whose interval "
                 f"rules out the claimed effect is contradicted.")
        table_md = table(["Claim", "Claimed", "Estimate [95% CI]", "Test", "p", "Holm p", "Power; MDD", "Verdict"],
                         rows, "The write-up's claims as tested verdicts.", "tbl-claims",
                         ["l", "l", "r", "l", "r", "r", "r", "l"])
        why = bullet_list(escape(f"{r.options.claim}: {r.decision.verdict} — {r.decision.why}. Estimate: "
                                 f"{r.estimate.quantity}.") for r in results)
        return Rendered(f"## Claims\n\n{escape(intro)}\n\n{table_md}\n\n{why}")
