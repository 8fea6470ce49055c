"""A sweep: the study's overrides expanded into jobs exactly as Hydra's basic sweeper expands them,
each job validated before any of them runs."""

from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.kernel.errors import SpecError
from engine.kernel.hashing import content_hash
from engine.kernel.spec_redaction import override_without_credentials, redact_override, redact_setting, redact_text
from engine.checks import check_study
from engine.spec.load import (LoadedSpec, absorb_searchpath, command_line, compose, in_sweeper_params, load_spec,
                              override_key, resolve_study_file, study_argument)

if TYPE_CHECKING:
    from hydra.core.override_parser.types import Override


@dataclass(frozen=True)
class SweepJob:
    index: int
    overrides: tuple[str, ...]  # the job's task overrides, as Hydra hands them to the job
    swept: dict[str, str]       # swept key -> this job's value, as written (a secret masked: shown and stored)
    loaded: LoadedSpec


@dataclass(frozen=True)
class Sweep:
    study_file: Path
    sweep_id: str
    keys: tuple[str, ...]              # the swept keys, in sweep order
    task_overrides: tuple[str, ...]    # the command line's study overrides (sweep syntax intact)
    hydra_overrides: tuple[str, ...]   # hydra.* and hydra/ overrides: launcher settings, never the spec
    jobs: tuple[SweepJob, ...]

    @property
    def name(self) -> str:
        return self.jobs[0].loaded.spec.name

    @property
    def store_path(self) -> Path:
        return Path(self.jobs[0].loaded.spec.store.path)

    @property
    def dir(self) -> Path:
        """Hydra's sweep dir: the jobs' shards and Hydra's own job logs."""
        # Absolute: jobs may run elsewhere (a Slurm node, a changed working directory).
        return self.store_path.resolve().parent / f"{self.name}.sweeps" / self.sweep_id

    @property
    def command(self) -> str:
        """How to run the sweep again (shown in its report; a secret on the command line masked)."""
        overrides = [redact_override(o) for o in (*self.task_overrides, *self.hydra_overrides)]
        return " ".join(["python -m engine run", study_argument(self.study_file), shlex.join(["-m", *overrides])])

    def shard(self, job: SweepJob) -> Path:
        return shard_path(self.dir, job.overrides)


def shard_path(sweep_dir: Path, overrides: tuple[str, ...] | list[str]) -> Path:
    """One database per job, named by its overrides: a rerun of the sweep resumes each job's shard.
    Credentials do not count (as in the spec's hash): the name offers no test of a guessed password."""
    return sweep_dir / "shards" / f"{content_hash([override_without_credentials(o) for o in overrides], 12)}.duckdb"


def is_hydra_override(text: str) -> bool:
    key = text.lstrip("+~").split("=", 1)[0]
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


# The most jobs one sweep may have: every job is composed and validated before any runs (a fraction
# of a second each) and writes its own shard database. ENGINE_MAX_SWEEP_JOBS raises it.
MAX_SWEEP_JOBS = 200
MAX_JOBS_ENV = "ENGINE_MAX_SWEEP_JOBS"


def max_sweep_jobs() -> int:
    text = os.environ.get(MAX_JOBS_ENV, "").strip()
    if not text:
        return MAX_SWEEP_JOBS
    if not text.isdigit() or int(text) < 1:
        raise SpecError(f"expected a whole number >= 1, not {text!r}", file=f"the environment variable {MAX_JOBS_ENV}",
                        key=MAX_JOBS_ENV)
    return int(text)


@dataclass(frozen=True)
class _Written:
    """A sweep override and where it was written, for errors."""

    override: Override
    where: str


@cache
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _parse(text: str, where: str) -> _Written:
    from hydra.errors import HydraException

    try:
        return _Written(_parser().parse_override(text), where)
    except HydraException as exc:  # the grammar's errors, whether or not wrapped in OverrideParseException
        raise SpecError(f"one of the sweep overrides cannot be parsed: {redact_text(' '.join(str(exc).split()))[:300]}",
                        file=where, key=_key_or_none(text)) from None


def _key_or_none(text: str) -> str | None:
    return override_key(text) if "=" in text else None


def _values(written: _Written) -> int:
    """How many values the override takes: 1 for a fixed value, else its sweep's count (computed, not
    enumerated: a range of a billion values is refused at once)."""
    from hydra.core.override_parser.types import ChoiceSweep, Glob, RangeSweep

    o = written.override
    if not o.is_sweep_override():
        return 1
    key = o.get_key_element()
    value = o.value()
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (start, stop, step)):
            raise SpecError(f"range({start}, {stop}, {step}) needs finite numbers", file=written.where, key=key)
        if step == 0:
            raise SpecError(f"range({start}, {stop}, {step}) has a step of 0: it would never end", file=written.where,
                            key=key)
        count = max(0, math.ceil((stop - start) / step))
        if count == 0:
            raise SpecError(f"range({start}, {stop}, {step}) has no values (it counts from start up to, not "
                            "including, stop)", file=written.where, key=key)
        return count
    text = ("glob() sweeps are not supported: list the options instead, e.g. model_set=a,b" if isinstance(value, Glob)
            else "interval() is not a list of values: a sweep takes a,b,c or range(start, stop, step)")
    raise SpecError(text, file=written.where, key=key)


def _check_size(written: list[_Written]) -> None:
    """The sweep's jobs are at most `max_sweep_jobs()`, counted before they are expanded."""
    last = {w.override.get_key_element(): w for w in written}  # a later override of a key replaces the earlier
    counts = {key: _values(w) for key, w in last.items()}
    jobs, limit = math.prod(counts.values()), max_sweep_jobs()
    if jobs > limit:
        biggest = max(counts, key=counts.__getitem__)
        swept = " x ".join(f"{counts[k]:,} values of {k}" for k in counts if counts[k] > 1)
        raise SpecError(f"the sweep has {jobs:,} jobs ({swept}), more than the limit of {limit:,} (raise it with "
                        f"the environment variable {MAX_JOBS_ENV})", file=last[biggest].where, key=biggest)


def expand_sweep(study: str, overrides: list[str] | tuple[str, ...]) -> Sweep:
    """Jobs of `python -m engine run STUDY -m ...`: the study's `hydra.sweeper.params`, then the
    command line (which wins for a key both set), crossed."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException

    study_file = resolve_study_file(study)
    overrides = absorb_searchpath(overrides)
    hydra_overrides = tuple(o for o in overrides if is_hydra_override(o))
    task_overrides = tuple(o for o in overrides if not is_hydra_override(o))
    cli = [_parse(o, command_line(o)) for o in task_overrides]
    fixed = [w.override.input_line for w in cli if not w.override.is_sweep_override()]
    _, sources = compose(str(study_file), [*fixed, *hydra_overrides])
    cli_keys = {w.override.get_key_element() for w in cli}
    in_study = [_parse(f"{k}={v}", in_sweeper_params(f"{k}={v}", study_file)) for k, v in sources.sweeper_params]
    swept_in_study = frozenset(override_key(w.override.input_line) for w in in_study
                               if w.override.get_key_element() not in cli_keys)
    written = [*in_study, *cli]
    _check_size(written)
    try:
        batches = BasicSweeper.split_arguments([w.override for w in written], None)[0]
    except (HydraException, ValueError) as exc:
        raise SpecError(f"cannot expand the sweep overrides: {redact_text(' '.join(str(exc).split()))[:300]}",
                        file="the command line or hydra.sweeper.params") from None
    last = {w.override.get_key_element(): w for w in written}
    keys = tuple(k for k, w in last.items() if w.override.is_sweep_override())
    jobs = []
    for index, job_overrides in enumerate(batches):
        values = dict(o.split("=", 1) for o in job_overrides)
        loaded = check_study(load_spec(str(study_file), job_overrides, swept_in_study=swept_in_study))
        jobs.append(SweepJob(index, tuple(job_overrides), {k: redact_setting(k, values[k]) for k in keys}, loaded))
    stores = {j.loaded.spec.store.path for j in jobs}
    if len(stores) > 1:
        store_keys = [k for k in keys if override_key(k) in ("store", "store.path")]
        where = last[store_keys[0]].where if store_keys else None
        raise SpecError("the jobs of one sweep must share one database; do not sweep it", file=where,
                        key="store.path")
    sweep_id = content_hash({"study": study_file.stem,
                             "jobs": [[override_without_credentials(o) for o in j.overrides] for j in jobs]}, 12)
    sweep = Sweep(study_file, sweep_id, keys, task_overrides, hydra_overrides, tuple(jobs))
    if "${" in str(sweep.dir):  # Hydra resolves the jobs' folders twice: no escape survives both
        raise SpecError(f"a sweep cannot write its jobs under a folder whose path holds '${{' ({sweep.dir.parent}): "
                        "put the database elsewhere", file=jobs[0].loaded.sources.file_for("store.path"),
                        key="store.path")
    return sweep
