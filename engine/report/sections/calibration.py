"""The calibration section: what the report's own verdicts and intervals do on simulated studies of
this design (engine/analyze/calibration.py), beside each claim and interval type.

A calibration is computed by `python -m engine calibrate STUDY` and stored in the study database
(engine/store/fit_cache.py, kind "calibration") under a key of what it depends on: the spec, every
simulated base rate, mean and SD (from the data: new data gives a new key) and the source of the code
it runs, with its draws and seed. The section prints the stored one with the most draws for the
current key, or says none is current and how to compute it: never a stale one."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from engine.analyze.calibration import MODEL_SD, Setup, calibrate, steps
from engine.kernel.contracts import NoOptions, Rendered, Section
from engine.kernel.registry import register_section
from engine.plan.compile import Plan, compile_plan
from engine.report.calibration_setup import calibration_setup, setup_digest
from engine.report.markdown import bullet_list, escape, table
from engine.store import fit_cache

KIND = "calibration"
DEFAULT_DRAWS = 80  # measured on 2 shared cores: model_size 44 s, blackmail_subfrontier 36 s, provider_vs_size 23 s,
# provider_vs_size_import on the 21-model panel (tests/data/traces_provider_panel.csv) 36 s
DEFAULT_SEED = 0


def run_calibration(plan: Plan, con, draws: int, seed: int, progress=lambda n: None,
                    start=lambda total: None, model_sd: float = MODEL_SD) -> dict[str, Any]:
    """Simulate the study's design `draws` times; the result says what it was computed from."""
    setup = calibration_setup(plan, con, model_sd)
    start(steps(setup, draws))
    result = calibrate(setup, draws, seed, progress)
    return {**result, "digest": setup_digest(plan.loaded.spec_hash, setup), "study": plan.loaded.spec.name,
            "computed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": "measured" if setup.measured else "assumed"}


def store(con, result: dict[str, Any]) -> bool:
    key = fit_cache.fit_key(KIND, result["digest"], {"draws": result["draws"], "seed": result["seed"]})
    return fit_cache.put(con, key, KIND, result)


def current(con, digest: str) -> dict[str, Any] | None:
    """The stored calibration of this setup with the most draws (the newest among equals); None."""
    found = [r for _, r in fit_cache.of_kind(con, KIND) if r.get("digest") == digest]
    return max(found, key=lambda r: r["draws"]) if found else None


def current_of(plan: Plan, con) -> tuple[dict[str, Any] | None, Setup]:
    """The stored calibration of this design and data at any model SD (the one with most draws; the
    default SD first among equals), and the setup at the default SD."""
    setup = calibration_setup(plan, con)
    found = current(con, setup_digest(plan.loaded.spec_hash, setup))
    if found is None:
        stored = {r.get("model_sd") for _, r in fit_cache.of_kind(con, KIND)} - {None, MODEL_SD}
        others = [current(con, setup_digest(plan.loaded.spec_hash, calibration_setup(plan, con, sd)))
                  for sd in sorted(stored)]
        found = max((r for r in others if r), key=lambda r: r["draws"], default=None)
    return found, setup


def stored_for(ctx) -> dict[str, Any] | None:
    """The current stored calibration of the report's design and data (`current_of`), read once per
    report: the claims section prints its simulated power beside the stated one. With none stored at all,
    None without building the design's setup (about a second: its power searches)."""
    if "calibration" not in ctx.shared:
        any_stored = bool(fit_cache.of_kind(ctx.con, KIND))
        ctx.shared["calibration"] = current_of(compile_plan(ctx.loaded), ctx.con)[0] if any_stored else None
    return ctx.shared["calibration"]


def simulated_power(result: dict[str, Any] | None, claim: str) -> dict[str, Any] | None:
    """The share of simulated studies at the claim's effect in which it was supported (None: not simulated)."""
    for c in (result or {}).get("claims", []):
        if c["claim"] == claim and "reason" not in c and c.get("effect"):
            return c["effect"]["supported"]
    return None


# --------------------------------------------------------------------------------------- text

def share(f: dict[str, float] | None) -> str:
    """"4.0% ± 1.4 (200)": a simulated share, its Monte Carlo SE (points) and draws."""
    if not f:
        return "—"
    return f"{100 * f['value']:.1f}% ± {100 * f['se']:.1f} ({f['draws']})"


def _above(f: dict[str, float] | None, nominal: float) -> bool:
    return bool(f) and f["value"] - 2 * f["se"] > nominal


def _below(f: dict[str, float] | None, target: float) -> bool:
    return bool(f) and f["value"] + 2 * f["se"] < target


def _truth(value: float | None) -> str:
    return "" if value is None else f"; truth {0.0 if abs(value) < 1e-9 else value:.3g}"


def _worst(c: dict[str, Any]) -> str:
    """Where the false support was measured: the worst of the claim's boundary worlds."""
    many = c.get("nulls", 1)
    return c["null_how"] + (f" (the worst of {many} boundary worlds)" if many > 1 else "")


LITTLE_POWER = 0.5  # below this (by more than 2 MC SE), a claim that holds is rarely shown on this design


def _power_notes(effect: dict[str, Any] | None) -> list[str]:
    """Flags on the power row: a stated power the simulation does not reproduce (by more than two combined
    Monte Carlo errors), and a design that rarely shows the claim where it holds."""
    simulated = effect.get("supported") if effect else None
    if not simulated:
        return []
    notes = []
    stated = effect.get("stated_power")
    if stated:
        gap = abs(simulated["value"] - stated["value"])
        if gap > 2 * math.hypot(simulated["se"], stated["se"]):
            notes.append(f"STATED POWER NOT REPRODUCED: {simulated['value']:.0%} simulated, {stated['value']:.0%} stated")
    untestable = bool(effect.get("decided")) and effect["decided"]["value"] == 0  # said by the no-verdict note
    if simulated["value"] + 2 * simulated["se"] < LITTLE_POWER and not untestable:
        notes.append(f"little power: this design shows the claim in {simulated['value']:.0%} of simulated studies "
                     "where it holds (at the power column's effect)")
    return notes


def claim_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Claim, kind, false support (nominal), power at the effect (the report's stated power), 95% CI
    coverage at the boundary, note."""
    rows = []
    for c in result["claims"]:
        if "reason" in c:
            rows.append((c["claim"], c["kind"], "—", "—", "—", f"not simulated: {c['reason']}"))
            continue
        null, effect = c["null"], c.get("effect")
        notes = []
        if _above(null["supported"], c["nominal"]):
            notes.append(f"ANTI-CONSERVATIVE: false support above the nominal {c['nominal']:.1%} by more than 2 MC SE")
        if null["decided"] and null["decided"]["value"] < 1:
            notes.append(f"no verdict in {100 * (1 - null['decided']['value']):.0f}% of draws"
                         + (f" ({null['no_verdict_reason']})" if null.get("no_verdict_reason") else ""))
        if null.get("clipped") or (effect and effect.get("clipped")):
            notes.append("a planted rate was clipped to [0, 1]")
        notes += _power_notes(effect)
        power = share(effect["supported"]) if effect else "—"
        if effect and effect.get("how") not in (None, "the stated effect"):
            power += f" at {effect['how']}"
        if effect and effect.get("stated_power"):
            power += f"; stated {100 * effect['stated_power']['value']:.0f}%"
        elif not effect:
            notes.append(c.get("power_note", "no effect stated"))
        rows.append((c["claim"], f"{c['kind']} ({_worst(c)}{_truth(null['truth'])})",
                     f"{share(null['supported'])} vs {c['nominal']:.1%}", power, share(null["coverage"]),
                     "; ".join(notes) or "ok"))
    return rows


def interval_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """Interval type, metric, coverage (target), worst cell, half-width (planned / target), note."""
    target = result["coverage_target"]
    rows = []
    for c in result["cells"]:
        hw = c.get("halfwidth")
        width = "—" if not hw else f"{hw['value']:.3g} ± {hw['se']:.2g} (90th pct {hw['q90']:.3g})"
        plan = [f"planned {c['planned_halfwidth']:.3g}" if c.get("planned_halfwidth") is not None else "",
                f"target {c['target']:g}" if c.get("target") is not None else ""]
        width += "".join(f"; {p}" for p in plan if p)
        flag = _below(c["coverage"], target) or _below(c["worst_cell"], target)
        rows.append((f"per-cell {'rate' if c['kind'] == 'proportion' else 'mean'} 95% CI", c["label"],
                     share(c["coverage"]), share(c["worst_cell"]), width,
                     f"BELOW {target:.0%}" if flag else "ok"))
    for c in result["contrasts"]:
        none = c["no_interval"]["value"] if c["no_interval"] else 0.0
        rows.append(("paired contrast 95% CI", f"{c['label']} ({c['contrasts']} contrasts)", share(c["coverage"]),
                     "—", "—", (f"BELOW {target:.0%}" if _below(c["coverage"], target) else "ok")
                     + (f"; no interval in {100 * none:.0f}% of contrasts" if none else "")))
    for c in result["claims"]:
        cov = (c.get("effect") or {}).get("coverage")
        if cov:
            rows.append(("claim estimate 95% CI (at the stated effect)", c["claim"], share(cov), "—", "—",
                         f"BELOW {target:.0%}" if _below(cov, target) else "ok"))
    return rows


def provenance(result: dict[str, Any], study: str) -> str:
    data = ("base rates, means and SDs measured on the study's data" if result["data"] == "measured"
            else "base rates, means and SDs from the spec's stated assumptions (no data yet)")
    return (f"{result['draws']} simulated studies per figure, seed {result['seed']}, computed "
            f"{result['computed_at']}; {data}; latent intra-cluster correlation {result['icc']:g} "
            f"(design.assumed_icc); where a claim reads across models (the provider claims), each model's "
            f"log-odds drawn about its provider's with SD {result.get('model_sd', MODEL_SD):g} in every simulated "
            f"study (the models a provider makes differ; an assumption: --model-sd). Recompute with more draws: "
            f"python -m engine calibrate {study} --draws N.")


CLAIM_HEADERS = ["Claim", "Kind (simulated at; true value)", "False support vs nominal", "Power at the effect",
                 "95% CI coverage at the boundary", "Note"]
INTERVAL_HEADERS = ["Interval", "Of", "Coverage (all cells)", "Worst cell", "Half-width (mean ± MC SE)", "Note"]

INTRO = ("The report's own claim tests and intervals, run on studies simulated from this design (its cells, "
         "seeds, items and clusters) where the truth is known. A claim's false support is how often it is "
         "called supported when its quantity sits exactly at the claimed boundary (a direction's no effect, an "
         "at-least or at-most boundary, either end of a range: the worse end), decided alone at its nominal "
         "one-sided level (Holm across the claims only lowers it); its power is how often it is supported at the "
         "stated effect, beside the power the claims section states. An interval's coverage is how often its "
         "95% interval holds the true value (target: at least {target:.0%}). Each figure: the share ± its Monte "
         "Carlo standard error (draws). A flag marks a figure off by more than two Monte Carlo errors.")


@register_section
class CalibrationSection(Section):
    """The stored calibration of this design and data (python -m engine calibrate): each claim's false
    support and power, each interval type's coverage and the cells' half-width, with Monte Carlo errors."""

    type = "calibration"
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        study = ctx.spec.name
        result = stored_for(ctx)
        md = ["## Calibration"]
        if result is None:
            md.append(escape(f"No calibration of this design on the current data is stored (a stored one is "
                             f"keyed on the spec, the data's base rates and SDs, and the code, so an older one is "
                             f"never shown). Compute one (under a minute at the default draws): python -m engine calibrate {study}"))
            return Rendered("\n\n".join(md))
        md.append(escape(INTRO.format(target=result["coverage_target"])))
        md.append(escape(provenance(result, study)))
        md.append(table(CLAIM_HEADERS, claim_rows(result), "Each claim's test on simulated studies of this design.",
                        "tbl-calibration-claims", ["l", "l", "r", "r", "r", "l"]))
        md.append(table(INTERVAL_HEADERS, interval_rows(result), "Each interval type's coverage on simulated "
                        "studies of this design.", "tbl-calibration-intervals", ["l", "l", "r", "r", "r", "l"]))
        md.append(escape("Simulated from:"))
        md.append(bullet_list(escape(line) for line in result["basis"]))
        return Rendered("\n\n".join(md))
