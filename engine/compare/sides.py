"""The two things a comparison reads, as the command line names them: a study (composed with its
overrides, like `run`), a recorded spec version of a study (`STUDY:HASH`), or a database file
(`PATH.duckdb`, or `PATH.duckdb:HASH` when it holds several versions). Each is opened read-only,
and only when it is finished and no command is writing it."""

from __future__ import annotations

import fcntl
import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import duckdb
from pydantic import ValidationError

from engine.kernel.contracts import Scenario
from engine.kernel.errors import ReportError, SpecError, StoreBusy
from engine.kernel.registry import get_scenario, scenario_names
from engine.spec.load import LoadedSpec, load_spec
from engine.spec.schema import StudySpec
from engine.store.db import StudyStore
from engine.store.lock import lock_path

# `HEAD:HASH`: a spec hash (or a unique prefix of at least MIN_PREFIX digits, as git takes) after the last colon.
_HEX = re.compile(r"[0-9a-fA-F]+")
MIN_PREFIX = 6
DATABASE_SUFFIXES = (".duckdb", ".db")
COMMAND_LINE = "the command line"


@dataclass(frozen=True)
class Side:
    """One of the two spec versions compared (A or B), read from its database."""

    label: str              # "A" or "B"
    argument: str           # as given on the command line
    db_path: Path
    spec_hash: str
    spec: StudySpec
    scenario: Scenario
    stored: dict[str, Any]  # the resolved spec as recorded, secrets masked
    record: dict[str, Any]  # the studies row: overrides, command, engine_version, git_sha, created_at

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def short(self) -> str:
        """'model_size@7a1fc8bb': the study and its spec version."""
        return f"{self.spec.name}@{self.spec_hash[:8]}"


@dataclass(frozen=True)
class Located:
    label: str
    argument: str
    db_path: Path
    wanted: str | None       # a spec hash (prefix) the argument named
    loaded: LoadedSpec | None  # the composed study, for a study argument


def locate(label: str, argument: str, overrides: list[str]) -> Located:
    """Where a side's database is and which version of it is meant; composes a study argument (a
    SpecError for a bad study or override, exit 2, before anything is opened)."""
    head, colon, tail = argument.rpartition(":")
    if colon and head and _HEX.fullmatch(tail):
        if len(tail) < MIN_PREFIX:
            raise SpecError(f"{argument}: name a spec version by at least {MIN_PREFIX} digits of its hash",
                            file=COMMAND_LINE, key=label)
        wanted: str | None = tail.lower()
    else:
        head, wanted = argument, None
    path = Path(head)
    if path.suffix in DATABASE_SUFFIXES or (path.is_file() and path.suffix not in (".yaml", ".yml")):
        if overrides:
            raise SpecError(f"{label} is a database file ({head}): overrides ({' '.join(overrides)}) apply to a "
                            f"study, not to a database (give a study's own with --{'b' if label == 'A' else 'a'})",
                            file=COMMAND_LINE, key=label)
        return Located(label, argument, path, wanted, None)
    loaded = load_spec(head, overrides)
    return Located(label, argument, Path(loaded.spec.store.path), wanted, loaded)


def writer_holding(db: Path) -> str | None:
    """The command writing the study of `db` (from its lock file), or None when none is. Probes the
    lock with a shared, non-blocking flock taken and dropped at once; creates nothing."""
    path = lock_path(db)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # no lock file: no writer
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = json.loads(os.read(fd, 4096).decode(errors="replace"))
                return "".join(c if c.isprintable() else "?" for c in str(holder["command"]))[:40]
            except (ValueError, KeyError, TypeError, OSError):
                return "another command"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def opened(paths: list[Path]) -> Iterator[dict[Path, duckdb.DuckDBPyConnection]]:
    """Each database once, read-only (A and B may share one). StoreBusy while a command writes one."""
    stores: dict[Path, StudyStore] = {}
    try:
        for path in dict.fromkeys(p.resolve() for p in paths):
            if not path.exists():
                raise FileNotFoundError(f"{path} does not exist: run the study first")
            writer = writer_holding(path)
            if writer is not None:
                raise StoreBusy(f"{path} is being written by `{writer}`: a study is compared once it is finished; "
                                "wait for that command to end, then rerun this one")
            stores[path] = StudyStore(path, read_only=True)
        yield {path: store.con for path, store in stores.items()}
    finally:
        for store in stores.values():
            store.close(checkpoint=False)


def _versions(con: duckdb.DuckDBPyConnection, db: Path) -> list[dict[str, Any]]:
    try:
        rows = con.execute("SELECT spec_hash, name, spec, overrides, command, engine_version, git_sha, created_at"
                           " FROM studies ORDER BY created_at, spec_hash").fetchall()
    except duckdb.CatalogException:
        raise SpecError(f"{db} is not a study database (it has no studies table)", file=COMMAND_LINE) from None
    keys = ["spec_hash", "name", "spec", "overrides", "command", "engine_version", "git_sha", "created_at"]
    out = [dict(zip(keys, row)) for row in rows]
    for row in out:
        row["spec"] = json.loads(row["spec"])
        row["overrides"] = json.loads(row["overrides"] or "[]")
    return out


def describe_versions(versions: list[dict[str, Any]]) -> str:
    return "; ".join(f"{v['spec_hash']} ({v['name']}, {' '.join(v['overrides']) or 'no overrides'}, "
                     f"{str(v['created_at'])[:16]})" for v in versions) or "none"


def _chosen(located: Located, versions: list[dict[str, Any]]) -> dict[str, Any]:
    label, db = located.label, located.db_path
    if located.wanted is not None:
        found = [v for v in versions if v["spec_hash"].startswith(located.wanted)]
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} spec versions match"
            raise SpecError(f"{what} spec version {located.wanted} in {db} (it holds: {describe_versions(versions)})",
                            file=COMMAND_LINE, key=label)
        return found[0]
    if located.loaded is not None:
        found = [v for v in versions if v["spec_hash"] == located.loaded.spec_hash]
        if not found:
            raise ReportError(f"{label}: {db} has no run of this spec (hash {located.loaded.spec_hash}): run it first "
                              f"with the same settings, or name a version it holds as STUDY:HASH "
                              f"({describe_versions(versions)})")
        return found[0]
    if len(versions) != 1:
        raise SpecError(f"{db} holds {len(versions)} spec versions: name one as {db}:HASH "
                        f"({describe_versions(versions)})", file=COMMAND_LINE, key=label)
    return versions[0]


def _spec_of(located: Located, version: dict[str, Any]) -> tuple[StudySpec, Scenario]:
    """The composed spec when it is the version compared, else the one recorded with the version."""
    loaded = located.loaded
    if loaded is not None and loaded.spec_hash == version["spec_hash"]:
        return loaded.spec, loaded.scenario
    where = f"{located.db_path} (spec {version['spec_hash']})"
    try:
        spec = StudySpec.model_validate(version["spec"])
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SpecError(f"the spec recorded in {where} does not validate under this engine version: "
                        f"{'.'.join(map(str, first['loc']))}: {first['msg']}", file=COMMAND_LINE,
                        key=located.label) from None
    name = spec.scenario.get("name")
    if name not in scenario_names():
        raise SpecError(f"the spec recorded in {where} is of scenario '{name}', which is not installed (known: "
                        f"{', '.join(scenario_names())})", file=COMMAND_LINE, key=located.label)
    return spec, get_scenario(name)


def finished_side(located: Located, con: duckdb.DuckDBPyConnection) -> Side:
    """The version a side names, read from its open database; ReportError (exit 1) unless every
    planned trial of it has been played (done or ended in an error)."""
    version = _chosen(located, _versions(con, located.db_path))
    spec, scenario = _spec_of(located, version)
    planned, played = con.execute(
        "SELECT count(*), count(t.trial_id) FROM plan p LEFT JOIN trials t ON t.trial_id = p.trial_id"
        " WHERE p.spec_hash = ?", [version["spec_hash"]]).fetchone()
    if played < planned:
        raise ReportError(f"{located.label} ({spec.name}, spec {version['spec_hash']} in {located.db_path}) is not "
                          f"finished: {planned - played} of {planned} planned {scenario.unit[1]} have not been played. "
                          f"Finish it first (finished {scenario.unit[1]} are kept): {version['command']}")
    record = {k: version[k] for k in ("overrides", "command", "engine_version", "git_sha", "created_at")}
    return Side(located.label, located.argument, located.db_path.resolve(), version["spec_hash"], spec, scenario,
                version["spec"], record)
