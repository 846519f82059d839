"""`winstor janitor`: remove what interrupted runs left behind, in clusters and in AWS.

A run cleans up after itself, but a killed CI job, a SIGKILLed xdist worker or a
cluster that stopped answering mid-teardown leaves namespaces, PersistentVolumes
and - the expensive part - EBS volumes behind. The janitor finds them by the marks
winstor puts on everything (labels `app.kubernetes.io/managed-by=winstor` and
`winstor.io/run`; the `gp2-windows` class's `winstor.io/created-by-run`
annotation; on EBS the `kubernetes.io/created-for/pvc/namespace` tag the CSI
driver sets, which names a run's namespace, or a `winstor.io/run` tag) and
removes only what carries them. An unmarked object is never touched, whatever its
name.

The order matters: namespaces first (their claims release the PVs, and the
cluster's provisioner usually deletes the volumes itself), then PVs still left,
then classes nobody uses any more, and only then AWS volumes that are still
there. Every wait is bounded by `--timeout`; what is stuck is reported with what
holds it (finalizers) instead of hanging.

The work is split by what it touches: `sweepselect` decides which runs are taken,
`sweepcluster` scans and cleans one cluster, `sweepaws` the EBS volumes, and
`sweepreport` prints what became of each object. This module is the command: it
checks the arguments and runs those steps in the order above.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import Any

import urllib3

from winstor.cleanup.aws import clean_volumes, make_aws, scan_volumes
from winstor.cleanup.cluster import ClusterPlan, clean_cluster, scan_cluster
from winstor.cleanup.report import Report, one_line
from winstor.cleanup.select import Selector, parse_duration, run_namespace_names
from winstor.cluster.kube import ConnectError, KubeError, load_official_client
from winstor.cluster.target import Cluster
from winstor.config import ClusterTarget, Timeouts
from winstor.errors import UsageError

_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def _kube_contexts(kubeconfig: str | None) -> tuple[list[str], str | None]:
    """The kubeconfig's context names and its current context; UsageError if unreadable."""
    load_official_client()
    from kubernetes import config as k8s_config

    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if kubeconfig and not os.path.isfile(kubeconfig):
        raise UsageError(f"kubeconfig {kubeconfig}: no such file")
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except OSError as err:
        raise UsageError(f"cannot read kubeconfig {where}: {err.strerror or err}") from None
    except Exception as err:  # yaml errors, ConfigException: the file is not a kubeconfig
        raise UsageError(f"kubeconfig {where} is not usable: "
                         f"{one_line(err)}") from None
    names = [c.get("name", "") for c in contexts or []]
    return names, (current or {}).get("name")


def validate(args: argparse.Namespace) -> tuple[Selector, list[str]]:
    """Everything checkable before any cluster or AWS is contacted."""
    chosen = [opt for opt, value in (("--run", args.run), ("--older-than", args.older_than),
                                     ("--all", args.all)) if value]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} cannot be combined: pick one")
    if not chosen:
        raise UsageError("say whose leftovers to remove: --run ID, --older-than DURATION "
                         "or --all")
    if args.run is not None and not _LABEL_VALUE.fullmatch(args.run):
        raise UsageError(f"--run {args.run!r}: not a run id (a label value: letters, digits, "
                         "'-', '_', '.', at most 63)")
    try:
        older = parse_duration(args.older_than) if args.older_than else None
    except ValueError as err:
        raise UsageError(str(err)) from None
    if not math.isfinite(args.timeout) or args.timeout <= 0:  # float() reads nan and inf
        raise UsageError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    names, current = _kube_contexts(args.kubeconfig)
    contexts = list(dict.fromkeys(args.context))
    for ctx in contexts:
        if ctx not in names:
            raise UsageError(f"unknown context {ctx!r} (the kubeconfig has: "
                             f"{', '.join(names) or 'none'})")
    if not contexts:
        if not current:
            raise UsageError("the kubeconfig has no current context: pass --context NAME")
        contexts = [current]
    return Selector(run=args.run, older_than=older, everything=bool(args.all)), contexts


def run(args: argparse.Namespace) -> int:
    sel, contexts = validate(args)
    ec2, aws_where = make_aws(args.aws_region, args.aws_profile)
    rep = Report(dry_run=args.dry_run)
    endpoint = f" (endpoint {os.environ['AWS_ENDPOINT_URL']})" \
        if ec2 is not None and os.environ.get("AWS_ENDPOINT_URL") else ""
    print(f"janitor: {sel.describe()} in {', '.join(contexts)}"
          f"{' and ' + aws_where if ec2 is not None else ''}{endpoint}"
          f"{' (dry run)' if args.dry_run else ''}", flush=True)

    plans: list[ClusterPlan] = []
    all_scanned = True
    for ctx in contexts:
        cluster = Cluster(ClusterTarget(name=ctx, context=ctx, kubeconfig=args.kubeconfig),
                          run_id="janitor", timeouts=Timeouts(), profile="eks",
                          kubeconfig=args.kubeconfig)
        try:
            plans.append(scan_cluster(cluster.api, ctx, sel))
        except (ConnectError, KubeError, ConnectionError, urllib3.exceptions.HTTPError) as err:
            all_scanned = False
            rep.fail(ctx, "cluster", f"cannot be scanned: {one_line(err)}")

    # AWS candidates are listed before the clusters are cleaned: deleting a namespace
    # usually makes its cluster delete the volumes, and they are reported all the same.
    volumes: list[dict] | None = None
    if ec2 is not None:
        volumes = _scan_aws(ec2, aws_where, sel, plans, all_scanned, rep)

    blocked: set[str] = set()
    for plan in plans:
        try:
            blocked |= clean_cluster(plan, rep, args.timeout)
        except (KubeError, ConnectionError, urllib3.exceptions.HTTPError) as err:
            blocked |= plan.names
            rep.fail(plan.where, "cluster", f"cleanup stopped: {one_line(err)}")

    if ec2 is None:
        rep.note("aws", aws_where)
    elif volumes is not None:
        clean_volumes(ec2, aws_where, volumes, blocked, rep, args.timeout)

    print(rep.summary(), flush=True)
    if rep.failed:
        print(f"winstor janitor: {len(rep.failed)} could not be removed: "
              f"{'; '.join(rep.failed[:3])}{' ...' if len(rep.failed) > 3 else ''}",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _scan_aws(ec2: Any, where: str, sel: Selector, plans: list[ClusterPlan],
              all_scanned: bool, rep: Report) -> list[dict] | None:
    names: set[str] = set().union(*(p.names for p in plans)) if plans else set()
    runs: set[str] = set().union(*(p.runs for p in plans)) if plans else set()
    live: set[str] = set().union(*(p.live for p in plans)) if plans else set()
    if sel.run:
        runs.add(sel.run)
        names |= run_namespace_names(sel.run) - live
    try:
        return scan_volumes(ec2, sel, names, runs, live, orphans_ok=all_scanned)
    except Exception as err:  # botocore errors of every kind: one line, never a traceback
        rep.fail(where, "ebs", f"volumes cannot be listed: {one_line(err)}")
        return None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "janitor", help="remove leftovers of interrupted runs (clusters and EBS volumes)",
        description="Find and remove what winstor runs left behind: namespaces labelled "
                    "app.kubernetes.io/managed-by=winstor, StorageClasses a run created (kept "
                    "while any claim or PV uses them), PVs of those namespaces' claims, and EBS "
                    "volumes whose kubernetes.io/created-for/pvc/namespace tag names such a "
                    "namespace (or that carry a winstor.io/run tag). Nothing without winstor's "
                    "labels or tags is touched. Exit status: 0 clean, 1 something could not be "
                    "removed, 2 bad input.")
    p.add_argument("--run", metavar="ID", help="the leftovers of this run id")
    p.add_argument("--older-than", metavar="DURATION",
                   help="the leftovers of every run older than this (e.g. 30m, 2h, 1d)")
    p.add_argument("--all", action="store_true",
                   help="the leftovers of every run, whatever its age (a live run's too)")
    p.add_argument("--context", action="append", default=[], metavar="NAME",
                   help="kubeconfig context to clean; repeatable (default: the current one)")
    p.add_argument("--kubeconfig", metavar="PATH",
                   help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--aws-region", metavar="REGION",
                   help="AWS region of the EBS volumes (default: AWS_REGION / the profile's)")
    p.add_argument("--aws-profile", metavar="PROFILE", help="AWS profile to use")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="longest wait for each stage (namespaces, PVs, a volume's detach); "
                        "default 300")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be removed, change nothing")
    p.set_defaults(func=run)
