"""Judge stage: stored responses (and the judges' gold sets) -> verdicts in the study database.

Only the judges' own models are called, never the models under test, so it can run again at any
time with another judge or rubric ("regrade"). Resumable like the executor: a verdict is committed
as soon as it is made, finished verdicts are skipped, failed ones (label ERROR) are tried again.
"""

from __future__ import annotations

import time
from operator import attrgetter
from dataclasses import dataclass
from typing import Callable

from engine.kernel.errors import BudgetExhausted, ParseFailure, ProviderError, SpecError
from engine.execute import loop as event_loop
from engine.execute.context import CallContext
from engine.execute.gateway import Gateway
from engine.execute.pool import run_pools
from engine.execute.runner import pool_sizes
from engine.execute.progress import RunProgress
from engine.kernel.hashing import derived_seed
from engine.kernel.records import ERROR_LABEL
from engine.kernel.contracts import Judge
from engine.judging.catalog import judge_models, make_judges
from engine.judging.gold import gold_subjects
from engine.providers.prepare import prepare_models
from engine.kernel.redaction import redact
from engine.kernel.records import JudgeSubject
from engine.spec.load import LoadedSpec
from engine.store.db import StudyStore
from engine.store.resume import still_to_do
from engine.kernel.records import now


@dataclass
class JudgeRunSummary:
    judges: list[str]
    subjects: int
    graded: int
    errors: int
    already_done: int
    not_run_budget: int
    seconds: float


def study_judges(loaded: LoadedSpec, only: list[str] | None = None) -> list[Judge]:
    spec = loaded.spec
    unknown = [j for j in only or [] if j not in spec.judges]
    if unknown:
        raise SpecError(f"unknown judge(s) {', '.join(unknown)} (this study's judges: "
                        f"{', '.join(spec.judges) or 'none'})", key="judges")
    if not spec.judges:
        raise SpecError("this study has no judges to grade with (add a judge_set, e.g. judge_set=local)",
                        key="judges")
    return [j for j in make_judges(spec) if not only or j.judge_id in only]


def work_list(judges: list[Judge], subjects: list[JudgeSubject], store: StudyStore,
              ) -> tuple[list[tuple[Judge, JudgeSubject, int]], int]:
    """(judge, subject, attempt) still to grade, and how many verdicts are already final."""
    todo, done = [], 0
    for judge in judges:
        left, finished = still_to_do([*subjects, *gold_subjects(judge.spec.rubric)], attrgetter("subject_id"),
                                     store.verdict_statuses(**judge.verdict_key), lambda status: status == "ok")
        todo += [(judge, subject, attempt) for subject, attempt in left]
        done += finished
    return todo, done


def by_judge_routes(todo: list[tuple[Judge, JudgeSubject, int]]) -> dict[frozenset[str], list]:
    """The grading jobs grouped by the route their judge calls (none for a judge without a model):
    each group is admitted on its own, so a rate-limited judge never holds up another judge."""
    groups: dict[frozenset[str], list] = {}
    for job in todo:
        model = job[0].spec.model
        groups.setdefault(frozenset({model.route}) if model is not None else frozenset(), []).append(job)
    return groups


async def grade_all(todo: list[tuple[Judge, JudgeSubject, int]], already_done: int, store: StudyStore,
                    gateway: Gateway, *, parse_retries: int, show_progress: bool,
                    on_commit: Callable[[RunProgress, Gateway], None] | None = None) -> tuple[int, int, int]:
    models = judge_models({j for j, _, _ in todo})
    counts = {"ok": 0, "error": 0, "budget": 0}
    progress = RunProgress(len(todo) + already_done, already_done, gateway.stats, enabled=show_progress,
                           what="verdicts", line_every_s=gateway.executor.progress_every_s)

    async def one(job: tuple[Judge, JudgeSubject, int]) -> None:
        judge, subject, attempt = job
        store.writer.check()  # a failed write is a bug: grade nothing more
        ctx = CallContext(subject.subject_id, derived_seed(subject.subject_id), attempt, gateway, models,
                          parse_retries, on_call=progress.refresh)
        row = {"subject_id": subject.subject_id, **judge.verdict_key, "judge_kind": judge.kind, "attempt": attempt,
               "created_at": now()}
        try:
            grade = await judge.grade(subject, ctx)
            row |= {"label": grade.label, "score": grade.score, "rationale": grade.rationale,
                    "status": "ok", "error": None, "call_id": grade.call_id}
        except BudgetExhausted:
            counts["budget"] += 1
            return
        except (ProviderError, ParseFailure) as exc:
            # A judge that fails says so: its own label, never one of the rubric's.
            row |= {"label": ERROR_LABEL, "score": None, "rationale": None, "status": "error",
                    "error": redact(str(exc)), "call_id": ctx.calls[-1]["call_id"] if ctx.calls else None}
        store.writer.add_verdict(row, ctx.calls)  # committed with others by the group commit
        counts[row["status"]] += 1
        progress.trial_finished(row["status"])

    def tick() -> None:
        progress.tick()
        if on_commit is not None:
            on_commit(progress, gateway)

    with progress:
        tick()
        try:
            async with store.writer.running(on_tick=tick):
                groups = by_judge_routes(todo)
                bugs = await run_pools(groups, one, pool_sizes(gateway.executor, groups))
        finally:
            await gateway.close()
    if bugs:
        raise bugs[0]
    return counts["ok"], counts["error"], counts["budget"]


def run_judges(loaded: LoadedSpec, store: StudyStore, *, only: list[str] | None = None,
               gateway: Gateway | None = None, show_progress: bool = True,
               on_commit: Callable[[RunProgress, Gateway], None] | None = None) -> JudgeRunSummary:
    spec = loaded.spec
    started = time.perf_counter()
    judges = study_judges(loaded, only)
    subjects = loaded.scenario.judge_subjects(store.con, loaded.spec_hash)
    todo, done = work_list(judges, subjects, store)
    models = judge_models({j for j, _, _ in todo})
    if models:
        prepare_models(models, set(models), spec.executor.local_threads)
    gateway = gateway or Gateway(spec.executor, store)
    gateway.warm_up(list(models.values()))
    graded, errors, budget = event_loop.run(grade_all(
        todo, done, store, gateway, parse_retries=spec.executor.parse_retries,
        show_progress=show_progress, on_commit=on_commit)) if todo else (0, 0, 0)
    return JudgeRunSummary([j.judge_id for j in judges], len(subjects), graded, errors, done, budget,
                           time.perf_counter() - started)
