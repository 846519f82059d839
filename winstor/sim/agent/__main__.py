"""`python -m winstor.sim.agent`: one cluster's nodes beside a real control plane.

The flags are the launcher's contract (README.md in this package); the exit code is 0
after a clean stop, 2 for a scenario it cannot play or bad flags, 1 when the start
failed (one line on stderr says why).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from pathlib import Path

from .agent import Options, ScenarioError, check_scenarios, serve


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m winstor.sim.agent",
                                description="The node agent of the controlplane target.")
    p.add_argument("--kubeconfig", type=Path, required=True,
                   help="kubeconfig with the cluster's admin identity")
    p.add_argument("--cluster", required=True, help="the cluster's name (cp-1, ...)")
    p.add_argument("--index", type=int, required=True,
                   help="1-based: odd clusters are the seed's picture (Windows Server 2019), "
                        "even ones Windows Server 2022")
    p.add_argument("--stream-port", type=int, required=True,
                   help="winstor-kubelet-stream's port: every node's kubelet port")
    p.add_argument("--backend-port", type=int, default=0,
                   help="where to serve POST /exec and GET /logs (0: pick one)")
    p.add_argument("--aws-port", type=int, default=0, help="moto's port (0: pick one)")
    p.add_argument("--scenario", action="append", default=[], dest="scenarios",
                   help="a named fault (winstor sim scenarios lists them); repeatable")
    p.add_argument("--time-scale", type=float, default=0.002,
                   help="real seconds per modelled EKS second (default 0.002)")
    p.add_argument("--exit-with", type=int, default=None, metavar="PID",
                   help="stop when this process is gone")
    p.add_argument("--ready-file", type=Path, required=True,
                   help="written (JSON, atomically) once the nodes are Ready")
    p.add_argument("--component-logs", type=Path, default=None,
                   help="the launcher's log directory (default: logs/ beside the "
                        "kubeconfig, if there): the ebs-csi-controller pods' logs")
    a = p.parse_args(argv)
    if a.index < 1:
        p.error("--index must be 1 or more")
    if a.time_scale < 0:
        p.error("--time-scale must not be negative")
    return Options(kubeconfig=a.kubeconfig, cluster=a.cluster, index=a.index,
                   stream_port=a.stream_port, ready_file=a.ready_file,
                   backend_port=a.backend_port, aws_port=a.aws_port,
                   scenarios=frozenset(a.scenarios), time_scale=a.time_scale,
                   exit_with=a.exit_with, component_logs=a.component_logs)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    try:
        check_scenarios(options.scenarios)
    except ScenarioError as err:
        print(f"winstor node agent: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "aiohttp", "werkzeug", "botocore", "boto3", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    gc.freeze()  # what the imports built lives as long as the process
    try:
        return asyncio.run(serve(options))
    except KeyboardInterrupt:
        return 0
    except Exception as err:  # one line for the launcher's error message
        logging.getLogger("winstor.sim.agent").debug("start failed", exc_info=True)
        print(f"winstor node agent: {options.cluster}: {type(err).__name__}: {err}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
