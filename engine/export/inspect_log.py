"""A study as Inspect logs: one `.eval` per model x condition (a condition is the cell's factor levels
other than its models), every attempted trial a sample with the conversation of its calls to the
models under test, its reply, its verdicts and metric values as scores, token usage and where it
sits in the design. `inspect view --log-dir DIR` opens them; `inspect_ai.log.read_eval_log` reads them.

Every string written passes through the engine's redaction (the database holds none of a key
either); a trial that ended in an error is a sample with `error` and no score."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.export.trials import CallRecord, TrialRecord, metric_info, read_trials, study_row
from engine.kernel.errors import SpecError
from engine.kernel.extras import require
from engine.kernel.hashing import content_hash
from engine.kernel.redaction import configure, redact
from engine.kernel.spec_redaction import register_spec_secrets
from engine.kernel.version import __version__
from engine.store.db import StudyStore

# Our finish reasons as Inspect's stop reasons.
STOP_REASONS = {"stop": "stop", "length": "max_tokens", "content_filter": "content_filter",
                "tool_calls": "tool_calls"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


@dataclass(frozen=True)
class Export:
    out_dir: Path
    files: list[Path]
    samples: int
    errored: int


def export_inspect(loaded: Any, out_dir: Path | None = None) -> Export:
    """Write the spec's trials from its study database as Inspect logs into `out_dir` (default
    <store folder>/<study>-inspect). Logs this exporter wrote there for the study before and no longer
    writes are removed; nothing else is."""
    require("inspect_ai", "inspect", key="export inspect")
    spec = loaded.spec
    db = Path(spec.store.path)
    if not db.exists():
        raise SpecError(f"{db} does not exist: run the study first (python -m engine run {spec.name})",
                        key="store.path")
    configure([m.api_key_env for m in spec.models.values() if m.api_key_env])
    register_spec_secrets(loaded.resolved)  # configure starts afresh: the spec's own secrets again
    store = StudyStore(db, read_only=True)
    try:
        study = study_row(store.con, loaded.spec_hash)
        trials = read_trials(store.con, loaded.spec_hash, loaded.scenario, spec)
    finally:
        store.close(checkpoint=False)
    if not trials:
        raise SpecError("the study database holds no trial of this spec to export (an analysis-only study runs "
                        "none; a planned study must be run first)", key="store.path")
    out = Path(out_dir) if out_dir is not None else default_out_dir(spec)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".{spec.name}-export-probe"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SpecError(f"cannot write Inspect logs into {out}: {exc.strerror or exc}", file="the command line",
                        key="--out") from None
    groups: dict[str, list[TrialRecord]] = {}
    for trial in trials:
        models, condition = split_cell(loaded.scenario, trial.cell)
        groups.setdefault(json.dumps([models, condition], sort_keys=True), []).append(trial)
    files, names = [], set()
    from inspect_ai.log import write_eval_log

    for key, members in groups.items():
        models, condition = json.loads(key)
        name = file_name(spec.name, models, condition)
        if name in names:  # two conditions that read alike once made safe
            name = name.removesuffix(".eval") + f"_{members[0].cell_id[:8]}.eval"
        names.add(name)
        log = eval_log(loaded, study, models, condition, members)
        write_eval_log(log, str(out / name), format="eval")
        files.append(out / name)
    for stale in out.glob(f"{spec.name}_*.eval"):
        if stale.name not in names and _exported_by(stale, spec.name):
            stale.unlink()
    return Export(out, files, len(trials), sum(t.status == "error" for t in trials))


def default_out_dir(spec: Any) -> Path:
    """Beside the study database, not inside the report folder (a render replaces that folder whole)."""
    return Path(spec.store.path).parent / f"{spec.name}-inspect"


def _exported_by(path: Path, study: str) -> bool:
    """A log this exporter wrote for `study` (another study's or tool's logs are never removed)."""
    from inspect_ai.log import read_eval_log

    try:
        meta = read_eval_log(str(path), header_only=True).eval.metadata or {}
    except Exception:  # not a readable log: not ours to remove
        return False
    return meta.get("exported_by") == "engine" and meta.get("study") == study


def split_cell(scenario: Any, cell: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """A cell's models under test and its condition (the other factor levels)."""
    models = scenario.cell_models(cell)
    return models, {k: v for k, v in cell.items() if str(v) not in models}


def file_name(study: str, models: list[str], condition: dict[str, Any]) -> str:
    """<study>_<model>_<condition>.eval, in characters safe in any file system and URL."""
    model = "+".join(models) or "none"
    cond = "_".join(f"{k}={v}" for k, v in condition.items()) or "all"
    return "_".join(_UNSAFE.sub("-", part).strip("-") for part in (study, model, cond)) + ".eval"


def _utc(moment: datetime | None) -> str | None:
    return moment.replace(tzinfo=timezone.utc).isoformat() if moment is not None else None


def model_info(spec: Any, key: str) -> dict[str, Any]:
    m = spec.models[key]
    return {"key": key, "litellm_id": m.litellm_id, "display_name": m.display_name, "provider": m.provider,
            "family": m.family, "params_total_b": m.params.total_b, "params_active_b": m.params.active_b,
            "params_estimated": m.params.estimated}


def eval_log(loaded: Any, study: dict[str, Any], models: list[str], condition: dict[str, Any],
             trials: list[TrialRecord]) -> Any:
    from inspect_ai.log import (EvalConfig, EvalDataset, EvalLog, EvalMetric, EvalResults, EvalScore, EvalSpec,
                                EvalStats)

    spec = loaded.spec
    model = spec.models[models[0]].litellm_id if models else "none"
    samples = [sample(loaded, t) for t in trials]
    usage: dict[str, Any] = {}
    for s in samples:
        for name, u in s.model_usage.items():
            usage[name] = usage[name] + u if name in usage else u
    started = [t.started_at for t in trials if t.started_at is not None]
    finished = [t.finished_at for t in trials if t.finished_at is not None]
    # A log's identity includes its models: Inspect's viewer takes logs sharing a task_id for retries of
    # one task and lists only the newest, hiding the other models' logs of the same condition.
    group_id = content_hash([loaded.spec_hash, models, condition], 22)
    eval_spec = EvalSpec(
        eval_id=group_id, run_id=content_hash([loaded.spec_hash], 22), created=_utc(study["created_at"]),
        task=spec.name, task_id=group_id, task_version=loaded.scenario.version,
        task_display_name=study["title"], task_args=condition,
        dataset=EvalDataset(name=spec.name, samples=len(samples), sample_ids=[s.id for s in samples]),
        model=model, config=EvalConfig(epochs=1, fail_on_error=False), packages={"engine": __version__},
        metadata={"exported_by": "engine", "study": spec.name, "spec_hash": loaded.spec_hash,
                  "scenario": loaded.scenario.name, "condition": condition,
                  "models": [model_info(spec, k) for k in models]})
    results = EvalResults(total_samples=len(samples), completed_samples=sum(s.error is None for s in samples),
                          scores=[EvalScore(name=name, scorer=name, scored_samples=n, unscored_samples=len(samples) - n,
                                            metrics={k: EvalMetric(name=k, value=v) for k, v in metrics.items()})
                                  for name, (n, metrics) in score_summary(samples).items()])
    stats = EvalStats(started_at=_utc(min(started)) if started else "",
                      completed_at=_utc(max(finished)) if finished else "", model_usage=usage)
    return EvalLog(status="success", eval=eval_spec, results=results, stats=stats, samples=samples)


def score_summary(samples: list[Any]) -> dict[str, tuple[int, dict[str, float]]]:
    """Per score: how many samples have it, and the mean of a numeric score or each label's share."""
    values: dict[str, list[Any]] = {}
    for s in samples:
        for name, score in (s.scores or {}).items():
            values.setdefault(name, []).append(score.value)
    out = {}
    for name, vs in values.items():
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vs):
            out[name] = (len(vs), {"mean": sum(vs) / len(vs)})
        else:
            out[name] = (len(vs), {str(k): n / len(vs) for k, n in sorted(Counter(map(str, vs)).items())})
    return out


def sample(loaded: Any, trial: TrialRecord) -> Any:
    from inspect_ai.log import EvalError, EvalSample
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import Score

    spec = loaded.spec
    models, condition = split_cell(loaded.scenario, trial.cell)
    messages = conversation(trial.calls)
    first_user = next((m.text for m in messages if m.role == "user"), "")
    replies = [c for c in trial.calls if c.response_text is not None]
    model = spec.models[models[0]].litellm_id if models else "none"
    output = ModelOutput(model=model)
    if replies:
        last = replies[-1]
        output = ModelOutput.from_content(last.litellm_id, redact(last.response_text),
                                          stop_reason=STOP_REASONS.get(last.finish_reason or "stop", "unknown"))
        output.usage = usage([last])
    metadata = {"trial_id": trial.trial_id, "spec_hash": loaded.spec_hash, "cell_id": trial.cell_id,
                "cell": trial.cell, "condition": condition, "seed": trial.seed, "status": trial.status,
                "attempt": trial.attempt}
    if trial.item is not None:
        metadata["item"] = trial.item
    if models:
        metadata["model"] = model_info(spec, models[0])
    scores = None
    error = None
    if trial.status == "error":
        message = redact(trial.error or "error")
        error = EvalError(message=message, traceback=message, traceback_ansi=message)
        output.error = message
    else:
        scores = {v.judge_id: Score(value=v.label, explanation=redact(v.rationale if v.status == "ok" else v.error),
                                    metadata={"kind": "verdict", "judge_kind": v.judge_kind, "score": v.score,
                                              "rubric_version": v.rubric_version, "status": v.status,
                                              "judge_fingerprint": v.judge_fingerprint})
                  for v in trial.verdicts}
        info = metric_info(loaded.scenario)
        for name, value in trial.metrics.items():
            scores[name if name not in scores else f"metric:{name}"] = Score(
                value=value, explanation=info[name].description,
                metadata={"kind": "metric", "label": info[name].label, "metric_kind": info[name].kind})
    by_model: dict[str, list[CallRecord]] = {}
    for c in trial.calls:
        by_model.setdefault(c.litellm_id, []).append(c)
    return EvalSample(
        id=trial.trial_id, epoch=1, input=first_user, target="", messages=messages, output=output,
        scores=scores or None, metadata=metadata, error=error,
        model_usage={name: usage(calls) for name, calls in by_model.items()},
        started_at=_utc(trial.started_at), completed_at=_utc(trial.finished_at), total_time=trial.duration_s,
        uuid=content_hash([trial.trial_id, trial.attempt], 22))


def usage(calls: list[CallRecord]) -> Any:
    """Tokens of the calls as stored (cached replies count the tokens they took); cost of live calls only."""
    from inspect_ai.model import ModelUsage

    inp = sum(c.prompt_tokens or 0 for c in calls)
    out = sum(c.completion_tokens or 0 for c in calls)
    costs = [c.cost_usd for c in calls if c.cost_usd is not None and not c.cache_hit]
    return ModelUsage(input_tokens=inp, output_tokens=out, total_tokens=inp + out,
                      total_cost=sum(costs) if costs else None)


def conversation(calls: list[CallRecord]) -> list[Any]:
    """The trial's calls as one conversation: each call's messages (only those that extend what came
    before, when a call continues the conversation), then its reply."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    kinds = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    out: list[Any] = []
    seen: list[tuple[str, str]] = []
    for call in calls:
        asked = [(m.get("role", "user"), redact(_text(m.get("content")))) for m in call.messages]
        new = asked[len(seen):] if seen and asked[:len(seen)] == seen else asked
        tag = {"call_id": call.call_id, "purpose": call.purpose, "model_key": call.model_key}
        for i, (role, text) in enumerate(new):
            kind = kinds.get(role, ChatMessageUser)
            out.append(kind(id=f"{call.call_id}-{i}", content=text, source="input", metadata=tag))
        seen = asked
        if call.response_text is not None:
            reply = redact(call.response_text)
            out.append(ChatMessageAssistant(id=f"{call.call_id}-reply", content=reply, model=call.litellm_id,
                                            source="generate", metadata={**tag, "cache_hit": call.cache_hit}))
            seen = asked + [("assistant", reply)]
    return out


def _text(content: Any) -> str:
    """A stored message's content as text (list contents keep their text parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)
