"""csi-proxy on every Windows node: the v1 pipes, the running service, its version."""

from __future__ import annotations

import contextlib

import pytest

from winstor.aws import facts as awsfacts
from winstor.cluster.checkkit import fail, probe
from winstor.cluster.manifests import NODE_PROBE
from winstor.cluster.outcome import Deferred
from winstor.cluster.target import Cluster

pytestmark = pytest.mark.csi_proxy

V1_PIPES = ("csi-proxy-disk-v1", "csi-proxy-filesystem-v1", "csi-proxy-volume-v1",
            "csi-proxy-smb-v1")


def _facts(cluster: Cluster, node: str, pods: dict[str, Deferred[dict]], namespace: str,
           evidence: dict) -> dict:
    cache = cluster.facts.setdefault("csi_proxy", {})
    if node not in cache:
        pod = pods[node].require()
        cache[node] = probe(cluster, namespace, pod["metadata"]["name"], "csi-proxy",
                            container=NODE_PROBE, evidence=evidence)
    else:
        evidence.setdefault("probes", []).append({"probe": "csi-proxy", "node": node,
                                                  "data": cache[node], "cached": True})
    return cache[node]


@pytest.mark.winstor_check("CSIPROXY-PIPES-01", "The csi-proxy v1 pipes exist on every "
                           "Windows node")
def test_v1_pipes(cluster: Cluster, windows_nodes: list[dict],
                  node_probes: dict[str, Deferred[dict]], host_namespace: str,
                  evidence: dict) -> None:
    problems = []
    for node in windows_nodes:
        name = node["metadata"]["name"]
        pipes = set(_facts(cluster, name, node_probes, host_namespace, evidence)["pipes"] or [])
        missing = [p for p in V1_PIPES if p not in pipes]
        if missing:
            problems.append(f"node {name} lacks " + ", ".join(f"\\\\.\\pipe\\{p}"
                                                                for p in missing))
    if problems:
        fail("csi-proxy pipes missing: " + "; ".join(problems))


@pytest.mark.winstor_check("CSIPROXY-SVC-01", "The csiproxy service runs on every Windows node")
def test_service_running(cluster: Cluster, windows_nodes: list[dict],
                         node_probes: dict[str, Deferred[dict]], host_namespace: str,
                         evidence: dict) -> None:
    problems = []
    for node in windows_nodes:
        name = node["metadata"]["name"]
        svc = _facts(cluster, name, node_probes, host_namespace, evidence)["service"]
        if svc is None:
            problems.append(f"node {name} has no csiproxy service")
        elif svc.get("status") != "Running":
            problems.append(f"the csiproxy service on node {name} is {svc.get('status')}")
    if problems:
        fail("; ".join(problems))


@pytest.mark.aws
@pytest.mark.winstor_check("CSIPROXY-VER-01", "csi-proxy's version is what the node's AMI "
                           "ships")
def test_version_matches_ami(cluster: Cluster, windows_nodes: list[dict],
                             node_probes: dict[str, Deferred[dict]], host_namespace: str,
                             evidence: dict) -> None:
    session = cluster.aws_session()
    problems, unknown = [], []
    infos: dict[str, awsfacts.InstanceFacts] = {}
    if session is not None:  # every node's instance in one call (a malformed id: below)
        ids = []
        for node in windows_nodes:
            with contextlib.suppress(ValueError):
                ids.append(awsfacts.parse_provider_id(node["spec"].get("providerID", ""))[1])
        infos = awsfacts.instance_facts(session, ids)
    for node in windows_nodes:
        name = node["metadata"]["name"]
        facts = _facts(cluster, name, node_probes, host_namespace, evidence)
        if facts["service"] is None:
            problems.append(f"node {name} has no csiproxy service, so no csi-proxy version")
            continue
        version = facts.get("version")
        expected = None
        if session is not None:
            instance = awsfacts.parse_provider_id(node["spec"].get("providerID", ""))[1]
            info = infos.get(instance)
            expected = awsfacts.expected_csi_proxy_version(info.ami_name if info else None)
        evidence.setdefault("versions", {})[name] = {"found": version, "expected": expected}
        cluster.facts.setdefault("csi_proxy_versions", {})[name] = version
        if version is None or expected is None:
            unknown.append(name)
        elif not _same_version(version, expected):
            problems.append(f"node {name} runs csi-proxy {version}, its AMI ships {expected}")
    if problems:
        fail("; ".join(problems))
    if unknown and len(unknown) == len(windows_nodes):
        evidence["note"] = ("version not comparable on " + ", ".join(unknown)
                            + " (binary without version resource, or AMI not in the table)")


def _same_version(found: str, expected: str) -> bool:
    f = found.lstrip("v").split(".")
    e = expected.lstrip("v").split(".")
    return f[: len(e)] == e
