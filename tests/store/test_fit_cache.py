"""Fits stored in the study database (engine/store/fit_cache.py): a second report on the same data
reads the stored fit, changed data refit, and a read-only database computes without storing."""

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine.scenarios.jailbreak.analysis import mixed_effects
from engine.scenarios.jailbreak.analysis.mixed_effects import FIT_COLUMNS, fit_input, mixed_scale_model, result_from_json, result_to_json
from engine.store import fit_cache
from engine.store.db import StudyStore


def traces_frame(seed: int = 0, n_providers: int = 6, n_prompts: int = 30) -> pd.DataFrame:
    """Providers x 2 models x prompts with a size effect, plus traces the fit must ignore."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_providers):
        effect = rng.normal(0, 0.8)
        for m in range(2):
            params = float(2 ** rng.uniform(0, 9))
            eta = -0.5 - 0.3 * (np.log2(params) - 4.5) + effect + rng.normal(0, 0.5, n_prompts)
            labels = np.where(rng.random(n_prompts) < 1 / (1 + np.exp(-eta)), "COMPLIANCE", "REFUSAL")
            for i, label in enumerate([*labels, "ERROR", "NOT_GRADEABLE"]):
                rows.append({"model": f"p{p}m{m}", "provider": f"p{p}", "family": f"p{p}", "params_total_b": params,
                             "params_active_b": np.nan, "attack": "direct", "prompt_id": f"q{i % n_prompts}",
                             "category": "x", "benign": False, "label": label})
    return pd.DataFrame(rows)


@pytest.fixture
def fits(monkeypatch):
    """Counts the fits actually computed (not read from the database)."""
    calls = []
    real = mixed_effects._fit

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(mixed_effects, "_fit", counting)
    return calls


def stored(path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM fit_cache").fetchone()[0]
    finally:
        con.close()


def test_get_put_and_a_read_only_database(tmp_path):
    path = tmp_path / "s.duckdb"
    store = StudyStore(path)  # the core migrations create the table
    assert fit_cache.get(store.con, "k") is None
    assert fit_cache.put(store.con, "k", "kind", {"x": 1.5, "names": ["a", "b"]})
    assert fit_cache.put(store.con, "k", "kind", {"x": 2.0})  # content-addressed: the first one stays
    assert fit_cache.get(store.con, "k") == {"x": 1.5, "names": ["a", "b"]}
    store.close()
    ro = StudyStore(path, read_only=True)
    assert fit_cache.read_only(ro.con) and fit_cache.get(ro.con, "k") == {"x": 1.5, "names": ["a", "b"]}
    assert not fit_cache.put(ro.con, "k2", "kind", {"x": 1})
    ro.close(checkpoint=False)
    # A database from before the table: nothing is read or written, nothing fails.
    old = duckdb.connect(str(tmp_path / "old.duckdb"))
    assert fit_cache.get(old, "k") is None and not fit_cache.put(old, "k", "kind", {})
    old.close()


def test_data_digest_is_the_rows_as_a_set():
    df = fit_input(traces_frame(), "strict")
    digest = fit_cache.frame_digest(df, FIT_COLUMNS)
    assert fit_cache.frame_digest(df.sample(frac=1, random_state=3), FIT_COLUMNS) == digest
    changed = df.copy()
    changed.iloc[0, changed.columns.get_loc("success")] = not changed["success"].iloc[0]
    assert fit_cache.frame_digest(changed, FIT_COLUMNS) != digest
    nudged = df.assign(params_b=df.params_b.where(df.model != "p0m0", np.nextafter(df.params_b, np.inf)))
    assert fit_cache.frame_digest(nudged, FIT_COLUMNS) != digest
    renamed = df.assign(prompt_id=df.prompt_id.replace({"q1": "q1 "}))
    assert fit_cache.frame_digest(renamed, FIT_COLUMNS) != digest
    assert fit_cache.frame_digest(df.iloc[:-1], FIT_COLUMNS) != digest


def test_stored_result_round_trips_exactly():
    traces = traces_frame()
    result = mixed_scale_model(traces, "broad", seed=0)
    for r in (result, mixed_effects.MixedUnavailable("needs at least 3 providers; have 2")):
        back = result_from_json(result_to_json(r))
        assert back == r and type(back) is type(r)
    assert list(result_from_json(result_to_json(result)).vc_sd) == list(result.vc_sd)


def test_second_fit_on_the_same_data_is_read_and_changed_data_refit(tmp_path, fits):
    path = tmp_path / "s.duckdb"
    store = StudyStore(path)
    traces = traces_frame()
    first = mixed_scale_model(traces, "strict", seed=0, con=store.con)
    assert len(fits) == 1 and store.con.execute("SELECT count(*) FROM fit_cache").fetchone()[0] == 1
    again = mixed_scale_model(traces.sample(frac=1, random_state=1), "strict", seed=0, con=store.con)
    assert len(fits) == 1 and again == first and list(again.vc_sd) == list(first.vc_sd)
    assert first == mixed_scale_model(traces, "strict", seed=0)  # what an uncached fit gives
    assert len(fits) == 2
    # Changed data, or other settings: fitted anew (and stored).
    flipped = traces.copy()
    flipped.loc[0, "label"] = "REFUSAL" if flipped.loc[0, "label"] == "COMPLIANCE" else "COMPLIANCE"
    mixed_scale_model(flipped, "strict", seed=0, con=store.con)
    assert len(fits) == 3
    mixed_scale_model(traces, "strict", seed=1, con=store.con)
    mixed_scale_model(traces, "broad", seed=0, con=store.con)
    mixed_scale_model(traces, "strict", seed=0, basis="active", con=store.con)
    assert len(fits) == 6
    mixed_scale_model(flipped, "strict", seed=0, con=store.con)
    assert len(fits) == 6
    n = store.con.execute("SELECT count(*) FROM fit_cache").fetchone()[0]
    assert n == 5
    store.close()

    # The report's read-only connection reads stored fits, and computes others without storing them.
    ro = StudyStore(path, read_only=True)
    assert mixed_scale_model(traces, "strict", seed=0, con=ro.con) == first and len(fits) == 6
    other = traces_frame(seed=5)
    mixed_scale_model(other, "strict", seed=0, con=ro.con)
    mixed_scale_model(other, "strict", seed=0, con=ro.con)
    assert len(fits) == 8
    ro.close(checkpoint=False)
    assert stored(path) == 5


def test_a_fit_of_another_code_version_is_not_reused(tmp_path, fits, monkeypatch):
    store = StudyStore(tmp_path / "s.duckdb")
    traces = traces_frame()
    mixed_scale_model(traces, "strict", con=store.con)
    monkeypatch.setattr(mixed_effects, "FIT_VERSION", "test-next")
    mixed_scale_model(traces, "strict", con=store.con)
    assert len(fits) == 2
    store.close()


def import_study(tmp_path, traces: pd.DataFrame):
    """The analysis-only jailbreak study on a traces file, as `run` would load it."""
    from engine import load_study

    path = tmp_path / "traces.csv"
    traces.rename(columns={"label": "verdict"}).to_csv(path, index=False)
    return load_study("provider_vs_size_import", [f"scenario.traces_file.path={path}",
                                                 f"store.path={tmp_path / 'study.duckdb'}",
                                                 f"report.output_dir={tmp_path / 'report'}"])


def render_mixed_effects(loaded) -> str:
    """The mixed_effects section as build_report_for renders it: from a read-only connection."""
    from engine.report.context import ReportContext
    from engine.report.catalog import validate_sections
    from engine.kernel.registry import get_scenario

    scenario = get_scenario("jailbreak")
    store = StudyStore(loaded.spec.store.path, read_only=True)
    try:
        ctx = ReportContext(loaded, store.con, scenario, loaded.spec.store.path)
        return next(section.render(ctx, options).markdown for section, options in
                    validate_sections(loaded.spec.report.sections, scenario) if section.type == "mixed_effects")
    finally:
        store.close(checkpoint=False)


def test_report_after_a_run_reads_the_fit_the_run_stored(tmp_path, fits):
    from engine.study import run_loaded

    traces = traces_frame()
    loaded = import_study(tmp_path, traces)
    run_loaded(loaded, show_progress=False)  # imports the traces, then stores the report's fit
    assert len(fits) == 1
    first = render_mixed_effects(loaded)
    second = render_mixed_effects(loaded)
    assert len(fits) == 1 and first == second
    assert "Slope per doubling" in first
    # The same section computed without the database's copy.
    fresh = mixed_scale_model(traces, "broad", seed=0)
    assert f"{fresh.slope_per_doubling:+.3f}" in first.replace("\\", "")
    assert len(fits) == 2

    # New data under the same spec (the file changed, its path did not): the run refits.
    changed = traces.copy()
    harmful = changed.index[changed.label == "REFUSAL"][:5]
    changed.loc[harmful, "label"] = "COMPLIANCE"
    loaded = import_study(tmp_path, changed)
    run_loaded(loaded, show_progress=False)
    assert len(fits) == 3
    assert render_mixed_effects(loaded) != first and len(fits) == 3
