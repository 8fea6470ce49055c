"""No row can stop the writer: a batch that fails for any reason (an Arrow overflow, a type, a
constraint) is written owner by owner; an owner whose rows cannot be stored becomes an error row
(redacted reason), the other owners and the cached replies are stored, and a rerun plays only the
failed owner again."""

from __future__ import annotations

import asyncio

import pytest

from engine.kernel.records import CachedResponse, now
from engine.store.db import StudyStore
from engine.store.resume import still_to_do

CANARY = "sk-canary-writer-0123456789abcdef"


def trial(tid: str, attempt: int = 1, status: str = "done") -> dict:
    return {"trial_id": tid, "scenario": "s", "cell_id": "c", "cell": {"model": "m"}, "seed": 0, "inputs": {},
            "status": status, "error_kind": None, "error": None, "attempt": attempt, "started_at": now(),
            "finished_at": now(), "duration_s": 0.1}


def call(tid: str, attempt: int = 1, **fields) -> dict:
    return {"call_id": f"{tid}-{attempt}", "trial_id": tid, "trial_attempt": attempt, "purpose": "p",
            "model_key": "m", "litellm_id": "x/m", "request_hash": f"h-{tid}-{attempt}",
            "messages": [{"role": "user", "content": "q"}], "params": {}, "response_text": "r", "raw_response": None,
            "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.001, "latency_s": 0.1, "cache_hit": False,
            "parse_status": "ok", "retries": 0, "status": "ok", "error": None, "created_at": now(),
            "finish_reason": "stop", **fields}


@pytest.fixture
def store(tmp_path):
    s = StudyStore(tmp_path / "w.duckdb")
    yield s
    s.close()


@pytest.mark.parametrize("poison", [
    {"prompt_tokens": 10**15},  # pa.ArrowInvalid: a 64-bit overflow, not a duckdb.Error
    {"cost_usd": "a lot"},  # ValueError converting to DOUBLE
    {"prompt_tokens": object()},  # TypeError
    {"status": f"weird {CANARY}"},  # a CHECK constraint: duckdb.Error, its message carrying a key
])
def test_one_poisoned_row_becomes_its_trials_error_and_the_rest_is_stored(store, poison):
    for tid in ("a", "b", "c"):
        store.writer.add_response(f"h-{tid}-1", "x/m", CachedResponse("r", None, 10, 5, 0.001, 0.1, "stop"))
        store.writer.add_trial(trial(tid), [call(tid, **(poison if tid == "b" else {}))], {})
    store.writer.flush()  # no exception: nothing is lost, nothing stops the run
    assert store.writer.failure is None
    con = store.con
    statuses = dict(con.execute("SELECT trial_id, status FROM trials").fetchall())
    assert statuses == {"a": "done", "b": "error", "c": "done"}
    assert sorted(r[0] for r in con.execute("SELECT trial_id FROM calls").fetchall()) == ["a", "c"]
    assert con.execute("SELECT count(*) FROM responses").fetchone()[0] == 3
    kind, error = con.execute("SELECT error_kind, error FROM trials WHERE trial_id = 'b'").fetchone()
    assert kind == "store" and "could not be stored" in error and "rerun" in error
    assert CANARY not in error and len(error) < 420

    todo, finished = still_to_do(["a", "b", "c"], str, store.trial_statuses(), lambda s: s == "done")
    assert (todo, finished) == ([("b", 2)], 2)  # a rerun plays only the poisoned trial, as attempt 2
    store.writer.add_trial(trial("b", attempt=2), [call("b", attempt=2)], {})
    store.writer.flush()
    assert con.execute("SELECT status, attempt FROM trials WHERE trial_id = 'b'").fetchall() == [("done", 2)]


def test_a_poisoned_cached_reply_is_dropped_and_the_others_kept(store):
    store.writer.add_response("good", "x/m", CachedResponse("r", None, 10, 5, 0.001, 0.1, "stop"))
    store.writer.add_response("bad", "x/m", CachedResponse("r", None, 10**15, 5, 0.001, 0.1, "stop"))
    store.writer.add_trial(trial("a"), [call("a")], {})
    store.writer.flush()
    assert store.con.execute("SELECT request_hash FROM responses").fetchall() == [("good",)]
    assert store.con.execute("SELECT status FROM trials").fetchall() == [("done",)]


def test_a_poisoned_verdict_becomes_an_error_verdict(store):
    def verdict(subject, label="REFUSAL", score=1.0):
        return {"subject_id": subject, "judge_id": "j", "rubric_version": "r@1", "judge_fingerprint": "f",
                "judge_kind": "llm", "label": label, "score": score, "rationale": "why", "status": "ok",
                "error": None, "call_id": None, "attempt": 1}

    store.writer.add_verdict(verdict("s1"), [])
    store.writer.add_verdict(verdict("s2", score="high"), [])
    store.writer.flush()
    got = dict((s, (label, status)) for s, label, status in
               store.con.execute("SELECT subject_id, label, status FROM verdicts").fetchall())
    assert got == {"s1": ("REFUSAL", "ok"), "s2": ("ERROR", "error")}


def test_a_batch_written_in_the_background_keeps_the_run_going(store):
    """Through `running` (the executors' path): the poisoned batch neither raises nor stops the loop."""
    async def run():
        async with store.writer.running(interval_s=0.01):
            store.writer.add_trial(trial("a"), [call("a", prompt_tokens=10**15)], {})
            store.writer.add_trial(trial("b"), [call("b")], {})
            await asyncio.sleep(0.1)
            store.writer.check()  # the executors' check before each trial: nothing to raise
            store.writer.add_trial(trial("c"), [call("c")], {})

    asyncio.run(run())
    assert dict(store.con.execute("SELECT trial_id, status FROM trials").fetchall()) == {
        "a": "error", "b": "done", "c": "done"}
