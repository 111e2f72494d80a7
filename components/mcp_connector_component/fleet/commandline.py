"""Argument parsing that reads like kubectl: short usage, examples, flags; errors that never echo values.

argparse's own messages quote the offending words, which for a mistyped ``--tokn <value>``
would print the token. Unknown flags are reported here by name only, and every other
problem names the flag, never its value.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn


class UsageError(Exception):
    """Bad command-line input; the message names flags, never values."""


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose help is ``description, Examples, Flags, Usage`` like kubectl's."""

    def __init__(self, *, prog: str, usage: str, description: str, examples: str) -> None:
        super().__init__(prog=prog, usage=usage, description=description, add_help=False, allow_abbrev=False)
        self.examples = examples
        self.add_argument("-h", "--help", action="store_true", help="help for " + prog.split()[-1])

    def _get_formatter(self) -> argparse.HelpFormatter:
        return argparse.HelpFormatter(self.prog, max_help_position=42, width=120)

    def format_help(self) -> str:
        """kubectl's layout: what it does, examples, flags, usage."""
        formatter = self._get_formatter()
        flags = [a for group in self._action_groups for a in group._group_actions if a.option_strings]
        formatter.start_section("Flags")
        formatter.add_arguments(flags)
        formatter.end_section()
        flag_text = formatter.format_help().rstrip().replace("Flags:", "", 1).strip("\n")
        return (
            f"{self.description}\n\nExamples:\n{self.examples.rstrip()}\n\nFlags:\n{flag_text}\n\n"
            f'Usage:\n  {self.usage}\n\nUse "{self.prog.split()[0]} --help" for the other commands.\n'
        )

    def error(self, message: str) -> NoReturn:
        """Never echo values: say which flag, and where the help is."""
        raise UsageError(_without_values(message))

    def parse(self, argv: Sequence[str]) -> argparse.Namespace | None:
        """Parse ``argv``; None when help was asked for (and printed). Raises UsageError."""
        if "-h" in argv or "--help" in argv:
            sys.stdout.write(self.format_help())
            return None
        args, unknown = self.parse_known_args(list(argv))
        flags = [u.split("=", 1)[0] for u in unknown if u.startswith("-")]
        if flags:
            raise UsageError(f"unknown flag: {flags[0]}")
        if unknown:
            raise UsageError(f"unexpected argument {len(unknown)} after the positional arguments")
        return args


def _without_values(message: str) -> str:
    """Drop quoted values from argparse messages ("invalid int value: 'x'")."""
    for marker in (": '", ' "'):
        if marker in message and "invalid" in message:
            return message.split(marker, 1)[0]
    return message


def fail(prog: str, message: str, *, usage: bool = False) -> int:
    """Print ``error: ...`` (and where the help is) to stderr; returns the exit status."""
    sys.stderr.write(f"error: {message}\n")
    if usage:
        sys.stderr.write(f"See '{prog} --help' for usage.\n")
        return 2
    return 1
