"""Escalation wargame scenario: the scenario and its report sections. The registry imports every
module here (engine/kernel/registry.py): nothing needs listing."""
