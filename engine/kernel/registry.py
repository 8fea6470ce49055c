"""One registry for every plug-in (scenarios, judge kinds, report sections, claim tests), with names
that carry their owner: `escalation/transcripts` is the escalation scenario's section, a bare `summary`
the engine's own. A study sees the engine's names and its own scenario's, nothing else.

One way in, for the engine's own plug-ins and a stranger's alike: a package lists modules in the
`engine.plugins` entry-point group (pyproject.toml, `[project.entry-points."engine.plugins"]`), and
the registry, before its first answer, imports each of them and, when it is a package, every module
under it (so `engine.scenarios` brings in every scenario folder on disk, and a scenario's own modules
need no import list). The modules register their classes with one decorator per kind, below.

A checkout's pyproject.toml stands for the installed metadata of its own distribution: an editable
install keeps the entry points it was installed with, and the checkout's are the current ones.
`REGISTRY.scoped()` undoes whatever is registered or discovered inside it (tests).
"""

from __future__ import annotations

import pkgutil
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

Kind = Literal["scenario", "judge", "section", "claim"]
KIND_NAMES: dict[str, str] = {"scenario": "scenario", "judge": "judge kind", "section": "report section type",
                              "claim": "claim test"}
ENGINE = ""  # the owner of the engine's own plug-ins (bare names)
SCENARIO_PACKAGE = "engine.scenarios"
ENTRY_POINT_GROUP = "engine.plugins"
# The checkout the engine runs from, when it runs from one (not from an installed wheel).
CHECKOUT_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

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
        self._loaded: set[str] = set()  # plug-in targets (entry-point values) imported
        self._discovered = False

    def add(self, kind: str, name: str, obj: Any, owner: str = ENGINE) -> None:
        entry = Entry(kind, owner, name, obj)
        found = self._entries.get((kind, entry.full_name))
        if found is not None and found.obj is not obj:
            raise ValueError(f"{KIND_NAMES[kind]} '{entry.full_name}' is registered twice")
        self._entries[(kind, entry.full_name)] = entry

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
        """Import, once, every plug-in module the `engine.plugins` entry points name (a package with
        every module under it). A plug-in asking the registry while it is imported sees what is
        registered so far."""
        if self._discovered:
            return
        self._discovered = True
        for target in plugin_targets():
            if target not in self._loaded:
                self._loaded.add(target)
                load_plugin_modules(target)

    @contextmanager
    def scoped(self) -> Iterator["Registry"]:
        """Everything registered inside the block, and every plug-in module discovered inside it, is
        gone when it ends (the modules leave sys.modules too, so a later discovery registers them
        afresh). Inside, the next lookup discovers again: entry points installed in the block count."""
        self.discover()
        entries, loaded, modules = dict(self._entries), set(self._loaded), set(sys.modules)
        self._discovered = False
        try:
            yield self
        finally:
            self._entries, new_targets = entries, self._loaded - loaded
            self._loaded, self._discovered = loaded, True
            for name in [m for m in sys.modules if m not in modules]:
                if any(name == t or name.startswith(t + ".") for t in new_targets):
                    del sys.modules[name]


def plugin_targets() -> list[str]:
    """The modules (or packages) the `engine.plugins` entry points name: those of this checkout's
    pyproject.toml, when the engine runs from a checkout, in place of its distribution's installed
    ones; then every other installed distribution's."""
    own_name, own = checkout_entry_points()
    installed = [ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)
                 if own_name is None or ep.dist is None or ep.dist.name != own_name]
    return list(dict.fromkeys([*own, *installed]))


def checkout_entry_points() -> tuple[str | None, list[str]]:
    """(the checkout's distribution name, its `engine.plugins` targets), or (None, []) outside one."""
    if not CHECKOUT_PYPROJECT.is_file():
        return None, []
    project = tomllib.loads(CHECKOUT_PYPROJECT.read_text()).get("project", {})
    group = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    return project.get("name"), list(group.values())


def load_plugin_modules(target: str) -> None:
    """Import a plug-in module, or a package and every module under it (an entry-point value may
    name an object, `module:attr`: its module is what registers)."""
    module = import_module(target.partition(":")[0].strip())
    path = getattr(module, "__path__", None)
    if path is not None:
        for found in sorted(pkgutil.walk_packages(path, module.__name__ + "."), key=lambda m: m.name):
            import_module(found.name)


REGISTRY = Registry()


def owner_of(module: str) -> str:
    """The scenario a plug-in's module belongs to (by folder), or ENGINE for the engine's own."""
    prefix = SCENARIO_PACKAGE + "."
    return module[len(prefix):].split(".", 1)[0] if module.startswith(prefix) else ENGINE


T = TypeVar("T")


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

    register.__name__ = register.__qualname__ = f"register_{'claim_test' if kind == 'claim' else kind}"
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
