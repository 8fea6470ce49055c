"""Every subcommand the parser offers has a handler, and no handler is left without a subcommand."""

import argparse

from engine.cli import COMMANDS, _parser


def test_every_subcommand_has_a_handler():
    subcommands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert sorted(subcommands) == sorted(COMMANDS)
