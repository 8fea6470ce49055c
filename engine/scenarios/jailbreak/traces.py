"""Per-trace table of a jailbreak study, the input of every analysis: one row per response with
its model's provider and size and the primary judge's label. Either from the study's own runs
or imported from a file (analysis-only studies)."""

from __future__ import annotations

import hashlib
import math
import warnings
from functools import lru_cache
from typing import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from engine.scenarios.jailbreak.analysis.asr import LABELS
from engine.scenarios.jailbreak.imported_values import (FORBIDDEN_CHARACTERS, FORBIDDEN_IN_TEXT, NoText, content_text,
                                                        display_path, escaped, forbidden_character, parameter_count)
from engine.kernel.contracts import FINISHED, verdict_match, verdict_params
from engine.kernel.errors import SpecError
from engine.spec.schema import StudySpec

TRACE_COLUMNS = ["model", "provider", "family", "params_total_b", "params_active_b", "attack", "prompt_id",
                 "category", "benign", "label"]
# Accepted spellings of each column in an imported file; the first is the canonical one.
ALIASES = {
    "model": ("model", "model_id", "model_name"),
    "provider": ("provider", "organisation", "organization", "org"),
    "family": ("family", "model_family"),
    "params_total_b": ("params_total_b", "params_b", "parameters_b", "params", "parameters", "total_params_b"),
    "params_active_b": ("params_active_b", "active_params_b", "active_b"),
    "attack": ("attack", "technique", "attack_technique"),
    "prompt_id": ("prompt_id", "prompt", "behavior_id", "behaviour_id", "item_id"),
    "category": ("category", "harm_category"),
    "benign": ("benign", "is_benign", "control"),
    "label": ("label", "verdict", "judgement", "judgment"),
}
REQUIRED = ("model", "provider", "params_total_b", "prompt_id", "label")
# Names and labels: text, checked for what a table, a chart or a file name cannot hold.
TEXT_COLUMNS = ("model", "provider", "family", "attack", "prompt_id", "category", "label")
DEFAULTS = {"family": None, "params_active_b": math.nan, "attack": "unspecified", "category": "unspecified",
            "benign": False}


def primary_verdict_params(spec: StudySpec) -> dict[str, str]:
    """SQL parameters naming the primary judge's verdicts (matching nothing when there is none)."""
    from engine.judging.catalog import make_judge

    primary = spec.primary_judge
    return verdict_params(make_judge(primary, spec.judges[primary]) if primary is not None else None)


PRIMARY_VERDICT_JOIN = f"LEFT JOIN verdicts v ON v.subject_id = r.trial_id AND {verdict_match('v')}"


def run_traces(con: duckdb.DuckDBPyConnection, spec_hash: str, spec: StudySpec) -> tuple[pd.DataFrame, int]:
    """Judged traces of the study's finished trials, and how many finished traces have no verdict yet."""
    df = frame(con, "SELECT r.trial_id, r.model_key AS model, r.attack, r.prompt_id, r.category, r.benign, v.label"
               f" FROM jailbreak_responses r JOIN {FINISHED} t ON t.trial_id = r.trial_id {PRIMARY_VERDICT_JOIN}",
               {"spec_hash": spec_hash, **primary_verdict_params(spec)})
    registry = {k: m for k, m in spec.models.items()}
    per_model = _per_model(df.model)
    df["provider"] = per_model(lambda k: registry[k].provider)
    df["family"] = per_model(lambda k: registry[k].family)
    df["params_total_b"] = per_model(lambda k: registry[k].params.total_b).astype(float)
    df["params_active_b"] = per_model(lambda k: registry[k].params.active_b or math.nan).astype(float)
    unjudged = int(df.label.isna().sum())
    return df[df.label.notna()][TRACE_COLUMNS + ["trial_id"]].reset_index(drop=True), unjudged


def _per_model(models: pd.Series):
    """f -> models.map(f): the same Series, with f called once per distinct model, not per trace."""
    codes, keys = pd.factorize(models)
    if len(models) == 0 or (codes < 0).any():
        return models.map

    def mapped(f) -> pd.Series:
        out = pd.Series(keys).map(f).take(codes)
        out.index = models.index
        return out.rename(models.name)

    return mapped


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> pd.DataFrame:
    """`con.execute(sql, params).df()`, through Arrow: the same frame several times faster for
    many string rows. `.df()` itself where the two differ (no rows, a text column of NULLs only)."""
    with warnings.catch_warnings():
        # DuckDB notes that a DB-API result is copied on its way to Arrow: still far cheaper than .df().
        warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
        table = con.execute(sql, params).to_arrow_table()
    if table.num_rows == 0 or any(table.column(i).null_count == table.num_rows for i in range(table.num_columns)):
        return con.execute(sql, params).df()
    return table.to_pandas()


def imported_traces(con: duckdb.DuckDBPyConnection, spec_hash: str) -> pd.DataFrame:
    return con.execute(f"SELECT {', '.join(TRACE_COLUMNS)} FROM jailbreak_imported_traces WHERE spec_hash = ?"
                       " ORDER BY row_number", [spec_hash]).df()


def stored_import(con: duckdb.DuckDBPyConnection, spec_hash: str) -> tuple[pd.DataFrame, str, str] | None:
    """An analysis-only study's traces as its database holds them, with their source's SHA-256 and name
    (None: nothing imported for this spec)."""
    source = con.execute("SELECT any_value(source_file), any_value(source_sha256) FROM jailbreak_imported_traces"
                         " WHERE spec_hash = ?", [spec_hash]).fetchone()
    if source is None or source[1] is None:
        return None
    return imported_traces(con, spec_hash), source[1], source[0]


def read_traces_file(path: str, fmt: str = "auto") -> pd.DataFrame:
    """A per-trace verdict file as the canonical trace table. Errors name the file, row and column.
    Read once per file version: the spec check and the import both ask for it."""
    file = Path(path)
    if not file.exists():
        raise SpecError("traces file not found", file=display_path(path), key="scenario.traces_file.path")
    stat = file.stat()
    return _read(path, fmt, stat.st_mtime_ns, stat.st_size).copy()


@lru_cache(maxsize=4)
def _read(path: str, fmt: str, _mtime_ns: int, _size: int) -> pd.DataFrame:
    file = Path(path)
    kind = fmt if fmt != "auto" else ("parquet" if file.suffix.lower() in (".parquet", ".pq") else "csv")
    try:
        raw = pd.read_parquet(file) if kind == "parquet" else pd.read_csv(file, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise SpecError(f"cannot read as {kind}: {' '.join(str(exc).split())[:200]}",
                        file=display_path(path)) from None
    columns = {c.strip().lower(): c for c in raw.columns}
    out = pd.DataFrame(index=raw.index)
    for name, spellings in ALIASES.items():
        found = next((columns[s] for s in spellings if s in columns), None)
        if found is None and name in REQUIRED:
            raise SpecError(f"no '{name}' column (accepted names: {', '.join(spellings)}; the file has: "
                            f"{', '.join(map(str, raw.columns))})", file=display_path(path))
        out[name] = raw[found] if found is not None else DEFAULTS[name]
    if out.empty:
        raise SpecError("the file has no rows", file=display_path(path))
    # Row numbers as a spreadsheet shows a CSV (the header is row 1); Parquet rows count from 1.
    first_row = 2 if kind == "csv" else 1
    return _typed(out, _file_failure(path, {name: next((columns[s] for s in ALIASES[name] if s in columns), name)
                                            for name in ALIASES}, first_row), lambda i: f"row {i + first_row}")


# fail(row, column, message): the error naming where a bad value came from; locate(row): where it came from.
Failure = Callable[[int, str, str], SpecError]
Locate = Callable[[int], str]


def typed_traces(df: pd.DataFrame, fail: Failure, locate: Locate) -> pd.DataFrame:
    """Raw trace columns (TRACE_COLUMNS, values as read) from another importer as the canonical,
    typed trace table: the checks and conversions of a traces file; `fail` and `locate` name the
    source of a row."""
    return _typed(df.reset_index(drop=True), fail, locate)


def _file_failure(path: str, original: dict[str, str], first_row: int) -> Failure:
    def fail(i: int, name: str, message: str) -> SpecError:
        return SpecError(f"row {i + first_row}, column '{original[name]}': {message}", file=display_path(path))

    return fail


def _typed(df: pd.DataFrame, fail: Failure, locate: Locate) -> pd.DataFrame:
    for name in TEXT_COLUMNS:
        df[name] = _text_column(df[name], name, fail)
    for name in ("model", "provider", "prompt_id", "label"):
        values = df[name].astype(str).str.strip()
        empty = values.eq("") | df[name].isna()
        if empty.any():
            raise fail(int(empty.idxmax()), name, "empty value")
        df[name] = values
    df["label"] = df.label.str.upper().str.replace(r"[\s\-]+", "_", regex=True)
    bad = ~df.label.isin(LABELS)
    if bad.any():
        i = int(bad.idxmax())
        raise fail(i, "label", f"'{df.label[i]}' is not a verdict (expected one of {', '.join(LABELS)})")
    for name in ("params_total_b", "params_active_b"):
        df[name] = _parameter_counts(df[name], name, fail, required=name == "params_total_b")
    flags = df["benign"].astype(str).str.strip().str.lower()
    known = flags.isin(["true", "false", "1", "0", "yes", "no", ""])
    if not known.all():
        i = int((~known).idxmax())
        raise fail(i, "benign", f"'{df['benign'][i]}' is not true/false")
    df["benign"] = flags.isin(["true", "1", "yes"])
    for name in ("family", "attack", "category"):
        df[name] = df[name].where(df[name].notna() & df[name].astype(str).ne(""), DEFAULTS[name])
    df["family"] = df.family.fillna(df.provider)
    _one_model_one_description(df, fail, locate)
    return df[TRACE_COLUMNS].reset_index(drop=True)


def _text_column(column: pd.Series, name: str, fail: Failure) -> pd.Series:
    """A name or label column: message content given as parts as its text (imported_values.content_text);
    refused: a value that is not a single value, or that holds a control character."""
    if column.dtype != object and not pd.api.types.is_string_dtype(column):
        return column  # numbers (a numeric prompt id) or booleans: nothing to convert or escape
    values = column.to_numpy(dtype=object, copy=True)
    for i, value in enumerate(values):
        if isinstance(value, str) and not value.lstrip().startswith(("[", "{")):
            continue  # the common case, at the cost of one check
        try:
            value = values[i] = content_text(value)
        except NoText as exc:
            raise fail(i, name, str(exc)) from None
        if not (value is None or isinstance(value, (str, int, float, bool, np.generic))):
            raise fail(i, name, f"not a single value: {str(value)[:80]}")
    out = pd.Series(values, index=column.index, name=column.name)
    texts = out[out.map(lambda v: isinstance(v, str))]
    forbidden = FORBIDDEN_IN_TEXT if name == "prompt_id" else FORBIDDEN_CHARACTERS
    bad = texts.str.contains(forbidden.pattern, regex=True)
    if bad.any():
        i = int(bad.idxmax())
        raise fail(i, name, f"{escaped(texts[i])} holds a control character "
                            f"({forbidden_character(texts[i], forbidden)}); names and labels go into tables, charts "
                            "and file names: fix the source")
    return out


def _parameter_counts(column: pd.Series, name: str, fail: Failure, required: bool) -> pd.Series:
    """Parameter counts in billions (imported_values.parameter_count), NaN where none is given (an
    error where one is `required`)."""
    known: dict[tuple[type, object], float] = {}
    numbers = np.empty(len(column))
    for i, value in enumerate(column.to_numpy(dtype=object)):
        key = (type(value), value if isinstance(value, (str, int, float, bool, np.generic)) else id(value))
        if key not in known:
            try:
                count = parameter_count(value)
            except ValueError as exc:
                raise fail(i, name, f"{escaped(str(value))} is not a positive parameter count in billions ({exc})"
                           ) from None
            if count is None and required:
                raise fail(i, name, "no parameter count (a positive number of billions is required)")
            known[key] = math.nan if count is None else count
        numbers[i] = known[key]
    return pd.Series(numbers, index=column.index, name=column.name)


def _one_model_one_description(df: pd.DataFrame, fail: Failure, locate: Locate) -> None:
    """Every trace of a model names the same provider and parameter count (the analyses describe a
    model once; two providers for one model is an error in the data, found here rather than in
    every later command)."""
    for name in ("provider", "params_total_b"):
        firsts = df.drop_duplicates(["model", name])
        twice = firsts[firsts.model.duplicated(keep=False)]
        if not twice.empty:
            first, other = twice.index[0], twice.index[twice.model == twice.model.iloc[0]][1]
            raise fail(int(other), name, f"model {escaped(df.model[other])} has {name} {escaped(str(df[name][other]))} "
                                         f"here and {escaped(str(df[name][first]))} in {locate(int(first))}: "
                                         f"one model has one {name}; correct the source or tell the models apart")


def file_sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
