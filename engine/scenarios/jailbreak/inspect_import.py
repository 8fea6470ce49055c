"""Analysis-only jailbreak studies from Inspect logs (`scenario.inspect_logs`): the samples of every
log in a folder become traces and one score becomes the verdict, through the spec's mapping, into
the same canonical trace table a traces file gives (traces.typed_traces). Samples that ended in an
error become ERROR traces: counted and shown, outside every denominator, never a refusal."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from engine.kernel.errors import SpecError
from engine.kernel.extras import require
from engine.kernel.records import ERROR_LABEL
from engine.scenarios.jailbreak.imported_values import NoText, content_text, display_path
from engine.scenarios.jailbreak.inspect_archive import InflateBudget, charge_file, check_eval_archive
from engine.scenarios.jailbreak.params import InspectLogs
from engine.scenarios.jailbreak.traces import TRACE_COLUMNS, typed_traces

KEY = "scenario.inspect_logs"
# Sample fields the import never reads: skipped when a log is read (transcripts can be large).
UNREAD = {"messages", "events", "store", "attachments", "events_data", "timelines"}
_MISSING = object()
# The mapping key of each trace column (the rest share their column's name).
COLUMN_KEYS = {"prompt_id": "item", "label": "label.values"}


@dataclass(frozen=True)
class ImportedLogs:
    traces: pd.DataFrame  # the canonical trace table (traces.TRACE_COLUMNS)
    logs: int
    errored: int  # samples that ended in an error, imported as ERROR
    sha256: str  # of the logs' names and contents, in name order


def read_inspect_logs(cfg: InspectLogs) -> ImportedLogs:
    """Every log in `cfg.path` (recursively) as traces. Errors name the log file (undecodable bytes
    of its name as escapes) and the spec key. Read once per folder state: the spec check and the
    import both ask for it."""
    folder = Path(cfg.path)
    if not folder.is_dir():
        raise SpecError("folder of Inspect logs not found", file=display_path(cfg.path), key=f"{KEY}.path")
    log = require("inspect_ai.log", "inspect", key=KEY)
    files = [_local(info.name) for info in log.list_eval_logs(str(folder.resolve()), recursive=True)]
    if not files:
        raise SpecError("no Inspect logs (.eval or .json) in the folder", file=display_path(cfg.path),
                        key=f"{KEY}.path")
    files.sort()
    state = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _read(_Settings(cfg), state)


class _Settings:
    """The import's settings as a cache key (their JSON cannot hold a path that is not UTF-8)."""

    def __init__(self, cfg: InspectLogs):
        self.cfg, self._key = cfg, repr(cfg)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Settings) and other._key == self._key


@lru_cache(maxsize=4)
def _read(settings: _Settings, state: tuple[tuple[str, int, int], ...]) -> ImportedLogs:
    from inspect_ai.log import read_eval_log

    cfg = settings.cfg
    budget = InflateBudget.of_mb(cfg.max_member_mb, cfg.max_total_mb)
    rows, origins, errored, digest = [], [], 0, hashlib.sha256()
    for name, _, size in state:
        file, shown = Path(name), display_path(name)
        digest.update(os.fsencode(file.relative_to(Path(cfg.path).resolve())) + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
        if file.suffix == ".eval":
            check_eval_archive(file, shown, budget)
        else:
            charge_file(budget, size, shown)
        try:
            log = read_eval_log(str(file), exclude_fields=UNREAD)
        except Exception as exc:  # a malformed log: Inspect raises many types
            raise SpecError(f"cannot read as an Inspect log: {' '.join(str(exc).split())[:200]}",
                            file=shown) from None
        header = log.eval.model_dump()
        seen: set[tuple[str, int]] = set()
        for sample in log.samples or []:
            where = f"sample {sample.id!r} (epoch {sample.epoch})"
            if (str(sample.id), sample.epoch) in seen:  # a copy under another entry name: one trace only
                raise SpecError(f"{where} is in the log twice: the log was not written by Inspect or was altered",
                                file=shown, key=f"{KEY}.path")
            seen.add((str(sample.id), sample.epoch))
            rows.append(_trace(cfg, header, sample, shown))
            origins.append((shown, where))
            errored += sample.error is not None
    if not rows:
        raise SpecError("the logs have no samples", file=display_path(cfg.path), key=f"{KEY}.path")

    def fail(i: int, column: str, message: str) -> SpecError:
        file, where = origins[i]
        field = COLUMN_KEYS.get(column, column)
        ref = getattr(cfg, field, None)
        source = f"'{ref}'" if isinstance(ref, str) else f"from {KEY}.models" if ref is None else "the score"
        return SpecError(f"{where}, {field} ({source}): {message}", file=file, key=f"{KEY}.{field}")

    traces = typed_traces(pd.DataFrame(rows, columns=TRACE_COLUMNS), fail, lambda i: " ".join(origins[i]))
    return ImportedLogs(traces, len(state), errored, digest.hexdigest())


def _trace(cfg: InspectLogs, header: dict[str, Any], sample: Any, file: str) -> dict[str, Any]:
    where = f"sample {sample.id!r} (epoch {sample.epoch})"

    def field(name: str, ref: str | None, default: Any = _MISSING) -> Any:
        """The value `ref` names. A field the spec names must exist; a null value is `default`
        (an error where there is none)."""
        if ref is None:
            return default
        value = _lookup(ref, header, sample)
        if value is _MISSING:
            known = ", ".join(sorted(sample.metadata)) or "none"
            raise SpecError(f"{where} has no '{ref}' (its metadata fields: {known})", file=file, key=f"{KEY}.{name}")
        if value is None and default is _MISSING:
            raise SpecError(f"'{ref}' of {where} is null", file=file, key=f"{KEY}.{name}")
        try:
            value = content_text(value)  # message content as parts: its text
        except NoText as exc:
            raise SpecError(f"'{ref}' of {where}: {exc}", file=file, key=f"{KEY}.{name}") from None
        if isinstance(value, (dict, list)):
            raise SpecError(f"'{ref}' of {where} is not a single value: {str(value)[:80]}", file=file,
                            key=f"{KEY}.{name}")
        return default if value is None else value

    model = str(field("model", cfg.model))
    info = cfg.models.get(model)

    def about(name: str, required: bool = False) -> Any:
        """A model attribute: from the logs where the spec names a field, else from `models`."""
        given = getattr(info, name) if info is not None else None
        ref = getattr(cfg, name)
        if ref is None and given is None and required:
            raise SpecError(f"model '{model}' ({where}) has no {name}: name the field that holds it in {KEY}.{name}, "
                            f"or give {KEY}.models.{model}.{name}", file=file, key=f"{KEY}.{name}")
        # A parameter count is checked with the rest of the trace table (traces.typed_traces).
        return field(name, ref, _MISSING if required and given is None else given)

    active = about("params_active_b")
    return {"model": model, "provider": about("provider", True), "family": about("family"),
            "params_total_b": about("params_total_b", True), "params_active_b": math.nan if active is None else active,
            "attack": field("attack", cfg.attack, "unspecified"), "prompt_id": field("item", cfg.item),
            "category": field("category", cfg.category, "unspecified"), "benign": field("benign", cfg.benign, False),
            "label": _label(cfg, sample, where, file)}


def _label(cfg: InspectLogs, sample: Any, where: str, file: str) -> str:
    """The verdict: the mapped value of the label score; ERROR for a sample that ended in an error."""
    if sample.error is not None:
        return ERROR_LABEL
    scores = sample.scores or {}
    score = scores.get(cfg.label.score)
    if score is None:
        raise SpecError(f"{where} has no score '{cfg.label.score}' (its scores: {', '.join(scores) or 'none'})",
                        file=file, key=f"{KEY}.label.score")
    mapping = cfg.label.mapping
    for text in _spellings(score.value):
        if text in mapping:
            return mapping[text]
    maps = ", ".join(mapping) if cfg.label.values is not None else "none given, so only the label names"
    raise SpecError(f"score '{cfg.label.score}' of {where} is {score.value!r}, which {KEY}.label.values does not "
                    f"map (it maps: {maps})", file=file, key=f"{KEY}.label.values")


def _spellings(value: Any) -> list[str]:
    """How a score value may be written as a key: 'C', '1.0' and '1', 'true' and 'True'."""
    if isinstance(value, bool):
        return [str(value).lower(), str(value)]
    if isinstance(value, float) and value.is_integer():
        return [str(value), str(int(value))]
    return [str(value)]


def _lookup(ref: str, header: dict[str, Any], sample: Any) -> Any:
    """The value a field reference names (see params.InspectLogs), or _MISSING. `header`: the log's
    eval spec as a dict."""
    if ref in ("id", "epoch"):
        return getattr(sample, ref)
    if ref.startswith("eval."):
        value: Any = header
        parts = ref.split(".")[1:]
    else:
        value = sample.metadata
        parts = ref.removeprefix("metadata.").split(".")
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _local(name: str) -> Path:
    """A listed log's path: Inspect names local files by file:// URI."""
    return Path(unquote(urlparse(name).path)) if name.startswith("file://") else Path(name)
