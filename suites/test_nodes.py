"""Windows nodes: ready and schedulable, honest build labels, EKS-optimized AMIs."""

from __future__ import annotations

from typing import Any

import pytest

from winstor.aws import facts as awsfacts
from winstor.cluster.checkkit import fail, probe
from winstor.cluster.manifests import NODE_PROBE
from winstor.cluster.outcome import Deferred
from winstor.cluster.target import Cluster

pytestmark = pytest.mark.nodes

BUILD_LABEL = "node.kubernetes.io/windows-build"
RELEASE_OF_BUILD = {"10.0.17763": "2019", "10.0.20348": "2022", "10.0.26100": "2025"}


def _ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions", []))


@pytest.mark.winstor_check("NODES-READY-01", "Ready, schedulable Windows nodes of the expected "
                           "build")
def test_windows_nodes_ready(cluster: Cluster, windows_nodes: list[dict],
                             evidence: dict) -> None:
    build = cluster.windows_build
    usable = [n["metadata"]["name"] for n in windows_nodes
              if _ready(n) and not n["spec"].get("unschedulable")
              and (n["metadata"].get("labels") or {}).get(BUILD_LABEL) == build]
    evidence["windows_nodes"] = [n["metadata"]["name"] for n in windows_nodes]
    evidence["usable_with_expected_build"] = usable
    not_ready = [n["metadata"]["name"] for n in windows_nodes if not _ready(n)]
    if not usable:
        fail(f"no Ready, schedulable Windows node labelled {BUILD_LABEL}={build} on "
             f"{cluster.name} (Windows nodes: {', '.join(evidence['windows_nodes'])}"
             + (f"; not Ready: {', '.join(not_ready)}" if not_ready else "") + ")")


@pytest.mark.winstor_check("NODES-BUILD-01", "Build labels match the Windows build the nodes "
                           "run")
def test_build_labels_match_os(cluster: Cluster, windows_nodes: list[dict],
                               node_probes: dict[str, Deferred[dict]], host_namespace: str,
                               evidence: dict) -> None:
    problems = []
    for node in windows_nodes:
        name = node["metadata"]["name"]
        label = (node["metadata"].get("labels") or {}).get(BUILD_LABEL)
        pod = node_probes[name].require()
        info = probe(cluster, host_namespace, pod["metadata"]["name"], "os-info",
                     container=NODE_PROBE, evidence=evidence)
        evidence.setdefault("builds", {})[name] = {"label": label, "os": info.get("build"),
                                                  "version": info.get("version")}
        if label is None:
            problems.append(f"node {name} has no {BUILD_LABEL} label (runs {info.get('build')})")
        elif label != info.get("build"):
            problems.append(f"node {name} is labelled {BUILD_LABEL}={label} but runs Windows "
                            f"build {info.get('build')}")
    if problems:
        fail("; ".join(problems))


@pytest.mark.aws
@pytest.mark.winstor_check("NODES-AMI-01", "Windows nodes run EKS-optimized Windows AMIs of "
                           "their build")
def test_nodes_run_eks_optimized_amis(cluster: Cluster, windows_nodes: list[dict],
                                      aws: Any, evidence: dict) -> None:
    session = aws
    ids = {}
    for node in windows_nodes:
        provider = node["spec"].get("providerID", "")
        if not provider.startswith("aws://"):
            fail(f"node {node['metadata']['name']} has no AWS providerID ({provider!r})")
        ids[node["metadata"]["name"]] = awsfacts.parse_provider_id(provider)[1]
    facts = awsfacts.instance_facts(session, list(ids.values()))
    problems = []
    for node in windows_nodes:
        name = node["metadata"]["name"]
        f = facts.get(ids[name])
        if f is None:
            problems.append(f"node {name}: instance {ids[name]} not found in EC2")
            continue
        evidence.setdefault("amis", {})[name] = {"instance": f.instance_id, "ami": f.ami_id,
                                                "ami_name": f.ami_name, "owner": f.ami_owner}
        cluster.facts.setdefault("node_amis", {})[name] = evidence["amis"][name]
        want = RELEASE_OF_BUILD.get((node["metadata"].get("labels") or {}).get(BUILD_LABEL, ""))
        if not f.is_eks_optimized_windows:
            problems.append(f"node {name} runs AMI {f.ami_id} ({f.ami_name or 'unnamed'}, "
                            f"owner {f.ami_owner}), not an EKS-optimized Windows AMI")
        elif want and f.windows_version != want:
            problems.append(f"node {name} runs a Windows Server {f.windows_version} AMI "
                            f"({f.ami_name}) but is labelled as {want}")
    if problems:
        fail("; ".join(problems))
