"""Scenario plug-ins, one folder each (code, metrics, analyses, report sections, gold sets, config
groups, migrations). The kernel registry imports every module here (this package is an entry point
of the `engine.plugins` group); nothing else names them."""
