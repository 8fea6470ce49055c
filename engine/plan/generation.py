"""Generation settings per design cell. The rule, written once: a `temperature` factor (or a
controls block's `temperature`) overrides the study's `generation.temperature` in its cells."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.spec.schema import StudySpec

TEMPERATURE = "temperature"


def cell_generation(spec: "StudySpec", cell: dict[str, Any]) -> dict[str, Any]:
    """The generation settings a cell's models sample with (hashed into its trials' ids)."""
    generation = spec.generation.model_dump()
    if TEMPERATURE in cell:
        generation[TEMPERATURE] = float(cell[TEMPERATURE])
    return generation


def model_inputs(spec: "StudySpec", cell: dict[str, Any]) -> dict[str, Any]:
    """The outcome-determining facts of a cell's model (for trial ids): its id, weights and the
    cell's generation settings."""
    key = str(cell["model"])
    model = spec.models[key]
    return {"model_key": key, "litellm_id": model.litellm_id,
            "weights_sha256": model.weights.sha256 if model.weights else None,
            "generation": cell_generation(spec, cell)}


def temperature_levels(spec: "StudySpec") -> list[Any]:
    """The temperatures the design sets per cell (empty when every cell uses the study's)."""
    blocks = [spec.design.factors, *spec.design.controls]
    return list(dict.fromkeys(level for block in blocks for level in block.get(TEMPERATURE, [])))


def generation_settings(spec: "StudySpec") -> list[tuple[str, Any]]:
    """(setting, value) rows for the methods table; a temperature the design varies is shown as such."""
    g = spec.generation
    levels = temperature_levels(spec)
    if levels:
        every_cell = TEMPERATURE in spec.design.factors and all(TEMPERATURE in c for c in spec.design.controls)
        shown = "design factor: " + ", ".join(f"{float(v):g}" for v in levels)
        temperature = shown if every_cell else f"{g.temperature} ({shown})"
    else:
        temperature = g.temperature
    return [(TEMPERATURE, temperature), ("top_p", g.top_p), ("max_tokens", g.max_tokens)]
