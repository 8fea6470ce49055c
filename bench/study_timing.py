"""Time a study end to end on a fresh database, then its rerun (which must come from cache).

    .venv/bin/python bench/study_timing.py [STUDY] [overrides...]

Prints wall-clock seconds, model calls and peak memory; it asserts nothing, it measures.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"run failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return elapsed, result.stdout


def main() -> None:
    study = sys.argv[1] if len(sys.argv) > 1 else "model_size"
    overrides = sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        args = ["run", study, *overrides, f"store.path={tmp}/bench.duckdb", "--no-progress"]
        fresh, out = timed(args)
        calls = re.search(r"live calls (\d+)", out)
        cached, out2 = timed(args)
        calls2 = re.search(r"live calls (\d+)", out2)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"study {study} {' '.join(overrides)}")
    print(f"fresh run:          {fresh:8.1f} s   live model calls {calls[1] if calls else '?'}")
    print(f"rerun (all cached): {cached:8.1f} s   live model calls {calls2[1] if calls2 else '?'}")
    print(f"peak RSS of a run:  {peak_mb:8.0f} MB")


if __name__ == "__main__":
    main()
