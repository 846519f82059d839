"""SMB shares through the SMB CSI driver (`smb.csi.k8s.io`), and the AWS service behind
each share: the driver and its Windows node plugin on every Windows node, a
ReadWriteMany claim shared by pods on two nodes and removed (or kept) on the share
with its claim, a read-only static volume that refuses writes. Every check runs
against each share of the cluster; its evidence names the share and its kind."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from winstor.aws import shares as awsshares
from winstor.cluster import smb
from winstor.cluster.checkkit import fail, probe
from winstor.cluster.kube import CSIDRIVERS, CSINODES, DAEMONSETS, PODS, PVCS, PVS
from winstor.cluster.manifests import NODE_PROBE
from winstor.cluster.outcome import Deferred
from winstor.cluster.provision import delete_claim_and_volume, delete_pod
from winstor.cluster.smb import ShareRun, settled
from winstor.cluster.target import Cluster

pytestmark = [pytest.mark.smb]

PIPES_V1 = ("csi-proxy-filesystem-v1", "csi-proxy-smb-v1")
OK_LIFECYCLES = (None, "AVAILABLE", "UPDATING")
KIND_NAMES = {"fsx-windows": "FSx for Windows File Server file system",
              "fsx-ontap": "FSx for NetApp ONTAP SVM", "file-gateway": "File Gateway SMB share"}


def _kind(cluster: Cluster, share: smb.Share) -> str | None:
    """The share's kind: configured, or as SHARE-AWS-01 read it off AWS."""
    return share.kind or (cluster.facts.get("share_kinds") or {}).get(share.name)


def _named(cluster: Cluster, share: smb.Share) -> str:
    return f"share {share.name} ({_kind(cluster, share) or 'kind unknown'}, {share.unc})"


def _probe(cluster: Cluster, namespace: str, pod: str, name: str, params: dict[str, Any],
           evidence: dict, **kw: Any) -> tuple[dict | None, str | None]:
    """A probe's data, or why it could not run (so one share's failure does not hide
    the others')."""
    try:
        return probe(cluster, namespace, pod, name, params, evidence=evidence, **kw), None
    except pytest.fail.Exception as failed:
        return None, str(getattr(failed, "msg", failed))


# -- the AWS side of each share ------------------------------------------------------------
def _judge(facts: awsshares.ShareFacts) -> list[str]:
    """What is wrong with the resource serving a share, by its kind's rules."""
    f, out = facts.facts, []
    if facts.kind == "fsx-windows":
        if f.get("type") != "WINDOWS":
            out.append(f"FSx {facts.resource} is {f.get('type')}, not WINDOWS")
        if f.get("lifecycle") not in OK_LIFECYCLES:
            out.append(f"FSx {facts.resource} is {f.get('lifecycle')}")
        if not (f.get("active_directory_id") or f.get("self_managed_domain")):
            out.append(f"FSx {facts.resource} is joined to no Active Directory")
    elif facts.kind == "fsx-ontap":
        if f.get("lifecycle") != "CREATED":
            out.append(f"SVM {facts.resource} is {f.get('lifecycle')}, not CREATED")
        if f.get("file_system_type") != "ONTAP":
            out.append(f"SVM {facts.resource}'s file system {f.get('file_system_id')} is "
                       f"{f.get('file_system_type')}, not ONTAP")
        if f.get("file_system_lifecycle") not in OK_LIFECYCLES:
            out.append(f"file system {f.get('file_system_id')} of SVM {facts.resource} is "
                       f"{f.get('file_system_lifecycle')}")
        if not f.get("domain"):
            out.append(f"SVM {facts.resource} is joined to no Active Directory")
    elif facts.kind == "file-gateway":
        if f.get("status") != "AVAILABLE":
            out.append(f"file share {facts.resource} is {f.get('status')}")
        if f.get("gateway_state") != "RUNNING":
            out.append(f"gateway {f.get('gateway_id')} is {f.get('gateway_state')}")
        if f.get("authentication") == "ActiveDirectory" and \
                f.get("active_directory_status") != "JOINED":
            out.append(f"file share {facts.resource} uses ActiveDirectory authentication, but "
                       f"gateway {f.get('gateway_id')} is not joined to a domain "
                       f"(ActiveDirectoryStatus {f.get('active_directory_status')})")
        if f.get("authentication") == "GuestAccess" and not f.get("guest_password_set"):
            out.append(f"file share {facts.resource} uses GuestAccess, but gateway "
                       f"{f.get('gateway_id')} has no SMB guest password set")
    return out


@pytest.mark.shares
@pytest.mark.aws
@pytest.mark.winstor_check("SHARE-AWS-01", "Each SMB share is served by the AWS resource of "
                           "its kind")
def test_share_served_by_its_kind(cluster: Cluster, smb_shares: list[smb.Share], aws: Any,
                                  evidence: dict) -> None:
    problems, seen = [], []
    account = awsshares.Account(aws)
    for share in smb_shares:
        matches, svms = account.find(share.server, share.share_name)
        entry: dict[str, Any] = {"share": share.name, "unc": share.unc, "origin": share.origin,
                                 "configured_kind": share.kind,
                                 "served_by": [{"kind": m.kind, "resource": m.resource,
                                                **m.facts} for m in matches]}
        seen.append(entry)
        if not matches:
            hint = [f"SVM {s.get('StorageVirtualMachineId')} ({s.get('Name')}) has no SMB "
                    "endpoint: it is not joined to an Active Directory"
                    for s in svms if not (s.get("Endpoints") or {}).get("Smb")]
            problems.append(f"{share.label()}: no FSx for Windows file system, FSx for ONTAP "
                            f"SVM or File Gateway SMB share serves it in {aws.region_name}"
                            + (f" ({'; '.join(hint)})" if hint else ""))
            continue
        chosen = [m for m in matches if m.kind == share.kind] if share.kind else matches
        if not chosen:
            problems.append(f"{share.label()}: configured as {share.kind}, but it is served by "
                            + ", ".join(f"{KIND_NAMES[m.kind]} {m.resource}" for m in matches))
            continue
        found = chosen[0]
        entry["kind"] = found.kind
        cluster.facts.setdefault("share_kinds", {})[share.name] = found.kind
        problems += [f"share {share.name} ({found.kind}, {share.unc}): {p}"
                     for p in _judge(found)]
    evidence["shares"] = seen
    cluster.facts["shares"] = seen
    if problems:
        fail("; ".join(problems))


# -- the driver and its Windows node plugin -------------------------------------------------
def _plugin_daemonset(cluster: Cluster) -> dict | None:
    """The driver's Windows node plugin DaemonSet in kube-system (csi-smb-node-win, or
    any Windows DaemonSet registering smb.csi.k8s.io)."""
    for ds in cluster.api.items(DAEMONSETS, "kube-system"):
        spec = ds["spec"]["template"].get("spec") or {}
        windows = (spec.get("nodeSelector") or {}).get("kubernetes.io/os") == "windows"
        if ds["metadata"]["name"] == "csi-smb-node-win" or (windows and smb.DRIVER in str(spec)):
            return ds
    return None


def _plugin_mode(ds: dict) -> tuple[str, set[str]]:
    """(`hostprocess` or `csi-proxy`, the pipes the `smb` container mounts)."""
    spec = ds["spec"]["template"].get("spec") or {}
    container = next((c for c in spec.get("containers") or [] if c.get("name") == "smb"), {})
    if "--enable-windows-host-process=true" in (container.get("args") or []):
        return "hostprocess", set()
    volumes = {v["name"]: ((v.get("hostPath") or {}).get("path") or "")
               for v in spec.get("volumes") or []}
    pipes = {volumes.get(m["name"], "").rsplit("\\", 1)[-1]
             for m in container.get("volumeMounts") or []
             if volumes.get(m["name"], "").lower().startswith("\\\\.\\pipe\\")}
    return "csi-proxy", pipes


def _container_problem(pod: dict) -> str:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting:
            return f"container {cs['name']}: {waiting.get('reason')}"
    return "not Ready"


@pytest.mark.smb_csi
@pytest.mark.winstor_check("SMB-CSI-01", "The SMB CSI driver's Windows node plugin runs and "
                           "is registered on every Windows node")
def test_smb_csi_node_plugin(cluster: Cluster, windows_nodes: list[dict],
                             node_probes: dict[str, Deferred[dict]], host_namespace: str,
                             evidence: dict) -> None:
    api = cluster.api
    driver = api.get_or_none(CSIDRIVERS, smb.DRIVER)
    if driver is None:
        fail(f"no CSIDriver {smb.DRIVER} is installed: the SMB CSI driver is missing")
    evidence["csidriver"] = {k: driver["spec"].get(k) for k in (
        "attachRequired", "podInfoOnMount", "volumeLifecycleModes")}
    problems = []
    ds = _plugin_daemonset(cluster)
    mode, mounted = _plugin_mode(ds) if ds else ("", set())
    pods: dict[str, dict] = {}
    if ds is None:
        names = [d["metadata"]["name"] for d in api.items(DAEMONSETS, "kube-system")]
        problems.append("no DaemonSet of the SMB CSI driver's Windows node plugin in "
                        f"kube-system (csi-smb-node-win; DaemonSets there: {', '.join(names)})")
    else:
        status = ds.get("status") or {}
        evidence["daemonset"] = {"name": ds["metadata"]["name"], "mode": mode,
                                 "mounted_pipes": sorted(mounted), **{k: status.get(k) for k in (
                                     "desiredNumberScheduled", "numberReady")}}
        selector = ",".join(f"{k}={v}" for k, v in
                            ds["spec"]["selector"].get("matchLabels", {}).items())
        pods = {p["spec"].get("nodeName"): p
                for p in api.items(PODS, "kube-system", label_selector=selector)}
        if mode == "csi-proxy" and not set(PIPES_V1) <= mounted:
            problems.append(f"DaemonSet {ds['metadata']['name']} does not mount csi-proxy's v1 "
                            f"pipes {', '.join(sorted(set(PIPES_V1) - mounted))} into its smb "
                            f"container (mounts: {', '.join(sorted(mounted)) or 'none'})")
    nodes_seen = {}
    for node in windows_nodes:
        name = node["metadata"]["name"]
        seen: dict[str, Any] = {}
        pod = pods.get(name)
        if ds is not None:
            if pod is None:
                problems.append(f"node {name} runs no pod of DaemonSet {ds['metadata']['name']}")
            else:
                seen["pod"] = pod["metadata"]["name"]
                ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in (pod.get("status") or {}).get("conditions") or [])
                seen["ready"] = ready
                if not ready:
                    problems.append(f"pod kube-system/{pod['metadata']['name']} on node {name} "
                                    f"is not Ready ({_container_problem(pod)})")
        csinode = api.get_or_none(CSINODES, name) or {}
        drivers = [d.get("name") for d in (csinode.get("spec") or {}).get("drivers") or []]
        seen["csinode_drivers"] = drivers
        if smb.DRIVER not in drivers:
            problems.append(f"CSINode {name} does not list {smb.DRIVER} (drivers: "
                            f"{', '.join(drivers) or 'none'})")
        if mode != "hostprocess":
            probe_pod = node_probes[name].require()
            data = probe(cluster, host_namespace, probe_pod["metadata"]["name"], "csi-proxy",
                         container=NODE_PROBE, evidence=evidence)
            present = set(data.get("pipes") or [])
            seen["csi_proxy_pipes"] = sorted(p for p in present if p in PIPES_V1)
            missing = [p for p in PIPES_V1 if p not in present]
            if missing:
                problems.append(f"node {name} has no csi-proxy pipe {', '.join(missing)}: "
                                "the smb node plugin cannot reach csi-proxy")
        nodes_seen[name] = seen
    evidence["nodes"] = nodes_seen
    if problems:
        fail("; ".join(problems))


# -- dynamic provisioning: one claim, two nodes, and the subdirectory on the share ----------
def _pod(run: ShareRun, role: str) -> tuple[dict | None, str | None]:
    return settled(run.pods[role])


def _subdirectory(cluster: Cluster, run: ShareRun) -> tuple[str, str]:
    """The claim's PV and the directory of the share it is (volumeAttributes subdir,
    else the PV's name: the driver's default)."""
    pvc = cluster.api.get(PVCS, run.claim, run.namespace) if run.claim else {}
    pv_name = (pvc.get("spec") or {}).get("volumeName") or ""
    pv = cluster.api.get_or_none(PVS, pv_name) or {}
    attributes = {k.lower(): v for k, v in (((pv.get("spec") or {}).get("csi") or {}).get(
        "volumeAttributes") or {}).items()}
    return pv_name, attributes.get("subdir") or pv_name


def _listing(data: dict | None) -> dict[str, str]:
    return {e["name"]: e["type"] for e in (data or {}).get("entries") or []}


def _share_rwx(cluster: Cluster, run: ShareRun, evidence: dict) -> list[str]:
    """SMB-CSI-02 for one share: the problems found (none: it passed)."""
    ns, label = run.namespace, _named(cluster, run.share)
    entry: dict[str, Any] = {"share": run.share.name, "kind": _kind(cluster, run.share),
                             "unc": run.share.unc, "origin": run.share.origin,
                             "on_delete": run.share.on_delete, "class": run.class_name,
                             "claim": run.claim}
    evidence.setdefault("shares", []).append(entry)
    if run.problem:
        return [run.problem]
    pods = {role: _pod(run, role) for role in ("writer", "reader", "root")}
    failed = [why for role, (pod, why) in pods.items() if pod is None and role != "root"]
    if failed:
        return [f"{label}: {failed[0]}"]
    writer, reader = pods["writer"][0], pods["reader"][0]
    assert writer is not None and reader is not None
    nodes = (writer["spec"]["nodeName"], reader["spec"]["nodeName"])
    entry.update(writer_node=nodes[0], reader_node=nodes[1])
    if nodes[0] == nodes[1]:
        return [f"{label}: both pods run on node {nodes[0]}: two Windows nodes of build "
                f"{cluster.windows_build} are needed to show a ReadWriteMany claim shared "
                "across nodes"]
    pv_name, subdir = _subdirectory(cluster, run)
    entry.update(volume=pv_name, subdirectory=subdir)
    name = f"winstor-{cluster.run_id}-{secrets.token_hex(4)}.txt"
    content = f"written by {writer['metadata']['name']} on {nodes[0]} to {run.share.unc}"
    wrote, why = _probe(cluster, ns, writer["metadata"]["name"], "write-file",
                        {"path": f"{smb.DATA_PATH}\\{name}", "content": content}, evidence)
    if wrote is None:
        return [f"{label}: {why}"]
    read, why = _probe(cluster, ns, reader["metadata"]["name"], "read-file",
                       {"path": f"{smb.DATA_PATH}\\{name}"}, evidence)
    if read is None:
        return [f"{label}: {why}"]
    if not read.get("exists") or read.get("sha256") != wrote.get("sha256"):
        return [f"{label}: pod {reader['metadata']['name']} on {nodes[1]} does not see "
                f"{smb.DATA_PATH}\\{name} as {writer['metadata']['name']} on {nodes[0]} wrote "
                f"it (exists={read.get('exists')}, sha256 {read.get('sha256')})"]
    root, why = pods["root"]
    problems = []
    if root is None:
        return [f"{label}: cannot look at the share's root: {why}"]
    listed, why = _probe(cluster, ns, root["metadata"]["name"], "list-dir",
                         {"path": f"{smb.SHARE_PATH}\\{subdir}"}, evidence)
    if listed is None or name not in _listing(listed):
        problems.append(f"{label}: the claim is not the share's directory {subdir}: "
                        f"{name} is not in {run.share.unc}\\{subdir} "
                        f"({why or 'listing: ' + ', '.join(_listing(listed)) or 'empty'})")
    # Deleting the claim (its pods first) must remove, keep or archive the directory.
    for pod in (writer, reader):
        delete_pod(cluster, ns, pod["metadata"]["name"])
    delete_claim_and_volume(cluster, ns, run.claim or "")
    run.deleted_claim = True
    after, why = _probe(cluster, ns, root["metadata"]["name"], "list-dir",
                        {"path": smb.SHARE_PATH}, evidence)
    if after is None:
        return [*problems, f"{label}: cannot list the share after the claim went: {why}"]
    left = _listing(after)
    entry["after_delete"] = sorted(left)
    want = run.share.on_delete
    if want == "delete" and subdir in left:
        problems.append(f"{label}: {run.share.unc}\\{subdir} is still there after claim "
                        f"{run.claim} and volume {pv_name} were deleted (onDelete: delete)")
    elif want == "retain" and subdir not in left:
        problems.append(f"{label}: {run.share.unc}\\{subdir} is gone after the claim was "
                        "deleted, but the class says onDelete: retain")
    elif want == "archive" and (f"archived-{subdir}" not in left or subdir in left):
        problems.append(f"{label}: after the claim was deleted the share holds "
                        f"{', '.join(sorted(left)) or 'nothing'}, not archived-{subdir} in "
                        f"place of {subdir} (onDelete: archive)")
    if want == "retain":
        cluster.facts.setdefault("notes", []).append(
            f"{run.share.unc}\\{subdir} kept on the share (onDelete: retain)")
    return problems


@pytest.mark.smb_csi
@pytest.mark.winstor_check("SMB-CSI-02", "A ReadWriteMany SMB CSI claim is shared by pods on "
                           "two nodes and its directory follows onDelete", order=80)
def test_smb_csi_dynamic_rwx(cluster: Cluster, smb_csi_runs: dict[str, ShareRun],
                             evidence: dict) -> None:
    problems = []
    for run in smb_csi_runs.values():
        problems += _share_rwx(cluster, run, evidence)
    if problems:
        fail("; ".join(problems))


# -- a static volume mounted read-only ----------------------------------------------------
@pytest.mark.smb_csi
@pytest.mark.winstor_check("SMB-CSI-03", "A static SMB CSI volume mounted read-only refuses "
                           "writes (Access is denied.)")
def test_smb_csi_static_read_only(cluster: Cluster, smb_csi_runs: dict[str, ShareRun],
                                  evidence: dict) -> None:
    problems = []
    for run in smb_csi_runs.values():
        label = _named(cluster, run.share)
        entry: dict[str, Any] = {"share": run.share.name, "kind": _kind(cluster, run.share),
                                 "unc": run.share.unc, "volume": run.root_volume}
        evidence.setdefault("shares", []).append(entry)
        if run.problem:
            problems.append(run.problem)
            continue
        pod, why = settled(run.pods["root"])
        if pod is None:
            problems.append(f"{label}: {why}")
            continue
        entry["node"] = pod["spec"]["nodeName"]
        path = f"{smb.SHARE_PATH}\\winstor-{cluster.run_id}-{secrets.token_hex(4)}.txt"
        data, why = _probe(cluster, run.namespace, pod["metadata"]["name"], "try-write",
                           {"path": path, "content": "must not be written"}, evidence)
        if data is None:
            problems.append(f"{label}: {why}")
            continue
        entry.update(written=data.get("written"), error=data.get("message"),
                     win32=data.get("win32_message"))
        if data.get("written"):
            problems.append(f"{label}: pod {pod['metadata']['name']} wrote {path} through a "
                            "read-only mount of the share")
        elif data.get("win32_message") != "Access is denied.":
            problems.append(f"{label}: writing {path} through the read-only mount failed with "
                            f"{data.get('message')!r} (Win32 error {data.get('win32_error')}), "
                            "not 'Access is denied.'")
    if problems:
        fail("; ".join(problems))

