"""Secrets in a study's own text: what of a resolved spec, an override or a command line may be
stored, hashed or printed.

A spec carries secrets in three ways, whatever its author intended: the value of a key whose name
says so (an `Authorization` header built from `${oc.env:VAR}`, an `API_KEY` in `extra_params`, a
cookie), credentials in a URL (`https://user:password@host/v1`), and strings shaped like keys or
equal to a key variable's value (engine/kernel/redaction.py). `redact_spec` masks all three in what
is stored; `without_credentials` masks all but the variables' values, which the spec alone decides,
in what is hashed (so a spec's hash neither changes with a rotated key nor lets anyone test guesses
of a weak password against it); `register_spec_secrets` makes the process's redactor mask those
values wherever else they turn up (a provider echoing a header back in its reply or its error).
"""

from __future__ import annotations

import base64
import logging
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from engine.kernel.redaction import MASK, key_shaped, mask_key_shapes, redact, redactor

# Words of a mapping key that say its value is a secret (whole words of the key's name).
SECRET_WORDS = frozenset({"key", "keys", "apikey", "token", "secret", "secrets", "password", "passwords", "passwd",
                          "passphrase", "pwd", "authorization", "auth", "cookie", "cookies", "credential",
                          "credentials", "bearer"})
# The same inside a longer word ("xapikey", "authtoken", "clientsecret", "setcookie").
SECRET_PARTS = ("apikey", "accesskey", "secretkey", "privatekey", "token", "secret", "password", "passwd",
                "authorization", "cookie", "credential")
# Words that contain a secret part and name no secret: a count of tokens, a tokenizer.
NOT_SECRET_WORDS = re.compile(r"^(?:\w*tokens|tokeniz\w*)$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORDS = re.compile(r"[^a-z0-9]+")
# An authorization value: a scheme, then the credential ("Bearer abc", "Token abc", "Basic dXNl...").
_SCHEME_VALUE = re.compile(r"^\s*[A-Za-z][\w-]*\s+(\S+)\s*$")
# `name=value` or `name: value` in free text (an override, a YAML line, Hydra's override_dirname).
_ASSIGNMENT = re.compile(
    r"(?P<name>[A-Za-z_][\w.\-]*)(?P<q>[\"']?)(?P<op>\s*[:=]\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|(?:(?:Bearer|Basic|Token|Digest|Bot)\s+)?[^\s,;{}\[\]\"']+)")


def is_secret_name(name: str) -> bool:
    """Whether a mapping key's name says its value is a secret (case-insensitive; `X-Api-Key`,
    `API_KEY`, `authToken`, `Set-Cookie`, `password`). A name ending in `_env` names a variable, and
    holds no value (`api_key_env`)."""
    words = [w for w in _WORDS.split(_CAMEL.sub(" ", str(name)).lower()) if w]
    if not words or words[-1] == "env":
        return False
    for word in words:
        if NOT_SECRET_WORDS.match(word):
            continue
        if word in SECRET_WORDS or any(part in word for part in SECRET_PARTS):
            return True
    return False


def is_secret_path(path: str) -> bool:
    """Whether a dotted key (`models.m.extra_params.extra_headers.Authorization`) holds a secret."""
    return any(is_secret_name(part) for part in re.split(r"[.@/]", path.lstrip("+~")) if part)


def _masked(value: Any, text: Callable[[str], str], secret: bool = False) -> Any:
    if isinstance(value, dict):
        return {k: _masked(v, text, secret or is_secret_name(str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v, text, secret) for v in value]
    if secret and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return MASK  # a number can be a password too (YAML reads 123456 as one)
    if isinstance(value, str):
        return text(value)
    return value


def without_credentials(tree: Any) -> Any:
    """`tree` with the values of secret-named keys, key-shaped strings and every URL's credentials
    masked: a function of the tree alone (not of the environment), for the spec's hash."""
    return _masked(tree, mask_key_shapes)


def redact_spec(tree: Any) -> Any:
    """`tree` as it may be stored or printed: secret-named values masked, and every string redacted
    (URL credentials, key shapes, the values of key variables and of registered secrets)."""
    return _masked(tree, lambda s: redact(s) or "")


def spec_secrets(tree: Any) -> list[str]:
    """The secret values a spec holds, in the forms they may come back in: each secret-named value (and
    the credential of an `Authorization`-like "Scheme credential"), each key-shaped string (and the
    credential of a "Bearer ..."), each URL's user info, its password
    (or its user name when it has no password; percent-decoded too, as a client sends them) and its
    HTTP Basic form."""
    found: list[str] = []

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, secret or is_secret_name(str(k)))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, secret)
        elif secret and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            found.extend(_with_credential(str(value).strip()))
        elif isinstance(value, str):
            for shaped in key_shaped(value):  # a literal "Bearer ..." under any name
                found.extend(_with_credential(shaped))
            for info in re.findall(r"(?<=://)([^/?#\s\"'<>]+)@", value):
                user, colon, password = info.partition(":")
                plain = f"{unquote(user)}:{unquote(password)}"
                # A user name alone is the credential when there is no password (a token as user).
                parts = [password, unquote(password)] if colon else [user, unquote(user)]
                found.extend([info, plain, *parts, base64.b64encode(plain.encode()).decode()])

    walk(tree, False)
    return [v for v in dict.fromkeys(found) if v and v != MASK]


def _with_credential(value: str) -> list[str]:
    """A secret, and its credential alone if it reads "Scheme credential" (sent or echoed apart)."""
    scheme = _SCHEME_VALUE.match(value)
    return [value, scheme[1]] if scheme else [value]


def register_spec_secrets(tree: Any) -> None:
    """Mask the spec's secrets in everything this process stores or prints from now on."""
    process = redactor()
    for value in spec_secrets(tree):
        process.add(value)


def mask_assignments(text: str) -> str:
    """`text` with the value of every `name=value` / `name: value` whose name says secret masked."""
    if "=" not in text and ":" not in text:
        return text
    out, at = [], 0
    while (m := _ASSIGNMENT.search(text, at)) is not None:
        if is_secret_path(m["name"]):
            quote = m["value"][0] if m["value"][:1] in ("'", '"') else ""
            out.append(f"{text[at:m.start('value')]}{quote}{MASK}{quote}")
            at = m.end()
        else:  # the value may hold an assignment of its own ("Error: a.Authorization=...")
            out.append(text[at:m.end("op")])
            at = m.end("op")
    return "".join(out) + text[at:]


def redact_override(override: str) -> str:
    """A Hydra override as it may be stored or printed: the whole value of a secret-named key masked,
    any other value redacted (`models.m.api_base=https://[REDACTED]@host/v1`)."""
    name, eq, value = override.partition("=")
    if eq and is_secret_path(name.strip()):
        return f"{name}={MASK}"
    if eq:
        return f"{name}={mask_assignments(redact(value))}"
    return mask_assignments(redact(override))


def override_without_credentials(override: str) -> str:
    """An override with a secret-named key's value and URL credentials masked: a function of the text
    alone, for names and hashes derived from overrides (a sweep job's shard)."""
    name, eq, value = override.partition("=")
    if eq and is_secret_path(name.strip()):
        return f"{name}={MASK}"
    return mask_assignments(mask_key_shapes(override))


def redact_setting(key: str, value: str) -> str:
    """The value an override gives `key`, as it may be stored or printed (a sweep's swept values)."""
    return redact_override(f"{key}={value}").partition("=")[2]


def redact_command(command: str) -> str:
    """A command line as it may be stored or printed: each argument redacted as an override."""
    try:
        words = shlex.split(command)
    except ValueError:  # unbalanced quotes: redact it as text
        return mask_assignments(redact(command))
    return shlex.join(redact_override(w) for w in words)


def redact_yaml_file(path: Path) -> None:
    """Rewrite a YAML file another tool wrote (Hydra's multirun.yaml) with its secrets masked; atomic,
    so a reader never sees half a file. A file that does not parse is redacted line by line."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    try:
        redacted = yaml.safe_dump(_masked(yaml.safe_load(text), redact_override), sort_keys=False,
                                  allow_unicode=True)
    except yaml.YAMLError:
        redacted = "".join(redact_override(line) for line in text.splitlines(keepends=True))
    if redacted == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(redacted)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def redact_text(text: str) -> str:
    """Free text (a log line, a message) with secrets and `name=value` secrets masked."""
    return mask_assignments(redact(text) or "")


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in each record it passes (Hydra's logging configs in
    conf/hydra/*_logging/redacted.yaml put it on every handler of a sweep)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        return True
