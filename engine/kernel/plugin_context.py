"""What a plug-in is handed, as typed Protocols: the call context of a scenario's trial or a judge's
grading (engine/execute/context.py implements it), and the read-only views of a study's spec, its
judges' and models' entries, the loaded study and its store (engine/spec/, engine/store/db.py are
the real things). A plug-in annotates its arguments with these, from `engine`, without importing a
stage; the kernel's contracts use them too, so the kernel imports no stage, not even for typing.
Each view lists only what plug-ins read. The report context is in engine/kernel/contracts.py,
beside the Scenario and Metric it hands out."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

# A reply's parser: text -> (value, parse status 'ok' | 'repaired' | 'failed').
Parser = Callable[[str], tuple[Any, str]]


@runtime_checkable
class Reply(Protocol):
    value: Any  # what the parser made of the text
    parse_status: str
    call_id: str
    text: str
    asks: int  # how many times the model was asked (re-asks after a failed parse included)


@runtime_checkable
class CallContext(Protocol):
    """A trial's (or a judged subject's) access to the models: every call is recorded and cached."""

    owner_id: str
    seed: int
    attempt: int

    async def chat(self, *, model_key: str, messages: list[dict[str, str]], purpose: str,
                   generation: dict[str, Any], parse: Parser,
                   response_schema: dict[str, Any] | None = None) -> Reply: ...


@runtime_checkable
class ModelEntryView(Protocol):
    """One model of the study's registry (engine/spec/schema.py ModelEntry)."""

    litellm_id: str
    display_name: str
    provider: str
    family: str
    weights: Any  # None, or the local weights file (.sha256, .package, .file)


@runtime_checkable
class RubricView(Protocol):
    name: str
    version: str
    labels: list[str]
    instructions: str
    gold: str | None  # the gold set's name (a file in the scenario's gold_dir)

    @property
    def key(self) -> str: ...  # name@version

    def model_dump(self) -> dict[str, Any]: ...


@runtime_checkable
class JudgeSpecView(Protocol):
    """One judge of the study (engine/spec/schema.py JudgeSpec)."""

    kind: str
    display_name: str
    rubric: RubricView
    model: ModelEntryView | None
    temperature: float
    max_tokens: int
    max_response_chars: int
    options: dict[str, Any]  # the judge kind's own settings


@runtime_checkable
class StudySpecView(Protocol):
    """The validated study spec (engine/spec/schema.py StudySpec). `design` has .factors, .controls,
    .seed_list and the power assumptions; `report` has .sections, .claims, .untested_claims, .output_dir;
    `executor` has the run settings (.parse_retries, .local_threads, .budget, ...)."""

    name: str
    title: str
    description: str
    models: Mapping[str, ModelEntryView]
    scenario: dict[str, Any]  # the raw scenario block (its validated form: LoadedSpecView.scenario_params)
    design: Any
    report: Any
    executor: Any
    store: Any  # .path
    judges: Mapping[str, JudgeSpecView]
    primary_judge: str | None


@runtime_checkable
class LoadedSpecView(Protocol):
    """A validated study with its scenario resolved (engine/spec/load.py LoadedSpec)."""

    spec: StudySpecView
    scenario: Any  # the study's Scenario (engine/kernel/contracts.py)
    scenario_params: Any  # the scenario's validated Params
    resolved: dict[str, Any]  # the composed config, as plain data
    spec_hash: str

    @property
    def reproduce_command(self) -> str: ...


@runtime_checkable
class StoreView(Protocol):
    """The study database, writable, as a scenario's ingest and cache_analyses get it
    (engine/store/db.py StudyStore)."""

    con: Any  # a writable DuckDB connection
    path: Path  # the database file
