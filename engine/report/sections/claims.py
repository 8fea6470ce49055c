"""The write-up's claims as tested verdicts: each entry of `report.claims` is decided by its claim
test (engine/analyze/claim_stats.py): its kind (direction, at least, at most, range), the decision
interval at the level Holm's procedure gives it, the p-value that interval's family gives against the
claimed boundary, the Holm-adjusted p, the power the design had, and the verdict, which the printed
interval shows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.analyze.claim_stats import FAMILYWISE, Decision, amount, decide_claims
from engine.kernel.contracts import ClaimEstimate, Claimed, ClaimOptions, Rendered, Section
from engine.kernel.registry import register_section
from engine.report.claim_validation import validate_claims
from engine.report.markdown import bullet_list, escape, table
from engine.report.sections.calibration import share, simulated_power, stored_for
from engine.report.sections.paired_contrasts import p_text


@dataclass(frozen=True)
class ClaimResult:
    options: ClaimOptions
    estimate: ClaimEstimate
    decision: Decision


def evaluate_claims(ctx) -> list[ClaimResult]:
    """Every claim's estimate, then Holm's procedure across the claims that have a p-value, then the
    verdicts read off each claim's decision interval."""
    checked = validate_claims(ctx.spec.report.claims, ctx.scenario, ctx.spec)
    estimates = [(options, test.estimate(ctx, options)) for test, options in checked]
    return [ClaimResult(options, est, decision)
            for (options, est), decision in zip(estimates, decide_claims(estimates))]


def _n_text(est: ClaimEstimate) -> str:
    units = f" {est.units}" if est.units else ""
    return f"n={est.n}{units}" + (f"; {est.detail}" if est.detail else "")


def estimate_text(est: ClaimEstimate, low: float | None = None, high: float | None = None) -> str:
    """The estimate with an interval (the decision interval when given, else its 95% one) and its n."""
    if est.reason is not None and not math.isfinite(est.value):
        return f"— ({_n_text(est)})"
    low, high = (est.low, est.high) if low is None or high is None else (low, high)
    body = amount(est.value, est.percent)
    if not (math.isnan(low) or math.isnan(high)):
        body += f" [{amount(low, est.percent)}, {amount(high, est.percent)}]"
    return f"{body} ({_n_text(est)})"


KIND_NAMES = {"direction": "direction", "at_least": "at least", "at_most": "at most", "range": "range (equivalence)"}


def claimed_text(claimed: Claimed, percent: bool) -> str:
    """What is claimed of the quantity: its kind and the region it must lie in."""
    low, high = amount(claimed.low, percent), amount(claimed.high, percent)
    if claimed.kind == "range":
        return f"range: in [{low}, {high}]"
    if claimed.kind == "direction":
        return f"direction: {'positive, > ' + low if math.isfinite(claimed.low) else 'negative, < ' + high}"
    return f"at least {low}" if claimed.kind == "at_least" else f"at most {high}"


def kind_text(r: "ClaimResult") -> str:
    est, options = r.estimate, r.options
    text = claimed_text(options.claimed(est.null), est.percent)
    if options.effect is not None:
        text += f" (effect assumed for the power: {amount(options.effect, est.percent)})"
    if est.parts:
        text += f"; intersection-union of {len(est.parts)} parts, every one must hold"
    return text


def level_text(d: Decision) -> str:
    """The decision interval's level and, with several tested claims, its Holm step."""
    if not d.step:
        return "95% CI (not tested)"
    level = f"{100 * d.level:.4g}% CI"
    return level if d.of == 1 else f"{level}, Holm step {d.step} of {d.of}"


def power_text(r: ClaimResult, simulated: dict[str, Any] | None = None) -> str:
    d, percent = r.decision, r.estimate.percent
    mdd = f"MDD {amount(d.mdd, percent)}" if math.isfinite(d.mdd) else ""
    power = f"{d.power:.0%}" if math.isfinite(d.power) else ""
    measured = f"simulated {share(simulated)}" if simulated else ""
    return "; ".join(x for x in (power, mdd, measured) if x) or "—"


def row(r: ClaimResult, simulated: dict[str, Any] | None = None) -> tuple[str, ...]:
    d, bound = r.decision, r.decision.bound
    shown = estimate_text(bound.estimate, bound.low, bound.high) if bound else estimate_text(r.estimate)
    test = bound.estimate.test if bound else r.estimate.test
    return (r.options.claim, kind_text(r), shown, level_text(d), test, p_text(d.p), p_text(d.holm_p),
            power_text(r, simulated), d.verdict)


def _part_text(d: Decision) -> list[str]:
    if len(d.parts) < 2:
        return []
    return [f"{p.label}: {estimate_text(p.estimate, p.low, p.high)}, p = {p_text(p.p)}, {p.verdict}"
            for p in d.parts]


INTRO = (
    "Each claim of the write-up, decided on this study's data by the test named with it: {supported} supported, "
    "{contradicted} contradicted, {open} not resolvable with this design. A claim is of one kind: a direction "
    "(the sign only; an effect given with it is only the power assumption), at least or at most a boundary (a "
    "one-sided test against it), or a range (equivalence: two one-sided tests); a claim of several parts holds "
    "only when every part does (intersection-union). Each is decided by one interval: supported when it lies "
    "entirely on the claimed side (inside the range), contradicted when it lies entirely on the other side "
    "(outside the range), otherwise not resolvable. The level is Holm's across the {tested} tested claims at a "
    "family-wise one-sided {familywise}: the claim at step j of m in order of p is decided at one-sided "
    "{familywise}/(m - j + 1) (from the first step that fails on, at that step's level), so its interval is "
    "the two-sided 1 - 2 x that level interval (95% for a single claim). p is that interval family's own "
    "one-sided p against the claimed boundary (for a range the larger of the two; for several parts the "
    "largest, the part shown), and the Holm-adjusted p is below {familywise} exactly when the claim is "
    "supported. Power is the design's at the assumed effect (a range: at its centre) for the one-sided "
    "{familywise} test, from the estimate's standard error (a normal approximation); MDD is how far beyond "
    "the boundary the quantity must lie for 80% power. Where the calibration section holds a simulation of "
    "this design on the current data, the share of simulated studies at the assumed effect in which this "
    "same test supported the claim follows (± its Monte Carlo error, draws): with few units the "
    "approximation can be far from it, and the simulated figure is the one that holds.")


@register_section
class Claims(Section):
    """The study's `report.claims`, each with its kind, decision interval and level, p, Holm p, power and
    verdict."""

    type = "claims"
    shows_results = True

    def render(self, ctx, options) -> Rendered:
        results = evaluate_claims(ctx)
        stored = stored_for(ctx) if results else None
        untested = untested_text(ctx.spec.report.untested_claims)
        if not results:
            return Rendered("## Claims\n\nThis study lists no claims (`report.claims`)." + untested)
        counts = {v: sum(r.decision.verdict == v for r in results) for v in
                  ("supported", "contradicted", "not resolvable with this design")}
        intro = INTRO.format(supported=counts["supported"], contradicted=counts["contradicted"],
                             open=counts["not resolvable with this design"],
                             tested=sum(r.decision.step > 0 for r in results), familywise=f"{FAMILYWISE:.1%}")
        # The simulated power where the power stated beside it is for the same effect (the calibration assumes
        # one for a claim that states none: not comparable).
        simulated = {r.options.claim: simulated_power(stored, r.options.claim) if math.isfinite(r.decision.power)
                     else None for r in results}
        table_md = table(["Claim", "Kind: claimed", "Estimate [decision CI]", "CI", "Interval family (p inverts it)", "p",
                          "Holm p", "Power; MDD", "Verdict"],
                         [row(r, simulated[r.options.claim]) for r in results],
                         "The write-up's claims as tested verdicts.", "tbl-claims",
                         ["l", "l", "r", "l", "l", "r", "r", "r", "l"])
        why = bullet_list(escape(
            f"{r.options.claim}: {r.decision.verdict} — {r.decision.why}"
            + (f" (simulated: supported in {share(simulated[r.options.claim])} simulated studies at that effect)"
               if simulated[r.options.claim] else "")
            + f". Estimate: {r.estimate.quantity}."
            + "".join(f" Part: {t}." for t in _part_text(r.decision))) for r in results)
        return Rendered(f"## Claims\n\n{escape(intro)}\n\n{table_md}\n\n{why}{untested}")


def untested_text(untested) -> str:
    """The write-up's claims the study does not test, each with why (`report.untested_claims`)."""
    if not untested:
        return ""
    return ("\n\n" + escape("The write-up's claims this study does not test, and why:") + "\n\n"
            + bullet_list(escape(f"{u.claim}: {u.why}") for u in untested))
