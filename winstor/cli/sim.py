"""`winstor sim up|scenarios`: serve the embedded cluster in the foreground.

Kept apart from the other subcommands because `winstor sim up` must start fast: it
imports neither the Kubernetes client nor boto3 (every bare pytest run waits for it).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from winstor.cli.args import cluster_count, help_of, positive_int, time_scale
from winstor.errors import UsageError


def _sim_up(args: argparse.Namespace) -> int:
    import gc

    # The start allocates millions of objects and frees few (imports, moto's tables, schemas);
    # the cyclic collector would walk them again and again, ~0.3 s of a ~1.5 s start.
    # serve() turns it back on once the kubeconfig is written.
    gc.disable()

    import asyncio
    import logging
    import os

    # moto's bundled AMI catalogue costs start-up time and the sim registers its own.
    os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")

    from winstor.sim import scenarios
    from winstor.sim.server import Sim, serve

    logging.basicConfig(level=logging.WARNING, format="winstor sim: %(levelname)s %(message)s")
    for spec in args.scenario:
        try:
            scenarios.parse(spec, args.clusters)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.flavour == "kind" and any(s.rpartition(":")[2] in scenarios.EKS_ONLY
                                      for s in args.scenario):
        raise UsageError("that scenario needs Windows nodes and EBS: use --flavour eks")
    sim = Sim(args.clusters, args.scenario, args.flavour, args.time_scale,
              args.watch_history)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sim, Path(args.kubeconfig), Path(args.aws_env) if args.aws_env
                          else None, quiet=args.quiet, parent_pid=args.exit_with))
    if args.remove_if_orphaned and args.exit_with and not _alive(args.exit_with):
        # The run that started us was killed before it could remove its temporary
        # directory (our log and settings in it): nobody else will.
        import shutil
        shutil.rmtree(args.remove_if_orphaned, ignore_errors=True)
    # Stopped cleanly: servers closed, kubeconfig and AWS settings removed. Leave without the
    # interpreter's teardown, which frees moto's and the schemas' objects one by one (~0.8 s on
    # an idle 2-core machine, several seconds on a busy one) while the run that started us waits.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def _alive(pid: int) -> bool:
    import os
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sim_scenarios(args: argparse.Namespace) -> int:
    from winstor.sim.scenarios import EKS_ONLY, SCENARIOS

    width = max(map(len, SCENARIOS))
    for name, line in SCENARIOS.items():
        print(f"{name:<{width}}  {line}" + (" [eks flavour only]" if name in EKS_ONLY else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("sim", help="the embedded cluster (emulated EKS or kind)",
                         description="Serve emulated clusters over HTTPS, with AWS via moto.")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    up = sim_sub.add_parser(
        "up", help="serve emulated clusters until SIGINT/SIGTERM",
        description="Serve emulated clusters in the foreground. The kubeconfig (one context per "
                    "cluster, named sim-1, sim-2, ...) is written once every cluster answers; "
                    "it is removed again on exit.")
    up.add_argument("--kubeconfig", required=True, metavar="PATH",
                    help="where to write the kubeconfig")
    up.add_argument("--aws-env", metavar="PATH",
                    help="where to write the AWS settings as a sourceable env file")
    up.add_argument("--clusters", type=cluster_count, default=1, metavar="N",
                    help="how many clusters to serve (default 1)")
    up.add_argument("--scenario", action="append", default=[], metavar="[CLUSTER:]NAME",
                    help="break a cluster (all, or the 1-based CLUSTER) the way NAME says; "
                         "repeatable; see `winstor sim scenarios`")
    up.add_argument("--flavour", choices=("eks", "kind"), default="eks",
                    help="eks: Windows and Linux nodes, EBS, FSx, csi-proxy (default); "
                         "kind: the kind profile's cluster - Linux nodes, a worker labelled "
                         "as the Windows stand-in with /winstor (the share and its mapping "
                         "record), PowerShell 7 stand-in pods, local-path storage, FSx in moto")
    up.add_argument("--time-scale", type=time_scale, default=0.002, metavar="F",
                    help="multiply the modelled EKS latencies by F (default 0.002)")
    up.add_argument("--watch-history", type=positive_int, default=5000, metavar="N",
                    help="changes kept for watches to resume from (older: 410 Gone)")
    up.add_argument("--quiet", action="store_true", help="print nothing when ready")
    up.add_argument("--exit-with", type=positive_int, metavar="PID",
                    help="stop when process PID exits (used by pytest runs that start the sim)")
    up.add_argument("--remove-if-orphaned", metavar="DIR",
                    help="with --exit-with: when PID is gone, remove DIR on the way out (the "
                         "temporary directory of a launcher that was killed)")
    up.set_defaults(func=_sim_up)
    sc = sim_sub.add_parser("scenarios", help="list the scenarios, one line each")
    sc.set_defaults(func=_sim_scenarios)
    sim.set_defaults(func=lambda a: help_of(sim))
