"""`python -m engine new STUDY --scenario S [--dir DIR]`: a commented starting study and its model set,
from the scenario's own starter (engine/scenarios/<S>/starter.yaml), that runs as it is on the local
models. Nothing is overwritten: an existing file is a spec error naming it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from engine.kernel.errors import SpecError
from engine.kernel.paths import CONF_DIR, SCENARIOS_DIR, STUDIES_DIR

LOCAL_MODELS = ("smollm2_135m", "gemma3_270m")  # conf/model/: the offline models every starter runs on
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class NewStudy:
    study: Path
    model_set: Path
    config_dir: Path | None  # the folder to pass as --config-dir (None: the repository's own conf/)

    def command(self, verb: str = "run") -> str:
        extra = f" --config-dir {self.config_dir}" if self.config_dir else ""
        return f"python -m engine {verb} {self.study}{extra}"


def starters() -> dict[str, Path]:
    """scenario name -> its starter study (found on the filesystem, as config folders are)."""
    return {p.parent.name: p for p in sorted(SCENARIOS_DIR.glob("*/starter.yaml"))}


def write_new_study(name: str, scenario: str, folder: Path | None = None) -> NewStudy:
    """Write <folder>/<name>.yaml and <folder>/conf/model_set/<name>_models.yaml (default: the
    repository's studies/ and conf/model_set/); SpecError before anything is written if the name,
    the scenario or a target is wrong."""
    if not NAME.fullmatch(name):
        raise SpecError(f"'{name}' is not a study name: lower-case letters, digits and _, starting with a "
                        "letter (it names the database and the report folder)", file="the command line", key="STUDY")
    known = starters()
    if scenario not in known:
        raise SpecError(f"unknown scenario '{scenario}' (known: {', '.join(known)})", file="the command line",
                        key="--scenario")
    if folder is None:
        study, conf, config_dir = STUDIES_DIR / f"{name}.yaml", CONF_DIR, None
    else:
        folder = folder.expanduser().resolve()
        study, conf, config_dir = folder / f"{name}.yaml", folder / "conf", folder / "conf"
    model_set = conf / "model_set" / f"{name}_models.yaml"
    for path in (study, model_set):
        if path.exists():
            raise SpecError(f"{path} exists: choose another study name (nothing was written)",
                            file="the command line", key="STUDY")
    title = name.replace("_", " ").capitalize()
    text = (known[scenario].read_text().replace("__NAME__", name).replace("__TITLE__", title)
            .replace("__MODEL_SET__", f"{name}_models"))
    written: list[Path] = []
    try:
        model_set.parent.mkdir(parents=True, exist_ok=True)
        study.parent.mkdir(parents=True, exist_ok=True)
        written.append(model_set)
        model_set.write_text(f"# The models of {name}: conf/model/ entries by name (README: \"Self-hosted models\" "
                             "for your own).\nmodels: [" + ", ".join(LOCAL_MODELS) + "]\n")
        written.append(study)
        study.write_text(text)
    except OSError as exc:
        for path in written:  # nothing half-written stays behind
            path.unlink(missing_ok=True)
        raise SpecError(f"cannot write the study: {exc.strerror} ({exc.filename})", file="the command line",
                        key="--dir") from None
    return NewStudy(study, model_set, config_dir)
