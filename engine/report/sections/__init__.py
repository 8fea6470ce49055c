"""The engine's own report sections, one module per section or family (builtin.py: the frame and the
headline results). Each registers its classes with `@register_section`; the registry imports every
module here (the `engine.plugins` entry point `sections`), so nothing needs listing."""
