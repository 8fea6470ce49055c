"""What a model entry adds to its requests is checked at load time: an `api_base` that is no
server's URL, `extra_headers` that are not text or carry a line break, an `extra_body` that is not a
map, and `extra_params` that would override what the engine sets are spec errors naming the key
(exit 2, nothing written), never run-time error rows; and no message quotes a value that may be a
secret."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from pydantic import ValidationError

from engine.cli import main
from engine.spec.request_params import ENGINE_REQUEST_KEYS
from engine.spec.schema import SECRET_ERROR, ModelEntry

ENTRY = {"litellm_id": "openai/my-model", "display_name": "Mine", "provider": "Me", "family": "M", "route": "mine",
         "params": {"total_b": 8}, "price": {"input_per_mtok": 0, "output_per_mtok": 0}}
SECRET = "pw-0123456789secret"


def error(**fields) -> dict:
    with pytest.raises(ValidationError) as info:
        ModelEntry.model_validate({**ENTRY, **fields})
    (err,) = info.value.errors()
    assert err["type"] == SECRET_ERROR  # the loader never echoes the value of these
    assert SECRET not in err["msg"]
    return err


@pytest.mark.parametrize("url, says", [
    ("http://", "no host"), ("https://", "no host"), ("http://:8080/v1", "no host"), ("http:///v1", "no host"),
    (f"http://me:{SECRET}@host:99999/v1", "1..65535"), ("http://host:abc/v1", "1..65535"),
    ("http://host:0/v1", "port 0"), (f"http://[::1/v1?{SECRET}", "unbalanced"), ("http://::1]/v1", "unbalanced"),
    (f"http://ho st/v1?{SECRET}", "space"), ("http://host/v1\n", "line break"), ("http://host/v1\rX: 1", "line break"),
    ("\thttp://host/v1", "space"), (f"ftp://host/{SECRET}", "http://"), ("llm.example.org:8000", "http://"),
])
def test_a_bad_api_base_is_a_spec_error_that_does_not_quote_it(url, says):
    err = error(api_base=url)
    assert err["loc"] == ("api_base",) and says in err["msg"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1", "https://[::1]:8000/v1", "https://api.example.org/v1/",
                                 "http://gpu-node_3:65535", "https://user@llm.example.org/v1"])
def test_a_good_api_base_is_kept_as_written(url):
    assert ModelEntry.model_validate({**ENTRY, "api_base": url}).api_base == url


@pytest.mark.parametrize("name", sorted(ENGINE_REQUEST_KEYS - {"api_key"}))
def test_extra_params_may_not_override_what_the_engine_sets(name):
    err = error(extra_params={name: 1})
    assert err["loc"] == ("extra_params",) and err["ctx"]["field"] == name and "sets" in err["msg"]
    err = error(extra_params={"extra_body": {name: 1}})
    assert err["ctx"]["field"] == f"extra_body.{name}"


@pytest.mark.parametrize("extra, field, says", [
    ({"extra_headers": ["X-A", SECRET]}, "extra_headers", "map of header names"),
    ({"extra_headers": SECRET}, "extra_headers", "map of header names"),
    ({"extra_headers": {"X-Key": 12345678}}, "extra_headers.X-Key", "must be text"),
    ({"extra_headers": {"X-Key": None}}, "extra_headers.X-Key", "must be text"),
    ({"extra_headers": {"Authorization": f"Bearer {SECRET}\r\nX-Evil: 1"}}, "extra_headers.Authorization",
     "line break"),
    ({"extra_headers": {"X-A": f"{SECRET}\n"}}, "extra_headers.X-A", "line break"),
    ({"extra_headers": {"Bad Name": "v"}}, "extra_headers", "not an HTTP header name"),
    ({"extra_headers": {"X-A\r\nX-B": "v"}}, "extra_headers", "not an HTTP header name"),
    ({"extra_body": 5}, "extra_body", "must be a map"), ({"extra_body": [SECRET]}, "extra_body", "must be a map"),
    ({"extra_body": {1: "x"}}, "extra_body", "key is not text"),
    ({"vendor": {"nested": {2: SECRET}}}, "vendor.nested", "key is not text"),
    ({"logit_bias": {"1": float("nan")}}, "logit_bias.1", "not finite"),
    ({"stop": [float("inf")]}, "stop.0", "not finite"),
])
def test_extra_params_the_request_cannot_carry_are_spec_errors(extra, field, says):
    err = error(extra_params=extra)
    assert err["loc"] == ("extra_params",) and err["ctx"]["field"] == field and says in err["msg"]


def test_ordinary_extra_params_are_kept():
    extra = {"reasoning_effort": "low", "extra_headers": {"HTTP-Referer": "https://example.org", "X-Title": "t"},
             "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}, "stop": ["\n\n"], "top_k": 40}
    assert ModelEntry.model_validate({**ENTRY, "extra_params": extra}).extra_params == extra


STUDY = (REPO / "bench" / "studies" / "gateway_bench.yaml").read_text()


def study_with(tmp_path: Path, model_lines: str) -> Path:
    """gateway_bench, kept outside the repository, its model entry given `model_lines` (YAML)."""
    text = STUDY.replace("    api_key_env: LOOPBACK_API_KEY\n", "    api_key_env: LOOPBACK_API_KEY\n" + model_lines)
    assert text != STUDY
    path = tmp_path / "my_study.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("lines, key", [
    ("    extra_params: {messages: [{role: user, content: same prompt}]}\n", "models.loopback.extra_params.messages"),
    ("    extra_params: {seed: 7}\n", "models.loopback.extra_params.seed"),
    ("    extra_params: {extra_headers: {Authorization: \"Bearer " + SECRET + "\\r\\nX-Evil: 1\"}}\n",
     "models.loopback.extra_params.extra_headers.Authorization"),
    ("    extra_params: {extra_body: {1: x}}\n", "models.loopback.extra_params.extra_body"),
])
def test_the_cli_refuses_them_with_exit_2_naming_file_and_key_and_writes_nothing(tmp_path, capsys, monkeypatch,
                                                                                  lines, key):
    monkeypatch.setenv("LOOPBACK_API_KEY", "k-test")
    path = study_with(tmp_path, lines)
    assert main(["plan", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert key in err and "my_study.yaml" in err and SECRET not in err
    assert main(["run", str(path), "--no-report", "--no-progress"]) == 2
    assert SECRET not in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["my_study.yaml"]  # no database, no report folder
