"""Compose a study with Hydra, then validate it. Every error names the file and key at fault."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from engine.errors import SpecError
from engine.hashing import content_hash
from engine.paths import CONF_DIR, REPO_ROOT, STUDIES_DIR
from engine.spec.schema import StudySpec


@dataclass(frozen=True)
class Sources:
    """Which file each part of the composed config came from, for error messages."""

    study_file: Path
    choices: dict[str, str]
    overrides: tuple[str, ...]
    # The study's `hydra.sweeper.params` (key -> sweep string): what `run -m` sweeps besides the command line.
    sweeper_params: tuple[tuple[str, str], ...] = ()

    def file_for(self, key: str) -> str:
        parts = key.split(".")
        for override in reversed(self.overrides):
            name = override.split("=", 1)[0].lstrip("+~")
            if key == name or key.startswith(name + ".") or name.startswith(key + "."):
                return f"command-line override '{override}'"
        if _has_path(_read_yaml(self.study_file), parts):
            return _display(self.study_file)
        # Longest package match among the group choices, e.g. 'model@models.smollm2_135m'.
        best: tuple[int, str] | None = None
        for choice_key, option in self.choices.items():
            group, _, package = choice_key.partition("@")
            if group.startswith("hydra/") or option is None:
                continue
            package = package or group.replace("/", ".")
            if key == package or key.startswith(package + "."):
                if best is None or len(package) > best[0]:
                    best = (len(package), f"{CONF_DIR.name}/{group}/{option}.yaml")
        return best[1] if best else _display(self.study_file)


@dataclass(frozen=True)
class LoadedSpec:
    spec: StudySpec
    scenario_params: BaseModel
    resolved: dict[str, Any]
    spec_hash: str
    sources: Sources

    @property
    def overrides(self) -> tuple[str, ...]:
        return self.sources.overrides

    @property
    def reproduce_command(self) -> str:
        """The command that recomposes exactly this spec."""
        args = shlex.join(self.overrides)
        return f"python -m engine run {self.sources.study_file.stem}" + (f" {args}" if args else "")


def resolve_study_file(study: str) -> Path:
    path = Path(study)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise SpecError(f"study file not found: {path}")
        return path.resolve()
    candidate = STUDIES_DIR / f"{study}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.yaml")))
        raise SpecError(f"no study named '{study}' in {_display(STUDIES_DIR)}/ (known: {known})")
    return candidate


def compose(study: str, overrides: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], Sources]:
    """Compose the study file with its config groups and overrides into a plain dict."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    study_file = resolve_study_file(study)
    search = f"hydra.searchpath=[file://{CONF_DIR}]"
    try:
        with initialize_config_dir(config_dir=str(study_file.parent), version_base="1.3"):
            cfg = hydra_compose(
                config_name=study_file.stem,
                overrides=[search, *overrides],
                return_hydra_config=True,
            )
            choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices))
            sweeper_params = tuple((str(k), str(v)) for k, v in (cfg.hydra.sweeper.get("params") or {}).items())
            OmegaConf.set_struct(cfg, False)
            cfg.pop("hydra")
            container = OmegaConf.to_container(cfg, resolve=True)
    except OverrideParseException as exc:
        raise SpecError(_first_line(exc), file="command-line overrides") from None
    except (HydraException, OmegaConfBaseException) as exc:
        key = getattr(exc, "full_key", None) or None
        raise SpecError(_first_line(exc), file=_display(study_file), key=key) from None
    except yaml.YAMLError as exc:
        # Hydra reads every file of the composition; the YAML error names the one that is broken.
        raise SpecError(f"invalid YAML: {' '.join(str(exc).split())}", file=_display(study_file)) from None
    return container, Sources(study_file, choices, tuple(overrides), sweeper_params)


def load_spec(study: str, overrides: list[str] | tuple[str, ...] = ()) -> LoadedSpec:
    """Compose and validate a study: schema, scenario parameters, then the design."""
    return validate_spec(*compose(study, overrides))


def validate_spec(resolved: dict[str, Any], sources: Sources) -> LoadedSpec:
    """Validate a composed study (from `compose`, or from a Hydra job's config in a sweep)."""
    from engine.scenarios import get_scenario, scenario_names

    spec = _validate(StudySpec, resolved, sources, prefix=())
    scenario_name = spec.scenario.get("name")
    if scenario_name not in scenario_names():
        raise SpecError(
            f"unknown scenario '{scenario_name}' (known: {', '.join(scenario_names())})",
            file=sources.file_for("scenario.name"),
            key="scenario.name",
        )
    scenario = get_scenario(scenario_name)
    params = _validate(scenario.Params, spec.scenario, sources, prefix=("scenario",))
    from engine.report.sections import check_metric, validate_sections

    try:
        check_judges(spec)
        scenario.check_design(spec, params)
        validate_sections(spec.report.sections, scenario)
        for i, metric in enumerate(spec.report.sweep_metrics or []):
            check_metric(metric, scenario, f"report.sweep_metrics.{i}")
    except SpecError as exc:
        if exc.file is None and exc.key:
            exc = SpecError(exc.message, file=sources.file_for(exc.key), key=exc.key)
        raise exc from None
    # The report block only changes how results are shown: editing it must not orphan the results.
    spec_hash = content_hash({k: v for k, v in resolved.items() if k != "report"}, 16)
    return LoadedSpec(spec, params, resolved, spec_hash, sources)


def check_judges(spec: StudySpec) -> None:
    """Every judge is a known kind with a configuration it can use; the primary judge exists."""
    from engine.judges import judge_kinds, make_judge
    from engine.judges.gold_set import load_gold

    for judge_id, judge_spec in spec.judges.items():
        if judge_spec.kind not in judge_kinds():
            raise SpecError(f"unknown judge kind '{judge_spec.kind}' (known: {', '.join(judge_kinds())})",
                            key=f"judges.{judge_id}.kind")
        try:
            make_judge(judge_id, judge_spec).check()
            load_gold(judge_spec.rubric)
        except SpecError as exc:
            raise SpecError(exc.message, key=f"judges.{judge_id}.{exc.key}") from None
    if spec.primary_judge is not None and spec.primary_judge not in spec.judges:
        raise SpecError(f"'{spec.primary_judge}' is not among the study's judges "
                        f"({', '.join(spec.judges) or 'none'})", key="primary_judge")


def _validate(model: type[BaseModel], data: dict, sources: Sources, prefix: tuple[str, ...]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in (*prefix, *err["loc"]))
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            got = "" if err["type"] in ("extra_forbidden", "missing") else f" (got {err['input']!r})"
            lines.append(str(SpecError(message + got, file=sources.file_for(key), key=key)))
        raise SpecError("\n".join(lines)) from None


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _has_path(tree: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return " ".join(line.strip() for line in text.splitlines()[:3] if line.strip())
