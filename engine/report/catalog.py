"""The report sections a study may list: the engine's own and its scenario's, each registered with
`@register_section` and found by the registry's discovery (engine/kernel/registry.py). A section of
another scenario, or a sweep section in a study report, is a spec error before anything runs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from engine.kernel.contracts import Scenario, Section
from engine.kernel.errors import SpecError
from engine.kernel.registry import REGISTRY


def section_types(scenario: str | None = None) -> list[str]:
    """The section types a study of `scenario` may list (every one, owners named, when None)."""
    entries = REGISTRY.visible("section", scenario) if scenario else REGISTRY.entries("section")
    return [e.name if scenario else e.full_name for e in entries]


def get_section(name: str, scenario: str | None = None) -> Section:
    entry = REGISTRY.find("section", name, scenario)
    if entry is None:
        raise KeyError(name)
    return entry.obj()


def _unknown(name: str, scenario: Scenario, key: str) -> SpecError:
    """Why a study of `scenario` cannot list section `name`: another scenario's, or none at all."""
    elsewhere = [e for e in REGISTRY.entries("section") if e.name == name.rpartition("/")[2] and e.owner]
    if elsewhere and all(e.owner != scenario.name for e in elsewhere):
        owners = ", ".join(sorted({e.owner for e in elsewhere}))
        return SpecError(f"section type '{name}' belongs to scenario {owners}, not to this study's scenario "
                         f"{scenario.name} (known: {', '.join(section_types(scenario.name))})", key=key)
    return SpecError(f"unknown section type '{name}' (known: {', '.join(section_types(scenario.name))})", key=key)


def validate_sections(raw_sections: list[dict[str, Any]], scenario: Scenario,
                      sweep: bool = False) -> list[tuple[Section, BaseModel]]:
    """Check every declared section before any run: type, options and the metrics they name."""
    out = []
    for i, raw in enumerate(raw_sections):
        key = f"report.sections.{i}"
        if not isinstance(raw, dict) or "type" not in raw:
            raise SpecError("each section needs a 'type'", key=key)
        name = str(raw["type"])
        entry = REGISTRY.find("section", name, scenario.name)
        if entry is None or entry.owner not in ("", scenario.name):
            raise _unknown(name, scenario, f"{key}.type")
        section = entry.obj()
        if section.sweep_only and not sweep:
            raise SpecError(f"section type '{name}' belongs to sweep reports (python -m engine run STUDY -m "
                            "...), not to a study's report.sections", key=f"{key}.type")
        try:
            options = section.Options.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            raise SpecError(message, key=f"{key}.{where}") from None
        section.check(options, scenario, key)
        out.append((section, options))
    return out


def no_results_warning(sections: list[tuple[Section, BaseModel]], scenario: Scenario) -> str | None:
    """Why the report would show no results, when none of its sections shows any (said at plan time)."""
    if any(section.shows_results for section, _ in sections):
        return None
    shown = ", ".join(section.type for section, _ in sections) or "none"
    kinds = [e.name for e in REGISTRY.visible("section", scenario.name) if e.obj.shows_results]
    return (f"report.sections lists no section that shows results ({shown}): the report will have no table, "
            f"chart, claims or transcripts. Add one (e.g. {{type: headline_table}}; results sections of this "
            f"study: {', '.join(kinds)}), or leave report.sections out for the scenario's defaults.")
