"""The `studies` row (the resolved spec, its overrides and command line) holds no secret of the four
kinds issue 19 found there, and a spec error naming a rejected value does not print one."""

from __future__ import annotations

import json
import shlex

import duckdb

from engine.cli import main
from engine.kernel.redaction import MASK

STUDY = """\
defaults:
  - base
  - scenario: jailbreak
  - /judge@judges.heuristic: refusal_heuristic
  - executor: local
  - _self_

name: row_secrets
title: "Secrets in the spec"
primary_judge: heuristic
model_set: mine
models:
  m:
    litellm_id: openai/m
    display_name: M
    provider: P
    family: F
    route: r
    params: {total_b: 1.0}
    price: {input_per_mtok: 0.1, output_per_mtok: 0.1}
    api_base: "http://127.0.0.1:9/v1"
    extra_params:
      extra_headers:
        Authorization: "Token ${oc.env:ROW_HEADER_VALUE}"
        X-Upstream: "Bearer LiteralBearer0123456"
      API_KEY: "literal-param-value-42"
      reasoning_effort: low
design:
  factors: {model: [m], attack: [direct]}
  seeds: 1
scenario:
  select: {ids: [cyber-01]}
"""


def test_the_studies_row_holds_no_secret(tmp_path, monkeypatch):
    from engine.plan.compile import compile_plan
    from engine.study import load_study, open_store, record

    monkeypatch.setenv("ROW_HEADER_VALUE", "rowHeaderValue-77")  # a name no key variable has
    study = tmp_path / "row_secrets.yaml"
    study.write_text(STUDY)
    loaded = load_study(str(study), ["models.m.api_base='http://user:row-password-9@127.0.0.1:9/v1'"])
    store = open_store(loaded)
    try:
        record(store, loaded, compile_plan(loaded))
    finally:
        store.close()
    con = duckdb.connect(loaded.spec.store.path, read_only=True)
    try:
        spec, overrides, command = con.execute("SELECT spec, overrides, command FROM studies").fetchone()
    finally:
        con.close()
    row = " ".join([spec, overrides, command])
    for secret in ("rowHeaderValue-77", "LiteralBearer0123456", "literal-param-value-42", "row-password-9"):
        assert secret not in row
    model = json.loads(spec)["models"]["m"]
    assert model["api_base"] == f"http://{MASK}@127.0.0.1:9/v1"
    assert model["extra_params"] == {"extra_headers": {"Authorization": MASK, "X-Upstream": MASK},
                                     "API_KEY": MASK, "reasoning_effort": "low"}
    assert json.loads(overrides) == [f"models.m.api_base='http://{MASK}@127.0.0.1:9/v1'"]
    assert shlex.split(command)[-1] == f"models.m.api_base='http://{MASK}@127.0.0.1:9/v1'"


def test_a_rejected_value_is_echoed_without_its_credentials(tmp_path, capsys):
    study = tmp_path / "row_secrets.yaml"
    study.write_text(STUDY.replace("${oc.env:ROW_HEADER_VALUE}", "x"))
    code = main(["plan", str(study), "models.m.api_base='ftp://user:echoed-password-3@host/v1'"])
    err = capsys.readouterr().err
    assert code == 2 and "api_base" in err and "echoed-password-3" not in err
    assert not (tmp_path / "results").exists()


def test_an_override_hydra_cannot_parse_is_echoed_without_its_secret(tmp_path, capsys):
    study = tmp_path / "row_secrets.yaml"
    study.write_text(STUDY.replace("${oc.env:ROW_HEADER_VALUE}", "x"))
    code = main(["plan", str(study), "models.m.extra_params.extra_headers.Authorization=Token unparsable!secret-5]"])
    err = capsys.readouterr().err
    assert code == 2 and "Authorization" in err and "secret-5" not in err
