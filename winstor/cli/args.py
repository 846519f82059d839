"""argparse pieces every subcommand shares: number types that refuse nonsense, help.

Python's float() reads "nan", "inf", "-Infinity" and "1e999" (which overflows to inf)
as numbers, and every comparison with NaN is false, so a bare `value <= 0` test lets NaN
through and a wait of `inf` never ends. Every numeric option goes through `finite`.
"""

from __future__ import annotations

import argparse
import math
import re

from winstor.errors import UsageError

__all__ = ["UsageError", "finite", "go_duration", "help_of", "positive_int", "positive_seconds",
           "time_scale"]


def finite(text: str) -> float:
    """argparse type: a finite number (no NaN, no infinity), or one line saying why not."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1, or one line saying why not."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


MAX_CLUSTERS = 16
"""Most clusters one embedded cluster or control plane serves (as `--sim-clusters`): a
fleet beyond it is several runs, or real clusters."""


def cluster_count(text: str) -> int:
    """argparse type: how many clusters to serve, 1 to MAX_CLUSTERS."""
    value = positive_int(text)
    if value > MAX_CLUSTERS:
        raise argparse.ArgumentTypeError(f"at most {MAX_CLUSTERS}: {value}")
    return value


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds above zero."""
    value = finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def time_scale(text: str) -> float:
    """argparse type: the factor on modelled latencies, 0 to 10."""
    value = finite(text)
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10: {value:g}")
    return value


# Go's time.ParseDuration, which kind's --wait uses: "0", or numbers with units.
_GO_DURATION = re.compile(r"0|(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+")


def go_duration(text: str) -> str:
    """argparse type: a duration as Go reads it (180s, 5m, 1h30m), checked before anything
    is started rather than by kind after the moto server and state directory exist."""
    if not _GO_DURATION.fullmatch(text.strip()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use e.g. 180s, 5m, 1h30m)")
    return text.strip()


def help_of(parser: argparse.ArgumentParser) -> int:
    """What a command group does when called bare: its help, and the usage exit code."""
    parser.print_help()
    return 2
