"""The transcript browser at scale (issue 14): a 10,000-game escalation study in one HTML report
must stay under 30 MB and open in headless Chromium in under 3 s.

    .venv/bin/python bench/transcript_browser.py [--games 10000] [--dir /tmp/llm-study-engine-bench/browser]

Plants a real study database (the engine's and the escalation scenario's migrations, the study row
and the plan of model_size with two models x two personas x 2,500 seeds, 8 turns), then every game as
the engine stores it: trial rows (2% ended in a provider error part-way), turns, episodes and one
call per side per turn whose messages are the scenario's own system and user prompts
(engine/scenarios/escalation/agents.py) and whose reply is a JSON move with 40-600 characters of
English-like reasoning (a word-bigram chain over the write-ups in ../shared/seeds/, so it compresses
like prose, not like repeated filler). Renders the report (HTML only, pandoc) with the methods,
results and caveats sections and the transcript browser, then opens it from file:// in Debian's
Chromium and times navigation start -> first page of rows shown, and -> the load event (every
chunk parsed). Prints each figure with its ratio to the target (< 1 is within it); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

SIZE_TARGET_MB = 30.0
LOAD_TARGET_S = 3.0
SEEDS_DIR = REPO.parent / "shared" / "seeds"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SECTIONS = ("[{type: summary}, {type: design}, {type: headline_table, title: Results}, {type: caveats},"
            " {type: transcript_browser}, {type: reproducibility}]")


def overrides(games: int, folder: Path) -> list[str]:
    return ["design.factors.agent=[smollm2_135m,gemma3_270m]", "design.factors.persona=[default,adversarial]",
            "design.controls=[]", f"design.seeds={games // 4}", "scenario.max_turns=8",
            f"store.path={folder / 'study.duckdb'}", f"report.output_dir={folder / 'report'}",
            f"report.sections={SECTIONS}"]


class Prose:
    """English-like text: a word-bigram chain over the write-ups."""

    def __init__(self, rng: random.Random):
        words = re.findall(r"[A-Za-z][A-Za-z'-]*[,.;:]?", " ".join(p.read_text() for p in SEEDS_DIR.glob("*.txt")))
        self.rng, self.next = rng, defaultdict(list)
        for a, b in zip(words, words[1:]):
            self.next[a].append(b)
        self.words = words

    def text(self, chars: int) -> str:
        word, out, size = self.rng.choice(self.words), [], 0
        while size < chars:
            out.append(word)
            size += len(word) + 1
            word = self.rng.choice(self.next.get(word) or self.words)
        return " ".join(out)[:chars]


def plant(games: int, folder: Path) -> tuple[object, dict[str, int]]:
    import pyarrow as pa

    from engine.plan.compile import compile_plan
    from engine.scenarios.escalation.agents import Observation, system_prompt, user_prompt
    from engine.scenarios.escalation.game import TurnRecord
    from engine.spec.load import load_spec
    from engine.study import open_store, package_versions

    loaded = load_spec("model_size", overrides(games, folder))
    plan = compile_plan(loaded)
    db = Path(loaded.spec.store.path)
    for suffix in ("", ".wal"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    store = open_store(loaded, db)
    store.record_study(spec_hash=loaded.spec_hash, name=loaded.spec.name, title=loaded.spec.title,
                       spec=loaded.resolved, overrides=loaded.overrides, command=loaded.reproduce_command,
                       engine_version="bench", package_versions=package_versions(), git_sha=None)
    store.record_plan(loaded.spec_hash, [(t.trial_id, t.cell_id, t.cell, t.seed) for t in plan.trials])
    rng, scenario, params = random.Random(14), loaded.scenario, loaded.scenario_params
    prose = Prose(rng)
    payoff = params.level_payoff
    rows: dict[str, list[dict]] = {"trials": [], "calls": [], "escalation_turns": [], "escalation_episodes": []}
    for t in plan.trials:
        game = scenario._game_params(params, t.cell)
        sides = t.inputs["sides"]
        system = {s: system_prompt(game, sides[s]["persona_text"]) for s in ("A", "B")}
        fails_at = rng.randint(1, game.max_turns) if rng.random() < 0.02 else None
        realised, history, welfare, first_nuclear, turn_rows = {"A": 0, "B": 0}, [], 0.0, None, []
        done = True
        for turn in range(1, game.max_turns + 1):
            records = {}
            for side, other in (("A", "B"), ("B", "A")):
                obs = Observation(side, turn, realised[side], realised[other], history[-game.history_window:], False)
                messages = [{"role": "system", "content": system[side]}, {"role": "user", "content": user_prompt(obs, game)}]
                call_id = f"{t.trial_id}/{side}/{turn}"
                failed = fails_at == turn and side == "B"
                signal = max(0, min(9, realised[side] + rng.choice((-1, 0, 0, 1, 1, 2))))
                action = max(0, min(9, signal + rng.choice((-1, 0, 0, 0, 1, 2))))
                reasoning = prose.text(rng.randint(40, 600))
                reply = json.dumps({"reasoning": reasoning, "signal_level": signal, "action_level": action})
                rows["calls"].append({
                    "call_id": call_id, "trial_id": t.trial_id, "trial_attempt": 1, "purpose": f"move/{side}/{turn}",
                    "model_key": sides[side]["model_key"], "litellm_id": sides[side]["litellm_id"],
                    "request_hash": call_id, "messages": json.dumps(messages), "params": "{}",
                    "response_text": None if failed else reply, "prompt_tokens": 400, "completion_tokens": 80,
                    "cost_usd": 0.0, "latency_s": 1.0, "cache_hit": False, "parse_status": None if failed else "ok",
                    "retries": 2 if failed else 0, "status": "error" if failed else "ok",
                    "error": "RateLimitError: 429 Too Many Requests" if failed else None,
                    "created_at": f"2026-12-01 10:00:{turn:02d}.{0 if side == 'A' else 5}"})
                records[side] = TurnRecord(turn, side, signal, action, action, action, False, ())
            if fails_at == turn:
                done = False  # the provider failed: the game ends in an error, this turn unplayed
                break
            history.append(records)
            for side, r in records.items():
                turn_rows.append({
                    "trial_id": t.trial_id, "turn": turn, "side": side, "agent": sides[side]["agent"],
                    "persona": sides[side]["persona"], "signal_level": r.signal, "action_level": r.action,
                    "applied_level": r.applied, "prev_realised": realised[side], "realised_level": r.realised,
                    "accident": False, "levers": "", "parse_status": "ok", "reasoning": None,
                    "call_id": f"{t.trial_id}/{side}/{turn}", "forced": False})
                welfare += payoff[r.realised]
                realised[side] = r.realised
            if first_nuclear is None and max(realised.values()) >= 7:
                first_nuclear = turn
            if max(realised.values()) >= 9:
                break
        rows["trials"].append({
            "trial_id": t.trial_id, "scenario": "escalation", "cell_id": t.cell_id, "cell": json.dumps(t.cell),
            "seed": t.seed, "inputs": json.dumps(t.inputs), "status": "done" if done else "error",
            "error_kind": None if done else "provider", "error": None if done else "RateLimitError: 429",
            "attempt": 1, "duration_s": 10.0})
        if done:
            top = max(max(r.realised for r in turn.values()) for turn in history)
            rows["escalation_episodes"].append({
                "trial_id": t.trial_id, "turns_played": len(history),
                "end_reason": "strategic_exchange" if top >= 9 else "max_turns", "max_level": top,
                "nuclear": top >= 7, "strategic_exchange": top >= 9, "first_nuclear_turn": first_nuclear,
                "welfare": welfare})
            rows["escalation_turns"] += turn_rows  # an errored game keeps its calls, not its turns
    con = store.con
    con.execute("BEGIN TRANSACTION")
    for table, data in rows.items():
        con.register("_rows", pa.Table.from_pylist(data))
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _rows")
        con.unregister("_rows")
    con.execute("COMMIT")
    counts = {table: len(data) for table, data in rows.items()}
    store.close()
    return loaded, counts


def load_times(html: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
        page.goto(html.as_uri(), wait_until="load", timeout=120_000)
        page.wait_for_selector(".tb[data-ready-ms]")
        first_page = float(page.get_attribute(".tb", "data-ready-ms")) / 1000
        load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000
        started = time.perf_counter()
        page.click(".tb-table tbody tr >> nth=0")
        page.wait_for_selector(".tb-detail[data-open]")
        opened = time.perf_counter() - started
        browser.close()
    return {"first page of rows shown": first_page, "load event (whole file parsed)": load, "open a game": opened}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--games", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/llm-study-engine-bench/browser"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)

    from engine.report.study_report import build_report_for

    started = time.perf_counter()
    loaded, counts = plant(args.games, args.dir)
    print(f"planted {counts} in {time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    report = build_report_for(loaded, formats=("html",), force_pandoc=True)
    render_s = time.perf_counter() - started
    html = report.outputs.html
    size_mb = html.stat().st_size / 1e6
    # ru_maxrss is in KiB on Linux; the children are pandoc (and typst, not run here).
    own, child = (resource.getrusage(who).ru_maxrss / 2**20 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(f"report rendered in {render_s:.1f} s (peak memory: this process {own:.1f} GiB, pandoc {child:.1f} GiB): {html}")
    print(f"report.html size: {size_mb:.1f} MB (target < {SIZE_TARGET_MB:g} MB; ratio {size_mb / SIZE_TARGET_MB:.2f})")
    for name, seconds in load_times(html).items():
        target = f" (target < {LOAD_TARGET_S:g} s; ratio {seconds / LOAD_TARGET_S:.2f})" if "open" not in name else ""
        print(f"headless Chromium, {name}: {seconds:.2f} s{target}")


if __name__ == "__main__":
    main()
