"""1M call rows through the store's own commit path (make bench-ingest; target <= 60 s).

Finished jailbreak trials (trial row, one call, its cached response, the scenario's response row
and one verdict each) are handed to the study database's group commit exactly as the executor and
the judge stage hand them over (`store.writer.add_*` inside `store.writer.running()`), and written
by it in batches. Printed: rows/s, seconds, and the ratio to the 60 s target; then the rows are
counted back and checked.

    python bench/store_ingest.py            # 1,000,000 trials
    python bench/store_ingest.py --trials 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

TARGET_S = 60.0


def records(i: int, inputs: dict, cell: dict, stamp):
    trial_id = f"t{i:012d}"
    call_id = f"c{i:012d}"
    text = "I can't help with that request."
    messages = [{"role": "user", "content": f"Explain step {i % 500} of the procedure."}]
    row = {"trial_id": trial_id, "scenario": "jailbreak", "cell_id": "cell0", "cell": cell, "seed": i,
           "inputs": inputs, "status": "done", "error_kind": None, "error": None, "attempt": 1,
           "started_at": stamp, "finished_at": stamp, "duration_s": 0.2}
    call = {"call_id": call_id, "trial_id": trial_id, "trial_attempt": 1, "purpose": "respond",
            "model_key": "m", "litellm_id": "openai/m", "request_hash": f"h{i:031d}", "messages": messages,
            "params": {"temperature": 0.7, "top_p": 1.0, "max_tokens": 64, "seed": i, "response_schema": None},
            "response_text": text, "raw_response": None, "prompt_tokens": 20, "completion_tokens": 8,
            "cost_usd": 1e-6, "latency_s": 0.2, "cache_hit": False, "parse_status": "ok", "retries": 0,
            "status": "ok", "error": None, "created_at": stamp, "finish_reason": "stop"}
    scenario = {"jailbreak_responses": [{
        "trial_id": trial_id, "model_key": "m", "attack": "direct", "prompt_id": f"p{i % 500}",
        "category": "cyber", "source": "bench", "benign": False, "sample": i, "behaviour": "b",
        "prompt": messages[0]["content"], "response_text": text, "call_id": call_id}]}
    verdict = {"subject_id": trial_id, "judge_id": "heuristic", "rubric_version": "jailbreak@1",
               "judge_fingerprint": "f", "judge_kind": "refusal_heuristic", "attempt": 1, "created_at": stamp,
               "label": "REFUSAL", "score": None, "rationale": None, "status": "ok", "error": None,
               "call_id": None}
    return row, call, scenario, verdict


async def ingest(store, n: int) -> float:
    from engine.kernel.records import now, CachedResponse

    stamp = now()
    inputs = {"model_key": "m", "attack": "direct", "template": "{prompt}", "generation": {"temperature": 0.7}}
    cell = {"model": "m", "attack": "direct"}
    cached = CachedResponse("I can't help with that request.", None, 20, 8, 1e-6, 0.2, "stop")
    write_s = 0.0
    original = store.writer._write

    def timed(batch):  # the writer's own time, apart from making the records
        nonlocal write_s
        t = time.perf_counter()
        original(batch)
        write_s += time.perf_counter() - t

    store.writer._write = timed
    async with store.writer.running(interval_s=0.5):
        for i in range(n):
            row, call, scenario, verdict = records(i, inputs, cell, stamp)
            store.put_response(call["request_hash"], "openai/m", cached)
            store.writer.add_trial(row, [call], scenario)
            store.writer.add_verdict(verdict, [])
            if i % 2000 == 0:
                await asyncio.sleep(0)  # let the writer's loop run, as trials in flight would
    return write_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from engine.execute import loop as event_loop
    from engine.kernel.registry import get_scenario
    from engine.store.db import StudyStore

    with tempfile.TemporaryDirectory() as tmp:
        store = StudyStore(Path(tmp) / "ingest.duckdb")
        scenario = get_scenario("jailbreak")
        store.migrate_component(scenario.name, scenario.migrations_dir)
        started = time.perf_counter()
        write_s = event_loop.run(ingest(store, args.trials))
        total = time.perf_counter() - started
        counts = [store.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("trials", "calls", "responses", "verdicts", "jailbreak_responses")]
        store.close()
    assert counts == [args.trials] * 5, counts
    scaled = total * 1_000_000 / args.trials
    print(f"{args.trials:,} trials (1 call, 1 response, 1 verdict, 1 scenario row each) through the group commit: "
          f"{total:.1f} s wall ({args.trials / total:,.0f} call rows/s; the writer itself {write_s:.1f} s); "
          f"per 1M call rows {scaled:.1f} s = {scaled / TARGET_S:.2f} of the {TARGET_S:.0f} s target")


if __name__ == "__main__":
    main()
