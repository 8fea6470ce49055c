"""Where the project's config trees live. `conf/` holds the shared config groups, each scenario's
`conf/` folder (engine/scenarios/<name>/conf/) the groups and options only it uses; `studies/` holds
one file per study. A researcher's own config folders (`--config-dir`, or ENGINE_CONFIG_PATH) come
first, so their groups sit beside the shipped ones and their option of a shipped name wins."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
STUDIES_DIR = REPO_ROOT / "studies"
RESULTS_DIR = REPO_ROOT / "results"
REPORTS_DIR = REPO_ROOT / "reports"
SCENARIOS_DIR = REPO_ROOT / "engine" / "scenarios"
# Folders of the user's own config groups, separated by os.pathsep. An environment variable rather
# than an argument: sweep jobs (other processes, Slurm nodes) must compose with the same folders.
CONFIG_PATH_ENV = "ENGINE_CONFIG_PATH"


def user_config_dirs() -> list[Path]:
    return [Path(p).resolve() for p in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if p]


def add_user_config_dirs(folders: list[str | Path]) -> None:
    """Put `folders` on the search path of this process and the processes it starts."""
    known = user_config_dirs()
    new = [Path(f).resolve() for f in folders if Path(f).resolve() not in known]
    os.environ[CONFIG_PATH_ENV] = os.pathsep.join(str(p) for p in [*known, *new])


def is_shipped_study(study_file: Path) -> bool:
    """A study of this repository (its outputs stay where the shipped defaults put them)."""
    return study_file.resolve().is_relative_to(REPO_ROOT)


def config_search_path() -> list[Path]:
    """Where Hydra looks for config groups, after the study file's own folder: the user's own config
    folders, `conf/`, then every scenario's `conf/` folder in name order. Hydra merges a group's options across these folders, so
    `persona=hawk` finds engine/scenarios/escalation/conf/persona/hawk.yaml. Found on the filesystem
    (no scenario code is imported): a scenario folder without `conf/` has no entry."""
    return [*user_config_dirs(), CONF_DIR, *sorted(p for p in SCENARIOS_DIR.glob("*/conf") if p.is_dir())]


def hydra_searchpath_override() -> str:
    """The `hydra.searchpath=[...]` override that puts `config_search_path()` on Hydra's search path."""
    return "hydra.searchpath=[" + ",".join(hydra_quoted(f"file://{p}") for p in config_search_path()) + "]"


def hydra_quoted(text: str) -> str:
    """`text` as a quoted value of Hydra's override grammar, read back as exactly `text` whatever it
    holds (quotes, backslashes, commas, brackets): a path of any folder can go in an override."""
    from hydra.core.override_parser.types import Quote, QuotedString

    return QuotedString(text, Quote.single).with_quotes()
