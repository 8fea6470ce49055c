"""Scenario plug-ins, one folder each (code, metrics, analyses, report sections, gold sets, config
groups, migrations). The kernel registry imports every package here; nothing else names them."""
