"""`python -m bench.catalog`: the full catalog against the embedded cluster.

For 1, 2 and 4 clusters, serial and with `-n <clusters>` (up to `--max-workers`),
runs the suites against a fresh `winstor sim up` and prints the wall time; then,
from each cluster's `/metrics`, what the run cost: API requests, pods and
persistent volumes created, image pulls, and the modelled EKS seconds the sim
spent (summed per kind of work, not a critical path).

This measures; it does not judge. The targets of the performance issue are
printed beside the figures for comparison.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from winstor.kube import Api
from winstor.launcher import SimProcess

ROOT = Path(__file__).resolve().parent.parent
METRIC = re.compile(r'^(?P<name>\w+)(?:\{(?P<labels>[^}]*)\})? (?P<value>[0-9.e+-]+)$')


def scrape(api: Api) -> dict[str, Counter[str]]:
    """The sim's /metrics folded into a few totals."""
    text = api.raw("GET", "/metrics", stream=True).data.decode()
    out: dict[str, Counter[str]] = {"requests": Counter(), "created": Counter(),
                                    "pulls": Counter(), "modelled": Counter()}
    for line in text.splitlines():
        m = METRIC.match(line.strip())
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group("labels") or ""))
        value = float(m.group("value"))
        name = m.group("name")
        if name == "apiserver_request_total":
            out["requests"][labels.get("verb", "?")] += int(value)
        elif name == "winstor_sim_objects_created_total":
            out["created"][labels.get("kind", "?")] += int(value)
        elif name == "winstor_sim_image_pulls_total":
            out["pulls"][labels.get("image", "?")] += int(value)
        elif name == "winstor_sim_modelled_seconds_total":
            out["modelled"][labels.get("what", "?")] += value
    return out


def run_catalog(clusters: int, workers: int) -> tuple[float, int, dict[str, dict]]:
    sim = SimProcess(clusters, [])
    sim.start()
    try:
        contexts = [a for c in sim.contexts for a in ("--context", c)]
        before = {c: scrape(Api.from_kubeconfig(str(sim.kubeconfig), c))
                  for c in sim.contexts}
        with tempfile.TemporaryDirectory() as reports:
            env = {**os.environ, **sim.aws_env, "WINSTOR_REPORT_DIR": reports}
            args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly",
                    f"--kubeconfig={sim.kubeconfig}", *contexts]
            if workers > 1:
                args += ["-n", str(workers)]
            started = time.monotonic()
            proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
            wall = time.monotonic() - started
        costs = {}
        for c in sim.contexts:
            after = scrape(Api.from_kubeconfig(str(sim.kubeconfig), c))
            costs[c] = {k: after[k] - before[c][k] for k in after}
        return wall, proc.returncode, costs
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.catalog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--max-workers", type=int, default=4)
    args = parser.parse_args()
    print(f"{'clusters':>8} {'workers':>7} {'wall s':>7} {'exit':>4}  per cluster: "
          "requests, pods, PVs, image pulls, modelled EKS s (pull/attach/provision)")
    for n in args.clusters:
        for workers in sorted({1, min(n, args.max_workers)}):
            wall, code, costs = run_catalog(n, workers)
            first = True
            for ctx, cost in costs.items():
                m = cost["modelled"]
                line = (f"{ctx}: {sum(cost['requests'].values())} req, "
                        f"{cost['created'].get('Pod', 0)} pods, "
                        f"{cost['created'].get('PersistentVolume', 0)} PVs, "
                        f"{sum(cost['pulls'].values())} pulls, "
                        f"{sum(v for k, v in m.items() if k.startswith('image_pull')):.0f}/"
                        f"{m.get('ebs_attach', 0):.0f}/{m.get('ebs_create', 0):.0f}")
                head = f"{n:>8} {workers:>7} {wall:>7.1f} {code:>4}" if first else " " * 29
                print(f"{head}  {line}")
                first = False
    print("targets (performance issue): <= 4 Windows pod starts and exactly 1 EBS volume "
          "per cluster; 4 clusters with -n 4 within 1.5x the time of 1 cluster")


if __name__ == "__main__":
    main()
