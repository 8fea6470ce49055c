"""The engine's own judge kinds, one module each, registered with `@register_judge`; the registry
imports every module here (the `engine.plugins` entry point `judges`)."""
