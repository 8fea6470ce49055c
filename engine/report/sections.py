"""Report section registry. A study's `report.sections` lists sections by type with options; each
type is a class registered here (scenarios register their own the same way)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ValidationError

from engine.errors import SpecError
from engine.spec.schema import Strict

if TYPE_CHECKING:
    from engine.report.context import ReportContext
    from engine.scenarios import Scenario


@dataclass
class Figure:
    """A chart: Vega-Lite spec for the interactive HTML, SVG for the PDF."""

    label: str          # e.g. 'fig-divergence'
    caption: str
    vega_lite: dict[str, Any]


@dataclass
class Rendered:
    markdown: str
    figures: list[Figure] = field(default_factory=list)


class Section(ABC):
    type: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    # Sections that compare the jobs of a sweep read a SweepReportContext; a study report has none.
    sweep_only: ClassVar[bool] = False

    def check(self, options: BaseModel, scenario: "Scenario", key: str) -> None:
        """Raise SpecError for options that refer to things the study does not have."""

    @abstractmethod
    def render(self, ctx: "ReportContext", options: BaseModel) -> Rendered:
        ...


class NoOptions(Strict):
    type: str


_SECTIONS: dict[str, type[Section]] = {}


def register_section(cls: type[Section]) -> type[Section]:
    if cls.type in _SECTIONS and _SECTIONS[cls.type] is not cls:
        raise ValueError(f"report section '{cls.type}' is registered twice")
    _SECTIONS[cls.type] = cls
    return cls


def section_types() -> list[str]:
    import engine.report.builtin  # noqa: F401 - registers the built-in sections
    import engine.report.judge_validity  # noqa: F401 - registers judge_validity (every scenario with judges)
    import engine.report.sweep  # noqa: F401 - registers the sweep sections

    return sorted(_SECTIONS)


def get_section(name: str) -> Section:
    section_types()
    return _SECTIONS[name]()


def check_metric(name: str, scenario: "Scenario", key: str) -> None:
    known = [m.name for m in scenario.metrics()]
    if name not in known:
        raise SpecError(f"unknown metric '{name}' for scenario {scenario.name} (known: {', '.join(known)})",
                        key=key)


def validate_sections(raw_sections: list[dict[str, Any]], scenario: "Scenario",
                      sweep: bool = False) -> list[tuple[Section, BaseModel]]:
    """Check every declared section before any run: type, options and the metrics they name."""
    out = []
    known = section_types()
    for i, raw in enumerate(raw_sections):
        key = f"report.sections.{i}"
        if not isinstance(raw, dict) or "type" not in raw:
            raise SpecError("each section needs a 'type'", key=key)
        if raw["type"] not in known:
            raise SpecError(f"unknown section type '{raw['type']}' (known: {', '.join(known)})", key=f"{key}.type")
        section = get_section(raw["type"])
        if section.sweep_only and not sweep:
            raise SpecError(f"section type '{raw['type']}' belongs to sweep reports (python -m engine run STUDY -m "
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
