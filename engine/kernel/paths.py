"""Where the project's config trees live. `conf/` holds the shared config groups, each scenario's
`conf/` folder (engine/scenarios/<name>/conf/) the groups and options only it uses; `studies/` holds
one file per study."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
STUDIES_DIR = REPO_ROOT / "studies"
RESULTS_DIR = REPO_ROOT / "results"
REPORTS_DIR = REPO_ROOT / "reports"
SCENARIOS_DIR = REPO_ROOT / "engine" / "scenarios"


def config_search_path() -> list[Path]:
    """Where Hydra looks for config groups, after the study file's own folder: `conf/`, then every
    scenario's `conf/` folder in name order. Hydra merges a group's options across these folders, so
    `persona=hawk` finds engine/scenarios/escalation/conf/persona/hawk.yaml. Found on the filesystem
    (no scenario code is imported): a scenario folder without `conf/` has no entry."""
    return [CONF_DIR, *sorted(p for p in SCENARIOS_DIR.glob("*/conf") if p.is_dir())]


def hydra_searchpath_override() -> str:
    """The `hydra.searchpath=[...]` override that puts `config_search_path()` on Hydra's search path."""
    return "hydra.searchpath=[" + ",".join(f"'file://{p}'" for p in config_search_path()) + "]"
