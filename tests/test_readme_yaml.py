"""The README's YAML blocks are what a reader copies: each one that is not marked as elided (a `# ...`
line or a `, ...}`) parses; a block headed by the path of a shipped file shows that file's values; a
model entry composes into a study and plans; the study file and the sweep block compose; every
claim of the claims block validates in a shipped study whose scenario has its metric."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml

from engine import load_study
from engine.cli import main
from engine.kernel.errors import SpecError
from engine.kernel.paths import CONFIG_PATH_ENV, REPO_ROOT
from engine.spec.load import add_config_dirs

README = REPO_ROOT / "README.md"


def blocks() -> list[tuple[int, str]]:
    """(line number, text) of every ```yaml block, indented ones (inside a list item) dedented."""
    out, lines = [], README.read_text().splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```yaml":
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            out.append((start + 1, textwrap.dedent("\n".join(body)) + "\n"))
        i += 1
    return out


def elided(text: str) -> bool:
    return any(line.strip().startswith("# ...") for line in text.splitlines()) or ", ...}" in text


def header_path(text: str) -> str | None:
    first = text.splitlines()[0].strip()
    m = re.fullmatch(r"#\s+([\w./-]+\.yaml)", first)
    return m[1] if m else None


ALL = blocks()
WHOLE = [(line, text) for line, text in ALL if not elided(text)]


def test_the_readme_has_its_blocks():
    assert len(ALL) >= 9 and len(WHOLE) >= 6


@pytest.mark.parametrize("line, text", ALL, ids=[f"line{n}" for n, _ in ALL])
def test_every_whole_block_parses(line, text):
    if elided(text):
        pytest.skip("marked as elided")
    assert isinstance(yaml.safe_load(text), dict), f"README.md:{line}"


def _leaves(tree, prefix=()):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, (*prefix, k))
    else:
        yield prefix, tree


def _at(tree, path):
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return KeyError
        tree = tree[part]
    return tree


SHIPPED = [(line, text, header_path(text)) for line, text in WHOLE
           if header_path(text) and (REPO_ROOT / header_path(text)).exists()]


@pytest.mark.parametrize("line, text, path", SHIPPED, ids=[p for _, _, p in SHIPPED])
def test_a_block_headed_by_a_shipped_file_shows_its_values(line, text, path):
    shown, real = yaml.safe_load(text), yaml.safe_load((REPO_ROOT / path).read_text())
    for key, value in _leaves(shown):
        if isinstance(value, str) and "..." in value:
            continue  # a value the README shortens on purpose
        assert _at(real, key) == value, f"README.md:{line}: {'.'.join(key)} is {value!r}, {path} has {_at(real, key)!r}"


@pytest.fixture()
def lab(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_PATH_ENV, "")
    conf, studies = tmp_path / "conf", tmp_path / "studies"
    for folder in (conf / "model", conf / "model_set", studies):
        folder.mkdir(parents=True)
    add_config_dirs([str(conf)])
    return conf, studies


MODEL_ENTRIES = [(line, text) for line, text in WHOLE if "litellm_id" in yaml.safe_load(text)]


@pytest.mark.parametrize("line, text", MODEL_ENTRIES, ids=[f"line{n}" for n, _ in MODEL_ENTRIES])
def test_a_model_entry_block_plans_in_a_study(lab, line, text, capsys, monkeypatch):
    conf, _ = lab
    entry = yaml.safe_load(text)
    if entry.get("api_key_env"):
        monkeypatch.setenv(entry["api_key_env"], "test-value")
    (conf / "model" / "from_readme.yaml").write_text(text)
    (conf / "model_set" / "readme_set.yaml").write_text("models: [from_readme]\n")
    code = main(["plan", "model_size", "model_set=readme_set"])
    assert code == 0, f"README.md:{line}: {capsys.readouterr()}"
    assert entry["display_name"] in capsys.readouterr().out


def test_the_study_block_composes_and_plans(lab, capsys):
    _, studies = lab
    (line, text), = [(n, t) for n, t in WHOLE if header_path(t) == "studies/model_size.yaml"]
    (studies / "readme_study.yaml").write_text(text.replace("name: model_size", "name: readme_study"))
    assert main(["plan", str(studies / "readme_study.yaml")]) == 0, f"README.md:{line}"


def test_the_sweep_block_composes_in_a_study(lab):
    _, studies = lab
    (line, text), = [(n, t) for n, t in WHOLE if "sweeper" in t]
    study = (REPO_ROOT / "studies" / "model_size.yaml").read_text() + "\n" + text
    (studies / "model_size.yaml").write_text(study)
    loaded = load_study(str(studies / "model_size.yaml"))
    assert dict(loaded.sources.sweeper_params) == {k: str(v) for k, v in
                                                   yaml.safe_load(text)["hydra"]["sweeper"]["params"].items()}


def test_every_claim_of_the_claims_block_validates_in_a_shipped_study(lab):
    _, studies = lab
    (line, text), = [(n, t) for n, t in WHOLE if "claims" in (yaml.safe_load(t).get("report") or {})]
    for claim in yaml.safe_load(text)["report"]["claims"]:
        accepted = []
        for path in sorted((REPO_ROOT / "studies").glob("*.yaml")):
            data = yaml.safe_load(path.read_text())
            if not data.get("report", {}).get("claims"):
                continue
            data["report"]["claims"] = [claim]
            (studies / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
            try:
                load_study(str(studies / path.name))
            except SpecError:
                continue
            accepted.append(path.stem)
        assert accepted, f"README.md:{line}: no shipped study accepts the claim {claim['claim']!r}"
