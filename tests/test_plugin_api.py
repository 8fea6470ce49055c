"""A fourth scenario written against the public API (`import engine`) only, driven through it end to
end: spec -> plan -> run -> metrics -> report. The scenario ("coin") calls no model: each trial tosses
a (possibly loaded) coin a few times with a random stream derived from the trial's seed, so the
test can compute every number the engine reports on its own.

The plug-in code below imports nothing from engine but the package itself. A second, smaller
scenario has no tables of its own (`migrations_dir = None`, the default) and reads the core tables.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Any, Literal

import duckdb
import pytest
import yaml
from pydantic import Field

import engine

SCENARIO = "coin"
SECTION = "coin_tally"
COINS = {"fair": 0.5, "loaded": 0.8}
FLIPS = [3, 4]
SEEDS = 5


# ---------------------------------------------------------------- the plug-in (public API only)

def toss(seed: int, p_heads: float, flips: int) -> list[bool]:
    """The scenario's rule: `flips` tosses of a coin with P(heads) = p_heads, from the seed alone."""
    rng = random.Random(f"coin/{seed}")
    return [rng.random() < p_heads for _ in range(flips)]


class CoinParams(engine.Strict):
    name: Literal["coin"]
    coins: dict[str, float] = Field(default_factory=lambda: dict(COINS))
    tally_title: str = "Coin tally"


def make_plugin(migrations: Path) -> tuple[type, type]:
    """The scenario and its report section (defined here, so the migrations folder can be tmp_path's)."""

    class Coin(engine.Scenario):
        name = SCENARIO
        version = "1"
        Params = CoinParams
        migrations_dir = migrations
        unit = ("toss series", "toss series")
        headline_metrics = ("heads_share",)

        def check_design(self, spec, params: CoinParams) -> None:
            engine.check_factors(spec, {"coin": set(params.coins), "flips": None}, ("coin",), self.name)
            if spec.design.controls:
                raise engine.SpecError("the coin scenario has no controls", key="design.controls")
            if "coin" not in spec.design.factors:
                raise engine.SpecError("declare the 'coin' factor", key="design.factors")

        def trial_inputs(self, spec, params: CoinParams, cell: dict[str, Any]) -> dict[str, Any]:
            return {"p_heads": params.coins[str(cell["coin"])], "flips": int(cell.get("flips", 3))}

        def estimate(self, inputs: dict[str, Any]) -> list[engine.CallEstimate]:
            return []  # no model calls

        async def run(self, trial: engine.Trial, ctx: engine.CallContext) -> engine.TrialOutcome:
            if not isinstance(ctx, engine.CallContext):  # the public type describes what a trial is handed
                raise TypeError(f"not a CallContext: {type(ctx)}")
            heads = toss(trial.seed, trial.inputs["p_heads"], trial.inputs["flips"])
            return engine.TrialOutcome({"coin_flips": [
                {"trial_id": trial.trial_id, "flip": i, "heads": h} for i, h in enumerate(heads)]})

        def metrics(self) -> list[engine.Metric]:
            return [engine.Metric(
                "heads_share", "Heads share", "mean",
                "SELECT f.trial_id, avg(f.heads::INT) AS value FROM coin_flips f"
                " JOIN {finished} t ON t.trial_id = f.trial_id GROUP BY f.trial_id",
                "Share of a series' tosses that came up heads, averaged over series.")]

    class CoinTally(engine.Section):
        type = SECTION

        def render(self, ctx: engine.ReportContext, options) -> engine.Rendered:
            if not isinstance(ctx, engine.ReportContext):
                raise TypeError(f"not a ReportContext: {type(ctx)}")
            heads, flips = ctx.con.execute(
                "SELECT count(*) FILTER (WHERE f.heads), count(*) FROM coin_flips f"
                " JOIN plan p ON p.trial_id = f.trial_id WHERE p.spec_hash = ?", [ctx.spec_hash]).fetchone()
            title = ctx.loaded.scenario_params.tally_title
            return engine.Rendered(f"## {title}\n\nThe coins came up heads {heads} times in {flips} tosses.")

    return Coin, CoinTally


# ---------------------------------------------------------------- registration, scoped to the tests

def registry_keys() -> set[tuple[str, str]]:
    from engine.kernel.registry import REGISTRY

    return {(kind, e.full_name) for kind in ("scenario", "judge", "section", "claim") for e in REGISTRY.entries(kind)}


@pytest.fixture(scope="module")
def coin_plugin(tmp_path_factory):
    from engine.kernel.registry import REGISTRY, scenario_names

    before = registry_keys()
    assert SCENARIO not in scenario_names()
    migrations = tmp_path_factory.mktemp("coin_migrations")
    (migrations / "0001_coin.sql").write_text(
        "CREATE TABLE coin_flips (trial_id VARCHAR NOT NULL, flip INTEGER NOT NULL, heads BOOLEAN NOT NULL,"
        " PRIMARY KEY (trial_id, flip));\n")
    scenario_cls, section_cls = make_plugin(migrations)
    with REGISTRY.scoped():  # the module's registrations end with it
        assert engine.register_scenario(scenario_cls) is scenario_cls
        assert engine.register_section(scenario=SCENARIO)(section_cls) is section_cls
        assert registry_keys() - before == {("scenario", SCENARIO), ("section", f"{SCENARIO}/{SECTION}")}
        yield scenario_cls
    assert registry_keys() == before and SCENARIO not in scenario_names()


def write_study(folder: Path, *, factors: dict[str, list] | None = None) -> Path:
    study = {
        "defaults": ["base", {"executor": "local"}, "_self_"],
        "name": "coin_study",
        "title": "Coins, tossed by a plug-in",
        "model_set": "none",
        "models": {},
        "scenario": {"name": SCENARIO, "tally_title": "Coin tally from the plug-in"},
        "design": {"factors": factors if factors is not None else {"coin": list(COINS), "flips": FLIPS},
                   "seeds": SEEDS},
        "store": {"path": str(folder / "coin.duckdb")},
        "report": {"output_dir": str(folder / "report"),
                   "sections": [{"type": "summary"}, {"type": "design"}, {"type": "headline_table"},
                                {"type": SECTION}, {"type": "caveats"}, {"type": "reproducibility"}]},
    }
    path = folder / "coin_study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def test_the_plugin_uses_the_public_api_only():
    """The plug-in's code (the section above) imports no engine module and uses only names that
    `engine` exports."""
    source = Path(__file__).read_text()
    start = source.index("# " + "-" * 64 + " the plug-in")
    end = source.index("# " + "-" * 64 + " registration")
    tree = ast.parse(source[start:end])
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in imported if m and m.startswith("engine")]
    # At module level (which the plug-in sees), the one engine import is `import engine`.
    top = [alias.name for node in ast.parse(source).body if isinstance(node, ast.Import) for alias in node.names]
    top += [node.module for node in ast.parse(source).body if isinstance(node, ast.ImportFrom)]
    assert [m for m in top if m and m.startswith("engine")] == ["engine"]
    used = {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "engine"}
    assert {"Scenario", "Section", "Metric", "Strict", "TrialOutcome", "CallContext", "ReportContext"} <= used
    assert used <= set(engine.__all__), used - set(engine.__all__)


def test_coin_study_end_to_end_through_the_public_api(coin_plugin, tmp_path):
    path = str(write_study(tmp_path))
    loaded = engine.load_study(path)
    assert isinstance(loaded.scenario, coin_plugin) and loaded.scenario_params.tally_title.endswith("plug-in")

    plan = engine.compile_plan(loaded)
    cells = len(COINS) * len(FLIPS)
    assert len(plan.cells) == cells and len(plan.trials) == cells * SEEDS
    assert len({t.trial_id for t in plan.trials}) == cells * SEEDS
    assert sorted({t.seed for t in plan.trials}) == list(range(SEEDS))

    _, summary, table = engine.run_study(path, show_progress=False)
    assert (summary.planned, summary.done, summary.errors) == (cells * SEEDS, cells * SEEDS, 0)

    # Every planned trial finished, and stored the flips its seed and cell give.
    con = duckdb.connect(str(tmp_path / "coin.duckdb"), read_only=True)
    try:
        statuses = con.execute("SELECT t.status, count(*) FROM plan p JOIN trials t USING (trial_id)"
                               " WHERE p.spec_hash = ? GROUP BY 1", [loaded.spec_hash]).fetchall()
        stored = con.execute("SELECT trial_id, list(heads ORDER BY flip) FROM coin_flips GROUP BY 1").fetchall()
        migrated = con.execute("SELECT version FROM schema_migrations WHERE component = ?", [SCENARIO]).fetchall()
    finally:
        con.close()
    assert statuses == [("done", cells * SEEDS)]
    assert migrated == [(1,)]
    by_trial = {t.trial_id: t for t in plan.trials}
    assert set(dict(stored)) == set(by_trial)
    for trial_id, heads in stored:
        t = by_trial[trial_id]
        assert heads == toss(t.seed, COINS[t.cell["coin"]], t.cell["flips"])

    # The summary table's metric, per cell, is the mean over seeds of the share of heads.
    assert len(table) == cells
    total_heads = total_flips = 0
    for coin, p in COINS.items():
        for flips in FLIPS:
            series = [toss(seed, p, flips) for seed in range(SEEDS)]
            total_heads += sum(map(sum, series))
            total_flips += flips * SEEDS
            expected = sum(sum(s) / flips for s in series) / SEEDS
            row = table[(table["coin"] == coin) & (table["flips"] == str(flips))]
            assert len(row) == 1, table
            shown = row["Heads share"].iloc[0]
            assert shown.split()[0] == f"{expected:.3f}", (coin, flips, shown)
            assert row["N"].iloc[0] == f"{SEEDS}/{SEEDS}"
    # The cells differ (else a table of one repeated value would pass the check above).
    assert table["Heads share"].nunique() > 1

    report = engine.build_report(path, formats=("html",))
    assert report.outputs.html is not None and report.outputs.pdf is None
    html = report.outputs.html.read_text()
    assert "Coin tally from the plug-in" in html
    assert f"The coins came up heads {total_heads} times in {total_flips} tosses." in html
    assert "Abstract" in html and "Methods" in html and "Traceback" not in html
    # The engine's summary section names the plug-in's unit and metric.
    assert "toss series" in html and "Heads share" in html


def test_the_coin_section_belongs_to_coin_studies_only(coin_plugin):
    with pytest.raises(engine.SpecError) as exc:
        engine.load_study("model_size", [f"report.sections=[{{type:{SECTION}}}]"])
    assert exc.value.key == "report.sections.0.type"
    assert "belongs to scenario coin" in exc.value.message
    # Under its full name it is refused too.
    with pytest.raises(engine.SpecError) as exc:
        engine.load_study("model_size", [f"report.sections=[{{type:'{SCENARIO}/{SECTION}'}}]"])
    assert exc.value.key == "report.sections.0.type"


def test_an_unknown_factor_is_a_spec_error_before_anything_is_written(coin_plugin, tmp_path):
    path = str(write_study(tmp_path, factors={"coin": ["fair"], "colour": ["red"]}))
    for step in (engine.load_study, engine.run_study):
        with pytest.raises(engine.SpecError) as exc:
            step(path)
        assert exc.value.key == "design.factors.colour" and "unknown factor 'colour'" in exc.value.message
    assert not (tmp_path / "coin.duckdb").exists() and not (tmp_path / "report").exists()
    # An unknown level of a known factor, too.
    with pytest.raises(engine.SpecError) as exc:
        engine.load_study(str(write_study(tmp_path, factors={"coin": ["fair", "bent"]})))
    assert exc.value.key == "design.factors.coin"
    # And an unknown key of the scenario's Params.
    with pytest.raises(engine.SpecError, match="scenario.tails"):
        engine.load_study(str(write_study(tmp_path)), ["+scenario.tails=1"])
    assert not (tmp_path / "coin.duckdb").exists()


# ---------------------------------------------------------------- a scenario without tables of its own

class PlainParams(engine.Strict):
    name: Literal["coin_plain"]


class CoinPlain(engine.Scenario):
    """A scenario with no tables of its own (migrations_dir None, the documented default): its metric
    reads the core `trials` table."""

    name = "coin_plain"
    version = "1"
    Params = PlainParams
    headline_metrics = ("even_seed",)

    def trial_inputs(self, spec, params, cell):
        return {"side": str(cell["side"])}

    def estimate(self, inputs):
        return []

    async def run(self, trial, ctx):
        return engine.TrialOutcome()

    def metrics(self):
        return [engine.Metric("even_seed", "Even seed", "proportion",
                              "SELECT t.trial_id, (t.seed % 2 = 0)::INT AS value FROM {finished} t",
                              "Share of finished trials with an even seed.", percent=True)]


@pytest.fixture
def plain_plugin(plugin_registry):
    engine.register_scenario(CoinPlain)
    return CoinPlain


def test_a_scenario_without_migrations_runs(plain_plugin, tmp_path):
    study = {"defaults": ["base", {"executor": "local"}, "_self_"], "name": "coin_plain", "title": "Plain",
             "model_set": "none", "models": {}, "scenario": {"name": "coin_plain"},
             "design": {"factors": {"side": ["a", "b"]}, "seeds": 3},
             "store": {"path": str(tmp_path / "plain.duckdb")},
             "report": {"output_dir": str(tmp_path / "report"), "sections": [{"type": "summary"}]}}
    path = tmp_path / "coin_plain.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    _, summary, table = engine.run_study(str(path), show_progress=False)
    share = f"{sum(seed % 2 == 0 for seed in range(3)) / 3:.0%}"
    assert summary.done == 6 and [v.split()[0] for v in table["Even seed"]] == [share] * 2


def test_a_factor_the_scenario_ignores_is_a_spec_error_before_anything_is_written(plain_plugin, tmp_path):
    # coin_plain checks no design (the default check_design), and its trials depend on `side` alone:
    # a second factor would give two cells the same trials under one id.
    study = {"defaults": ["base", {"executor": "local"}, "_self_"], "name": "coin_plain", "title": "Plain",
             "model_set": "none", "models": {}, "scenario": {"name": "coin_plain"},
             "design": {"factors": {"side": ["a", "b"], "colour": ["red", "blue"]}, "seeds": 2},
             "store": {"path": str(tmp_path / "plain.duckdb")},
             "report": {"output_dir": str(tmp_path / "report"), "sections": [{"type": "summary"}]}}
    path = tmp_path / "coin_plain.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    with pytest.raises(engine.SpecError) as info:
        engine.run_study(str(path), show_progress=False)
    assert info.value.key == "design.factors" and "give the same trials" in info.value.message
    assert "'colour': 'red'" in info.value.message and "'colour': 'blue'" in info.value.message
    assert info.value.file is not None and info.value.file.endswith("coin_plain.yaml")
    assert not (tmp_path / "plain.duckdb").exists()


def test_every_public_name_is_the_function_or_class_it_names():
    """No alias in the public API: `engine.load_study` is load_study, `engine.regrade_study` regrades."""
    named = {name: getattr(engine, name) for name in engine.__all__ if hasattr(getattr(engine, name), "__name__")}
    assert {"load_study", "regrade_study", "run_study", "build_report", "Scenario"} <= set(named)
    assert {name: obj.__name__ for name, obj in named.items() if obj.__name__ != name} == {}
