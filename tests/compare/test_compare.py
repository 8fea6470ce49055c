"""`python -m engine compare A B`: two finished spec versions, matched on their cells, seeds and
items; B - A per cell and metric with paired intervals, the spec diff, a report; and the refusals.

The studies are escalation games of scripted agents (no model): the fog-only control
(scripted:hold_last) has an exact nuclear-use probability for any fog setting
(engine/scenarios/escalation/fog.py), so a difference planted by changing the fog has a known truth.
The model-version comparison plays two "versions" of a model served by two loopback chat servers
(bench/loopback_server.py) that answer with fixed moves, so its true difference is known too."""

from __future__ import annotations

import hashlib
import html
import json
import math
import shutil
import sys
from pathlib import Path

import duckdb
import pytest
from statsmodels.stats.multitest import multipletests
from conftest import REPO, analysis_only_args

from engine.cli import main
from engine.compare import compare_studies
from engine.scenarios.escalation.fog import fog_only_nuclear_probability
from engine.store.lock import study_lock
from engine.study import run_study

sys.path.insert(0, str(REPO / "bench"))
from fixtures import loopback_server  # noqa: E402

SEEDS = 150
SCRIPTED = ["design.factors.agent=[scripted:hold_last,scripted:null]", "~design.factors.persona", "design.controls=[]",
            f"design.seeds={SEEDS}", "scenario.max_turns=10"]
FOG_A, FOG_B = "scenario.fog_probability=0.3", "scenario.fog_probability=0.5"
HOSTILE_TITLE = "<script>alert(1)</script> [bold]x[/bold] **b**"


def store(tmp: Path, name: str = "study") -> list[str]:
    return [f"store.path={tmp / f'{name}.duckdb'}", f"report.output_dir={tmp / 'report'}"]


@pytest.fixture(scope="module")
def fog(tmp_path_factory):
    """One database, three spec versions of one study: fog 0.3 (A), fog 0.5 (B, the planted
    difference), and fog 0.3 under another title (the identical pair: the same trials)."""
    tmp = tmp_path_factory.mktemp("fog")
    common = [*SCRIPTED, *store(tmp)]
    versions = {}
    for name, extra in (("a", [FOG_A]), ("b", [FOG_B]), ("same", [FOG_A, f"title='{HOSTILE_TITLE}'"])):
        loaded, summary, _ = run_study("model_size", [*common, *extra], show_progress=False)
        assert summary.errors == 0
        versions[name] = loaded
    return tmp, tmp / "study.duckdb", common, versions


@pytest.fixture(scope="module")
def planted(fog):
    """A (fog 0.3) against B (fog 0.5), named as the study with overrides for each side."""
    _, _, common, _ = fog
    return compare_studies("model_size", "model_size", overrides=common, a_overrides=[FOG_A], b_overrides=[FOG_B])


def episodes(db: Path, spec_hash: str) -> dict[tuple[str, int], int]:
    """(agent, seed) -> nuclear (0/1), straight from the episode table."""
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT p.cell ->> '$.agent', p.seed, e.nuclear::INT FROM plan p"
                       " JOIN escalation_episodes e USING (trial_id) WHERE p.spec_hash = ?", [spec_hash]).fetchall()
    con.close()
    return {(agent, seed): nuclear for agent, seed, nuclear in rows}


def rows_of(comparison, metric: str) -> dict[str | None, object]:
    result = next(r for r in comparison.results if r.metric.name == metric)
    return {row.cell.cell["agent"] if row.cell else None: row for row in result.rows}


def text_of(path: Path) -> str:
    """A file's text with every run of whitespace one space (pandoc wraps long lines)."""
    return " ".join(html.unescape(path.read_text()).split())


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under `folder` and its content hash: what a read-only command must leave alone."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_planted_difference_is_found_on_pairs_of_seeds_and_rendered(fog, planted, tmp_path, capsys):
    tmp, db, common, versions = fog
    before = fingerprint(tmp)
    out = tmp_path / "cmp"
    code = main(["compare", "model_size", "model_size", *common, "--a", FOG_A, "--b", FOG_B, "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err

    comparison = planted
    a, b = versions["a"], versions["b"]
    truth = fog_only_nuclear_probability(b.scenario_params) - fog_only_nuclear_probability(a.scenario_params)
    assert 0.2 < truth < 0.4  # the planted difference is large
    nuclear = rows_of(comparison, "nuclear_rate")
    hold = nuclear["scripted:hold_last"].contrast
    # Paired on the 150 shared seeds (one pair per seed in a cell: the paired MOVER of exact limits), and the
    # interval holds the exact difference of the two fog settings' nuclear-use probabilities.
    assert hold.paired and hold.n_pairs == SEEDS and not hold.clustered
    assert hold.difference.interval == "paired MOVER of Clopper-Pearson limits"
    assert hold.difference.low < truth < hold.difference.high
    ea, eb = episodes(db, a.spec_hash), episodes(db, b.spec_hash)
    diffs = [eb[("scripted:hold_last", s)] - ea[("scripted:hold_last", s)] for s in range(SEEDS)]
    assert hold.difference.value == pytest.approx(sum(diffs) / SEEDS)
    # The same seed draws the same fog: B (more fog) is nuclear wherever A is, so no pair has the
    # event in A alone. Pairs drawn on different seeds would show some.
    assert (hold.a_only, hold.b_only) == (sum(d > 0 for d in diffs), 0) and hold.a_only > 0
    null = nuclear["scripted:null"].contrast  # the always-hold control never gets past level 1
    assert null.difference.value == 0 and null.paired
    pooled = nuclear[None].contrast  # over both cells: each seed holds two pairs, a cluster of them
    assert pooled.paired and pooled.clustered and pooled.clusters == SEEDS and pooled.n_pairs == 2 * SEEDS
    assert pooled.difference.low < truth / 2 < pooled.difference.high
    # Holm across every comparison of every metric (cells and pooled rows), not per metric.
    tested = [row.contrast for r in comparison.results for row in r.rows
              if row.contrast is not None and not math.isnan(row.contrast.difference.p)]
    assert comparison.family == len(tested) > len(nuclear)
    expected = multipletests([c.difference.p for c in tested], method="holm")[1]
    assert [c.holm_p for c in tested] == pytest.approx(list(expected))

    # The spec diff names the one key that decides the trials; the report and the terminal show it all.
    assert [(c.key, c.a, c.b, c.kind) for c in comparison.changes if c.kind != "cosmetic"] == [
        ("scenario.fog_probability", "0.3", "0.5", "trials")]
    assert "scenario.fog_probability (trials): 0.3 -> 0.5" in printed.out
    shown = f"+{hold.difference.value * 100:.0f} pp [+{hold.difference.low * 100:.0f}, +{hold.difference.high * 100:.0f}]"
    assert shown in printed.out
    page = text_of(out / "index.html")
    assert "Nuclear: B − A" in page and shown in page and "scenario.fog_probability" in page
    assert "paired MOVER of Clopper-Pearson limits" in page
    # The summary opens with what holds after Holm's correction: the planted change among it.
    assert f"Nuclear in scripted:hold_last: {shown} (Holm p <0.001, {SEEDS} pairs)" in page
    assert "comparisons differ at 5% after Holm's correction" in printed.out
    assert (out / "index.pdf").read_bytes()[:5] == b"%PDF-"
    assert (out / "figures" / "fig-compare-nuclear-rate.svg").exists()
    # Read-only: the database and everything beside it are untouched (no WAL, no lock file).
    assert fingerprint(tmp) == before


def test_an_identical_pair_shows_no_difference_and_only_the_changed_key(fog, tmp_path, capsys):
    tmp, db, common, versions = fog
    same = versions["same"]
    out = tmp_path / "cmp"
    code = main(["compare", "model_size", f"model_size:{same.spec_hash[:10]}", *common, "--a", FOG_A,
                 "--out", str(out), "--formats", "html"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    comparison = compare_studies("model_size", f"model_size:{same.spec_hash}", overrides=common, a_overrides=[FOG_A])
    # Every pair is the very same trial: only the title changed.
    assert all(m.same_trials == m.shared == SEEDS for m in comparison.matching.cells)
    for result in comparison.results:
        for row in result.rows:
            if row.contrast is None:  # parse failures: scripted games make no calls
                assert row.a.n == row.b.n == 0
                continue
            d = row.contrast.difference
            assert row.contrast.paired and d.value == 0 and d.p == 1
            # An interval holding 0, or none, said why (a pooled rate without a discordant pair).
            assert d.low <= 0 <= d.high or (math.isnan(d.low) and d.note)
    assert [(c.key, c.kind) for c in comparison.changes if c.kind != "cosmetic"] == [("title", "identity")]
    assert "No key that decides the trials or the grading differs" in text_of(out / "index.html")
    # The author's title is text, in the report and at the terminal.
    raw = (out / "index.html").read_text()
    assert "<script>alert(1)</script>" not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "[bold]x[/bold]" in printed.out
    assert "No difference between A and B is significant at 5% after Holm's correction" in printed.out


def test_database_and_hash_forms_name_the_same_versions(fog, planted, capsys):
    tmp, db, common, versions = fog
    a, b = versions["a"], versions["b"]
    by_study = planted
    by_file = compare_studies(f"{db}:{a.spec_hash[:8]}", f"{db}:{b.spec_hash}")
    assert (by_file.a.spec_hash, by_file.b.spec_hash) == (a.spec_hash, b.spec_hash)
    for x, y in zip(by_study.results, by_file.results):
        assert [r.contrast.difference if r.contrast else None for r in x.rows] == \
               [r.contrast.difference if r.contrast else None for r in y.rows]
    # A file holding three versions needs one named: exit 2, listing them.
    assert main(["compare", str(db), f"{db}:{b.spec_hash}", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "holds 3 spec versions" in err and a.spec_hash in err and b.spec_hash in err
    assert main(["compare", f"{db}:{a.spec_hash}", f"{db}:abcdef12", "--no-report"]) == 2
    assert "no spec version abcdef12" in capsys.readouterr().err
    assert main(["compare", f"{db}:{a.spec_hash}", f"{db}:{a.spec_hash}", "--no-report"]) == 2
    assert "the same spec version" in capsys.readouterr().err


def loopback_model(key: str, version: str, api_base: str) -> str:
    return (f"+models.{key}={{litellm_id: openai/probe-{version}, display_name: 'Probe {version}', provider: Loopback, "
            f"family: Probe, route: loopback, params: {{total_b: 1.0}}, price: {{input_per_mtok: 0, output_per_mtok: 0}}, "
            f"api_base: '{api_base}', api_key_env: LOOPBACK_API_KEY}}")


def moves(signal: int, action: int) -> str:
    return json.dumps({"reasoning": "steady", "signal_level": signal, "action_level": action})


def test_a_model_version_comparison_through_map(tmp_path, monkeypatch, capsys):
    """The same design on two versions of a model (two model keys, two servers): matched with --map.
    Version 1 signals 1 and acts at 2, version 2 acts at 3: divergence rises by exactly 1 per game."""
    monkeypatch.setenv("LOOPBACK_API_KEY", "k-test")
    seeds, design = 12, ["design.factors.persona=[default]", "design.controls=[]", "scenario.max_turns=3",
                         "+executor.concurrency.loopback=8"]
    with loopback_server(0.0, "--reply", moves(1, 2)) as v1, loopback_server(0.0, "--reply", moves(1, 3)) as v2:
        for key, version, server, name in (("probe", "2024", v1, "a"), ("probe_2025", "2025", v2, "b")):
            _, summary, _ = run_study("model_size", [*design, f"design.seeds={seeds}", f"design.factors.agent=[{key}]",
                                                     loopback_model(key, version, server.api_base),
                                                     *store(tmp_path, name)],
                                      show_progress=False, judge=False)
            assert summary.errors == 0 and summary.done == seeds
    both = ["model_size", "model_size", *design, f"design.seeds={seeds}"]
    only_a = ["design.factors.agent=[probe]", loopback_model("probe", "2024", v1.api_base),
              f"store.path={tmp_path / 'a.duckdb'}"]
    only_b = ["design.factors.agent=[probe_2025]", loopback_model("probe_2025", "2025", v2.api_base),
              f"store.path={tmp_path / 'b.duckdb'}"]
    args = [*(x for o in only_a for x in ("--a", o)), *(x for o in only_b for x in ("--b", o))]
    # Without the map the two model keys share no cell: exit 2, saying which map would match them.
    out = tmp_path / "cmp"
    assert main(["compare", *both, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "share no design cell" in err and "--map probe=probe_2025" in err and not out.exists()
    assert main(["compare", *both, *args, "--map", "gpt4o=probe_2025", "--no-report"]) == 2
    assert "A has no cell with the level gpt4o" in capsys.readouterr().err

    assert main(["compare", *both, *args, "--map", "probe=probe_2025", "--out", str(out), "--formats", "html"]) == 0
    printed = capsys.readouterr().out
    comparison = compare_studies(*both[:2], overrides=both[2:], a_overrides=only_a, b_overrides=only_b,
                                 mapping=["probe=probe_2025"])
    (match,) = comparison.matching.cells
    assert match.mapped and match.a_cell["agent"] == "probe" and match.cell["agent"] == "probe_2025"
    divergence = rows_of(comparison, "divergence")["probe_2025"].contrast
    assert divergence.paired and divergence.n_pairs == seeds
    # Every pair differs by exactly 1: no spread to build an interval on, and the row says so.
    assert divergence.difference.value == 1.0 and math.isnan(divergence.difference.low)
    assert "same value" in divergence.difference.note
    keys = {c.key: c.kind for c in comparison.changes if c.kind != "cosmetic"}
    assert keys["models.probe"] == keys["models.probe_2025"] == keys["design.factors.agent"] == "trials"
    assert keys["store.path"] == "identity"
    # (the terminal wraps the long cells)
    assert "Probe 2025, default (A: Probe 2024," in printed and "+1.000 (no interval" in printed
    assert "Probe 2025, default (A: Probe 2024, default)" in text_of(out / "index.html")


def test_refusals_name_what_is_wrong_and_write_nothing(fog, tmp_path, capsys):
    tmp, db, common, versions = fog
    out = tmp_path / "cmp"
    pair = ["compare", "model_size", "model_size", *common, "--a", FOG_A, "--b", FOG_B, "--out", str(out)]

    # Still running: a command holds the study's writer lock.
    with study_lock(db, "run"):
        assert main(pair) == 1
    assert "being written by `run`" in capsys.readouterr().err

    # Missing: no database at the path the spec names (and none is created).
    missing = tmp_path / "none.duckdb"
    assert main([*pair, "--b", f"store.path={missing}"]) == 1
    assert "does not exist: run the study first" in capsys.readouterr().err and not missing.exists()

    # A spec never run in that database.
    assert main([*pair, "--b", "design.seeds=7"]) == 1
    assert "has no run of this spec" in capsys.readouterr().err

    # Not finished: B's run stopped before its last games.
    partial = tmp_path / "partial.duckdb"
    shutil.copy(db, partial)
    con = duckdb.connect(str(partial))
    con.execute("DELETE FROM trials WHERE trial_id IN (SELECT trial_id FROM plan WHERE spec_hash = ? LIMIT 5)",
                [versions["b"].spec_hash])
    con.close()
    assert main(["compare", f"{db}:{versions['a'].spec_hash}", f"{partial}:{versions['b'].spec_hash}",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "is not finished: 5 of 300 planned games have not been played" in err and "python -m engine run" in err

    # Another scenario: a jailbreak study (imported traces, no model).
    jail = tmp_path / "jail.duckdb"
    run_study("provider_vs_size_import", [*analysis_only_args("provider_vs_size_import", REPO),
                                          f"store.path={jail}", f"report.output_dir={tmp_path / 'jr'}"],
              show_progress=False)
    assert main(["compare", f"{db}:{versions['a'].spec_hash}", str(jail), "--out", str(out)]) == 2
    assert "A is a study of scenario escalation, B of jailbreak" in capsys.readouterr().err

    # An unknown metric; a database given overrides.
    assert main([*pair, "--metric", "happiness"]) == 2
    assert "unknown metric 'happiness'" in capsys.readouterr().err
    assert main(["compare", str(db), str(db), "design.seeds=3", "--out", str(out)]) == 2
    assert "overrides" in capsys.readouterr().err
    assert not out.exists()
