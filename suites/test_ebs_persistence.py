"""EBS persistence: the seed's claim binds where its pod runs, and C:\\data keeps
its files when the pod is replaced."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from winstor.aws import facts as awsfacts
from winstor.cluster import provision
from winstor.cluster.checkkit import fail, probe
from winstor.cluster.kube import NODES, PODS, PVS
from winstor.cluster.outcome import Deferred
from winstor.cluster.target import Cluster
from winstor.cluster.waits import WaitFailed, wait_gone
from winstor.fixtures.workloads import Workload

pytestmark = pytest.mark.ebs

DATA = "C:\\data"


def _pv_of(cluster: Cluster, w: Workload) -> dict:
    return cluster.api.get(PVS, w.claim["spec"]["volumeName"])


def _volume_id(pv: dict) -> str | None:
    spec = pv["spec"]
    if "awsElasticBlockStore" in spec:
        return spec["awsElasticBlockStore"]["volumeID"].rsplit("/", 1)[-1]
    if spec.get("csi", {}).get("driver") == "ebs.csi.aws.com":
        return spec["csi"]["volumeHandle"]
    return None


@pytest.mark.winstor_check("EBS-CLAIM-01", "The claim waits for its first consumer",
                           order=10)
def test_claim_waits_for_consumer(cluster: Cluster, claim: provision.ClaimState,
                                  evidence: dict) -> None:
    ev = claim.event_before_consumer
    evidence["phase_before_consumer"] = claim.phase_before_consumer
    evidence["event_before_consumer"] = ev and {"reason": ev.get("reason"),
                                               "message": ev.get("message")}
    if claim.phase_before_consumer != "Pending":
        fail(f"claim {claim.namespace}/{claim.name} was {claim.phase_before_consumer} before "
             "any pod used it; a WaitForFirstConsumer class must keep it Pending")
    if ev is None or ev.get("reason") != "WaitForFirstConsumer":
        seen = f"{ev.get('reason')}: {ev.get('message')}" if ev else "no event"
        fail(f"claim {claim.namespace}/{claim.name} did not report WaitForFirstConsumer "
             f"before it had a consumer ({seen})")


@pytest.mark.winstor_check("EBS-BIND-01", "The claim binds to an NTFS volume in the pod's zone")
def test_claim_bound_in_pod_zone(cluster: Cluster, seed_workload: Deferred[Workload],
                                 evidence: dict) -> None:
    w = seed_workload.require()
    if w.claim["status"].get("phase") != "Bound":
        fail(f"claim {w.namespace}/{w.claim['metadata']['name']} is "
             f"{w.claim['status'].get('phase')} while its pod runs")
    pv = _pv_of(cluster, w)
    spec = pv["spec"]
    fs_type = (spec.get("awsElasticBlockStore") or spec.get("csi") or {}).get("fsType")
    node = cluster.api.get(NODES, w.node)
    zone = (node["metadata"].get("labels") or {}).get("topology.kubernetes.io/zone")
    terms = ((spec.get("nodeAffinity") or {}).get("required") or {}).get(
        "nodeSelectorTerms") or []
    zones = {v for t in terms for e in t.get("matchExpressions", [])
             if e["key"].endswith("/zone") for v in e.get("values", [])}
    evidence.update(pv=pv["metadata"]["name"], fs_type=fs_type, pod_node=w.node,
                    node_zone=zone, pv_zones=sorted(zones))
    if (fs_type or "").lower() != "ntfs":
        fail(f"persistent volume {pv['metadata']['name']} has fsType {fs_type!r}, not ntfs")
    if zone not in zones:
        fail(f"persistent volume {pv['metadata']['name']} is pinned to zone(s) "
             f"{sorted(zones) or 'none'} but its pod runs on {w.node} in {zone}")


@pytest.mark.winstor_check("EBS-MOUNT-01", "C:\\data is a directory in the pod's C:\\")
def test_data_directory_listed(cluster: Cluster, seed_workload: Deferred[Workload],
                               evidence: dict) -> None:
    w = seed_workload.require()
    listing = probe(cluster, w.namespace, w.pod_name, "list-dir", {"path": "C:\\"},
                    evidence=evidence)
    entry = next((e for e in listing.get("entries") or []
                  if e["name"].lower() == "data"), None)
    if entry is None:
        fail(f"C:\\ in pod {w.namespace}/{w.pod_name} has no 'data' entry; the claim is not "
             "mounted at C:\\data")
    if entry["type"] != "Directory":
        fail(f"C:\\data in pod {w.namespace}/{w.pod_name} is a {entry['type']}, not a "
             "directory")


@pytest.mark.persistence
@pytest.mark.disruptive
@pytest.mark.winstor_check("EBS-PERSIST-01", "Files on C:\\data survive pod replacement")
def test_data_survives_pod_replacement(cluster: Cluster, seed_workload: Deferred[Workload],
                                       evidence: dict) -> None:
    w = seed_workload.require()
    marker = f"winstor {cluster.run_id} {secrets.token_hex(8)}"
    written = probe(cluster, w.namespace, w.pod_name, "write-marker",
                    {"path": DATA, "marker": marker, "payload_bytes": 65536}, evidence=evidence)
    old = w.pod
    with cluster.phase("pod replace", old["metadata"]["name"]):
        try:
            provision.delete_pod(cluster, w.namespace, old["metadata"]["name"])
            new = provision.deployment_pod(cluster, w.namespace, w.deployment,
                                           not_uid=old["metadata"]["uid"],
                                           claims=(w.claim["metadata"]["name"],))
        except WaitFailed as err:
            fail(f"the replacement pod of deployment {w.namespace}/"
                 f"{w.deployment['metadata']['name']} did not start: {err}")
    w.pod = new
    evidence.update(first_pod=old["metadata"]["name"], first_node=old["spec"]["nodeName"],
                    second_pod=new["metadata"]["name"], second_node=new["spec"]["nodeName"])
    back = probe(cluster, w.namespace, w.pod_name, "read-marker", {"path": DATA},
                 evidence=evidence)
    if not back.get("marker_exists"):
        fail(f"the marker file written by pod {old['metadata']['name']} is gone in "
             f"replacement pod {w.pod_name} ({DATA}\\winstor-marker.txt)")
    if back.get("marker") != marker:
        fail(f"the marker in pod {w.pod_name} reads {back.get('marker')!r}, "
             f"expected {marker!r}")
    if not back.get("payload_exists") or back.get("sha256") != written["sha256"]:
        fail(f"the payload in pod {w.pod_name} has sha256 {back.get('sha256')} "
             f"({back.get('bytes')} bytes); written: {written['sha256']} "
             f"({written['bytes']} bytes)")


@pytest.mark.aws
@pytest.mark.winstor_check("EBS-VOLUME-01", "The EBS volume behind the claim is gp2, 1 GiB, "
                           "tagged, attached to the pod's node")
def test_ebs_volume_facts(cluster: Cluster, seed_workload: Deferred[Workload],
                          aws: Any, evidence: dict) -> None:
    w = seed_workload.require()
    session = aws
    pv = _pv_of(cluster, w)
    volume_id = _volume_id(pv)
    if volume_id is None:
        fail(f"persistent volume {pv['metadata']['name']} is not an EBS volume")
    facts = awsfacts.volume_facts(session, volume_id)
    if facts is None:
        fail(f"EBS volume {volume_id} behind {pv['metadata']['name']} does not exist in EC2")
    pod = cluster.api.get(PODS, w.pod_name, w.namespace)
    node = cluster.api.get(NODES, pod["spec"]["nodeName"])
    instance = awsfacts.parse_provider_id(node["spec"].get("providerID", ""))[1]
    attached = [a for a in facts.attachments
                if a.instance_id == instance and a.state == "attached"]
    evidence.update(volume=volume_id, type=facts.volume_type, size_gib=facts.size_gib,
                    zone=facts.zone, tags=facts.tags,
                    attachments=[[a.instance_id, a.device, a.state] for a in facts.attachments],
                    node_instance=instance)
    problems = []
    if facts.volume_type != "gp2":
        problems.append(f"type {facts.volume_type}, not gp2")
    if facts.size_gib != 1:
        problems.append(f"size {facts.size_gib} GiB, not 1")
    if facts.tags.get("kubernetes.io/created-for/pvc/name") != w.claim["metadata"]["name"]:
        problems.append("no kubernetes.io/created-for/pvc/name tag naming the claim")
    if not attached:
        problems.append(f"not attached to {instance} (node {node['metadata']['name']}); "
                        "attachments: " + (", ".join(f"{a.instance_id} ({a.state})"
                                                      for a in facts.attachments) or "none"))
    if problems:
        fail(f"EBS volume {volume_id}: " + "; ".join(problems))


@pytest.mark.aws
@pytest.mark.disruptive
@pytest.mark.winstor_check("EBS-CLEANUP-01", "Deleting the claim deletes the EBS volume",
                           order=90)
def test_volume_deleted_with_claim(cluster: Cluster, seed_workload: Deferred[Workload],
                                   aws: Any, evidence: dict) -> None:
    w = seed_workload.require()
    session = aws
    pv = _pv_of(cluster, w)
    volume_id = _volume_id(pv)
    name = w.deployment["metadata"]["name"]
    from winstor.cluster.kube import DEPLOYMENTS
    with cluster.phase("cleanup", "deployment, claim, volume"):
        cluster.api.delete(DEPLOYMENTS, name, w.namespace, propagation="Foreground")
        try:
            wait_gone(cluster.api, PODS, w.pod_name, w.namespace,
                      what=f"pod {w.pod_name} to go", timeout=cluster.timeouts.pod_delete)
            provision.delete_claim_and_volume(cluster, w.namespace, w.claim["metadata"]["name"])
        except WaitFailed as err:
            fail(f"cleanup did not finish: {err}")
    facts = awsfacts.volume_facts(session, volume_id) if volume_id else None
    evidence.update(volume=volume_id, after=facts and facts.state)
    if facts is not None and facts.state not in ("deleted", "deleting"):
        fail(f"EBS volume {volume_id} still exists ({facts.state}) after its claim and "
             f"persistent volume {pv['metadata']['name']} were deleted")
