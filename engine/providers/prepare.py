"""Before any trial starts: check local models' weights and register them (fail fast, not mid-run)."""

from __future__ import annotations

from engine.spec.schema import ModelEntry


def prepare_models(models: dict[str, ModelEntry], used: set[str], local_threads: int) -> None:
    """Check weights and register local models before any trial starts (fail fast, not mid-run)."""
    from engine.providers.local_llama import install_litellm_handler, local_provider, locate_weights

    local = {k: models[k] for k in sorted(used) if models[k].weights is not None}
    if not local:
        return
    install_litellm_handler()
    for model in local.values():
        path = locate_weights(model.weights)
        local_provider().register(model.litellm_id.split("/", 1)[1], path, model.context_window, local_threads)
