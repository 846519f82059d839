"""What `winstor janitor` prints: one line per object as it is settled, then a summary.

The cluster sweep and the EBS sweep report into the same `Report`, so the lines of
both line up and one count of failures decides the command's exit status.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KIND_NAMES = {"namespace": ("namespace", "namespaces"),
              "pv": ("persistent volume", "persistent volumes"),
              "storageclass": ("storage class", "storage classes"),
              "ebs": ("EBS volume", "EBS volumes")}


def counted(n: int, singular: str, plural: str) -> str:
    """`1 pod`, `3 pods`."""
    return f"{n} {singular if n == 1 else plural}"


def one_line(err: BaseException) -> str:
    """An error as one short line: its first line, or its type's name if it has none."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


@dataclass
class Report:
    """One line per object as it is settled, then a summary; failures decide the exit code."""

    dry_run: bool
    out: Any = field(default_factory=lambda: sys.stdout)
    removed: Counter[str] = field(default_factory=Counter)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def _line(self, verb: str, where: str, what: str, detail: str = "") -> None:
        print(f"{verb:<13} {where:<14} {what}{(': ' + detail) if detail else ''}",
              file=self.out, flush=True)

    def gone(self, where: str, kind: str, name: str, detail: str = "") -> None:
        self.removed[kind] += 1
        self._line("would remove" if self.dry_run else "removed", where, f"{kind}/{name}",
                   detail)

    def keep(self, where: str, kind: str, name: str, why: str) -> None:
        self.kept.append(f"{kind}/{name}")
        self._line("kept", where, f"{kind}/{name}", why)

    def fail(self, where: str, what: str, why: str) -> None:
        self.failed.append(f"{where} {what}: {why}")
        self._line("NOT REMOVED", where, what, why)

    def note(self, where: str, text: str) -> None:
        self._line("note", where, text)

    def summary(self) -> str:
        total = sum(self.removed.values())
        parts = ", ".join(counted(n, *KIND_NAMES.get(k, (k, k))) for k, n in self.removed.items())
        verb = "would remove" if self.dry_run else "removed"
        text = f"janitor: {verb} {counted(total, 'object', 'objects')}" + (
            f" ({parts})" if parts else "")
        if self.kept:
            text += f"; kept {len(self.kept)} still in use"
        if self.failed:
            text += f"; {len(self.failed)} could not be removed"
        if self.dry_run:
            text += "; dry run, nothing was changed"
        return text
