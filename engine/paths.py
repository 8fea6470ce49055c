"""Where the project's config trees live. `conf/` holds groups; `studies/` holds one file per study."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
STUDIES_DIR = REPO_ROOT / "studies"
RESULTS_DIR = REPO_ROOT / "results"
REPORTS_DIR = REPO_ROOT / "reports"
