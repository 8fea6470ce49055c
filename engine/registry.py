"""Plug-in registries (scenarios, judges): built-ins are listed by name ("module:Class", or a module
that registers its classes by decorator when imported); other installed packages add their own
through an entry-point group."""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    def __init__(self, kind: str, key: Callable[[T], str], builtins: tuple[str, ...], entry_point_group: str):
        self.kind = kind
        self._key = key
        self._builtins = builtins
        self._group = entry_point_group
        self._classes: dict[str, T] = {}
        self._loaded = False

    def register(self, cls: T) -> T:
        name = self._key(cls)
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._classes[name] = cls
        return cls

    def _load_all(self) -> None:
        if self._loaded:
            return
        for builtin in self._builtins:
            # "module:Class": the registry registers the class, so the plug-in module need not import
            # the registry that lists it (no import circle); a bare module registers itself on import.
            module, _, attr = builtin.partition(":")
            loaded = import_module(module)
            if attr:
                self.register(getattr(loaded, attr))
        for ep in entry_points(group=self._group):
            ep.load()
        self._loaded = True

    def names(self) -> list[str]:
        self._load_all()
        return sorted(self._classes)

    def get(self, name: str) -> T:
        self._load_all()
        return self._classes[name]
