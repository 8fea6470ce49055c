"""The executor's defaults are decided in one place (engine/spec/schema.py's Executor): the shipped
conf/executor/local.yaml lists exactly those values, key for key, so a command line can override any
of them; and the executor block never enters a spec's hash."""

from __future__ import annotations

import yaml

from engine import load_study
from engine.kernel.paths import CONF_DIR
from engine.spec.schema import Executor


def test_the_shipped_executor_file_lists_the_schemas_defaults():
    listed = yaml.safe_load((CONF_DIR / "executor" / "local.yaml").read_text())
    defaults = Executor().model_dump()
    assert set(listed) == set(defaults) - {"ray"}  # ray's options live in conf/executor/ray.yaml
    assert {k: v for k, v in defaults.items() if k in listed} == listed


def test_executor_settings_do_not_change_the_spec_hash():
    base = load_study("model_size")
    changed = load_study("model_size", ["executor.concurrency.local=2", "executor.budget.max_usd=1"])
    assert changed.spec.executor.concurrency["local"] == 2 and changed.spec_hash == base.spec_hash
