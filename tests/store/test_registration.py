"""The pre-registration records (engine/store/registration.py) on a bare study database: the first
settings are registered; the same settings again record nothing; other settings before any data
re-register; after data (a trial on record, or an import that began) they are an amendment listing
the keys that changed, recorded once; a database that held runs before its first registration says
it was not registered before the data."""

from __future__ import annotations

import json

from engine.store.db import StudyStore
from engine.store.registration import amendments, changes, mark_imported, register, registration

CLAIMS = {"report": {"claims": [{"claim": "x rises", "test": "trend", "direction": "positive"}]}, "analysis": {}}
EDITED = {"report": {"claims": [{"claim": "x rises", "test": "trend", "range": [0.1, 0.3]}]}, "analysis": {}}


def add_study(store: StudyStore, name: str = "s", spec_hash: str = "h1") -> None:
    store.con.execute("INSERT INTO studies (spec_hash, name, spec) VALUES (?, ?, '{}')", [spec_hash, name])


def add_trial(store: StudyStore, spec_hash: str = "h1") -> None:
    store.con.execute("INSERT INTO plan (spec_hash, trial_id, cell_id, cell, seed) VALUES (?, 't1', 'c1', '{}', 0)", [spec_hash])
    store.con.execute("INSERT INTO trials (trial_id, scenario, cell_id, cell, seed, inputs, status, attempt)"
                      " VALUES ('t1', 'x', 'c1', '{}', 0, '{}', 'done', 1)")


def test_registered_once_then_unchanged(tmp_path):
    store = StudyStore(tmp_path / "db.duckdb")
    assert register(store.con, "s", CLAIMS, "h1", "run") == "registered"
    add_study(store)
    add_trial(store)
    assert register(store.con, "s", CLAIMS, "h2", "report") == "unchanged"
    reg = registration(store.con, "s")
    assert reg.before_data and reg.settings == CLAIMS and reg.spec_hash == "h1"
    assert amendments(store.con, "s") == []


def test_a_change_before_any_data_re_registers(tmp_path):
    store = StudyStore(tmp_path / "db.duckdb")
    register(store.con, "s", CLAIMS, "h1", "run")
    add_study(store)  # recorded, but no trial ran (e.g. killed before the first)
    assert register(store.con, "s", EDITED, "h1", "run") == "re-registered"
    assert registration(store.con, "s").settings == EDITED and amendments(store.con, "s") == []


def test_a_change_after_data_is_an_amendment_recorded_once(tmp_path):
    store = StudyStore(tmp_path / "db.duckdb")
    register(store.con, "s", CLAIMS, "h1", "run")
    add_study(store)
    add_trial(store)
    assert register(store.con, "s", EDITED, "h1", "report") == "amended"
    assert register(store.con, "s", EDITED, "h1", "report") == "unchanged"
    [amended] = amendments(store.con, "s")
    assert amended.number == 1 and amended.command == "report"
    assert amended.old_hash == registration(store.con, "s").settings_hash != amended.new_hash
    assert amended.changes == [
        {"key": "report.claims.0.direction", "old": "positive"},
        {"key": "report.claims.0.range", "new": [0.1, 0.3]}]
    # Back to the registered settings: a second amendment.
    assert register(store.con, "s", CLAIMS, "h1", "run") == "amended"
    assert [a.new_hash for a in amendments(store.con, "s")][-1] == registration(store.con, "s").settings_hash


def test_an_import_that_began_is_data(tmp_path):
    store = StudyStore(tmp_path / "db.duckdb")
    register(store.con, "s", CLAIMS, "h1", "run")
    mark_imported(store.con, "s")
    assert register(store.con, "s", EDITED, "h1", "report") == "amended"
    assert registration(store.con, "s").imported_at is not None


def test_a_database_with_runs_before_its_first_registration_was_not_registered_before_data(tmp_path):
    store = StudyStore(tmp_path / "db.duckdb")
    add_study(store)
    register(store.con, "s", CLAIMS, "h1", "report")
    assert not registration(store.con, "s").before_data
    other = register(store.con, "t", CLAIMS, "h9", "run")  # another study in the same file: its own record
    assert other == "registered" and registration(store.con, "t").before_data


def test_changes_name_each_key_once():
    old = {"sections": {"paired_asr": {"primary": [["a", "b"]], "reference": None}}, "n": 1}
    new = {"sections": {"paired_asr": {"primary": [["a", "c"]], "reference": None}}}
    assert changes(old, new) == [{"key": "n", "old": 1},
                                 {"key": "sections.paired_asr.primary.0", "old": ["a", "b"], "new": ["a", "c"]}]
    assert json.loads(json.dumps(changes(old, new))) == changes(old, new)
