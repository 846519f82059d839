"""Say on the terminal which phase a cluster is in while a phase runs long.

A serial run on EKS can sit for minutes in one phase (pulling a Windows image,
attaching a volume) with nothing on the terminal, which looks like a hang.
`PhaseTicker` is a daemon thread that reads each cluster's timeline once a
second and names a phase once it has run `WAIT_NOTICE` seconds, and again
every twice that while it lasts. `winstor.plugin.reports` starts it at session
start and stops it at session finish. If the terminal goes away (a closed pipe),
the ticker stops and says so in `failed`, which the summary prints; any other
error ends the thread through pytest's unhandled-thread-exception warning.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

WAIT_NOTICE = 15.0  # seconds a phase runs before the terminal says so


class PhaseTicker(threading.Thread):
    """Says on the terminal which phase each cluster is in when a phase runs long
    (pulling a Windows image takes minutes on EKS). Serial runs only: xdist workers
    cannot write to the terminal."""

    def __init__(self, state: Any, write: Callable[[str], None],
                 notice: float = WAIT_NOTICE) -> None:
        super().__init__(name="winstor-phase-ticker", daemon=True)
        self.state, self.write, self.notice = state, write, notice
        self._halt = threading.Event()
        self._said: dict[int, float] = {}
        self.failed: str | None = None  # why the notices stopped early, for the summary

    def stop(self) -> None:
        self._halt.set()

    def lines(self, now: float) -> list[str]:
        out = []
        for name, cluster in list(self.state.clusters.items()):
            for phase in list(cluster.timeline):
                if phase.end is not None:
                    continue
                running = now - phase.start
                last = self._said.get(id(phase))
                if running >= self.notice and (last is None or now - last >= 2 * self.notice):
                    self._said[id(phase)] = now
                    detail = f" ({phase.detail})" if phase.detail else ""
                    out.append(f"winstor: {name}: {phase.name}{detail} for {running:.0f}s")
        return out

    def run(self) -> None:
        while not self._halt.wait(1.0):
            try:
                for line in self.lines(time.time()):
                    self.write(line)
            except (OSError, ValueError) as err:  # a closed pipe, a closed file
                self.failed = f"the notices on long phases stopped: {type(err).__name__}: {err}"
                return
