"""Compose a study with Hydra, then validate it. Every error names the file and key at fault."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from engine.kernel.contracts import Scenario
from engine.kernel.errors import SpecError
from engine.kernel.extras import require
from engine.kernel.hashing import content_hash
from engine.kernel.registry import get_scenario, scenario_names
from engine.kernel.spec_redaction import (is_secret_path, redact_override, redact_spec, redact_text,
                                          register_spec_secrets, without_credentials)
from engine.kernel.paths import (CONF_DIR, CONFIG_PATH_ENV, REPO_ROOT, STUDIES_DIR, add_user_config_dirs,
                                is_shipped_study, user_config_dirs)
from engine.spec.schema import SECRET_ERROR, StudySpec
from engine.spec.yaml_size import check_yaml_size, user_config_files


@dataclass(frozen=True)
class Sources:
    """Which file each part of the composed config came from, for error messages."""

    study_file: Path
    choices: dict[str, str]
    overrides: tuple[str, ...]
    # The study's `hydra.sweeper.params` (key -> sweep string): what `run -m` sweeps besides the command line.
    sweeper_params: tuple[tuple[str, str], ...] = ()
    # The keys of `overrides` whose values a sweep took from the study's `hydra.sweeper.params`.
    swept_in_study: frozenset[str] = frozenset()

    def attributed(self, exc: SpecError) -> SpecError:
        """`exc` naming the file its key came from, if it names a key but no file."""
        if exc.file is None and exc.key:
            return SpecError(exc.message, file=self.file_for(exc.key), key=exc.key)
        return exc

    def file_for(self, key: str) -> str:
        parts = key.split(".")
        for override in reversed(self.overrides):
            name = override_key(override)
            if key == name or key.startswith(name + ".") or name.startswith(key + "."):
                return override_origin(override, self.study_file, self.swept_in_study)
        if _has_path(_read_yaml(self.study_file), parts):
            return _display(self.study_file)
        # Longest package match among the group choices, e.g. 'model@models.smollm2_135m'.
        best: tuple[int, str, str] | None = None
        for choice_key, option in self.choices.items():
            group, _, package = choice_key.partition("@")
            if group.startswith("hydra/") or option is None:
                continue
            package = package or group.replace("/", ".")
            if key == package or key.startswith(package + "."):
                if best is None or len(package) > best[0]:
                    best = (len(package), group, option)
        if best is None:
            return _display(self.study_file)
        # The option's file is in the first folder of Hydra's search path that holds it: the study file's
        # folder, conf/, then each scenario's conf/ (e.g. engine/scenarios/escalation/conf/persona/hawk.yaml).
        from engine.kernel.paths import config_search_path

        relative = Path(best[1]) / f"{best[2]}.yaml"
        for folder in (self.study_file.parent, *config_search_path()):
            if (folder / relative).is_file():
                return _display(folder / relative)
        return _display(CONF_DIR / relative)


@dataclass(frozen=True)
class LoadedSpec:
    """A validated study: its spec, its scenario (resolved once, here) and the scenario's parameters."""

    spec: StudySpec
    scenario: Scenario
    scenario_params: BaseModel
    resolved: dict[str, Any]
    spec_hash: str
    sources: Sources

    @property
    def overrides(self) -> tuple[str, ...]:
        return self.sources.overrides

    @property
    def reproduce_command(self) -> str:
        """The command that recomposes exactly this spec (a secret given on the command line masked)."""
        args = shlex.join(redact_override(o) for o in self.overrides)
        return f"python -m engine run {study_argument(self.sources.study_file)}" + (f" {args}" if args else "")


def study_argument(study_file: Path) -> str:
    """How a command names the study: its name when it is in studies/, else its path; then the
    user's own config folders it was composed with (--config-dir, ENGINE_CONFIG_PATH, hydra.searchpath)."""
    study = study_file.stem if study_file.parent == STUDIES_DIR else shlex.quote(_display(study_file))
    return " ".join([study, *(f"--config-dir {shlex.quote(_display(d))}" for d in user_config_dirs())])


MAX_STUDY_BYTES = 1_000_000


def resolve_study_file(study: str) -> Path:
    path = Path(study)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise SpecError(f"study file not found: {path}")
        if not path.is_file():  # a folder, or a device or pipe that would never finish reading
            raise SpecError(f"{path} is not a regular file")
        if path.stat().st_size > MAX_STUDY_BYTES:
            raise SpecError(f"{path} is {path.stat().st_size:,} bytes: a study file is at most {MAX_STUDY_BYTES:,}")
        return path.resolve()
    candidate = STUDIES_DIR / f"{study}.yaml"
    if not candidate.exists():
        known = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.yaml")))
        raise SpecError(f"no study named '{study}' in {_display(STUDIES_DIR)}/ (known: {known})")
    return candidate


def compose(study: str, overrides: list[str] | tuple[str, ...] = (), *,
            swept_in_study: frozenset[str] = frozenset()) -> tuple[dict[str, Any], Sources]:
    """Compose the study file with its config groups and overrides into a plain dict.
    `swept_in_study`: the keys of `overrides` that a sweep took from the study's hydra.sweeper.params
    (errors in them name the study file, not the command line)."""
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    study_file = resolve_study_file(study)
    overrides = absorb_searchpath(overrides)
    check_env_config_dirs()
    for path in (study_file, *user_config_files()):
        check_yaml_size(path, _display(path))
    try:
        container, choices, sweeper_params = _hydra_compose(study_file, overrides)
    except OverrideParseException as exc:
        bad = _unparsable_override(overrides)
        raise SpecError(redact_text(_first_line(exc)), file=override_origin(bad, study_file, swept_in_study) if bad else
                        "the command line", key=_override_key_or_none(bad)) from None
    except ShortModelSetError as exc:
        where = Sources(study_file, exc.choices, overrides, swept_in_study=swept_in_study).file_for(exc.key)
        raise SpecError(exc.message, file=where, key=exc.key.removeprefix("model_set.")) from None
    except MissingValue as exc:
        where = Sources(study_file, exc.choices, overrides, swept_in_study=swept_in_study).file_for(exc.key)
        raise SpecError(f"a required value is missing (left as ??? in the config): give it, e.g. on the command "
                        f"line as {exc.key}=...", file=where, key=exc.key) from None
    # Hydra raises ValueError or TypeError for some malformed overrides (e.g. a number for a config group),
    # OmegaConf a RecursionError for a value nested hundreds deep.
    except (HydraException, OmegaConfBaseException, yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        if "submitit" in str(exc):  # Hydra knows no submitit launcher: the plug-in is an extra
            require("hydra_plugins.hydra_submitit_launcher", "slurm", file="the Hydra launcher", key="hydra/launcher")
        raise _composition_error(exc, study_file, overrides, swept_in_study) from None
    return container, Sources(study_file, choices, overrides, sweeper_params, swept_in_study)


def add_config_dirs(folders: list[str], key: str = "--config-dir") -> None:
    """The user's own config folders, checked, on the search path of this process and its jobs."""
    for folder in folders:
        _check_config_dir(folder, "the command line", key)
    add_user_config_dirs(folders)


def check_env_config_dirs() -> None:
    """The folders ENGINE_CONFIG_PATH names exist (Hydra would only warn and compose without them);
    made absolute, for jobs that start elsewhere."""
    folders = user_config_dirs()
    for folder in folders:
        _check_config_dir(str(folder), f"the environment variable {CONFIG_PATH_ENV}", CONFIG_PATH_ENV)
    if folders:
        os.environ[CONFIG_PATH_ENV] = os.pathsep.join(map(str, folders))


def _check_config_dir(folder: str, file: str, key: str) -> None:
    # The folders reach sweep jobs in ENGINE_CONFIG_PATH, separated by os.pathsep: a folder whose
    # path holds one would arrive cut in two.
    if key != CONFIG_PATH_ENV and os.pathsep in folder:
        raise SpecError(f"a config folder's path cannot contain '{os.pathsep}' (config folders are passed on in "
                        f"{CONFIG_PATH_ENV}, separated by '{os.pathsep}'): {folder}", file=file, key=key)
    if not folder.strip() or not Path(folder).is_dir():  # '' would be the working directory
        raise SpecError(f"config folder not found: {folder!r}", file=file, key=key)


def absorb_searchpath(overrides: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A `hydra.searchpath=[file://DIR, ...]` override adds DIR to the user's config folders (it
    would otherwise replace the search path that finds the shipped groups); the rest pass through."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    kept = []
    for override in overrides:
        key, _, value = override.partition("=")
        if key.lstrip("+") != "hydra.searchpath":
            kept.append(override)
            continue
        try:
            parsed = OverridesParser.create().parse_override(override).value()
        except OverrideParseException as exc:
            raise SpecError(_first_line(exc), file=command_line(override), key="hydra.searchpath") from None
        entries = [str(e) for e in (parsed if isinstance(parsed, list) else [parsed])]
        if any(not e.startswith("file://") for e in entries):
            raise SpecError("only file:// folders can be added to the search path (e.g. "
                            "hydra.searchpath=[file://path/to/conf])", file=command_line(override),
                            key="hydra.searchpath")
        add_config_dirs([e.removeprefix("file://") for e in entries], key="hydra.searchpath")
    return tuple(kept)


def _hydra_compose(study_file: Path, overrides: tuple[str, ...]) -> tuple[dict, dict, tuple]:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    from engine.kernel.paths import hydra_searchpath_override

    # conf/ and every scenario's conf/ folder: Hydra merges each group's options across them.
    search = hydra_searchpath_override()
    with initialize_config_dir(config_dir=str(study_file.parent), version_base="1.3"):
        cfg = hydra_compose(config_name=study_file.stem, overrides=[search, *overrides], return_hydra_config=True)
        choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices))
        names = short_model_set(cfg, choices)
        if names is not None:
            # A model set written as a list of conf/model/ names: each placed as the long form places it.
            cfg = _compose_models(study_file, [search, *overrides], names, choices)
            cfg.model_set = choices.get("model_set")
            choices = dict(OmegaConf.to_container(cfg.hydra.runtime.choices))
        sweeper_params = tuple((str(k), str(v)) for k, v in (cfg.hydra.sweeper.get("params") or {}).items())
        OmegaConf.set_struct(cfg, False)
        cfg.pop("hydra")
        try:
            container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        except MissingMandatoryValue as exc:
            if type(exc) is not MissingMandatoryValue:  # an interpolation of a missing value: as any other error
                raise
            raise MissingValue(str(exc.full_key), choices) from None
    return container, choices, sweeper_params


def short_model_set(cfg: Any, choices: dict[str, str]) -> list[str] | None:
    """The model names of a model set written in the short form, `models: [a, b]` (in package
    model_set, as a file without `# @package _global_` puts it); None for the long form."""
    from omegaconf import DictConfig, ListConfig

    chosen = cfg.get("model_set")
    listed = chosen.get("models") if isinstance(chosen, DictConfig) else None
    if isinstance(cfg.get("models"), ListConfig) or (isinstance(chosen, DictConfig) and not isinstance(listed, ListConfig)):
        raise ShortModelSetError("a model set lists its models as `models: [name, ...]` (conf/model/ names) in a "
                                 "file without a `# @package` line, or places them with a defaults list "
                                 "(`- /model@models.<name>: <name>`) as conf/model_set/local_ladder.yaml does",
                                 "model_set", choices)
    if listed is None:
        return None
    names = []
    for i, name in enumerate(listed):
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
            raise ShortModelSetError(f"{name!r} is not the name of a conf/model/ entry", f"model_set.models.{i}",
                                     choices)
        names.append(name)
    if not names or len(set(names)) != len(names):
        raise ShortModelSetError("a model set names one or more models, each once", "model_set.models", choices)
    return names


def _compose_models(study_file: Path, overrides: list[str], names: list[str], choices: dict[str, str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra.errors import MissingConfigException
    from omegaconf import OmegaConf

    try:
        cfg = hydra_compose(config_name=study_file.stem, return_hydra_config=True,
                            overrides=[*overrides, *(f"+model@models.{n}={n}" for n in names)])
    except MissingConfigException as exc:
        missing = next((i for i, n in enumerate(names) if f"'model/{n}'" in str(exc)), None)
        if missing is None:
            raise
        raise ShortModelSetError(f"'{names[missing]}' is not a model entry (conf/model/{names[missing]}.yaml or "
                                 "your --config-dir's model/ folder)", f"model_set.models.{missing}", choices) from None
    OmegaConf.set_struct(cfg, False)
    return cfg


class ShortModelSetError(Exception):
    """A model set in the short form that cannot be placed: the message and the key at fault."""

    def __init__(self, message: str, key: str, choices: dict[str, str]):
        super().__init__(message)
        self.message, self.key, self.choices = message, key, choices


class MissingValue(Exception):
    """A mandatory value (`???`) that the composed config leaves unset."""

    def __init__(self, key: str, choices: dict[str, str]):
        super().__init__(key)
        self.key, self.choices = key, choices


def _composition_error(exc: Exception, study_file: Path, overrides: tuple[str, ...],
                       swept_in_study: frozenset[str] = frozenset()) -> SpecError:
    """A Hydra/OmegaConf/YAML error of composition, blamed on the override that causes it if the files
    compose without the overrides, else on the files."""
    culprit = _faulty_override(study_file, overrides, exc)
    key = getattr(exc, "full_key", None) or None
    if isinstance(exc, yaml.YAMLError):
        # Hydra reads every file of the composition; the YAML error names the one that is broken.
        message = f"invalid YAML: {' '.join(str(exc).split())}"
    elif isinstance(exc, RecursionError):
        message = "a value is nested too deeply to compose"
    else:
        message = _hydra_message(exc)
    message = redact_text(message)  # Hydra quotes the override or the file's line, a secret with it
    if culprit is not None:
        return SpecError(message, file=override_origin(culprit, study_file, swept_in_study),
                         key=key or _override_key_or_none(culprit))
    return SpecError(message, file=_display(study_file), key=key)


def _composes(study_file: Path, overrides: tuple[str, ...]) -> bool:
    try:
        _hydra_compose(study_file, overrides)
    except Exception:  # noqa: BLE001 - any failure means: not this set of overrides
        return False
    return True


def _faulty_override(study_file: Path, overrides: tuple[str, ...], exc: Exception) -> str | None:
    """The override that makes composition fail, or None when the files fail without any override."""
    if not overrides or not _composes(study_file, ()):
        return None
    message = str(exc)
    # Fast path: the override whose key or group the error names, if it fails on its own.
    for override in reversed(overrides):
        key = override_key(override)
        if key and (key in message or key.replace(".", "/") in message) and not _composes(study_file, (override,)):
            return override
    # Else the first override that the overrides before it compose with, and it does not.
    for i in range(1, len(overrides) + 1):
        if not _composes(study_file, overrides[:i]):
            return overrides[i - 1]
    return overrides[-1]


def _unparsable_override(overrides: tuple[str, ...]) -> str | None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except OverrideParseException:
            return override
    return None


def override_key(override: str) -> str:
    """'+design.seeds=3' -> 'design.seeds'; 'model_set=x' -> 'model_set'; 'model@models.a=b' -> 'models.a'."""
    name = override.split("=", 1)[0].lstrip("+~")
    return name.partition("@")[2] or name


def _override_key_or_none(override: str | None) -> str | None:
    """The key an override sets, if it has a well-formed one (not for a malformed override)."""
    if not override or "=" not in override:
        return None
    key = override_key(override)
    return key if re.fullmatch(r"[A-Za-z0-9_\-/]+(\.[A-Za-z0-9_\-/]+)*", key) else None


def override_origin(override: str, study_file: Path, swept_in_study: frozenset[str] = frozenset()) -> str:
    """Where an override was written: the command line, or (a sweep's value of a key the study sweeps)
    the study file's `hydra.sweeper.params`."""
    if override_key(override) in swept_in_study:
        return in_sweeper_params(override, study_file)
    return command_line(override)


def in_sweeper_params(override: str, study_file: Path) -> str:
    """Where an error in one value of the study's `hydra.sweeper.params` is."""
    return f"{_display(study_file)} (hydra.sweeper.params: '{redact_override(override)}')"


def command_line(override: str) -> str:
    """Where an error from a command-line override is: the override itself, an API key's value hidden."""
    name, eq, value = override.partition("=")
    if eq and ("api_key" in name or "api_key" in value or "sk-" in value):
        override = f"{name}=***"
    return f"the command line (override '{redact_override(override)}')"


def load_spec(study: str, overrides: list[str] | tuple[str, ...] = (), *,
              swept_in_study: frozenset[str] = frozenset()) -> LoadedSpec:
    """Compose and validate a study: schema, scenario parameters, then the design."""
    return validate_spec(*compose(study, overrides, swept_in_study=swept_in_study))


def validate_spec(resolved: dict[str, Any], sources: Sources) -> LoadedSpec:
    """Validate a composed study (from `compose`, or from a Hydra job's config in a sweep): the
    schema, the scenario block against the named scenario's parameters, and the output paths. What
    other stages must agree to (design factors, judges, report sections) is checked by
    engine/checks.py, before anything is written."""
    register_spec_secrets(resolved)  # from now on masked wherever they turn up (a provider's echo)
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
    if spec.report.sections is None:  # not in the resolved dict: the spec hash is the study's as written
        spec = spec.model_copy(update={"report": spec.report.model_copy(
            update={"sections": scenario.default_sections(spec)})})
    spec = placed_outputs(spec, sources)
    try:
        check_paths(spec)
    except SpecError as exc:
        raise sources.attributed(exc) from None
    return LoadedSpec(spec, scenario, params, resolved, spec_hash_of(resolved), sources)


def placed_outputs(spec: StudySpec, sources: Sources) -> StudySpec:
    """A study kept outside the repository writes its database and report next to its own file:
    relative `store.path` and `report.output_dir` from its files (or the defaults) resolve against
    the study's folder; one given on the command line, against the working directory as usual. The
    spec hash is taken over the paths as written, so the folder can move without losing resumes."""
    if is_shipped_study(sources.study_file):
        return spec
    base = sources.study_file.parent

    def placed(path: str, key: str) -> str:
        given = any(override_key(o) in (key, key.split(".")[0]) for o in sources.overrides)
        return path if given or os.path.isabs(path) else str(base / path)

    store = spec.store.model_copy(update={"path": placed(spec.store.path, "store.path")})
    report = spec.report.model_copy(update={"output_dir": placed(spec.report.output_dir, "report.output_dir")})
    return spec.model_copy(update={"store": store, "report": report})


# Virtual filesystems: writable to root by os.access, yet nothing can be created in them.
VIRTUAL_ROOTS = ("/proc", "/sys")


def check_paths(spec: StudySpec) -> None:
    """The database file and the report folder can be created where the spec puts them. A function of
    the spec alone that creates nothing: a spec error here leaves nothing written."""
    check_output_path(spec.store.path, "store.path", folder=False, example=f"{spec.name}.duckdb")
    check_output_path(spec.report.output_dir, "report.output_dir", folder=True)


def check_output_path(path: str, key: str, *, folder: bool, example: str = "") -> None:
    """`path` (a file, or a folder if `folder`) is not the other kind, and can be created: its nearest
    existing ancestor is a folder this process may write in, on a filesystem mounted read-write."""
    target = os.path.abspath(path)
    what = "the report folder" if folder else "the database file"
    for real in (target, os.path.realpath(target)):
        for root in VIRTUAL_ROOTS:
            if real == root or real.startswith(root + "/"):
                raise SpecError(f"{path} is under {root}, a virtual filesystem: {what} cannot be written there",
                                key=key)
    if folder and os.path.lexists(target) and not os.path.isdir(target):
        raise SpecError(f"{path} is a file, not a folder: give a folder for the report", key=key)
    if not folder and os.path.isdir(target):
        raise SpecError(f"{path} is a folder: give the path of the database file, e.g. "
                        f"{os.path.join(path, example or 'study.duckdb')}", key=key)
    ancestor = target if folder else os.path.dirname(target)
    while not os.path.lexists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise SpecError(f"cannot create {what} {path}: {ancestor} is a file, not a folder", key=key)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SpecError(f"cannot create {what} {path}: no permission to write in {ancestor}", key=key)
    try:
        read_only = bool(os.statvfs(ancestor).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise SpecError(f"cannot create {what} {path}: {ancestor} is on a read-only filesystem", key=key)


# What the `executor` block was when spec hashes were first recorded (conf/executor/local.yaml then).
# How trials are run never changes what they produce, so every spec hashes with this block in its
# place: existing databases and caches stay valid whatever the executor settings are now.
LEGACY_EXECUTOR = {"backend": "local", "max_concurrent_trials": 4,
                   "concurrency": {"default": 8, "local": 1, "openrouter": 16}, "max_retries": 4,
                   "backoff_initial_s": 1.0, "backoff_max_s": 30.0, "timeout_s": 120.0, "parse_retries": 2,
                   "budget": {"max_usd": 5.0, "max_tokens": None}, "retry_errored_trials": True,
                   "local_threads": 2}


PLANNING_KEYS = ("target_halfwidth", "assumed_icc", "assumed_rate", "assumed_sd")


def spec_hash_of(resolved: dict[str, Any]) -> str:
    """The spec's identity: everything that decides results. The report block only changes how
    results are shown and the executor block only how they are obtained, so neither counts; nor does a
    credential (a secret-named value, a URL's user info): a rotated key keeps the spec, and the hash
    offers no test of a guessed password."""
    identity = {k: v for k, v in without_credentials(resolved).items() if k != "report"}
    if isinstance(identity.get("design"), dict):  # planning assumptions do not change a trial
        identity["design"] = {k: v for k, v in identity["design"].items() if k not in PLANNING_KEYS}
    if "executor" in identity:
        identity["executor"] = LEGACY_EXECUTOR
    return content_hash(identity, 16)


def _validate(model: type[BaseModel], data: dict, sources: Sources, prefix: tuple[str, ...]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines: dict[str, str] = {}
        unions: dict[str, list[str]] = {}
        for err in exc.errors():
            loc = list(err["loc"])
            # A value no member of a union (e.g. `int | list[int]`) takes fails once per member, each
            # under the member's name: one line for the key, naming the types it takes.
            member = loc.pop() if loc and isinstance(loc[-1], str) and UNION_MEMBER.fullmatch(loc[-1]) else None
            # A model-level check names the key it is about in its context (e.g. a model entry's api_key).
            field = (err.get("ctx") or {}).get("field")
            key = ".".join(str(p) for p in (*prefix, *loc, *([field] if field else [])))
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            if member is not None:
                unions.setdefault(key, []).append(member)
                message = f"expected {' or '.join(unions[key])}"
            # A rejected value that may be an API key is never echoed.
            quiet = err["type"] in ("extra_forbidden", "missing", SECRET_ERROR) or is_secret_path(key)
            got = "" if quiet else f" (got {redact_spec(err['input'])!r})"
            lines[key if member is not None else f"{key}#{len(lines)}"] = str(
                SpecError(message + got, file=sources.file_for(key), key=key))
        raise SpecError("\n".join(lines.values())) from None


# How pydantic names a union's member in an error's location: 'int', 'list[int]', 'dict[str,any]'.
UNION_MEMBER = re.compile(r"(str|int|float|bool|none|(list|dict|tuple|set)\[.*\])")


def _read_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _has_path(tree: Any, parts: list[str]) -> bool:
    """Whether the file sets the value at `parts` or at a prefix of it. A list the file sets is all the
    file's (Hydra replaces lists whole), so every location inside it (pydantic's 'design.controls.0.agent',
    numeric parts) is the file's; so is a location below a scalar it sets (a union member: 'seeds.int')."""
    for part in parts:
        if not isinstance(tree, dict):
            return True
        if part not in tree:
            return False
        tree = tree[part]
    return True


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _hydra_message(exc: Exception) -> str:
    """Hydra's message on one line; a missing config option's list of the available ones kept, its
    config search path left out."""
    text = str(exc).strip()
    if "Available options in" not in text:
        return _first_line(exc)
    head, _, rest = text.partition("Available options in")
    group, _, listing = rest.partition(":")
    options = []
    for line in listing.splitlines():
        if line.strip() and not line.startswith(("\t", " ")):
            break
        options += [line.strip()] if line.strip() else []
    return f"{' '.join(head.split())} (available in{group}: {', '.join(options) or 'none'})"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return " ".join(line.strip() for line in text.splitlines()[:3] if line.strip())
