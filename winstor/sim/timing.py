"""Modelled latencies of the slow things on EKS, scaled for the embedded cluster.

The unscaled figures are what a Windows node group on EKS typically shows;
`--time-scale` shrinks them all alike so that ordering and relative timeouts
behave as on EKS while a run takes seconds.

The clock also keeps the record the benchmarks need to model the EKS
critical path of a run: every modelled operation is a span that starts when
the sim starts it (real time) and lasts its *nominal* scaled duration
(unscaled seconds times the scale). The critical path is the measure of the union of
those spans, divided by the scale: unscaled seconds during which at least
one modelled operation of the cluster was in progress, overlapping
operations counted once. Using the nominal end (not the moment the sleep
really returned) keeps the event loop's lateness out of the figure. What is
*not* in it: time in which no modelled operation runs - the client thinking,
API round trips, exec probes - because the sim has no EKS figure for those.
Kubelet back-off is modelled waiting and counts; an operation cut short (its
pod deleted mid-pull) still counts its whole nominal span; with
`--time-scale 0` nothing can be seen to overlap and operations count one
after another.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field

# Seconds on a real cluster.
EKS_LATENCY: dict[str, float] = {
    "image_pull:servercore": 240.0,   # ~2.5 GB compressed ltsc2019/ltsc2022 layers
    "image_pull:hostprocess": 4.0,    # the tiny HostProcess base image
    "image_pull:other": 8.0,
    "ebs_create": 6.0,
    "ebs_attach": 12.0,
    "ebs_detach": 10.0,
    "ebs_modify": 10.0,               # ModifyVolume until "optimizing" (the driver's wait)
    "node_expand": 4.0,               # csi-proxy ResizeVolume: Resize-Partition
    "ntfs_format": 8.0,
    "smb_mount": 2.0,                 # New-SmbGlobalMapping (or mount -t cifs) to an SMB share
    "pod_sandbox:windows": 15.0,      # HNS endpoint + pause container
    "pod_sandbox:linux": 2.0,
    "container_start:windows": 6.0,
    "container_start:linux": 1.0,
    "container_stop": 5.0,
    # The namespace controller: from a namespace's DELETE to its removal, content deleted
    # and the "kubernetes" finalizer taken off (about 5 s even when it holds nothing).
    "namespace_finalize": 5.0,
}

# What a run cannot do without, per cluster: one servercore pull, the two
# Windows pod starts the persistence check makes one after the other (the
# second pod must find the first one's files), and one EBS attach cycle.
# Provisioning (ebs_create) and the NTFS format can overlap the pull and are
# left out, as are container stops.
MINIMUM_PARTS: tuple[tuple[str, int], ...] = (
    ("image_pull:servercore", 1),
    ("pod_sandbox:windows", 2), ("container_start:windows", 2),
    ("ebs_attach", 1), ("ebs_detach", 1),
)


def minimum_critical_seconds() -> float:
    """The unavoidable modelled EKS seconds per cluster, from `EKS_LATENCY`."""
    return sum(EKS_LATENCY[what] * n for what, n in MINIMUM_PARTS)


@dataclass(frozen=True)
class Span:
    """One modelled operation: real start (epoch seconds), real end, unscaled seconds."""

    what: str
    start: float
    end: float
    modelled: float


@dataclass
class Union:
    """Measure of a union of intervals that arrive in order of their start.

    Spans start when the sim calls `Clock.spend`, on one event loop, so their
    starts never go backwards and the union can be kept in O(1): a new interval
    either extends the current run of overlapping ones or starts a new run (a
    "wave").
    """

    covered: float = 0.0
    waves: int = 0
    frontier: float = float("-inf")
    # The latest runs as [start, end], for saying what was busy when; bounded.
    runs: deque[list[float]] = field(default_factory=lambda: deque(maxlen=256))

    def add(self, start: float, end: float) -> None:
        if start >= self.frontier:
            self.covered += end - start
            self.waves += 1
            self.frontier = end
            self.runs.append([start, end])
        elif end > self.frontier:
            self.covered += end - self.frontier
            self.frontier = end
            self.runs[-1][1] = end


@dataclass
class Clock:
    scale: float = 0.002
    modelled: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    in_progress: int = 0
    # Unions on the modelled clock (monotonic real time / scale): all operations,
    # and each kind alone (its waves say how many times a pull, say, stood alone).
    critical: Union = field(default_factory=Union)
    by_kind: dict[str, Union] = field(default_factory=dict)
    # The latest spans, for a look at what ran when; bounded for long-lived sims.
    spans: deque[Span] = field(default_factory=lambda: deque(maxlen=10000))
    # Epoch seconds = monotonic seconds + this, to publish busy runs in wall time.
    wall_offset: float = field(default_factory=lambda: time.time() - time.monotonic())

    async def spend(self, what: str, seconds: float | None = None) -> None:
        real = EKS_LATENCY[what] if seconds is None else seconds
        self.modelled[what] += real
        self.operations[what] += 1
        started, wall = time.monotonic(), time.time()
        kind = self.by_kind.setdefault(what, Union())
        for union in (self.critical, kind):
            # With scale 0 nothing sleeps, so no overlap can be seen: one after another.
            at = started / self.scale if self.scale > 0 else max(union.frontier, 0.0)
            union.add(at, at + real)
        self.in_progress += 1
        try:
            if self.scale > 0:
                await asyncio.sleep(real * self.scale)
        finally:
            self.in_progress -= 1
            self.spans.append(Span(what, wall, time.time(), real))

    def samples(self, cluster: str) -> dict[str, float]:
        """Prometheus samples (`name{labels}` -> value) for `/metrics`."""
        c = f'cluster="{cluster}"'
        out: dict[str, float] = {
            f"winstor_sim_modelled_critical_seconds_total{{{c}}}": round(self.critical.covered, 6),
            f"winstor_sim_modelled_in_progress{{{c}}}": self.in_progress,
            f"winstor_sim_time_scale{{{c}}}": self.scale,
        }
        if self.scale > 0:
            # When the cluster had a modelled operation in progress (nominal spans,
            # merged), in epoch seconds: with it a benchmark can tell how much
            # modelled EKS time passed between two moments it observed.
            first = self.critical.waves - len(self.critical.runs)
            for i, (start, end) in enumerate(self.critical.runs, first):
                k = f'{c},run="{i}"'
                out[f"winstor_sim_modelled_busy_start_seconds{{{k}}}"] = round(
                    start * self.scale + self.wall_offset, 6)
                out[f"winstor_sim_modelled_busy_end_seconds{{{k}}}"] = round(
                    end * self.scale + self.wall_offset, 6)
        for what in sorted(self.operations):
            k = f'{c},what="{what}"'
            kind = self.by_kind.get(what, Union())
            out[f"winstor_sim_modelled_seconds_total{{{k}}}"] = round(self.modelled[what], 6)
            out[f"winstor_sim_modelled_operations_total{{{k}}}"] = self.operations[what]
            out[f"winstor_sim_modelled_union_seconds_total{{{k}}}"] = round(kind.covered, 6)
            out[f"winstor_sim_modelled_waves_total{{{k}}}"] = kind.waves
        return out
