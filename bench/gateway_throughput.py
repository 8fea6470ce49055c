"""Gateway throughput through the whole engine (make bench-gateway).

For each case a loopback OpenAI-compatible server answers every request after a fixed latency
(bench/loopback_server.py, its own process), and a real study (bench/studies/gateway_bench.yaml:
spec -> plan -> gateway -> DuckDB; judges and report skipped) runs against it. Printed per case:
calls/s of the call phase, the ideal (slots / latency), efficiency = achieved / ideal, and the
CPU per call of our own code and of the provider path. "Our code" is measured in the same run
with the provider replaced by a stand-in that only waits the latency; the provider path's share
is the difference. Also printed: a cached rerun of the first case against its first run.

    python bench/gateway_throughput.py            # all cases
    python bench/gateway_throughput.py --quick    # the first case only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
STUDY = HERE / "studies" / "gateway_bench.yaml"
ITEMS = 50  # behaviours in the bench study: one call per behaviour and seed
CASES = [(2_000, 0.2, 64), (20_000, 0.2, 256), (200, 1.0, 8)]
TARGET = 0.90


def overrides(calls: int, slots: int, api_base: str, db: Path) -> list[str]:
    return [f"design.seeds={calls // ITEMS}", f"executor.concurrency.loopback={slots}",
            f"models.loopback.api_base={api_base}", f"store.path={db}"]


def stand_in(latency: float):
    """The provider replaced by a wait: what is left is the engine's own work."""
    choice = SimpleNamespace(message=SimpleNamespace(content="I can't help with that.", tool_calls=None),
                             finish_reason="stop")
    reply = SimpleNamespace(choices=[choice], usage=SimpleNamespace(prompt_tokens=40, completion_tokens=12))

    async def call(**_: object) -> SimpleNamespace:
        await asyncio.sleep(latency)
        return reply

    return call


def one_run(calls: int, latency: float, slots: int, mode: str, api_base: str, db: Path) -> dict:
    """Runs in its own process: one study run, timed."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ["LOOPBACK_API_KEY"] = "bench-not-a-secret"
    from engine.execute.gateway import Gateway
    from engine.spec.load import load_spec
    from engine.study import run_loaded

    loaded = load_spec(str(STUDY), overrides(calls, slots, api_base, db))
    factory = (lambda ex, store: Gateway(ex, store, call_fn=stand_in(latency))) if mode == "stand_in" else None
    started = time.perf_counter()
    summary, _ = run_loaded(loaded, show_progress=False, gateway_factory=factory, judge=False)
    total = time.perf_counter() - started
    s = summary.stats
    return {"mode": mode, "calls": s.live_calls, "cache_hits": s.cache_hits, "errors": summary.errors,
            "call_phase_s": summary.seconds, "cpu_s": summary.cpu_s, "run_s": total, "done": summary.done}


def spawn(calls: int, latency: float, slots: int, mode: str, api_base: str, db: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", json.dumps([calls, latency, slots, mode, api_base,
                                                                        str(db)])],
                         capture_output=True, text=True, cwd=HERE.parent)
    if out.returncode != 0:
        raise SystemExit(f"benchmark run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the first case")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(*json.loads(args.one)[:5], Path(json.loads(args.one)[5]))))
        return
    sys.path.insert(0, str(HERE))
    from fixtures import loopback_server

    print(f"gateway throughput, {os.cpu_count()} cores; loopback server in its own process; target efficiency "
          f">= {TARGET}")
    print(f"{'case':>26} {'calls/s':>8} {'ideal':>6} {'effic.':>7} {'CPU ms/call':>12} {'of which ours':>14} "
          f"{'provider path':>14} {'engine alone (eff.)':>20}")
    failed = []
    for i, (calls, latency, slots) in enumerate(CASES[:1] if args.quick else CASES):
        with tempfile.TemporaryDirectory() as tmp, loopback_server(latency) as server:
            real = spawn(calls, latency, slots, "http", server.api_base, Path(tmp) / "real.duckdb")
            ours = spawn(calls, latency, slots, "stand_in", server.api_base, Path(tmp) / "stand_in.duckdb")
            rerun = spawn(calls, latency, slots, "http", server.api_base, Path(tmp) / "real.duckdb") if i == 0 \
                else None
            served = server.stats()["requests"]
        assert real["calls"] == calls and real["errors"] == 0 and served >= calls, (real, served)
        rate, ideal = calls / real["call_phase_s"], slots / latency
        cpu, cpu_ours = 1000 * real["cpu_s"] / calls, 1000 * ours["cpu_s"] / calls
        efficiency = rate / ideal
        failed += [] if efficiency >= TARGET else [f"{calls}x{latency:g}s x{slots}"]
        alone = calls / ours["call_phase_s"] / ideal
        print(f"{f'{calls:,} x {latency:g}s x {slots} slots':>26} {rate:8.1f} {ideal:6.0f} {efficiency:7.3f} "
              f"{cpu:12.3f} {cpu_ours:14.3f} {max(0.0, cpu - cpu_ours):14.3f} {alone:20.3f}")
        if rerun is not None:
            assert rerun["calls"] == 0 and rerun["done"] == 0, rerun
            print(f"{'':>26} cached rerun: run phase {rerun['run_s']:.3f}s vs first run {real['run_s']:.3f}s "
                  f"= {rerun['run_s'] / real['run_s']:.3f} (target <= 0.02)")
    print("all cases meet the target" if not failed else f"below target: {', '.join(failed)}")


if __name__ == "__main__":
    main()
