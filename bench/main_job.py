"""Time the main job (`make study STUDY=model_size`: the offline study on the local models, calibration
and report included) on a fresh database, against the six-minute target on two idle cores.

    .venv/bin/python bench/main_job.py [--compare DB] [overrides...]

Runs in this process (as `make study` does in its own), so that llama.cpp's counts can be read
afterwards: calls per model, seconds per call, prompt tokens evaluated and reused (KV cache or saved state).
`--compare DB`: a database of an earlier run of the same study; counts the requests whose replies differ
(same trials, same seeds, same requests must give the same replies). `--keep DB`: copy the run's
database there afterwards (e.g. results/model_size.duckdb, which `make study` would have written).
Measures; asserts nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 360.0


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} cores"


def differing_replies(db: Path, reference: Path) -> tuple[int, list[tuple]]:
    """Requests in both databases, and those with another reply (model, trial, purpose, retries there)."""
    con = duckdb.connect(str(db), read_only=True)
    con.execute(f"ATTACH '{reference}' AS ref (READ_ONLY)")
    both = con.execute("SELECT count(*) FROM responses JOIN ref.responses USING (request_hash)").fetchone()[0]
    differ = con.execute("SELECT c.model_key, c.trial_id, c.purpose, r.retries FROM calls c JOIN ref.calls r "
                         "USING (request_hash) WHERE c.response_text IS DISTINCT FROM r.response_text "
                         "ORDER BY 1, 2, 3").fetchall()
    con.close()
    return both, differ


def main() -> None:
    args = sys.argv[1:]
    reference = keep = None
    while args[:1] in (["--compare"], ["--keep"]):
        if args[0] == "--compare":
            reference = Path(args[1]).resolve()
        else:
            keep = Path(args[1]).resolve()
        args = args[2:]
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))  # this checkout's engine, not an installed one
    from engine.cli import main as engine_main
    from engine.providers.local_llama import local_provider

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "main_job.duckdb"
        print(f"before: {load()}", flush=True)
        started = time.perf_counter()
        code = engine_main(["run", "model_size", "--calibrate", f"store.path={db}", f"report.output_dir={tmp}/report",
                            "--no-progress", *args])
        wall = time.perf_counter() - started
        print(f"after:  {load()}")
        if code:
            sys.exit(f"the main job failed (exit code {code})")
        print(f"\nmain job: {wall:7.1f} s wall   target {TARGET_S:.0f} s   ratio {wall / TARGET_S:.2f}")
        print(f"{'model':24} {'calls':>6} {'s/call':>7} {'prompt tok':>11} {'evaluated':>10} {'reused':>8}")
        for name, s in sorted(local_provider().stats().items()):
            print(f"{name:24} {s.calls:6d} {s.seconds / s.calls:7.2f} {s.prompt_tokens:11,d} {s.prompt_evaluated:10,d} "
                  f"{s.prefix_reused / max(1, s.prompt_tokens):7.0%}")
        if reference is not None:
            both, differ = differing_replies(db, reference)
            print(f"\nreplies vs {reference.name}: {both} requests in both, {len(differ)} with another reply")
            for model, trial, purpose, retries in differ:
                print(f"  {model} {trial} {purpose} (retried {retries}x in the reference run)")
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(db, keep)
            print(f"\nkept the run's database as {keep}")


if __name__ == "__main__":
    main()
