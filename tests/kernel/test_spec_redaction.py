"""Secrets in a study's own text (engine/kernel/spec_redaction.py): which names say secret, what a
stored spec, an override, a command line, a YAML file and a log line keep of them, and that no hash
depends on them."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from engine.kernel.redaction import MASK, redact
from engine.kernel.spec_redaction import (RedactingFilter, is_secret_name, override_without_credentials,
                                          redact_command, redact_override, redact_spec, redact_yaml_file,
                                          register_spec_secrets, without_credentials)
from engine.spec.load import spec_hash_of


@pytest.mark.parametrize("name", ["Authorization", "authorization", "X-Api-Key", "API_KEY", "apiKey", "authToken",
                                  "Set-Cookie", "password", "client_secret", "credentials", "Proxy-Authorization",
                                  "x-goog-api-key", "access_token", "key", "PASSWD"])
def test_names_that_say_secret(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["max_tokens", "prompt_tokens", "api_key_env", "litellm_id", "display_name",
                                  "tokenizer", "temperature", "api_base", "extra_headers", "monkey"])
def test_names_that_do_not(name):
    assert not is_secret_name(name)


def model(**extra):
    return {"litellm_id": "openai/m", "display_name": "M", "api_key_env": "MY_VAR",
            "params": {"total_b": 1.0}, "generation": {"max_tokens": 64}, **extra}


def issue_spec(header: str, bearer: str, param: str, password: str, port: int = 8000) -> dict:
    """The four ways of issue 19: a header from ${oc.env:...} (resolved), a literal Bearer header, an
    API_KEY in extra_params, a password in api_base."""
    return {"name": "s", "models": {"m": model(
        api_base=f"https://user:{password}@host:{port}/v1",
        extra_params={"extra_headers": {"Authorization": f"Token {header}", "X-Upstream": f"Bearer {bearer}"},
                      "API_KEY": param, "reasoning_effort": "low"})}}


def test_a_stored_spec_keeps_no_secret_and_everything_else():
    spec = issue_spec("hdrvalue123", "abcdefghijk", "param-secret-1", "pw-secret-1")
    stored = json.dumps(redact_spec(spec))
    for secret in ("hdrvalue123", "abcdefghijk", "param-secret-1", "pw-secret-1"):
        assert secret not in stored
    kept = redact_spec(spec)["models"]["m"]
    assert kept["api_base"] == f"https://{MASK}@host:8000/v1"
    assert kept["extra_params"]["extra_headers"] == {"Authorization": MASK, "X-Upstream": MASK}
    assert kept["extra_params"]["reasoning_effort"] == "low" and kept["api_key_env"] == "MY_VAR"
    assert kept["generation"] == {"max_tokens": 64} and kept["litellm_id"] == "openai/m"


def test_the_spec_hash_depends_on_no_credential():
    one = spec_hash_of(issue_spec("a1b2c3d4e5", "abcdefghijk", "p1p1p1p1", "pw1pw1pw1"))
    assert one == spec_hash_of(issue_spec("zzzzzzzzzz", "kjihgfedcba", "p2p2p2p2", "other-pw"))  # a rotated key
    assert one != spec_hash_of(issue_spec("a1b2c3d4e5", "abcdefghijk", "p1p1p1p1", "pw1pw1pw1", port=9000))
    plain = {"name": "s", "models": {"m": model(api_base="https://host/v1")}}
    assert without_credentials(plain) == plain  # a spec without credentials hashes as it always did


def test_the_request_hash_depends_on_no_credential():
    from engine.execute.gateway import ChatRequest
    from engine.spec.schema import ModelEntry

    def request(password: str, header: str) -> ChatRequest:
        entry = ModelEntry.model_validate({
            "litellm_id": "openai/m", "display_name": "M", "provider": "P", "family": "F", "route": "r",
            "params": {"total_b": 1.0}, "price": {"input_per_mtok": 0, "output_per_mtok": 0},
            "api_base": f"https://u:{password}@host/v1",
            "extra_params": {"extra_headers": {"Authorization": f"Bearer {header}"}, "top_k": 5}})
        return ChatRequest("m", entry, [{"role": "user", "content": "hi"}], 0.0, 1.0, 16, 1)

    assert request("pw-one", "h-one").request_hash == request("pw-two", "h-two").request_hash


def test_registered_secrets_are_masked_in_whatever_echoes_them():
    spec = issue_spec("hdr-echo-77", "bearer-echo-77", "param-echo-77", "pw-echo-77")
    register_spec_secrets(spec)
    basic = base64.b64encode(b"user:pw-echo-77").decode()
    echoed = f"you sent hdr-echo-77, bearer-echo-77, param-echo-77, pw-echo-77 and Basic {basic}"
    assert redact(echoed) == f"you sent {MASK}, {MASK}, {MASK}, {MASK} and Basic {MASK}"


def test_any_url_credentials_are_masked_in_any_stored_string():
    assert redact("cannot connect to http://bob:hunter2@h:1/v1 (or https://tok3n@h/x)") == \
        f"cannot connect to http://{MASK}@h:1/v1 (or https://{MASK}@h/x)"
    assert redact("write to bob@example.com") == "write to bob@example.com"


def test_overrides_and_command_lines():
    assert redact_override("models.m.api_base='http://u:pw12345@h/v1'") == f"models.m.api_base='http://{MASK}@h/v1'"
    assert redact_override("+models.m.extra_params.extra_headers.Authorization=Token abc") == \
        f"+models.m.extra_params.extra_headers.Authorization={MASK}"
    assert redact_override("models.m.extra_params={API_KEY: zzz, top_k: 5}") == \
        f"models.m.extra_params={{API_KEY: {MASK}, top_k: 5}}"
    assert redact_override("design.seeds=3") == "design.seeds=3"
    assert redact_override("models.m.api_key_env=MY_VAR") == "models.m.api_key_env=MY_VAR"
    command = "python -m engine run s 'models.m.extra_params.extra_headers.X-Api-Key=k k' generation.max_tokens=9"
    assert redact_command(command) == (f"python -m engine run s 'models.m.extra_params.extra_headers.X-Api-Key={MASK}'"
                                       " generation.max_tokens=9")
    # the text alone decides a shard's name: the same in every process, whatever its environment
    assert override_without_credentials("m.api_base=http://u:p@h") == f"m.api_base=http://{MASK}@h"


def test_a_yaml_file_is_rewritten_without_its_secrets(tmp_path):
    path = tmp_path / "multirun.yaml"
    path.write_text("hydra:\n  overrides:\n    task:\n    - models.m.api_base=http://u:pw-yaml-1@h/v1\n"
                    "    - models.m.extra_params.API_KEY=yaml-key-1\n  job:\n"
                    "    override_dirname: models.m.extra_params.API_KEY=yaml-key-1,x=1\n"
                    "models:\n  m:\n    extra_params:\n      extra_headers:\n"
                    "        Authorization: Bearer yaml-bearer\n"
                    "generation:\n  max_tokens: 9\n")
    redact_yaml_file(path)
    text = path.read_text()
    assert "pw-yaml-1" not in text and "yaml-key-1" not in text and "yaml-bearer" not in text
    assert "max_tokens: 9" in text and "override_dirname: models.m.extra_params.API_KEY=" in text


def test_log_records_are_masked():
    record = logging.LogRecord("hydra", logging.INFO, __file__, 1, "\t#%d : %s", (0, "m.api_base=http://u:pw-log-1@h"),
                               None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"\t#0 : m.api_base=http://{MASK}@h"
