"""What a plug-in is handed while it works, as typed Protocols: a scenario's or judge's call context
(engine/execute/context.py implements it) and a report section's or claim test's report context
(engine/report/context.py). A plug-in annotates its `ctx` with these, from `engine`, without
importing a stage; the kernel's contracts use them too, so the kernel imports no stage for typing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, runtime_checkable

if TYPE_CHECKING:
    from engine.kernel.contracts import Metric, Scenario

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
class ReportContext(Protocol):
    """A report's read-only view of one study: its spec, its database and its per-cell estimates."""

    loaded: Any  # the validated study: .spec, .scenario_params, .spec_hash
    con: Any  # a read-only DuckDB connection to the study database
    scenario: "Scenario"
    seed: int
    shared: dict[str, Any]  # what one section computes for another (e.g. a cached fit)

    @property
    def spec(self) -> Any: ...

    @property
    def spec_hash(self) -> str: ...

    @property
    def metrics(self) -> dict[str, "Metric"]: ...

    @property
    def cells(self) -> Any: ...  # pandas DataFrame: cell_id, cell, labels, is_control, ...

    def estimate(self, cell_id: str, metric: str) -> Any: ...
