"""Optional parts of the install. The base install carries what `make study` needs; Ray, the Slurm
launcher and Inspect are extras (pyproject.toml's optional dependencies, each pinned in its own section of requirements.lock).
A study that needs a missing one fails before anything is written, naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from engine.kernel.errors import MissingExtra

# What each extra is for, for the message.
EXTRAS = {
    "ray": "the Ray executor, executor=ray",
    "slurm": "the Slurm launcher, hydra/launcher=slurm or slurm_local",
    "inspect": "Inspect logs (export and import) and the published inspect_evals templates",
}


# The top-level packages each extra brings: a missing one means the extra is not (fully) installed.
PACKAGES = {
    "ray": ("ray",),
    "slurm": ("hydra_plugins", "submitit"),
    "inspect": ("inspect_ai", "inspect_evals"),
}


def install_hint(extra: str) -> str:
    return f'pip install -e ".[{extra}]"  (or make install-{extra})'


def require(module: str, extra: str, *, file: str | None = None, key: str | None = None) -> ModuleType:
    """Import `module`, or raise MissingExtra naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in (*PACKAGES.get(extra, ()), module.split(".")[0]):
            raise  # the extra is there but something inside it is broken: show the real error
        raise MissingExtra(f"this needs the optional extra '{extra}' ({EXTRAS.get(extra, extra)}), which is not "
                           f"installed ({exc.name} is missing): {install_hint(extra)}",
                           file=file, key=key) from None
