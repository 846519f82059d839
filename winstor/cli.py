"""The `winstor` command: the embedded cluster and the tools around a run.

Every subcommand turns bad input into one line on stderr and exit code 2,
never a traceback: people run this in CI logs they did not write.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


class UsageError(Exception):
    """Bad input: reported as one line, exit code 2."""


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1, or one line saying why not."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0 or value > 10:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10: {value}")
    return value


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

    from .sim import scenarios
    from .sim.server import Sim, serve

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
    # Stopped cleanly: servers closed, kubeconfig and AWS settings removed. Leave without the
    # interpreter's teardown, which frees moto's and the schemas' objects one by one (~0.8 s on
    # an idle 2-core machine, several seconds on a busy one) while the run that started us waits.
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(0)


def _sim_scenarios(args: argparse.Namespace) -> int:
    from .sim.scenarios import EKS_ONLY, SCENARIOS

    width = max(map(len, SCENARIOS))
    for name, line in SCENARIOS.items():
        print(f"{name:<{width}}  {line}" + (" [eks flavour only]" if name in EKS_ONLY else ""))
    return 0


def build_parser(more: bool = True) -> argparse.ArgumentParser:
    """The whole command line; ``more=False`` leaves out the subcommands of other modules.

    Those modules import the Kubernetes client (~0.6 s), which `winstor sim ...` never uses and
    `winstor sim up` cannot afford: its start-up time is how long every bare pytest run waits.
    """
    parser = argparse.ArgumentParser(
        prog="winstor",
        description="Conformance checks for persistent storage on Windows Kubernetes nodes. "
                    "The checks themselves run under pytest; this command serves the embedded "
                    "cluster and handles reports, bundles and leftovers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    up.add_argument("--clusters", type=positive_int, default=1, metavar="N",
                    help="how many clusters to serve (default 1)")
    up.add_argument("--scenario", action="append", default=[], metavar="[CLUSTER:]NAME",
                    help="break a cluster (all, or the 1-based CLUSTER) the way NAME says; "
                         "repeatable; see `winstor sim scenarios`")
    up.add_argument("--flavour", choices=("eks", "kind"), default="eks",
                    help="eks: Windows and Linux nodes, EBS, FSx, csi-proxy (default); "
                         "kind: the kind profile's cluster - Linux nodes, a worker labelled "
                         "as the Windows stand-in with /winstor (the share and its mapping "
                         "record), PowerShell 7 stand-in pods, local-path storage, FSx in moto")
    up.add_argument("--time-scale", type=_scale, default=0.002, metavar="F",
                    help="multiply the modelled EKS latencies by F (default 0.002)")
    up.add_argument("--watch-history", type=positive_int, default=5000, metavar="N",
                    help="changes kept for watches to resume from (older: 410 Gone)")
    up.add_argument("--quiet", action="store_true", help="print nothing when ready")
    up.add_argument("--exit-with", type=positive_int, metavar="PID",
                    help="stop when process PID exits (used by pytest runs that start the sim)")
    up.set_defaults(func=_sim_up)
    sc = sim_sub.add_parser("scenarios", help="list the scenarios, one line each")
    sc.set_defaults(func=_sim_scenarios)
    sim.set_defaults(func=lambda a: _help(sim))
    if more:
        _register_more(sub)
    return parser


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _register_more(sub: argparse._SubParsersAction) -> None:
    """Subcommands that live in their own modules (reports and bundles, janitor, kind)."""
    import importlib

    for name in ("commands", "janitor", "kind"):
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{name}":
                raise
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(more=argv[:1] != ["sim"])
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except UsageError as err:
        print(f"winstor: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"winstor: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
