"""The kernel's views of a study (engine/kernel/plugin_context.py) describe the real things the stages
hand a plug-in: every attribute a view lists exists on the loaded study, its spec, its judges, its
models and its store. The views are what the kernel's contracts are typed with, so this is what keeps
a plug-in's annotations honest without the kernel importing a stage."""

from __future__ import annotations

import engine
from engine.kernel.plugin_context import RubricView
from engine.store.db import StudyStore


def test_a_loaded_study_and_its_parts_are_what_the_views_say():
    loaded = engine.load_study("provider_vs_size")
    assert loaded.spec.judges and loaded.spec.models  # else the loops below check nothing
    assert isinstance(loaded, engine.LoadedSpecView)
    assert isinstance(loaded.spec, engine.StudySpecView)
    for model in loaded.spec.models.values():
        assert isinstance(model, engine.ModelEntryView)
    for judge in loaded.spec.judges.values():
        assert isinstance(judge, engine.JudgeSpecView) and isinstance(judge.rubric, RubricView)
    assert not isinstance(loaded.spec, engine.LoadedSpecView)  # a view can fail: the spec has no spec_hash


def test_the_study_store_is_a_store_view(tmp_path):
    store = StudyStore(tmp_path / "s.duckdb")
    try:
        assert isinstance(store, engine.StoreView)
        assert store.con.execute("SELECT 1").fetchone() == (1,)
    finally:
        store.close()
