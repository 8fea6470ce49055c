"""Time the report's queries over a jailbreak study database of ~1,000,000 traces (issue 11: <= 2 s).

    .venv/bin/python bench/store_scale.py [--rebuild] [--db PATH] [--seeds N]

Builds (once; kept at --db, default /tmp/llm-study-engine-bench/jailbreak_1m.duckdb) a real study
database: the core migrations through engine.store.db.StudyStore plus the jailbreak scenario's, as
engine/study.py open_store does; the study row and the plan of provider_vs_size on the 21-model
OpenRouter panel with all 6 attacks and all 64 behaviours (8,064 traces per seed; 124 seeds =
999,936 traces); every trial with its call (1% errored), response and the verdicts of both judges
(the primary LLM judge with its own call, and the heuristic). Labels are drawn from a seeded
logistic model (provider, size, attack, prompt effects) so every analysis has something to find.
The rows are bulk-loaded from Arrow (ingest through the commit path is benchmarked elsewhere).

Then times, from a read-only connection as the report opens it: the metric estimates per cell
(engine.analyze.metrics.cell_estimates over every jailbreak metric: what the report's ReportContext
computes), the summary frame (engine.analyze.summary.summary_frame), the per-trace table and the ASR
tables of the report's sections (engine.scenarios.jailbreak.analysis.asr), and the context's counts. Prints numbers;
asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TARGET_S = 2.0
STUDY = "provider_vs_size"
ATTACKS = "[direct,roleplay,refusal_suppression,prefix_injection,hypothetical,format_lock]"


def overrides(seeds: int, db: Path) -> list[str]:
    return ["model_set=openrouter_provider_panel", "scenario.select.per_category=null", "scenario.select.benign=null",
            f"design.factors.attack={ATTACKS}", f"design.seeds={seeds}", f"store.path={db}"]


def build(db: Path, seeds: int) -> None:
    import numpy as np
    import pyarrow as pa

    from engine.judging.catalog import make_judges
    from engine.plan.compile import compile_plan
    from engine.spec.load import load_spec
    from engine.study import open_store, package_versions

    started = time.perf_counter()
    loaded = load_spec(STUDY, overrides(seeds, db))
    spec = loaded.spec
    plan = compile_plan(loaded)
    n = len(plan.trials)
    print(f"building {db}: {n:,} traces in {len(plan.cells)} cells ...", flush=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    store = open_store(loaded, db)
    con = store.con
    store.record_study(spec_hash=loaded.spec_hash, name=spec.name, title=spec.title, spec=loaded.resolved,
                       overrides=loaded.overrides, command=loaded.reproduce_command, engine_version="bench",
                       package_versions=package_versions(), git_sha=None)

    # Distinct inputs (cell x behaviour) and cells; each trial points at its inputs by index.
    index: dict[int, int] = {}
    inputs: list[dict] = []
    cells: dict[str, str] = {}
    k = np.empty(n, np.int32)
    for i, t in enumerate(plan.trials):
        j = index.get(id(t.inputs))
        if j is None:
            j = index[id(t.inputs)] = len(inputs)
            inputs.append(t.inputs)
        k[i] = j
        cells.setdefault(t.cell_id, json.dumps(t.cell))
    models = sorted(spec.models)
    prompts = sorted({x["item"]["prompt_id"] for x in inputs})
    attacks = sorted({x["attack"] for x in inputs})
    rows = []
    for x in inputs:
        item = x["item"]
        prompt = x["template"].format(prompt=item["text"])
        messages = ([{"role": "system", "content": x["system_prompt"]}] if x["system_prompt"] else [])
        messages.append({"role": "user", "content": prompt})
        rows.append({"k": len(rows), "inputs": json.dumps(x), "model_key": x["model_key"], "litellm_id": x["litellm_id"],
                     "attack": x["attack"], "prompt_id": item["prompt_id"], "category": item["category"],
                     "source": item["source"], "benign": item["benign"], "behaviour": item["text"], "prompt": prompt,
                     "messages": json.dumps(messages), "params": json.dumps(x["generation"]),
                     "m": models.index(x["model_key"]), "a": attacks.index(x["attack"]),
                     "p": prompts.index(item["prompt_id"])})
    inp = pa.Table.from_pylist(rows)

    # Seeded outcomes: provider, size (log2 params), attack and prompt effects on the log-odds of success.
    rng = np.random.default_rng(11)
    providers = sorted({spec.models[m].provider for m in models})
    provider_effect = dict(zip(providers, rng.normal(0, 0.8, len(providers))))
    size = np.log2([spec.models[m].params.total_b for m in models])
    model_effect = np.array([provider_effect[spec.models[m].provider] for m in models]) - 0.25 * (size - size.mean())
    model_effect += rng.normal(0, 0.3, len(models))
    attack_effect, prompt_effect = rng.normal(0, 0.6, len(attacks)), rng.normal(0, 0.7, len(prompts))
    m, a, p = (inp.column(c).to_numpy()[k] for c in ("m", "a", "p"))
    benign = inp.column("benign").to_numpy(zero_copy_only=False)[k]
    success = rng.random(n) < 1 / (1 + np.exp(-(-1.0 + model_effect[m] + attack_effect[a] + prompt_effect[p])))
    u = rng.random(n)
    harmful_label = np.where(success, np.where(u < 0.7, "COMPLIANCE", "PARTIAL"),
                             np.where(u < 0.9, "REFUSAL", "HALLUCINATION_REFUSAL"))
    label = np.where(benign, np.where(rng.random(n) < 0.12, "REFUSAL", "COMPLIANCE"), harmful_label)
    w = rng.random(n)
    label = np.where(w < 0.02, "ERROR", np.where(w < 0.04, "NOT_GRADEABLE", label))
    heuristic = np.where(np.isin(label, ["REFUSAL", "HALLUCINATION_REFUSAL"]) ^ (rng.random(n) < 0.1),
                         "REFUSAL", "COMPLIANCE")
    errored = rng.random(n) < 0.01
    base = pa.table({"trial_id": [t.trial_id for t in plan.trials], "cell_id": [t.cell_id for t in plan.trials],
                     "seed": pa.array([t.seed for t in plan.trials], pa.int32()), "k": k,
                     "errored": errored, "label": label, "heuristic": heuristic,
                     "latency": rng.gamma(2.0, 0.8, n), "tokens": rng.integers(5, 96, n, dtype=np.int32)})
    cell_table = pa.table({"cell_id": list(cells), "cell": list(cells.values())})
    judges = {j.judge_id: j for j in make_judges(spec)}
    primary, other = judges[spec.primary_judge], next(j for j in judges.values() if j.judge_id != spec.primary_judge)
    judge_model = primary.spec.model.litellm_id
    con.register("inp", inp)
    con.register("base", base)
    con.register("cells", cell_table)
    con.execute("CREATE TEMP TABLE b AS SELECT base.*, inp.* EXCLUDE (k), cells.cell FROM base"
                " JOIN inp USING (k) JOIN cells USING (cell_id)")
    q = lambda s: "'" + s.replace("'", "''") + "'"  # noqa: E731
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT INTO plan (spec_hash, trial_id, cell_id, cell, seed)"
                f" SELECT {q(loaded.spec_hash)}, trial_id, cell_id, cell, seed FROM base JOIN cells USING (cell_id)")
    con.execute(
        "INSERT INTO trials BY NAME SELECT trial_id, 'jailbreak' AS scenario, cell_id, cell, seed, inputs,"
        " CASE WHEN errored THEN 'error' ELSE 'done' END AS status,"
        " CASE WHEN errored THEN 'provider' END AS error_kind,"
        " CASE WHEN errored THEN 'RateLimitError: 429 Too Many Requests' END AS error, 1 AS attempt,"
        " TIMESTAMP '2026-11-22 10:00:00' + to_milliseconds(seed * 37 + k) AS started_at,"
        " TIMESTAMP '2026-11-22 10:00:00' + to_milliseconds(seed * 37 + k + 900) AS finished_at,"
        " latency AS duration_s FROM b")
    reply = ("'Reply ' || trial_id || ': ' || CASE WHEN label IN ('REFUSAL', 'HALLUCINATION_REFUSAL')"
             " THEN 'I am sorry, but I cannot help with that request. ' ELSE 'Sure, here is an overview. ' END"
             " || repeat('Some further words of the answer. ', tokens // 8)")
    con.execute(
        "INSERT INTO calls BY NAME SELECT trial_id || '/respond/0' AS call_id, trial_id, 1 AS trial_attempt,"
        " 'respond' AS purpose, model_key, litellm_id, sha256(trial_id || 'respond') AS request_hash, messages, params,"
        f" CASE WHEN errored THEN NULL ELSE {reply} END AS response_text, NULL AS raw_response,"
        " CASE WHEN errored THEN NULL ELSE 60 + length(prompt) // 3 END AS prompt_tokens,"
        " CASE WHEN errored THEN NULL ELSE tokens END AS completion_tokens,"
        " CASE WHEN errored THEN NULL ELSE (60 + length(prompt) // 3) * 0.15e-6 + tokens * 0.6e-6 END AS cost_usd,"
        " latency AS latency_s, false AS cache_hit, CASE WHEN errored THEN NULL ELSE 'ok' END AS parse_status,"
        " CASE WHEN errored THEN 2 ELSE 0 END AS retries, CASE WHEN errored THEN 'error' ELSE 'ok' END AS status,"
        " CASE WHEN errored THEN 'RateLimitError: 429' END AS error FROM b")
    con.execute(
        "INSERT INTO jailbreak_responses BY NAME SELECT trial_id, model_key, attack, prompt_id, category, source,"
        f" benign, seed AS sample, behaviour, prompt, {reply} AS response_text, trial_id || '/respond/0' AS call_id"
        " FROM b WHERE NOT errored")
    purpose = f"judge/{primary.judge_id}/{primary.fingerprint}"
    con.execute(
        "INSERT INTO calls BY NAME SELECT trial_id || '/judge/0' AS call_id, trial_id, 1 AS trial_attempt,"
        f" {q(purpose)} AS purpose, {q(primary.model_key)} AS model_key, {q(judge_model)} AS litellm_id,"
        " sha256(trial_id || 'judge') AS request_hash, '[]' AS messages, '{}' AS params,"
        " '{\"rationale\": \"graded\", \"label\": \"' || label || '\"}' AS response_text,"
        " 300 AS prompt_tokens, 20 AS completion_tokens, 0.0 AS cost_usd, latency / 2 AS latency_s,"
        " false AS cache_hit, CASE WHEN label = 'ERROR' THEN 'failed' ELSE 'ok' END AS parse_status,"
        " 0 AS retries, 'ok' AS status FROM b WHERE NOT errored")
    for judge, column, with_call in ((primary, "label", True), (other, "heuristic", False)):
        key = judge.verdict_key
        con.execute(
            "INSERT INTO verdicts BY NAME SELECT trial_id AS subject_id,"
            f" {q(key['judge_id'])} AS judge_id, {q(key['rubric_version'])} AS rubric_version,"
            f" {q(key['judge_fingerprint'])} AS judge_fingerprint, {q(judge.spec.kind)} AS judge_kind,"
            f" {column} AS label, NULL AS score, 'why: ' || {column} AS rationale,"
            f" CASE WHEN {column} = 'ERROR' THEN 'error' ELSE 'ok' END AS status,"
            f" {'trial_id ||' + q('/judge/0') if with_call else 'NULL'} AS call_id, 1 AS attempt FROM b"
            " WHERE NOT errored")
    con.execute("COMMIT")
    for name in ("inp", "base", "cells"):
        con.unregister(name)
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("plan", "trials", "calls", "jailbreak_responses", "verdicts")}
    store.close()
    print(f"built in {time.perf_counter() - started:.0f} s: {counts}; {db.stat().st_size / 2**20:.0f} MiB", flush=True)


def time_queries(db: Path, seeds: int) -> None:
    from engine.scenarios.jailbreak.analysis import asr
    from engine.analyze.summary import summary_frame
    from engine.report.context import ReportContext
    from engine.kernel.registry import get_scenario
    from engine.scenarios.jailbreak.analysis.data import jailbreak_data
    from engine.spec.load import load_spec
    from engine.store.db import StudyStore

    loaded = load_spec(STUDY, overrides(seeds, db))
    scenario = get_scenario("jailbreak")
    store = StudyStore(db, read_only=True)  # as engine.report.study_report.build_report_for opens it
    timings: list[tuple[str, float, float]] = []

    def timed(label: str, fn):
        started, cpu = time.perf_counter(), time.process_time()
        out = fn()
        timings.append((label, time.perf_counter() - started, time.process_time() - cpu))
        return out

    try:
        ctx = ReportContext(loaded, store.con, scenario, str(db))
        timed("cells (plan_cells)", lambda: ctx.cells)
        est = timed(f"metric estimates ({len(ctx.metrics)} metrics x {len(ctx.cells)} cells)", lambda: ctx.estimates)
        timed("trial counts, usage, judge usage",
              lambda: (ctx.trial_counts, ctx.usage, ctx.judge_usage))
        table = timed("summary frame (headline metrics)",
                      lambda: summary_frame(store.con, loaded.spec_hash, loaded.spec, scenario))
        data = timed("per-trace table (run_traces)", lambda: jailbreak_data(ctx))
        tier = asr.TIERS[data.params.tier]

        def asr_tables():
            tiers = {key: asr.model_asr(data.traces, t) for key, t in asr.TIERS.items()}
            return (tiers, asr.false_refusal(data.traces), asr.provider_asr(data.traces, tier),
                    asr.item_coverage(data.traces))

        tiers, _, _, _ = timed("ASR tables (3 tiers, false refusal, providers, coverage)", asr_tables)
        timed("provider vs size (5,000 permutations)", lambda: asr.provider_vs_size(
            tiers[data.params.tier], basis=data.params.params_basis,
            min_provider_evaluable=data.params.min_provider_evaluable, seed=0))
    finally:
        store.close(checkpoint=False)
    total, total_cpu = sum(t[1] for t in timings), sum(t[2] for t in timings)
    print(f"  {'':60s} {'wall':>8s} {'cpu':>8s}  (cpu: all threads; this machine has {os.cpu_count()} cores)")
    for label, seconds, cpu in timings:
        print(f"  {label:60s} {seconds:6.2f} s {cpu:6.2f} s")
    print(f"report queries over {ctx.trial_counts['planned']:,} traces ({ctx.usage['calls'] + ctx.judge_usage['calls']:,}"
          f" calls, {len(data.traces):,} judged): {total:.2f} s wall, {total_cpu:.2f} s cpu; metric estimates "
          f"{timings[1][1]:.2f} s ({timings[1][1] / TARGET_S:.2f} x the {TARGET_S:g} s target); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    # A fingerprint of the numbers, to compare before and after a change.
    numbers = est.sort_values(["cell_id", "metric"])[["value", "low", "high", "n"]].to_numpy()
    print(f"estimates checksum: {float(np_sum(numbers)):.12g}; rows {len(est)}; summary {table.shape}; "
          f"first row {table.iloc[0].to_dict() if len(table) else {}}")


def time_sections(db: Path, seeds: int) -> None:
    """Render every section of the study's report as build_report_for does (read-only connection),
    before and after the run's cache_analyses stored the mixed-effects fit (issue 11's 86%)."""
    from engine.report.context import ReportContext
    from engine.report.catalog import validate_sections
    from engine.kernel.registry import get_scenario
    from engine.spec.load import load_spec
    from engine.store.db import StudyStore

    loaded = load_spec(STUDY, overrides(seeds, db))
    scenario = get_scenario("jailbreak")

    def build() -> tuple[float, dict[str, float]]:
        store = StudyStore(db, read_only=True)
        per: dict[str, float] = {}
        started = time.perf_counter()
        try:
            ctx = ReportContext(loaded, store.con, scenario, str(db))
            for section, options in validate_sections(loaded.spec.report.sections, scenario):
                t = time.perf_counter()
                section.render(ctx, options)
                per[section.type] = per.get(section.type, 0.0) + time.perf_counter() - t
        finally:
            store.close(checkpoint=False)
        return time.perf_counter() - started, per

    store = StudyStore(db)
    store.con.execute("DELETE FROM fit_cache")  # as a database before this change
    store.close()
    cold, per = build()
    print(f"report sections, no stored fit: {cold:.2f} s (mixed_effects {per['mixed_effects']:.2f} s = "
          f"{per['mixed_effects'] / cold:.0%})")
    store = StudyStore(db)
    started = time.perf_counter()
    scenario.cache_analyses(store, loaded)  # what `run` does after the trials and judges
    print(f"cache_analyses after the run (fits and stores): {time.perf_counter() - started:.2f} s")
    store.close()
    for i in (1, 2):
        warm, per = build()
        print(f"report sections, build {i} with the stored fit: {warm:.2f} s (mixed_effects "
              f"{per['mixed_effects']:.3f} s)")


def np_sum(values) -> float:
    import numpy as np

    return float(np.nansum(np.asarray(values, float) * np.arange(1, values.size + 1).reshape(values.shape)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, default=Path("/tmp/llm-study-engine-bench/jailbreak_1m.duckdb"))
    parser.add_argument("--seeds", type=int, default=124, help="8,064 traces per seed (default 124: 999,936)")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--sections", action="store_true",
                        help="also time every report section before/after the stored mixed-effects fit (use a small"
                             " --seeds: the fit on 1M traces takes long)")
    args = parser.parse_args()
    db = args.db if args.seeds == 124 else args.db.with_name(f"{args.db.stem}_{args.seeds}seeds.duckdb")
    if args.rebuild or not db.exists():
        build(db, args.seeds)
    time_queries(db, args.seeds)
    if args.sections:
        time_sections(db, args.seeds)


if __name__ == "__main__":
    main()
