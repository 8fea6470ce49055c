"""One registry for every plug-in (scenarios, judge kinds, report sections), with names that carry
their owner: `escalation/transcripts` is the escalation scenario's section, a bare `summary` the
engine's own. A study sees the engine's names and its own scenario's, nothing else.

Plug-ins register with the decorators below when their module is imported. The registry finds them
itself before its first answer: every scenario package under `engine/scenarios/` (found on disk, so
deleting a scenario's folder removes it and nothing else), then every module that an installed
package lists in the `engine.plugins` entry-point group. The engine's own judges and sections are
registered by the stages that define them (`engine.judging.catalog`, `engine.report.catalog`).
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Callable, Literal, TypeVar

Kind = Literal["scenario", "judge", "section"]
KIND_NAMES: dict[str, str] = {"scenario": "scenario", "judge": "judge kind", "section": "report section type",
                              "claim": "claim test"}
ENGINE = ""  # the owner of the engine's own plug-ins (bare names)
SCENARIO_PACKAGE = "engine.scenarios"
ENTRY_POINT_GROUP = "engine.plugins"

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    kind: str
    owner: str  # a scenario's name, or ENGINE
    name: str   # the name inside its owner's namespace
    obj: Any

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}" if self.owner else self.name


class Registry:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Entry] = {}  # (kind, full name) -> entry
        self._discovered = False

    def add(self, kind: str, name: str, obj: Any, owner: str = ENGINE) -> None:
        entry = Entry(kind, owner, name, obj)
        found = self._entries.get((kind, entry.full_name))
        if found is not None and found.obj is not obj:
            raise ValueError(f"{KIND_NAMES[kind]} '{entry.full_name}' is registered twice")
        self._entries[(kind, entry.full_name)] = entry

    def remove(self, kind: str, full_name: str) -> None:
        """Forget a registration (for plug-ins defined and dropped at run time, e.g. in a test)."""
        self._entries.pop((kind, full_name), None)

    def entries(self, kind: str) -> list[Entry]:
        self.discover()
        return sorted((e for (k, _), e in self._entries.items() if k == kind), key=lambda e: e.full_name)

    def visible(self, kind: str, scope: str | None) -> list[Entry]:
        """What a study of scenario `scope` may name: the engine's plug-ins and its scenario's."""
        return [e for e in self.entries(kind) if e.owner in (ENGINE, scope)]

    def find(self, kind: str, name: str, scope: str | None = None) -> Entry | None:
        """`name` as a study of scenario `scope` means it: its scenario's own first, then the engine's.
        A full name (`owner/name`) is found whoever owns it (callers check that it is visible). With
        no scope, a bare name owned by exactly one scenario is that one."""
        self.discover()
        if "/" in name:
            return self._entries.get((kind, name))
        if scope and (kind, f"{scope}/{name}") in self._entries:
            return self._entries[(kind, f"{scope}/{name}")]
        if (kind, name) in self._entries:
            return self._entries[(kind, name)]
        if scope is None:
            owned = [e for e in self.entries(kind) if e.name == name]
            return owned[0] if len(owned) == 1 else None
        return None

    def discover(self) -> None:
        """Import the scenario packages on disk and the installed plug-in modules, once."""
        if self._discovered:
            return
        self._discovered = True
        package = import_module(SCENARIO_PACKAGE)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if module.ispkg:
                import_module(f"{SCENARIO_PACKAGE}.{module.name}")
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            entry_point.load()


REGISTRY = Registry()


def owner_of(module: str) -> str:
    """The scenario a plug-in's module belongs to (by folder), or ENGINE for the engine's own."""
    prefix = SCENARIO_PACKAGE + "."
    return module[len(prefix):].split(".", 1)[0] if module.startswith(prefix) else ENGINE


def registrar(kind: str, name_of: Callable[[Any], str], owned: bool = True) -> Callable[..., Any]:
    """A decorator registering a class under `name_of(cls)`, owned by the scenario whose folder holds
    it, or by `scenario=` for plug-ins outside `engine/scenarios/` (`@register_section(scenario="x")`)."""

    def register(cls: T | None = None, *, scenario: str | None = None) -> Any:
        def add(target: T) -> T:
            if not owned:
                owner = ENGINE
            elif scenario is not None:
                owner = scenario
            else:
                owner = owner_of(target.__module__)  # type: ignore[attr-defined]
            REGISTRY.add(kind, name_of(target), target, owner)
            return target

        return add(cls) if cls is not None else add

    return register


# A scenario owns itself: it is registered under its own name, in no one's namespace.
register_scenario = registrar("scenario", lambda cls: cls.name, owned=False)
register_judge = registrar("judge", lambda cls: cls.kind)
register_section = registrar("section", lambda cls: cls.type)
register_claim_test = registrar("claim", lambda cls: cls.test)


def scenario_names() -> list[str]:
    return [e.name for e in REGISTRY.entries("scenario")]


def scenario_class(name: str) -> Any:
    entry = REGISTRY.find("scenario", name)
    if entry is None:
        raise KeyError(name)
    return entry.obj


def get_scenario(name: str) -> Any:
    """A new instance of the scenario registered under `name` (KeyError if none is)."""
    return scenario_class(name)()
