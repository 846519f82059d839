"""Modelled latencies of the slow things on EKS, scaled for the embedded cluster.

The unscaled figures are what a Windows node group on EKS typically shows;
`--time-scale` shrinks them all alike so that ordering and relative timeouts
behave as on EKS while a run takes seconds. The benchmarks read the unscaled
sums back to model the EKS critical path.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

# Seconds on a real cluster.
EKS_LATENCY: dict[str, float] = {
    "image_pull:servercore": 240.0,   # ~2.5 GB compressed ltsc2019/ltsc2022 layers
    "image_pull:hostprocess": 4.0,    # the tiny HostProcess base image
    "image_pull:other": 8.0,
    "ebs_create": 6.0,
    "ebs_attach": 12.0,
    "ebs_detach": 10.0,
    "ntfs_format": 8.0,
    "pod_sandbox:windows": 15.0,      # HNS endpoint + pause container
    "pod_sandbox:linux": 2.0,
    "container_start:windows": 6.0,
    "container_start:linux": 1.0,
    "container_stop": 5.0,
}


@dataclass
class Clock:
    scale: float = 0.002
    modelled: Counter[str] = field(default_factory=Counter)

    async def spend(self, what: str, seconds: float | None = None) -> None:
        real = EKS_LATENCY[what] if seconds is None else seconds
        self.modelled[what] += real
        if self.scale > 0:
            await asyncio.sleep(real * self.scale)
