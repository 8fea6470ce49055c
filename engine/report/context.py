"""Everything a report section may read: the validated spec and queries over the study database.
Loaded once per report; sections never call a model."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import duckdb
import pandas as pd

from engine.kernel.contracts import Metric
from engine.analyze.metrics import cell_estimates, plan_cells, pooled_estimate
from engine.analyze.stats import Estimate
from engine.kernel.contracts import Scenario
from engine.spec.load import LoadedSpec


@dataclass
class ReportContext:
    loaded: LoadedSpec
    con: duckdb.DuckDBPyConnection
    scenario: Scenario
    db_path: str
    seed: int = 0
    # Results a scenario's sections share (computed once per report), keyed by the scenario.
    shared: dict[str, Any] = field(default_factory=dict)
    # Estimates over several cells, computed once and read by every section that prints them.
    _pooled: dict[tuple[tuple[str, ...], str], Estimate] = field(default_factory=dict, repr=False)

    @property
    def spec(self):
        return self.loaded.spec

    @property
    def spec_hash(self) -> str:
        return self.loaded.spec_hash

    @cached_property
    def metrics(self) -> dict[str, Metric]:
        return {m.name: m for m in self.scenario.metrics()}

    @cached_property
    def cells(self) -> pd.DataFrame:
        """Cells in plan order with planned/done/error counts and display columns."""
        cells = plan_cells(self.con, self.spec_hash)
        described = [self.scenario.describe_cell(c, self.spec) for c in cells["cell"]]
        cells["labels"] = described
        cells["is_control"] = [self.scenario.is_control(c) for c in cells["cell"]]
        return cells

    @cached_property
    def estimates(self) -> pd.DataFrame:
        """One row per cell and metric: value, low, high, n."""
        return cell_estimates(self.con, self.spec_hash, list(self.metrics.values()), self.seed,
                              self.scenario.metric_params(self.spec),
                              clustered_on_items=self.scenario.randomised_unit != "trial")

    def estimate(self, cell_id: str, metric: str) -> pd.Series:
        """The one estimate of a metric in a cell that every section prints (value, low, high, n, method,
        note, interval_at)."""
        est = self.estimates
        return est[(est.cell_id == cell_id) & (est.metric == metric)].iloc[0]

    def estimate_over(self, cell_ids: list[str], metric: str) -> Estimate:
        """The estimate of a metric over the units of several cells, computed once per report; over one
        cell, that cell's own estimate (so a section pooling one cell prints what the tables print)."""
        key = (tuple(sorted(set(cell_ids))), metric)
        if key not in self._pooled:
            if len(key[0]) == 1:
                row = self.estimate(key[0][0], metric)
                self._pooled[key] = Estimate(float(row["value"]), float(row["low"]), float(row["high"]),
                                             int(row["n"]), row["interval_at"], row["method"], row["note"])
            else:
                self._pooled[key] = pooled_estimate(self.con, self.spec_hash, self.metrics[metric], list(key[0]),
                                                    self.seed, self.scenario.metric_params(self.spec),
                                                    clustered_on_items=self.scenario.randomised_unit != "trial")
        return self._pooled[key]

    @cached_property
    def study_row(self) -> dict[str, Any]:
        row = self.con.execute(
            "SELECT name, title, overrides, command, engine_version, package_versions, git_sha, created_at"
            " FROM studies WHERE spec_hash = ?", [self.spec_hash]).fetchone()
        keys = ["name", "title", "overrides", "command", "engine_version", "package_versions", "git_sha",
                "created_at"]
        out = dict(zip(keys, row))
        out["overrides"] = json.loads(out["overrides"] or "[]")
        out["package_versions"] = json.loads(out["package_versions"] or "{}")
        return out

    def _usage(self, where: str) -> dict[str, Any]:
        row = self.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE c.cache_hit), coalesce(sum(c.prompt_tokens), 0),"
            " coalesce(sum(c.completion_tokens), 0), coalesce(sum(c.cost_usd) FILTER (WHERE NOT c.cache_hit), 0),"
            " coalesce(sum(c.latency_s) FILTER (WHERE NOT c.cache_hit), 0),"
            " count(*) FILTER (WHERE c.status = 'error')"
            f" FROM calls c WHERE {where}", [self.spec_hash]).fetchone()
        keys = ["calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd", "model_seconds",
                "failed_calls"]
        return dict(zip(keys, row))

    @cached_property
    def usage(self) -> dict[str, Any]:
        """Calls, tokens, cost and time the models under test spent on this spec's trials (all attempts)."""
        return self._usage("NOT starts_with(c.purpose, 'judge/') AND c.trial_id IN"
                           " (SELECT trial_id FROM plan WHERE spec_hash = ?)")

    @cached_property
    def judge_usage(self) -> dict[str, Any]:
        """The same for the judges, on this spec's trials and on the gold sets."""
        return self._usage("starts_with(c.purpose, 'judge/') AND (starts_with(c.trial_id, 'gold/') OR c.trial_id IN"
                           " (SELECT trial_id FROM plan WHERE spec_hash = ?))")

    @cached_property
    def trial_counts(self) -> dict[str, int]:
        row = self.con.execute(
            "SELECT count(*), count(t.trial_id) FILTER (WHERE t.status = 'done'),"
            " count(t.trial_id) FILTER (WHERE t.status = 'error')"
            " FROM plan p LEFT JOIN trials t ON t.trial_id = p.trial_id WHERE p.spec_hash = ?",
            [self.spec_hash]).fetchone()
        return dict(zip(["planned", "done", "errors"], row))
