"""Pre-registration end to end, on a small real jailbreak study (two stand-in models through the real
gateway, graded by the refusal heuristic) and on an imported traces file: the claims, primary
contrasts and analysis settings are registered before the first trial (before the import); the
report says "registered before any data"; claims edited after the data are listed as an amendment,
once; a run killed with SIGKILL between the registration and its first trial, run again, is still
registered before any data with no amendment; the registration changes no spec hash."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO, rows
from jailbreak_standin import MODELS, refuses_by_hash, run_standin, standin_overrides

from engine.study import build_report, load_study, run_study

PROMPTS = [f"cyber-0{i}" for i in range(1, 5)]
CLAIM = ("[{claim: 'Role-play raises ASR', test: difference, metric: asr_broad, a: {attack: roleplay}, "
         "b: {attack: direct}, direction: %s}]")
SECTIONS = "report.sections=[{type: paired_asr}, {type: claims}, {type: preregistration}]"


def overrides(tmp_path, direction: str = "positive") -> list[str]:
    return standin_overrides(tmp_path / "study.duckdb", PROMPTS, ("direct", "roleplay"), MODELS,
                             "scenario.select.benign=0", SECTIONS, f"+report.claims={CLAIM % direction}",
                             f"report.output_dir={tmp_path / 'report'}")


def report_text(study: str, args: list[str], tmp_path) -> str:
    build_report(study, args, formats=("html",))
    return " ".join(re.sub(r"\\(.)", r"\1", (tmp_path / "report" / "index.qmd").read_text()).split())



def test_a_study_registered_then_run_was_registered_before_any_data(tmp_path):
    run_standin(overrides(tmp_path), refuses_by_hash)
    text = report_text("provider_vs_size", overrides(tmp_path), tmp_path)
    assert "this report tests were registered before any data on" in text
    assert "before the study's first trial" in text and "They have not changed since" in text
    assert "paired_asr: primary contrasts each model against smollm2_135m" in text
    # The registration was written before the first trial began.
    [(registered, first)] = rows(tmp_path / "study.duckdb", "SELECT (SELECT registered_at FROM registrations),"
                                                            " (SELECT min(started_at) FROM trials)")
    assert registered <= first


def test_claims_edited_after_the_data_are_listed_as_an_amendment_once(tmp_path):
    run_standin(overrides(tmp_path), refuses_by_hash)
    edited = overrides(tmp_path, "negative")
    assert load_study("provider_vs_size", edited).spec_hash == load_study("provider_vs_size",
                                                                          overrides(tmp_path)).spec_hash
    text = report_text("provider_vs_size", edited, tmp_path)
    assert "and changed after it: 1 amendment, listed below" in text
    assert "report.claims.0.direction: positive → negative" in text
    assert "This report tests the amended settings" in text
    report_text("provider_vs_size", edited, tmp_path)  # seen again: not a new amendment
    assert rows(tmp_path / "study.duckdb", "SELECT number, command FROM registration_amendments") == [(1, "report")]


KILLED_AT_FIRST_CALL = """
import os, signal, sys
sys.path.insert(0, "tests")
from jailbreak_standin import run_standin

async def killed(**kwargs):  # the first model call: the study is registered, no trial has finished
    os.kill(os.getpid(), signal.SIGKILL)

run_standin(sys.argv[1:], killed)
"""


def test_a_run_killed_between_registration_and_first_trial_is_rerun_without_an_amendment(tmp_path):
    args = overrides(tmp_path)
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_FIRST_CALL, *args], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    db = tmp_path / "study.duckdb"
    assert rows(db, "SELECT count(*) FROM registrations") == [(1,)]
    assert rows(db, "SELECT count(*) FROM trials") == [(0,)]
    run_standin(args, refuses_by_hash)
    text = report_text("provider_vs_size", args, tmp_path)
    assert "this report tests were registered before any data on" in text and "amendment" not in text
    assert rows(db, "SELECT count(*) FROM registration_amendments") == [(0,)]


def test_claims_edited_before_any_data_are_registered_not_amended(tmp_path):
    subprocess.run([sys.executable, "-c", KILLED_AT_FIRST_CALL, *overrides(tmp_path)], cwd=REPO,
                   capture_output=True, timeout=300)
    run_standin(overrides(tmp_path, "negative"), refuses_by_hash)
    text = report_text("provider_vs_size", overrides(tmp_path, "negative"), tmp_path)
    assert "this report tests were registered before any data on" in text and "amendment" not in text


IMPORT = ["scenario.traces_file.path=tests/data/traces_small.csv",
          "report.sections=[{type: claims}, {type: preregistration}]"]


def test_an_analysis_only_study_is_registered_before_its_import(tmp_path):
    args = [*IMPORT, f"store.path={tmp_path / 'study.duckdb'}", f"report.output_dir={tmp_path / 'report'}"]
    run_study("provider_vs_size_import", args, show_progress=False)
    text = report_text("provider_vs_size_import", args, tmp_path)
    assert "registered before any data on" in text and "before the traces were imported" in text
    assert "analysis settings tier = broad" in text
    # The tier is part of the spec: a new spec version, run on the same import; its run sees the change.
    run_study("provider_vs_size_import", [*args, "scenario.tier=strict"], show_progress=False)
    text = report_text("provider_vs_size_import", [*args, "scenario.tier=strict"], tmp_path)
    assert "1 amendment" in text and "analysis.tier: broad → strict" in text
    assert rows(tmp_path / "study.duckdb", "SELECT command FROM registration_amendments") == [("run",)]
