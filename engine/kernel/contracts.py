"""What a plug-in provides: a scenario (split by the stage that uses each part), a judge, a report
section, a metric; and the report context a section is handed. The stages know plug-ins only through
these classes; the arguments they hand a plug-in are typed by the views in plugin_context.py."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, FiniteFloat, field_validator, model_validator

from engine.kernel.errors import SpecError
from engine.kernel.hashing import content_hash
from engine.kernel.plugin_context import (CallContext, JudgeSpecView, LoadedSpecView, ModelEntryView, StoreView,
                                          StudySpecView)
from engine.kernel.records import ERROR_LABEL, CallEstimate, Grade, JudgeSubject, Strict, Trial, TrialOutcome

if TYPE_CHECKING:
    import duckdb


# ---------------------------------------------------------------- scenario, by stage

class PlanContract(ABC):
    """What the planner needs: the scenario's identity, parameters, trials and their cost."""

    name: ClassVar[str]
    # Bump when the scenario's behaviour changes: it is part of every trial id.
    version: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def check_design(self, spec: "StudySpecView", params: BaseModel) -> None:
        """Raise SpecError(key=...) for factors or settings the scenario would ignore."""

    @abstractmethod
    def trial_inputs(self, spec: "StudySpecView", params: BaseModel, cell: dict[str, Any]) -> dict[str, Any]:
        """Everything that determines a trial's outcome apart from the seed (hashed into its id)."""

    def items(self, spec: "StudySpecView", params: BaseModel, cell: dict[str, Any]) -> list[dict[str, Any]]:
        """Items played in every cell (e.g. the prompts of a corpus): a trial per cell, item and seed.
        Each item is added to the trial's inputs under 'item'. Default: one trial per cell and seed."""
        return [{}]

    @abstractmethod
    def estimate(self, inputs: dict[str, Any]) -> list[CallEstimate]:
        """Worst-case calls and tokens of one trial."""

    def cell_models(self, cell: dict[str, Any]) -> list[str]:
        """Model keys (from the registry) that play in a cell."""
        return [str(cell["model"])] if "model" in cell else []


class RunContract(ABC):
    """What the runner needs: how to play a trial and where its rows go."""

    # Folder of numbered .sql migrations for the scenario's own tables (None: it has none).
    migrations_dir: ClassVar[Path | None] = None

    @abstractmethod
    async def run(self, trial: Trial, ctx: "CallContext") -> TrialOutcome:
        """Play one trial; all model calls go through ctx."""

    def ingest(self, store: "StoreView", loaded: "LoadedSpecView") -> str | None:
        """Analysis-only studies: import existing outcomes into the store instead of running models.
        Returns a one-line description of what was imported, or None when there is nothing to import."""
        return None


class JudgingContract:
    """What the judging stage needs: the responses to grade and the gold sets that score judges."""

    # Folder of the scenario's gold sets (<rubric gold name>.jsonl), None: it has none.
    gold_dir: ClassVar[Path | None] = None

    def judge_subjects(self, con: "duckdb.DuckDBPyConnection", spec_hash: str) -> list[JudgeSubject]:
        """Finished responses for the study's judges to grade (none for scenarios without judges)."""
        return []


class AnalysisContract(ABC):
    """What analysis needs: the metrics and the expensive fits stored for the report."""

    # Metric names shown in the per-cell headline table, in order.
    headline_metrics: ClassVar[tuple[str, ...]] = ()
    # The randomised unit paired model contrasts resample (engine/analyze/paired.py): "item" (the
    # trials sharing an item are one cluster across conditions and seeds), "seed" (the trials sharing
    # a seed share its random numbers across conditions), "trial" (every pair is independent).
    # None: the item when the trials have one, else the seed.
    randomised_unit: ClassVar[Literal["item", "seed", "trial"] | None] = None

    @abstractmethod
    def metrics(self) -> list["Metric"]:
        """The scenario's metrics, each one query over the study database."""

    def metric_params(self, spec: "StudySpecView") -> dict[str, Any]:
        """Named parameters the metrics' SQL may use (e.g. which judge's verdicts count)."""
        return {}

    def counts_in(self, metric: "Metric", trial: Trial) -> bool:
        """Whether a planned trial will be a unit of the metric once it has run: the metric's
        denominator before any data, for planning its precision (e.g. attack success counts harmful
        requests only). The metric's SQL decides on data. Default: every trial."""
        return True

    def analysis_settings(self, spec: "StudySpecView", params: BaseModel) -> dict[str, Any]:
        """The scenario's settings that define its metrics and analyses (e.g. which attack-success tier
        the analysis uses), hashed into the study's pre-registration with the claims and the primary
        contrasts: a change after the data is listed as an amendment. Default: none."""
        return {}

    def cache_analyses(self, store: "StoreView", loaded: "LoadedSpecView") -> None:
        """Compute the expensive analyses the report will show and store them in the database
        (engine/store/fit_cache.py), while it is writable: after a run, an import or a regrade. The
        report opens the database read-only and reads them instead of refitting. Default: none."""


# The report of a study that lists no `report.sections`: the results (a table of the headline metrics,
# the claims when it makes some, the transcripts) between the abstract, the design and the caveats.
DEFAULT_SECTIONS: tuple[dict[str, Any], ...] = (
    {"type": "summary"}, {"type": "design"}, {"type": "headline_table"}, {"type": "claims"},
    {"type": "caveats"}, {"type": "transcript_browser"}, {"type": "reproducibility"},
)


@runtime_checkable
class ReportContext(Protocol):
    """What a report section, claim test or scenario report hook is handed: a read-only view of one
    study, its spec, its database and its per-cell estimates (engine/report/context.py implements it)."""

    loaded: LoadedSpecView
    con: Any  # a read-only DuckDB connection to the study database
    scenario: "Scenario"
    seed: int
    shared: dict[str, Any]  # what one section computes for another (e.g. a cached fit)

    @property
    def spec(self) -> StudySpecView: ...

    @property
    def spec_hash(self) -> str: ...

    @property
    def metrics(self) -> dict[str, "Metric"]: ...

    @property
    def cells(self) -> Any: ...  # pandas DataFrame: cell_id, cell, labels, is_control, ...

    def estimate(self, cell_id: str, metric: str) -> Any: ...


class ReportContract:
    """What the report needs: the prose that describes the scenario's trials and cells."""

    # What one trial is called in prose: (singular, plural).
    unit: ClassVar[tuple[str, str]] = ("trial", "trials")

    def default_sections(self, spec: "StudySpecView") -> list[dict[str, Any]]:
        """The sections of a study that lists none: the engine's defaults (claims only when the study
        makes some); a scenario may add its own results sections."""
        return [dict(s) for s in DEFAULT_SECTIONS if s["type"] != "claims" or spec.report.claims]

    def method_settings(self, params: BaseModel) -> list[tuple[str, Any]]:
        """(setting, value) rows for the report's methods table."""
        return [(k, v) for k, v in params.model_dump().items() if isinstance(v, (int, float, str, bool))]

    def method_notes(self, spec: "StudySpecView") -> list[str]:
        """Sentences for the methods section: how replies were parsed or judged."""
        return []

    def caveats(self, ctx: "ReportContext") -> list[str]:
        """Scenario-specific caveats computed from the data."""
        return []

    def exclusions(self, ctx: "ReportContext") -> dict[str, int]:
        """{description: count} of units outside the results' denominators that only the scenario
        knows (e.g. jailbreak traces labelled NOT_GRADEABLE), for the caveats' count of what was left
        out beside trial errors, parse failures and judge errors."""
        return {}

    def weak_judge_kappa(self, params: BaseModel) -> float:
        """Cohen's kappa against the gold set below which the `judge_validity` section calls a judge
        weak, when the section's `weak_kappa` option is not set."""
        return 0.6

    def judge_reliance(self, spec: "StudySpecView", params: BaseModel) -> dict[str, str]:
        """judge_id -> the results that rest on that judge's labels, in prose (e.g. 'the attack success
        rates in this report'); the `judge_validity` section names them when the judge is weak."""
        if spec.primary_judge is None:
            return {}
        return {spec.primary_judge: "the results computed from the primary judge's verdicts"}

    def positive_labels(self, spec: "StudySpecView", params: BaseModel) -> dict[str, set[str]]:
        """judge_id -> the labels a rate counts as positive (e.g. the primary jailbreak judge's success
        labels at the analysis tier). The `judge_validity` section judges these judges on the rate's
        binary decision (sensitivity, specificity, Youden's J against the gold set); judges not listed
        keep the kappa rule."""
        return {}

    def judged_rates(self, spec: "StudySpecView", params: BaseModel) -> dict[str, tuple[str, set[str]]]:
        """metric name -> (judge_id, the labels it counts as positive), for each rate that is the share
        of its units one judge gives one of those labels (e.g. asr_broad: the primary judge, COMPLIANCE
        or PARTIAL). The `corrected_rates` section and the abstract correct these rates for the judge's
        errors on its gold set; a rate that also reads other data (a final rule) is not listed."""
        return {}

    def judge_validity_notes(self, spec: "StudySpecView") -> list[str]:
        """Sentences closing the `judge_validity` section (e.g. how the gold sets were made)."""
        return []

    def is_control(self, cell: dict[str, Any]) -> bool:
        """True for baseline/control cells (shown next to, not among, the models under test)."""
        return False

    def describe_cell(self, cell: dict[str, Any], spec: "StudySpecView") -> dict[str, str]:
        """Display columns for a design cell (default: the factor levels as they are)."""
        return {name: str(level) for name, level in cell.items()}


class Scenario(PlanContract, RunContract, JudgingContract, AnalysisContract, ReportContract):
    """A scenario plug-in: what every stage needs of it. Register it with `@register_scenario`. Only
    `name`, `version`, `Params`, `trial_inputs`, `estimate`, `run` and `metrics` are required."""


def check_factors(spec: "StudySpecView", levels: dict[str, Any], required: tuple[str, ...], scenario: str) -> None:
    """Every design factor is one the scenario knows, with known levels (`levels[factor]` is the
    collection of allowed levels, or None for any), and every required factor is declared."""
    factors = spec.design.factors
    for factor, values in factors.items():
        key = f"design.factors.{factor}"
        if factor not in levels:
            raise SpecError(f"unknown factor '{factor}' for scenario {scenario} (known: {', '.join(levels)})", key=key)
        known = levels[factor]
        for value in values if known is not None else []:
            if str(value) not in known:
                raise SpecError(f"unknown {factor} '{value}' (known: {', '.join(map(str, known))})", key=key)
    for needed in required:
        if needed not in factors:
            raise SpecError(f"declare the '{needed}' factor (one level is fine)", key="design.factors")


# ---------------------------------------------------------------- metric

# Placeholders a metric's SQL may use: the spec's finished trials, or all its attempted trials.
FINISHED = ("(SELECT t.* FROM trials t JOIN plan p ON p.trial_id = t.trial_id"
            " WHERE p.spec_hash = $spec_hash AND t.status = 'done')")
ATTEMPTED = ("(SELECT t.* FROM trials t JOIN plan p ON p.trial_id = t.trial_id"
             " WHERE p.spec_hash = $spec_hash)")


@dataclass(frozen=True)
class Metric:
    """One definition of a measured quantity: a query over the study database yielding one value
    per unit (a trial). Analysis aggregates it per design cell with N and a 95% interval."""

    name: str
    label: str
    kind: Literal["proportion", "mean"]
    sql: str  # SELECT trial_id, value ...; may use {finished}, {attempted} and {<view name>}
    description: str
    percent: bool = False
    prose_name: str | None = None  # how prose names it, if not by its table label
    # (name, SELECT ...) subqueries the SQL reads as {name}, e.g. responses joined to their verdicts,
    # which several metrics share: `cell_estimates` computes each once for all of them. A view may
    # use {finished} and {attempted}, and the metric parameters.
    views: tuple[tuple[str, str], ...] = ()
    # The values a unit can take, when bounded (e.g. (0, None): never negative). A mean's interval is
    # kept inside them (engine/analyze/stats.bounded); a percent mean is a share, bounded by (0, 1).
    bounds: tuple[float | None, float | None] | None = None

    @property
    def prose(self) -> str:
        return self.prose_name or self.label

    @property
    def value_bounds(self) -> tuple[float, float]:
        """(low, high) a unit's value lies in: infinite where unbounded."""
        low, high = self.bounds or ((0.0, 1.0) if self.percent else (None, None))
        return (-math.inf if low is None else float(low), math.inf if high is None else float(high))

    def unit_sql(self, views: dict[str, str] | None = None) -> str:
        """The metric's SQL with its placeholders filled; views inline as subqueries unless `views`
        names a table holding one."""
        given = views or {}
        return self.sql.format(finished=FINISHED, attempted=ATTEMPTED, **{
            name: given.get(name) or f"({view_sql(sql)})" for name, sql in self.views})


def view_sql(sql: str) -> str:
    return sql.format(finished=FINISHED, attempted=ATTEMPTED)


def check_metric(name: str, scenario: Scenario, key: str) -> None:
    known = [m.name for m in scenario.metrics()]
    if name not in known:
        raise SpecError(f"unknown metric '{name}' for scenario {scenario.name} (known: {', '.join(known)})",
                        key=key)


# ---------------------------------------------------------------- judge

# The columns that identify a verdict: its subject, and the judge that gave it (Judge.verdict_key).
VERDICT_KEY = ("subject_id", "judge_id", "rubric_version", "judge_fingerprint")


def verdict_match(alias: str, prefix: str = "") -> str:
    """SQL condition: row `alias` of table verdicts is a verdict of the judge whose verdict key the
    parameters `${prefix}judge_id`, `${prefix}rubric_version`, `${prefix}judge_fingerprint` hold."""
    return " AND ".join(f"{alias}.{column} = ${prefix}{column}" for column in VERDICT_KEY[1:])


def verdict_params(judge: "Judge | None", prefix: str = "") -> dict[str, str]:
    """The parameters `verdict_match(alias, prefix)` reads, for `judge` (matching nothing for None)."""
    key = judge.verdict_key if judge is not None else dict.fromkeys(VERDICT_KEY[1:], "")
    return {f"{prefix}{column}": value for column, value in key.items()}


class Judge(ABC):
    """A judge plug-in: grades one subject at a time. Register it with `@register_judge`."""

    kind: ClassVar[str]

    def __init__(self, judge_id: str, spec: "JudgeSpecView"):
        self.judge_id = judge_id
        self.spec = spec

    def check(self) -> None:
        """Raise SpecError(key=...) (keys relative to the judge) for a configuration it cannot use."""
        if ERROR_LABEL in self.spec.rubric.labels:
            raise SpecError(f"'{ERROR_LABEL}' is reserved for judge failures", key="rubric.labels")

    @property
    def rubric_version(self) -> str:
        return self.spec.rubric.key

    @property
    def fingerprint(self) -> str:
        """Everything that determines a verdict: verdicts are stored and looked up under it, so a
        judge whose model, settings or rubric text changed never reuses old verdicts."""
        model = self.spec.model
        # Options enter only when set, so judges without any keep the fingerprint (and verdicts) they had.
        options = {"options": self.spec.options} if self.spec.options else {}
        # The gold-set file scores the judge; it does not change a verdict, so it is left out (as None).
        rubric = {**self.spec.rubric.model_dump(), "gold": None}
        return content_hash({
            "kind": self.kind, "rubric": rubric,
            "model": model.litellm_id if model else None,
            "weights": model.weights.sha256 if model and model.weights else None,
            "temperature": self.spec.temperature, "max_tokens": self.spec.max_tokens,
            "max_response_chars": self.spec.max_response_chars, **options}, 12)

    @property
    def verdict_key(self) -> dict[str, str]:
        """The columns that identify this judge's verdicts (the rest of the key is the subject)."""
        return {"judge_id": self.judge_id, "rubric_version": self.rubric_version,
                "judge_fingerprint": self.fingerprint}

    @property
    def model_key(self) -> str:
        """Key of the judge's model among the gateway's models (kept apart from the models under test)."""
        return f"judge:{self.judge_id}"

    def models(self) -> dict[str, "ModelEntryView"]:
        return {self.model_key: self.spec.model} if self.spec.model else {}

    def estimate(self, subjects: int) -> CallEstimate | None:
        """Worst-case calls and tokens to grade this many subjects (None: the judge calls no model)."""
        return None

    @abstractmethod
    async def grade(self, subject: JudgeSubject, ctx: "CallContext") -> Grade:
        """One verdict. Raise ProviderError or ParseFailure when no verdict could be had."""

    @abstractmethod
    def describe(self) -> str:
        """One sentence for the report's methods: what this judge does."""


# ---------------------------------------------------------------- report section

@dataclass
class Figure:
    """A chart: Vega-Lite spec for the interactive HTML, SVG for the PDF."""

    label: str          # e.g. 'fig-divergence'
    caption: str        # plain text: the report writer escapes it
    vega_lite: dict[str, Any]


@dataclass
class Rendered:
    markdown: str
    figures: list[Figure] = field(default_factory=list)
    # Files the section's HTML refers to by a relative path (e.g. a <script src="transcripts/x.js">),
    # written next to index.qmd; the self-contained HTML embeds them. Large data goes here rather than
    # inline: pandoc embeds a referenced file in a fraction of the time it takes to parse it inline.
    files: dict[str, str] = field(default_factory=dict)


class NoOptions(Strict):
    type: str


class Section(ABC):
    """A report section plug-in: a study's `report.sections` lists it by `type`, with options.
    Register it with `@register_section`; a scenario's sections are valid in its studies only."""

    type: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    # Sections that compare the jobs of a sweep read a SweepReportContext; a study report has none.
    sweep_only: ClassVar[bool] = False
    # Whether it shows the study's results (a table, chart, test or transcripts of the data), rather
    # than its frame (abstract, design, caveats, reproducibility): a report needs one.
    shows_results: ClassVar[bool] = False

    def check(self, options: BaseModel, scenario: Scenario, key: str) -> None:
        """Raise SpecError for options that refer to things the study does not have."""

    def check_study(self, options: BaseModel, loaded: "LoadedSpecView", key: str) -> None:
        """Raise SpecError for options naming what this study lacks (e.g. a model), checked with the
        whole spec known (engine/checks.py), before anything is written."""

    def registered(self, options: BaseModel, loaded: "LoadedSpecView") -> dict[str, Any] | None:
        """What decides the tests this section makes (its hypotheses and their family, e.g. the primary
        contrasts), hashed into the study's pre-registration (engine/report/sections/preregistration.py). None:
        the section tests nothing of its own. Titles, captions and the like are left out."""
        return None

    @abstractmethod
    def render(self, ctx: "ReportContext", options: BaseModel) -> Rendered:
        ...


# ---------------------------------------------------------------- claim test


ClaimKind = Literal["direction", "at_least", "at_most", "range"]


@dataclass(frozen=True)
class Claimed:
    """What a claim (or one part of it) says about its estimate: that the quantity lies in the open
    interval (low, high), one end infinite for a one-sided claim, and which kind of claim that is."""

    kind: ClaimKind
    low: float = -math.inf
    high: float = math.inf


class ClaimOptions(Strict):
    """One entry of a study's `report.claims`: what the write-up claims and the test that decides it.
    Exactly one kind:
    - `direction: positive|negative`: the sign only (above or below the estimate's no-effect value);
      `effect` (optional) is only the effect assumed for the power;
    - `at_least: b` / `at_most: b`: a one-sided test against the boundary b (estimate's units);
      `effect` (optional): the assumed distance beyond b, for the power;
    - `range: [low, high]`: equivalence, the interval-based two one-sided tests."""

    claim: str
    test: str
    direction: Literal["positive", "negative"] | None = None
    at_least: FiniteFloat | None = None
    at_most: FiniteFloat | None = None
    range: tuple[FiniteFloat, FiniteFloat] | None = None
    effect: FiniteFloat | None = Field(default=None, gt=0)

    @field_validator("range")
    @classmethod
    def _ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] >= v[1]:
            raise ValueError(f"range must be [low, high] with low < high, not {list(v)}")
        return v

    @model_validator(mode="after")
    def _one_kind_of_claim(self) -> "ClaimOptions":
        given = [k for k in ("direction", "at_least", "at_most", "range") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a claim gives exactly one of: direction (positive/negative), at_least, at_most, "
                             f"range{f' (this one gives {given})' if given else ''}")
        if self.effect is not None and self.range is not None:
            raise ValueError("effect (the effect assumed for the power) goes with direction, at_least or at_most; "
                             "a range claim's power is taken at the range's centre")
        return self

    @property
    def kind(self) -> ClaimKind:
        return next(k for k in ("direction", "at_least", "at_most", "range") if getattr(self, k) is not None)

    def claimed(self, null: float = 0.0) -> Claimed:
        """The claim as an interval the quantity is claimed to lie in; `null` is the estimate's
        value with no effect (0 for a difference, 1 for a ratio), the boundary of a direction."""
        if self.range is not None:
            return Claimed("range", *self.range)
        if self.at_least is not None:
            return Claimed("at_least", low=self.at_least)
        if self.at_most is not None:
            return Claimed("at_most", high=self.at_most)
        return Claimed("direction", low=null) if self.direction == "positive" else Claimed("direction", high=null)


@dataclass(frozen=True)
class ClaimEstimate:
    """What a claim test measured: an estimate with its interval family `interval_at(alpha)` (the
    two-sided 1 - alpha interval; `low`/`high` are its 95% ends) and `p`, the two-sided p-value
    against `null` by inversion of that family (engine/analyze/inference.py); or why none could be
    given (`reason`). `n` counts the units the test's precision rests on (`units`, e.g. "models" for
    a model-level slope), `detail` what else was counted (e.g. "60 games"). An intersection-union
    claim (holds when every part does) gives its `parts`; its own numbers are then those of the
    part that binds (the largest p)."""

    value: float
    low: float
    high: float
    p: float
    n: int
    quantity: str  # what the estimate is, e.g. "difference of rates (A − B)"
    test: str  # the interval family the p-value inverts, e.g. "Newcombe paired"
    percent: bool = False
    reason: str | None = None
    interval_at: Callable[[float], tuple[float, float]] | None = None
    null: float = 0.0
    units: str = ""
    detail: str = ""
    parts: tuple["ClaimPart", ...] = ()


@dataclass(frozen=True)
class ClaimPart:
    """One condition of an intersection-union claim: an estimate and what the claim says about it."""

    label: str
    estimate: ClaimEstimate
    claimed: Claimed


class ClaimTest(ABC):
    """A claim-test plug-in: a study's `report.claims` names it by `test`. Register it with
    `@register_claim_test`; a scenario's tests are valid in its studies only.

    Keep the statistics a pure function of a units frame (issue 21, rule 4): `units` reads the
    database (a thin wrapper) and `from_units` computes the estimate from what it returns, so a
    simulation of the design can call the exact code the report uses. A test may instead override
    `estimate` alone."""

    test: ClassVar[str]
    Options: ClassVar[type[ClaimOptions]] = ClaimOptions

    def check(self, options: ClaimOptions, scenario: Scenario, spec: "StudySpecView", key: str) -> None:
        """Raise SpecError for options that refer to things the study does not have."""

    def scale(self, options: ClaimOptions, scenario: Scenario) -> tuple[float, float] | None:
        """The values the estimate can take (e.g. (-1, 1) for a difference of rates), if bounded: a
        claimed range or effect outside them is a spec error."""
        return None

    def units(self, ctx: "ReportContext", options: ClaimOptions) -> Any:
        """What the statistics read, from the study database."""
        raise NotImplementedError(f"claim test {self.test}: neither units/from_units nor estimate")

    def from_units(self, units: Any, options: ClaimOptions) -> ClaimEstimate:
        """The estimate from `units` alone (no database)."""
        raise NotImplementedError(f"claim test {self.test}: neither units/from_units nor estimate")

    def estimate(self, ctx: "ReportContext", options: ClaimOptions) -> ClaimEstimate:
        return self.from_units(self.units(ctx, options), options)

    def calibration_worlds(self, options: ClaimOptions, design: Any) -> Any:
        """For a test whose units are not a metric's units frame: where the calibration check simulates
        the claim (engine/analyze/calibration.py: `Worlds`, each world drawing what `from_units` reads,
        given the study's `Design`), or why it cannot (a string). None: not simulated."""
        return None
