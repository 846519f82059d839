"""Errors the person running winstor caused: shown as one line, never a traceback."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""
