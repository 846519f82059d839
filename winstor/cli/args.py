"""argparse pieces every subcommand shares: number types that refuse nonsense, help."""

from __future__ import annotations

import argparse

from winstor.errors import UsageError

__all__ = ["UsageError", "help_of", "positive_int", "time_scale"]


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1, or one line saying why not."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def time_scale(text: str) -> float:
    """argparse type: the factor on modelled latencies, 0 to 10."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 10:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between 0 and 10: {value}")
    return value


def help_of(parser: argparse.ArgumentParser) -> int:
    """What a command group does when called bare: its help, and the usage exit code."""
    parser.print_help()
    return 2
