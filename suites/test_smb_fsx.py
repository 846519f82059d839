"""FSx for Windows through SMB Global Mapping: the node's mapping, hostPath access
from pods, one share seen by two pods, and the file system behind it."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from winstor.aws import facts as awsfacts
from winstor.cluster.checkkit import fail, probe
from winstor.cluster.kube import NAMESPACES, PODS, KubeError
from winstor.cluster.manifests import NODE_PROBE
from winstor.cluster.outcome import Deferred
from winstor.cluster.target import Cluster

pytestmark = [pytest.mark.smb]

SHARE_IN_POD = "C:\\dotnetapp\\app-state"


def _drive(host_path: str) -> str:
    return host_path[:2].upper()


def _server(remote_path: str) -> str:
    return remote_path.lstrip("\\").split("\\", 1)[0].lower()


def _share_mapping(cluster: Cluster, node: str, node_probes: dict[str, Deferred[dict]],
                   host_namespace: str, evidence: dict,
                   host_path: str | None = None) -> tuple[dict | None, Any]:
    """The node's SMB Global Mapping of the share's drive (None when there is none),
    and every mapping the node reported."""
    pod = node_probes[node].require()
    data = probe(cluster, host_namespace, pod["metadata"]["name"], "smb-mappings",
                 container=NODE_PROBE, evidence=evidence)
    drive = _drive(host_path or cluster.target.host_path)
    mapping = next((m for m in data.get("mappings") or []
                    if str(m.get("local_path", "")).upper().rstrip("\\") == drive), None)
    return mapping, data.get("mappings")


def _mapped_shares(cluster: Cluster) -> list[tuple[str, str | None, str, str]]:
    """(host path, share, kind, name) of each share the nodes map: the clusters file's
    shares with a `host_path`, and the seed's FSx share (G:) unless one of them is it."""
    out = [(s.host_path, s.unc, s.kind, s.name) for s in cluster.target.shares if s.host_path]
    if not any(_drive(h) == _drive(cluster.target.host_path) for h, *_ in out):
        out.insert(0, (cluster.target.host_path, cluster.target.fsx_share, "fsx-windows", "fsx"))
    return out


@pytest.mark.winstor_check("SMB-MAP-01", "Each Windows node holds an OK SMB Global Mapping of "
                           "the share")
def test_global_mapping_ok(cluster: Cluster, windows_nodes: list[dict],
                           node_probes: dict[str, Deferred[dict]], host_namespace: str,
                           evidence: dict) -> None:
    problems = []
    shares = _mapped_shares(cluster)
    evidence["shares"] = [{"share": n, "kind": k, "host_path": h, "unc": u}
                          for h, u, k, n in shares]
    for host_path, share, kind, share_name in shares:
        drive = _drive(host_path)
        for node in windows_nodes:
            name = node["metadata"]["name"]
            mapping, reported = _share_mapping(cluster, name, node_probes, host_namespace,
                                               evidence, host_path)
            if host_path == cluster.target.host_path:
                cluster.facts.setdefault("smb_mappings", {})[name] = mapping
            what = f"(share {share_name}, {kind})"
            if mapping is None:
                problems.append(f"node {name} has no SMB Global Mapping for {drive} {what} "
                                f"(mappings: {[m.get('local_path') for m in reported]})")
            elif mapping.get("status") != 0:
                problems.append(f"the {drive} mapping on node {name} to "
                                f"{mapping.get('remote_path')} {what} is "
                                f"{mapping.get('status_name')} (status {mapping.get('status')})")
            elif share and mapping.get("remote_path", "").lower() != share.lower():
                problems.append(f"node {name} maps {drive} to {mapping.get('remote_path')}, not "
                                f"the configured share {share} {what}")
    if problems:
        fail("; ".join(problems))


@pytest.mark.winstor_check("SMB-POD-01", "test-fsx mounts the share by hostPath and can write "
                           "and read it")
def test_pod_writes_share(cluster: Cluster, fsx_pod: Deferred[dict], host_namespace: str,
                          evidence: dict) -> None:
    pod = fsx_pod.require()
    name = f"winstor-{cluster.run_id}-{secrets.token_hex(4)}.txt"
    content = f"written by {pod['metadata']['name']} on {pod['spec']['nodeName']}"
    path = f"{SHARE_IN_POD}\\{name}"
    data = probe(cluster, host_namespace, pod["metadata"]["name"], "write-file",
                 {"path": path, "content": content}, evidence=evidence)
    cluster.facts["share_file"] = {"path": path, "content": content, "sha256": data["sha256"],
                                   "writer_node": pod["spec"]["nodeName"]}
    if data.get("read_back_sha256") != data.get("sha256"):
        fail(f"pod {pod['metadata']['name']} read back different bytes from {path} "
             f"(sha256 {data.get('read_back_sha256')} != {data.get('sha256')})")


@pytest.mark.winstor_check("SMB-SHARED-01", "A second pod sees the file through the same share")
def test_second_pod_sees_file(cluster: Cluster, fsx_pod: Deferred[dict],
                              fsx_reader_pod: Deferred[dict], host_namespace: str,
                              evidence: dict) -> None:
    fsx_pod.require()
    written = cluster.facts.get("share_file")
    if written is None:
        fail("SMB-POD-01 wrote no file to look for (it failed or was deselected)")
    reader = fsx_reader_pod.require()
    data = probe(cluster, host_namespace, reader["metadata"]["name"], "read-file",
                 {"path": written["path"]}, evidence=evidence)
    evidence.update(writer_node=written["writer_node"], reader_node=reader["spec"]["nodeName"])
    if not data.get("exists"):
        fail(f"pod {reader['metadata']['name']} on {reader['spec']['nodeName']} does not see "
             f"{written['path']}, written from {written['writer_node']}")
    if data.get("sha256") != written["sha256"]:
        fail(f"pod {reader['metadata']['name']} reads {written['path']} with sha256 "
             f"{data.get('sha256')}, written as {written['sha256']}")


@pytest.mark.fsx
@pytest.mark.aws
@pytest.mark.winstor_check("FSX-AWS-01", "The share is served by an FSx for Windows file system")
def test_fsx_behind_share(cluster: Cluster, windows_nodes: list[dict],
                          node_probes: dict[str, Deferred[dict]], host_namespace: str,
                          aws: Any, evidence: dict) -> None:
    session = aws
    mappings = cluster.facts.get("smb_mappings")
    if mappings is None:
        mappings = {n["metadata"]["name"]: _share_mapping(
            cluster, n["metadata"]["name"], node_probes, host_namespace, evidence)[0]
            for n in windows_nodes}
    servers = {_server(m["remote_path"]) for m in mappings.values() if m}
    if cluster.target.fsx_share:
        servers.add(_server(cluster.target.fsx_share))
    if not servers:
        fail(f"no node maps {cluster.target.host_path[:2]} and no share is configured: "
             "nothing names the FSx file system to look for")
    systems = awsfacts.fsx_windows_file_systems(session)
    evidence["file_systems"] = [{"id": f.file_system_id, "type": f.type, "dns": f.dns_name,
                                 "lifecycle": f.lifecycle} for f in systems]
    evidence["mapped_servers"] = sorted(servers)
    by_dns = {f.dns_name.lower(): f for f in systems if f.dns_name}
    problems = []
    for server in sorted(servers):
        fs = by_dns.get(server)
        if fs is None:
            problems.append(f"no FSx file system has DNS name {server}")
        elif fs.type != "WINDOWS":
            problems.append(f"FSx {fs.file_system_id} ({server}) is {fs.type}, not WINDOWS")
        elif fs.lifecycle not in (None, "AVAILABLE", "UPDATING"):
            problems.append(f"FSx {fs.file_system_id} ({server}) is {fs.lifecycle}")
        else:
            cluster.facts["fsx"] = {"id": fs.file_system_id, "dns": fs.dns_name,
                                    "lifecycle": fs.lifecycle}
    if problems:
        fail("; ".join(problems))


@pytest.mark.winstor_check("SMB-PSA-01", "hostPath pods need a privileged namespace; the "
                           "exposure is reported")
def test_hostpath_pod_security(cluster: Cluster, namespace: str, host_namespace: str,
                               evidence: dict) -> None:
    levels = {}
    for ns in (namespace, host_namespace):
        labels = cluster.api.get(NAMESPACES, ns)["metadata"].get("labels") or {}
        levels[ns] = labels.get("pod-security.kubernetes.io/enforce", "(none)")
    evidence["pod_security"] = levels
    evidence["host_path"] = cluster.target.host_path
    cluster.facts["hostpath_exposure"] = {"namespace": host_namespace,
                                          "level": levels[host_namespace],
                                          "host_path": cluster.target.host_path}
    probe_pod = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "winstor-psa-dry-run", "namespace": namespace,
                              "labels": cluster.labels()},
                 "spec": {"containers": [{"name": "c", "image": cluster.image()}],
                          "volumes": [{"name": "share", "hostPath": {
                              "path": cluster.platform.path(cluster.target.host_path),
                              "type": "Directory"}}]}}
    try:
        cluster.api.dry_run_create(PODS, probe_pod, namespace)
    except KubeError as err:
        if err.status == 403 and "hostPath" in err.message:
            evidence["baseline_refusal"] = err.message
            return
        fail(f"a dry-run hostPath pod in {namespace} (enforce={levels[namespace]}) failed "
             f"unexpectedly: {err}")
    fail(f"namespace {namespace} enforces Pod Security {levels[namespace]!r}, yet a hostPath "
         f"pod was admitted: hostPath {cluster.target.host_path} would be exposed to any pod "
         "(is Pod Security admission enabled?)")
