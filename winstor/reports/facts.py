"""Facts about each cluster of a run, read at its end for results.json.

What a nightly dashboard or a certification needs to know about a cluster -
its Kubernetes version, zones, and each Windows node's build, instance, AMI
and csi-proxy version - is read once per cluster when the run ends, through
the cluster's API and AWS, merged with what the checks recorded on the way
(`cluster.facts`, `cluster.timeline`). Spans timed by the cluster's own
components (provisioning, attach, image pull) come from the run's events.
Nothing here fails the run: what cannot be read is reported as missing, and
why - in the cluster's `error` or `aws.error`, in its notes (results.json and
report.html) and in `problems`, which the terminal summary prints.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable
from typing import Any

from winstor.cluster.kube import EVENTS, NAMESPACES, NODES
from winstor.reports.redact import Redactor
from winstor.reports.results import jsonable


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    base, _, frac = text.rstrip("Z").partition(".")
    try:
        t = calendar.timegm(time.strptime(base[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return t + (float("0." + frac) if frac.isdigit() else 0.0)


def event_phases(cluster: Any) -> list[dict[str, Any]]:
    """Volume provision, attach and image pull spans from the run's events."""
    api = cluster.api
    events: list[dict] = []
    for ns in api.items(NAMESPACES, label_selector=cluster.run_selector()):
        events += api.items(EVENTS, ns["metadata"]["name"])
    return spans_of(events)


def spans_of(events: list[dict]) -> list[dict[str, Any]]:
    """The spans `event_phases` reads, from events already listed (an image pull begun at
    the start of the run reads its own namespace's before it goes: plugin.prepull)."""
    spans = {"volume provision": ({"Provisioning", "ExternalProvisioning"},
                                  {"ProvisioningSucceeded", "ProvisioningFailed"}),
             "attach": ({"Scheduled"}, {"SuccessfulAttachVolume", "FailedAttachVolume"}),
             "image pull": ({"Pulling"}, {"Pulled", "Failed"})}
    by_object: dict[tuple[str, str], list[dict]] = {}
    for ev in events:
        inv = ev.get("involvedObject") or {}
        by_object.setdefault((inv.get("kind", ""), inv.get("name", "")), []).append(ev)
    out = []
    for (kind, name), evs in by_object.items():
        for phase, (starts, ends) in spans.items():
            first = [_epoch(e.get("firstTimestamp") or e.get("eventTime")) for e in evs
                     if e.get("reason") in starts]
            last = [_epoch(e.get("lastTimestamp") or e.get("eventTime")) for e in evs
                    if e.get("reason") in ends]
            first = [t for t in first if t is not None]
            last = [t for t in last if t is not None]
            if first and last:
                start, end = min(first), max(last)
                out.append({"name": phase, "start": start, "end": max(end, start),
                            "duration": max(end - start, 0.0),
                            "detail": f"{kind.lower()}/{name}", "source": "events"})
    return out


_JSON_FACTS = ("default_class", "fsx", "smb_mappings", "hostpath_exposure",
               "storage_class_created", "share_file", "csi_proxy", "node_amis",
               "csi_proxy_versions")


def run_phases(cluster: Any) -> list[dict[str, Any]]:
    """The phases winstor timed on this cluster (`Cluster.phase`), for the timeline."""
    return [{"name": p.name, "start": p.start, "end": p.end,
             "duration": (p.end - p.start) if p.end else None, "detail": p.detail,
             "source": "run"} for p in cluster.timeline]


def cluster_facts(cluster: Any, redactor: Redactor,
                  event_spans: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """What results.json says about one cluster, read through its API and AWS.

    `problems` lists what could not be read, one line each, for the terminal summary
    (results.json carries them in the cluster's notes)."""
    from winstor.aws import (
        facts as awsfacts,  # boto3: imported where facts are read, not by every process
    )
    out: dict[str, Any] = {
        "name": cluster.name, "context": cluster.target.context, "reachable": False,
        "error": None, "kubernetes_version": cluster.facts.get("kubernetes_version"),
        "server_version": cluster.facts.get("server_version"), "zones": [],
        "aws": {"available": False, "region": None}, "windows_nodes": [], "linux_nodes": 0,
        "facts": {}, "timeline": [],
        "notes": {k: list(cluster.facts.get(k, [])) for k in ("leftovers", "kept", "notes")},
    }
    problems: list[str] = []
    out["timeline"] = run_phases(cluster) + list(event_spans)
    for key in _JSON_FACTS:
        if key in cluster.facts:
            out["facts"][key] = jsonable(cluster.facts[key], 16 * 1024)
    if getattr(cluster, "_api", None) is None:
        out["error"] = ("not connected: the connection failed or no check needed it "
                        "(see the checks)")
        return redactor.data(out)
    out["reachable"] = True
    _server_facts(cluster, out, problems)
    try:
        nodes = cluster.api.items(NODES)
    except Exception as err:  # recorded: the cluster's error and the summary say it
        nodes = cluster.facts.get("nodes") or []
        out["error"] = f"listing nodes failed: {err}"
        problems.append(f"{out['error']} (node facts are those seen earlier in the run)")
    windows = [n for n in nodes if _labels(n).get("kubernetes.io/os") == "windows"]
    out["linux_nodes"] = len(nodes) - len(windows)
    out["zones"] = sorted({z for n in nodes if (z := _labels(n).get(
        "topology.kubernetes.io/zone"))})
    instances: dict[str, str | None] = {}
    for n in windows:
        instances[n["metadata"]["name"]], bad = _instance(n)
        if bad:
            problems.append(bad)
    aws: dict[str, Any] = {}
    region = cluster.target.aws_region
    session = None
    try:
        session = cluster.aws_session()
    except Exception as err:  # botocore: a missing profile, a broken config, a failing
        # credential process - recorded in aws.error, which certification reports too
        out["aws"] = {"available": False, "region": region,
                      "error": f"the AWS session failed: {type(err).__name__}: {err}"[:500]}
        problems.append(f"AWS facts not read: {out['aws']['error']}")
    if session is not None:
        out["aws"] = {"available": True, "region": session.region_name}
        unread = redactor.learn_aws_session(session)
        if unread:
            problems.append(f"the AWS session's credentials could not be read ({unread}): "
                            "reports redact AWS keys by their shape only")
        try:
            aws = awsfacts.instance_facts(session, [i for i in instances.values() if i])
        except Exception as err:  # recorded in aws.error, which certification reports too
            out["aws"] = {"available": False, "region": session.region_name,
                          "error": f"{type(err).__name__}: {err}"[:500]}
            problems.append(f"AWS facts not read: {out['aws']['error']}")
    versions = dict(cluster.facts.get("csi_proxy_versions") or {})
    for node, data in (cluster.facts.get("csi_proxy") or {}).items():
        if isinstance(data, dict) and data.get("version") and node not in versions:
            versions[node] = data["version"]
    for n in windows:
        name = n["metadata"]["name"]
        info = n.get("status", {}).get("nodeInfo") or {}
        f = aws.get(instances[name] or "")
        out["windows_nodes"].append({
            "name": name, "build": _labels(n).get("node.kubernetes.io/windows-build"),
            "os_image": info.get("osImage"), "kernel_version": info.get("kernelVersion"),
            "kubelet_version": info.get("kubeletVersion"),
            "ready": any(c.get("type") == "Ready" and c.get("status") == "True"
                         for c in n.get("status", {}).get("conditions") or []),
            "zone": _labels(n).get("topology.kubernetes.io/zone"),
            "provider_id": (n.get("spec") or {}).get("providerID"),
            "instance_id": instances[name],
            "instance_type": _labels(n).get("node.kubernetes.io/instance-type")
            or (f.instance_type if f else None),
            "ami_id": f.ami_id if f else None, "ami_name": f.ami_name if f else None,
            "ami_owner": f.ami_owner if f else None,
            "eks_optimized": f.is_eks_optimized_windows if f else None,
            "csi_proxy_version": versions.get(name),
            "csi_proxy_expected": awsfacts.expected_csi_proxy_version(f.ami_name)
            if f else None,
        })
    out["notes"]["notes"] += problems
    out["problems"] = problems
    return redactor.data(out)


VERSION_KEYS = ("gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "platform")


def _server_facts(cluster: Any, out: dict[str, Any], problems: list[str]) -> None:
    """The API server's own `/version` (which build answered, not just its release) and,
    on a profile whose verdicts are reached somewhere other than on the cluster itself,
    where: a run on the controlplane profile must never read as a run on EKS."""
    platform = getattr(cluster, "platform", None)
    where = getattr(platform, "where", "") or \
        (getattr(cluster, "facts", None) or {}).get("where", "")
    if where:
        out["facts"]["target"] = where
    version = getattr(cluster.api, "version", None)
    if version is None:
        return
    try:
        doc = version() or {}
    except Exception as err:  # recorded: the summary and the cluster's notes say it
        problems.append(f"reading /version failed: {err}")
        return
    out["facts"]["server"] = {k: doc[k] for k in VERSION_KEYS if k in doc}


def _labels(node: dict) -> dict[str, str]:
    return node.get("metadata", {}).get("labels") or {}


def _instance(node: dict) -> tuple[str | None, str | None]:
    """The node's EC2 instance id from its providerID, and what is wrong with the providerID
    when it claims to be AWS's (`aws://...`) but does not name an instance. Other schemes
    (kind, bare metal) and an empty providerID have no instance and are not a problem."""
    provider = (node.get("spec") or {}).get("providerID") or ""
    if not provider.startswith("aws://"):
        return None, None
    from winstor.aws import facts as awsfacts
    try:
        return awsfacts.parse_provider_id(provider)[1], None
    except ValueError:
        return None, (f"node {node['metadata']['name']}: malformed providerID {provider!r} "
                      "(expected aws:///<zone>/i-<hex>): its instance and AMI are unknown")
