"""`python -m bench [--rounds N]`: how fast the embedded cluster is to use.

Measures, against fresh `winstor sim up` processes:
- ready: wall time from starting the process until its kubeconfig exists
  (written only once every cluster answered an HTTPS request);
- exec round trip: one `hostname` exec into a running Windows pod over the
  websocket protocol, median and 90th percentile.
Prints one table. Numbers vary with the machine; run it on a quiet one.
"""

from __future__ import annotations

import argparse
import statistics
import time

from winstor import execs
from winstor.kube import PODS, Api
from winstor.launcher import SimProcess
from winstor.waits import pod_ready, wait_for


def _ready_seconds(clusters: int) -> float:
    sim = SimProcess(clusters, [])
    started = time.monotonic()
    sim.start()
    took = time.monotonic() - started
    sim.stop()
    return took


def _exec_round_trips(samples: int) -> list[float]:
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
            assert out.exit_code == 0
        return times
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="sim starts per size (default 3)")
    parser.add_argument("--execs", type=int, default=30, help="exec samples (default 30)")
    args = parser.parse_args()
    rows = []
    for n in (1, 2):
        ready = [_ready_seconds(n) for _ in range(args.rounds)]
        rows.append((f"winstor sim up --clusters {n}: ready", f"{statistics.median(ready):.2f} s",
                     f"min {min(ready):.2f} s, max {max(ready):.2f} s", "< 2 s"))
    rt = sorted(_exec_round_trips(args.execs))
    p90 = rt[int(len(rt) * 0.9) - 1]
    rows.append(("exec round trip (hostname)", f"{statistics.median(rt) * 1000:.1f} ms",
                 f"p90 {p90 * 1000:.1f} ms", "< 20 ms"))
    widths = [max(len(r[i]) for r in [*rows, ("measure", "median", "spread", "target")])
              for i in range(4)]
    header = ("measure", "median", "spread", "target")
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
