"""Agentic-misalignment scenario: the scenario, its structural judges and report sections. The
registry imports every module here (engine/kernel/registry.py): nothing needs listing."""
