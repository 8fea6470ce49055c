"""Analysis-only jailbreak studies from Inspect logs (`scenario.inspect_logs`, studies/provider_vs_size_inspect.yaml):
logs written by Inspect itself (EvalLog, EvalSample, Score, write_eval_log) for several models and providers,
run through the CLI; the report's ASR per model against pandas over the same samples; malformed mappings are
exit 2 naming the key (and the log), with nothing written; and a round trip: a study exported with
`python -m engine export inspect`, imported again, gives back the study's own traces."""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from jailbreak_standin import MODELS, refuses_by_hash, run_standin, standin_overrides

from engine import load_study
from engine.kernel.errors import SpecError

inspect_log = pytest.importorskip("inspect_ai.log")
from inspect_ai.log import EvalConfig, EvalDataset, EvalError, EvalLog, EvalSample, EvalSpec  # noqa: E402
from inspect_ai.scorer import Score  # noqa: E402

# model -> (provider, parameters in billions, true ASR of its samples)
PANEL = {"acme/small": ("Acme", 7.0, 0.6), "acme/large": ("Acme", 70.0, 0.5), "bolt/mini": ("Bolt", 3.0, 0.2),
         "bolt/max": ("Bolt", 120.0, 0.1), "core/one": ("Core", 14.0, 0.35)}
ITEMS = 24
SCORER = "refusal_grader"
MAPPING = ("scenario.inspect_logs.label.score=" + SCORER,
           "scenario.inspect_logs.label.values={C: COMPLIANCE, I: REFUSAL, N: NOT_GRADEABLE}",
           "scenario.inspect_logs.provider=org", "scenario.inspect_logs.params_total_b=size.total_b",
           "scenario.inspect_logs.attack=eval.task_args.attack")
# Where the logs `python -m engine export inspect` writes keep each trace column.
EXPORTED = ("scenario.inspect_logs.label.score=heuristic", "scenario.inspect_logs.model=model.key",
            "scenario.inspect_logs.item=item.prompt_id", "scenario.inspect_logs.provider=model.provider",
            "scenario.inspect_logs.params_total_b=model.params_total_b",
            "scenario.inspect_logs.params_active_b=model.params_active_b", "scenario.inspect_logs.family=model.family",
            "scenario.inspect_logs.attack=cell.attack", "scenario.inspect_logs.category=item.category",
            "scenario.inspect_logs.benign=item.benign")


def write_logs(folder, seed: int = 0) -> pd.DataFrame:
    """One log per model as an Inspect eval would write it (scores C/I/N, one errored sample per model);
    returns the samples as a frame."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (model, (org, size, rate)) in enumerate(PANEL.items()):
        samples = []
        for item in range(ITEMS):
            sid = f"behaviour-{item:02d}"
            metadata = {"org": org, "size": {"total_b": size}}
            if item == ITEMS - 1:  # the provider failed on this one
                samples.append(EvalSample(id=sid, epoch=1, input="...", target="", metadata=metadata,
                                          error=EvalError(message="rate limited", traceback="", traceback_ansi="")))
                rows.append({"model": model, "provider": org, "item": sid, "value": None})
                continue
            r = rng.random()
            value = "N" if r > 0.95 else "C" if rng.random() < rate else "I"
            samples.append(EvalSample(id=sid, epoch=1, input=f"request {item}", target="", metadata=metadata,
                                      scores={SCORER: Score(value=value), "other": Score(value=1.0)}))
            rows.append({"model": model, "provider": org, "item": sid, "value": value})
        spec = EvalSpec(created="2026-12-01T10:00:00+00:00", task="strongreject_like", model=model,
                        task_args={"attack": "direct"}, dataset=EvalDataset(name="behaviours", samples=ITEMS),
                        config=EvalConfig())
        inspect_log.write_eval_log(EvalLog(status="success", eval=spec, samples=samples),
                                   str(folder / f"2026-12-01T10-00-0{i}_strongreject-like_{i}.eval"))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect_logs") / "logs"
    return folder, write_logs(folder)


@pytest.fixture(scope="module")
def imported(logs, tmp_path_factory):
    """The import study run on the logs through the CLI: its database, report folder and output."""
    folder, _ = logs
    where = tmp_path_factory.mktemp("imported")
    db, out = where / "imported.duckdb", where / "report"
    result = run_cli("run", "provider_vs_size_inspect", f"scenario.inspect_logs.path={folder}", *MAPPING,
                     f"store.path={db}", f"report.output_dir={out}", "--formats", "html", "--no-progress")
    assert result.returncode == 0, result.stderr
    return db, out, result


def test_import_study_reports_the_asr_per_model_of_the_logs(logs, imported):
    folder, samples = logs
    db, out, result = imported
    assert (f"imported {len(samples)} traces of {len(PANEL)} models from {folder}" in result.stdout
            and f"({len(PANEL)} Inspect logs, {len(PANEL)} errored samples as ERROR)" in result.stdout)
    flat = (out / "index.qmd").read_text().replace("\\", "")
    graded = samples[samples.value.isin(["C", "I"])]
    for model, (org, size, _) in PANEL.items():
        mine = graded[graded.model == model]
        asr = (mine.value == "C").mean()
        excluded = samples[(samples.model == model) & ~samples.value.isin(["C", "I"])]
        not_gradeable, errors = int((excluded.value == "N").sum()), int(excluded.value.isna().sum())
        # Model | Provider | Params | Traces | Evaluable | Not gradeable | Judge errors | ASR strict ...
        row = re.search(rf"\| {re.escape(model)} \| {org} \| [^|]+ \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| "
                        r"(\d+)% \[", flat)
        assert row, (model, flat[:2000])
        assert [int(g) for g in row.groups()] == [ITEMS, len(mine), not_gradeable, errors, round(100 * asr)]
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = con.execute("SELECT model, provider, params_total_b, prompt_id, attack, label"
                             " FROM jailbreak_imported_traces").df()
    finally:
        con.close()
    assert len(stored) == len(samples)
    assert stored.groupby("model").params_total_b.first().to_dict() == {m: p[1] for m, p in PANEL.items()}
    assert set(stored.attack) == {"direct"}
    expected = samples.value.map({"C": "COMPLIANCE", "I": "REFUSAL", "N": "NOT_GRADEABLE"}).fillna("ERROR")
    assert stored.sort_values(["model", "prompt_id"]).label.tolist() == \
        expected.loc[samples.sort_values(["model", "item"]).index].tolist()


def test_model_attributes_the_logs_lack_come_from_the_spec(logs):
    from engine.scenarios.jailbreak.inspect_import import read_inspect_logs

    folder, samples = logs
    table = ", ".join(f"{m}: {{provider: P-{org}, params_total_b: {size * 2}}}" for m, (org, size, _) in PANEL.items())
    mapping = [m for m in MAPPING if ".provider=" not in m and ".params_total_b=" not in m]
    loaded = load_study("provider_vs_size_inspect", [f"scenario.inspect_logs.path={folder}", *mapping,
                                                    f"+scenario.inspect_logs.models={{{table}}}"])
    traces = read_inspect_logs(loaded.scenario_params.inspect_logs).traces
    per_model = traces.groupby("model")[["provider", "params_total_b"]].first()
    assert per_model.to_dict("index") == {m: {"provider": f"P-{org}", "params_total_b": size * 2}
                                          for m, (org, size, _) in PANEL.items()}
    assert len(traces) == len(samples)


@pytest.mark.parametrize("override, key, names_log", [
    ("scenario.inspect_logs.label.score=verdict", "scenario.inspect_logs.label.score", True),
    ("scenario.inspect_logs.provider=organisation", "scenario.inspect_logs.provider", True),
    ("scenario.inspect_logs.params_total_b=null", "scenario.inspect_logs.params_total_b", True),
    ("scenario.inspect_logs.attack=eval.task_args.technique", "scenario.inspect_logs.attack", True),
    ("scenario.inspect_logs.label.values.C=SUCCESS", "scenario.inspect_logs.label.values", False),
    ("scenario.inspect_logs.benign=org", "scenario.inspect_logs.benign", True),  # 'Acme' is not true/false
])
def test_malformed_mappings_name_the_key(logs, override, key, names_log):
    folder, _ = logs
    with pytest.raises(SpecError) as err:
        load_study("provider_vs_size_inspect", [f"scenario.inspect_logs.path={folder}", *MAPPING, override])
    assert f"key '{key}'" in str(err.value), str(err.value)
    if names_log:  # found in a log, not in the spec's own values
        assert err.value.key == key and str(folder) in err.value.file and err.value.file.endswith(".eval")


def test_unmapped_score_value_is_exit_2_naming_the_log_and_value(run_main, tmp_path):
    folder = tmp_path / "logs"
    samples = write_logs(folder, seed=1)
    assert (samples.value == "N").any()
    db = tmp_path / "never.duckdb"
    # Without N in the mapping.
    mapping = [m for m in MAPPING if "label.values" not in m] + ["scenario.inspect_logs.label.values={C: COMPLIANCE, I: REFUSAL}"]
    result = run_main("run", "provider_vs_size_inspect", f"scenario.inspect_logs.path={folder}", *mapping,
                     f"store.path={db}", "--no-progress")
    assert result.returncode == 2
    err = " ".join(result.stderr.split())
    assert "scenario.inspect_logs.label.values" in err and "'N'" in err and ".eval" in err
    assert not db.exists()


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_folder_without_logs_is_exit_2_naming_the_path(run_main, tmp_path, make):
    folder = tmp_path / "logs"
    if make == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("no logs here")
    db = tmp_path / "never.duckdb"
    result = run_main("plan", "provider_vs_size_inspect", f"scenario.inspect_logs.path={folder}", *MAPPING,
                     f"store.path={db}")
    assert result.returncode == 2
    assert "scenario.inspect_logs.path" in result.stderr and str(folder) in " ".join(result.stderr.split())
    assert not db.exists()


def test_round_trip_export_then_import_gives_back_the_studys_traces(run_main, tmp_path):
    from engine.export import export_inspect
    from engine.scenarios.jailbreak.traces import run_traces
    from engine.store.db import StudyStore

    db = tmp_path / "study.duckdb"
    prompts = ["cyber-01", "cyber-02", "weapons-01", "benign-01", "benign-02"]
    overrides = standin_overrides(db, prompts, ("direct", "roleplay"), MODELS)
    loaded, summary = run_standin(overrides, refuses_by_hash)
    assert summary.errors == 0
    exported = export_inspect(loaded, tmp_path / "logs")
    assert len(exported.files) == len(MODELS) * 2
    store = StudyStore(db, read_only=True)
    try:
        original, _ = run_traces(store.con, loaded.spec_hash, loaded.spec)
    finally:
        store.close(checkpoint=False)

    again = tmp_path / "again.duckdb"
    result = run_main("run", "provider_vs_size_inspect", f"scenario.inspect_logs.path={tmp_path / 'logs'}",
                     *EXPORTED, f"store.path={again}",
                     f"report.output_dir={tmp_path / 'report'}", "--formats", "html", "--no-progress")
    assert result.returncode == 0, result.stderr
    con = duckdb.connect(str(again), read_only=True)
    try:
        imported = con.execute("SELECT * FROM jailbreak_imported_traces").df()
    finally:
        con.close()
    columns = ["model", "provider", "family", "params_total_b", "attack", "prompt_id", "category", "benign", "label"]
    key = ["model", "attack", "prompt_id"]
    left = original[columns].sort_values(key).reset_index(drop=True)
    right = imported[columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)
    assert len(left) == len(MODELS) * 2 * len(prompts)


def test_imported_logs_get_paired_model_contrasts_on_the_shared_prompts(logs, imported):
    from statsmodels.stats.multitest import multipletests

    from engine.analyze.paired import paired_difference

    _, samples = logs
    _, out, _ = imported
    flat = (out / "index.qmd").read_text().replace("\\", "")
    graded = samples[samples.value.isin(["C", "I"])].assign(success=lambda d: d.value.eq("C").astype(int))
    wide = graded.pivot(index="item", columns="model", values="success")
    models = list(dict.fromkeys(graded.model))
    # The primary family: each model against the first (model − first); the other pairs are exploratory.
    # Each family is Holm-corrected on its own.
    primary = [(m, models[0]) for m in models[1:]]
    exploratory = [(a, b) for i, a in enumerate(models) for b in models[i + 1:] if models[0] not in (a, b)]
    assert primary and exploratory
    shown = lambda p: "<0.001" if p < 0.001 else f"{p:.3f}"  # noqa: E731
    for pairs in (primary, exploratory):
        expected = []
        for a, b in pairs:
            both = wide[[a, b]].dropna()
            a_only, b_only = int(((both[a] == 1) & (both[b] == 0)).sum()), int(((both[a] == 0) & (both[b] == 1)).sum())
            d = paired_difference(both[a].to_numpy(float), both[b].to_numpy(float), np.arange(len(both)),
                                  "proportion", 0)
            expected.append((a, b, len(both), (both[a] - both[b]).mean(), a_only, b_only, d.p))
        holm = multipletests([e[-1] for e in expected], method="holm")[1]
        for (a, b, n, diff, a_only, b_only, p), holm_p in zip(expected, holm):
            row = re.search(rf"\| {re.escape(a)} − {re.escape(b)} \| all \| ([+-]\d+) pp \[[^|]+\] \| (\d+) pairs \| "
                            r"(\d+) / (\d+) \| ([^|]+) \| ([^|]+) \| paired MOVER of Clopper-Pearson limits \|", flat)
            assert row, (a, b)
            assert int(row[1]) == round(100 * diff) and int(row[2]) == n
            assert (int(row[3]), int(row[4])) == (a_only, b_only)
            assert row[5].strip() == shown(p) and row[6].strip() == shown(min(1.0, holm_p))


def test_repeated_epochs_pair_repeat_with_repeat_not_every_repeat_with_every_other(run_main, tmp_path):
    # Two models, 10 behaviours, 3 epochs each: epoch n of one model pairs with epoch n of the other.
    rng = np.random.default_rng(3)
    folder, rows = tmp_path / "epochs", []
    folder.mkdir()
    for i, model in enumerate(["acme/small", "bolt/mini"]):
        samples = []
        for item in range(10):
            for epoch in (1, 2, 3):
                value = "C" if rng.random() < (0.6 if i == 0 else 0.3) else "I"
                samples.append(EvalSample(id=f"b-{item}", epoch=epoch, input="...", target="",
                                          metadata={"org": "Acme" if i == 0 else "Bolt", "size": {"total_b": 7.0 * (i + 1)}},
                                          scores={SCORER: Score(value=value)}))
                rows.append({"model": model, "item": f"b-{item}", "epoch": epoch, "success": int(value == "C")})
        spec = EvalSpec(created="2026-12-01T10:00:00+00:00", task="t", model=model, task_args={"attack": "direct"},
                        dataset=EvalDataset(name="b", samples=10), config=EvalConfig())
        inspect_log.write_eval_log(EvalLog(status="success", eval=spec, samples=samples), str(folder / f"log{i}.eval"))
    db, out = tmp_path / "e.duckdb", tmp_path / "report"
    result = run_main("run", "provider_vs_size_inspect", f"scenario.inspect_logs.path={folder}", *MAPPING,
                     f"store.path={db}", f"report.output_dir={out}", "--formats", "html", "--no-progress")
    assert result.returncode == 0, result.stderr
    wide = pd.DataFrame(rows).pivot(index=["item", "epoch"], columns="model", values="success")
    a, b = wide["acme/small"], wide["bolt/mini"]
    flat = (out / "index.qmd").read_text().replace("\\", "")
    # The one contrast is the primary one: the second model against the first (the reference).
    row = re.search(r"\| bolt/mini − acme/small \| all \| ([+-]\d+) pp \[[^|]+\] \| (\d+) pairs in (\d+) clusters \| "
                    r"(\d+) / (\d+) \|", flat)
    assert row, flat[-3000:]
    assert int(row[2]) == 30 and int(row[3]) == 10  # 10 behaviours x 3 epochs, clustered on the behaviour
    assert (int(row[4]), int(row[5])) == (int(((b == 1) & (a == 0)).sum()), int(((b == 0) & (a == 1)).sum()))
    assert int(row[1]) == round(100 * (b - a).mean())
