"""How fast the embedded cluster is to use: readiness and exec round trip.

- ready: wall time from starting `winstor sim up` until its kubeconfig exists
  (written only once every cluster answered an HTTPS request);
- exec round trip: one `hostname` exec into a running Windows pod over the
  websocket protocol.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from winstor.cluster import execs
from winstor.cluster.kube import PODS, Api
from winstor.cluster.waits import pod_ready, wait_for
from winstor.targets.embedded import SimProcess


def ready_seconds(clusters: int) -> float:
    sim = SimProcess(clusters, [])
    started = time.monotonic()
    sim.start()
    took = time.monotonic() - started
    sim.stop()
    return took


def exec_round_trips(samples: int) -> list[float]:
    sim = SimProcess(1, [])
    sim.start()
    try:
        api = Api.from_kubeconfig(str(sim.kubeconfig), "sim-1")
        api.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": "bench-exec", "namespace": "default"},
                          "spec": {"nodeSelector": {"kubernetes.io/os": "windows"},
                                   "containers": [{"name": "c", "image":
                                                   "mcr.microsoft.com/windows/servercore:ltsc2019",
                                                   "command": ["ping", "-t", "localhost"]}]}},
                   "default")
        wait_for(api, PODS, "bench-exec", "default", condition=pod_ready, what="bench pod",
                 timeout=60)
        times = []
        for _ in range(samples):
            started = time.monotonic()
            out = execs.run(api, "default", "bench-exec", ["powershell", "-Command", "hostname"])
            times.append(time.monotonic() - started)
            if out.exit_code != 0:
                raise RuntimeError(f"exec failed with {out.exit_code}: {out.stderr[:200]}")
        return times
    finally:
        sim.stop()


def measure(rounds: int, samples: int, sizes: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """Readiness over `rounds` starts per size and `samples` exec round trips;
    a part asked for zero times is left out."""
    out: dict[str, Any] = {}
    if rounds > 0:
        ready = {n: [ready_seconds(n) for _ in range(rounds)] for n in sizes}
        out["ready"] = {str(n): {"median": statistics.median(v), "min": min(v), "max": max(v),
                                 "samples": v} for n, v in ready.items()}
    if samples > 0:
        rt = sorted(exec_round_trips(samples))
        out["exec"] = {"median": statistics.median(rt),
                       "p90": rt[max(0, int(len(rt) * 0.9) - 1)], "samples": len(rt)}
    return out
