"""Jailbreak scenario: the scenario, its report sections and claim tests. The registry imports every
module here (engine/kernel/registry.py): nothing needs listing."""
