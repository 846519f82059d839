"""Which runs' leftovers `winstor janitor` takes: one run by id, every run older than a
duration, or all of them.

It stands apart from the cluster and AWS sweeps because both ask it the same two
questions - is this object old enough, and which namespace names did a run create -
and must answer them alike, or a volume could be removed while its namespace stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: Namespaces a run creates: `winstor-<run>` and `winstor-<run>-<suffix>` (provision.py).
NAMESPACE_PREFIX = "winstor-"
RUN_NAMESPACE_SUFFIXES = ("", "host")

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LONGEST = 100 * 366 * 86400  # older than any run; more would only overflow the clock


def parse_duration(text: str) -> float:
    """Seconds in `30m`, `2h`, `1d`, `1h30m` (units s, m, h, d, w); ValueError otherwise."""
    spec = text.strip().lower()
    if not spec or _DURATION.sub("", spec):
        raise ValueError(f"--older-than {text!r}: not a duration (use e.g. 45s, 30m, 2h, 1d, "
                         "1h30m)")
    try:
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(spec))
    except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
        seconds = _LONGEST + 1
    if seconds > _LONGEST:  # also before float(), which overflows on a long enough number
        raise ValueError(f"--older-than {text!r}: longer than 100 years (--all removes every "
                         "run's leftovers)")
    if seconds <= 0:
        raise ValueError(f"--older-than {text!r}: must be longer than zero (--all removes "
                         "every run's leftovers)")
    return float(seconds)


def run_namespace_names(run: str) -> set[str]:
    """The namespace names a run with this id creates (see `provision.namespace_name`)."""
    return {f"{NAMESPACE_PREFIX}{run}{('-' + s) if s else ''}"[:63]
            for s in RUN_NAMESPACE_SUFFIXES}


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Selector:
    """Which runs' leftovers to take: one run, every run older than a duration, or all."""

    run: str | None = None
    older_than: float | None = None
    everything: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def describe(self) -> str:
        if self.run:
            return f"run {self.run}"
        if self.older_than is not None:
            return f"runs older than {self.older_than:.0f}s"
        return "all runs"

    def old_enough(self, stamp: Any) -> bool:
        """Whether an object created at `stamp` falls in the selection by age alone."""
        if self.everything:
            return True
        if self.older_than is None:
            return False
        created = _timestamp(stamp)
        return created is not None and (self.now - created).total_seconds() > self.older_than
