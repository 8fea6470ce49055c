"""Checking a study's `report.claims` before any run: each claim's test is registered, its options are
valid, the boundary, range or effect lies within the values its estimate can take, and (for a planned
design) the factor levels it names exist. The claims section, the calibration and `check` read it."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from engine.kernel.contracts import ClaimOptions, ClaimTest, Scenario
from engine.kernel.errors import SpecError
from engine.kernel.registry import REGISTRY
from engine.report.claim_tests import missing_level  # (and registers the engine's claim tests)


def claim_test_names(scenario: str) -> list[str]:
    return [e.name for e in REGISTRY.visible("claim", scenario)]


def validate_claims(raw_claims: list[dict[str, Any]], scenario: Scenario, spec, *,
                    levels: bool = False) -> list[tuple[ClaimTest, ClaimOptions]]:
    """Check every claim before any run: its test, its options and what they name (whether or not
    the report lists the `claims` section that shows them); the claimed range or boundary against the
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
    """A claimed range, boundary or effect within the values the estimate can take."""
    if scale is None:
        return
    low, high = scale
    shown = f"[{low:g}, {high:g}]"
    hint = "(rates are fractions: 0.4, not 40)"
    if options.range is not None and not (low <= options.range[0] and options.range[1] <= high):
        raise SpecError(f"range {list(options.range)} goes outside {shown}, the values this estimate can take {hint}",
                        key=f"{key}.range")
    for name in ("at_least", "at_most"):
        bound = getattr(options, name)
        if bound is not None and not low <= bound <= high:
            raise SpecError(f"{name} {bound:g} is outside {shown}, the values this estimate can take {hint}",
                            key=f"{key}.{name}")
    room = high if options.direction == "positive" else -low
    if options.effect is not None and options.direction is not None and options.effect > room:
        raise SpecError(f"an effect of {options.effect:g} in the {options.direction} direction is beyond {shown}, "
                        f"the values this estimate can take {hint}", key=f"{key}.effect")
