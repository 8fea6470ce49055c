"""Limits on what a config file may make Hydra and OmegaConf build: a few lines of YAML aliases can
stand for billions of values, and a value nested hundreds deep crashes OmegaConf. Checked on the
files before Hydra reads them, so such a file is a spec error naming it, not a hang or a crash."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import yaml

from engine.kernel.errors import SpecError
from engine.kernel.paths import user_config_dirs

# A YAML file's aliases can repeat a value exponentially (the "billion laughs"): OmegaConf would
# copy every repetition, for minutes. Nesting beyond Python's recursion limit crashes OmegaConf. No
# config needs more values or depth than these.
MAX_YAML_VALUES = 100_000
MAX_YAML_DEPTH = 64
MAX_USER_FILES = 1000  # files of one user config folder checked


def user_config_files() -> Iterator[Path]:
    """The option files of the user's config folders (group/option.yaml, two group levels deep)."""
    for folder in user_config_dirs():
        found = (p for pattern in ("*.yaml", "*/*.yaml", "*/*/*.yaml") for p in folder.glob(pattern))
        yield from islice(found, MAX_USER_FILES)


def check_yaml_size(path: Path, shown: str) -> None:
    """The file, with its aliases expanded, holds at most MAX_YAML_VALUES values nested at most
    MAX_YAML_DEPTH deep (measured on the unexpanded node graph: a bomb is not built to be counted)."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise SpecError(f"its YAML nests deeper than {MAX_YAML_DEPTH} levels", file=shown) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return  # Hydra reads the file next and reports what is wrong with it
    measured: dict[int, tuple[int, int]] = {}

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        """(values, depth) below `node`, capped just above the limits."""
        if depth > MAX_YAML_DEPTH:
            raise SpecError(f"its YAML nests deeper than {MAX_YAML_DEPTH} levels", file=shown)
        if id(node) not in measured:
            measured[id(node)] = (1, 1)  # an alias cycle counts once
            children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else
                        node.value if isinstance(node, yaml.SequenceNode) else [])
            below = [measure(child, depth + 1) for child in children]
            measured[id(node)] = (min(1 + sum(v for v, _ in below), MAX_YAML_VALUES + 1),
                                  1 + max((d for _, d in below), default=0))
        values, below_depth = measured[id(node)]
        if depth + below_depth > MAX_YAML_DEPTH + 1:
            raise SpecError(f"its YAML nests deeper than {MAX_YAML_DEPTH} levels", file=shown)
        return values, below_depth

    if root is not None and measure(root, 1)[0] > MAX_YAML_VALUES:
        raise SpecError(f"its YAML aliases expand to more than {MAX_YAML_VALUES:,} values", file=shown)
