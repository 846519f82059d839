"""EBS lifecycle: a claim grows while its pod runs (and NTFS with it), the seed's class
refuses to grow, one ReadWriteOnce volume is never attached to two nodes, a volume follows
its pod off a drained node, and a `Retain` claim leaves its volume for winstor to remove.

All but EBS-RESIZE-02 work on the lifecycle workload (`fixtures/ebs_lifecycle.py`), so the
seed's claim and pod stay as the other EBS checks expect them.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

import pytest

from winstor.aws import ebs as awsebs
from winstor.aws import facts as awsfacts
from winstor.cluster import ebs_lifecycle as life
from winstor.cluster import provision
from winstor.cluster.checkkit import fail, probe
from winstor.cluster.kube import NODES, PODS, PVCS, PVS, STORAGECLASSES, KubeError
from winstor.cluster.outcome import Deferred
from winstor.cluster.target import Cluster
from winstor.cluster.waits import WaitFailed
from winstor.fixtures.workloads import Workload

pytestmark = pytest.mark.ebs

DATA = "C:\\data"
GIB = 1 << 30
GROWN = "2Gi"
REFUSAL = ("only dynamically provisioned pvc can be resized and the storageclass that "
           "provisions the pvc must support resize")
RESIZE_REASONS = ("ExternalExpanding", "Resizing", "FileSystemResizeRequired",
                  "FileSystemResizeSuccessful", "VolumeResizeSuccessful", "VolumeResizeFailed",
                  "FileSystemResizeFailed")


def _gib(n: Any) -> str:
    return f"{int(n) / GIB:.2f} GiB" if isinstance(n, (int, float)) else "unknown"


def _instance_of(cluster: Cluster, node: str) -> str:
    provider = cluster.api.get(NODES, node)["spec"].get("providerID", "")
    return awsfacts.parse_provider_id(provider)[1] if provider.startswith("aws://") else ""


def _write_marker(cluster: Cluster, w: life.Lifecycle, evidence: dict) -> tuple[str, dict]:
    marker = f"winstor {cluster.run_id} {secrets.token_hex(8)}"
    written = probe(cluster, w.namespace, w.pod_name, "write-marker",
                    {"path": DATA, "marker": marker, "payload_bytes": 65536}, evidence=evidence)
    return marker, written


def _marker_problems(cluster: Cluster, w: life.Lifecycle, marker: str, written: dict,
                     evidence: dict) -> list[str]:
    back = probe(cluster, w.namespace, w.pod_name, "read-marker", {"path": DATA},
                 evidence=evidence)
    if not back.get("marker_exists"):
        return [f"the marker file written before is gone in {DATA} of pod {w.pod_name} "
                f"(on {w.node})"]
    if back.get("marker") != marker:
        return [f"the marker in {DATA} of pod {w.pod_name} reads {back.get('marker')!r}, "
                f"expected {marker!r}"]
    if back.get("sha256") != written.get("sha256"):
        return [f"the payload in {DATA} of pod {w.pod_name} has sha256 {back.get('sha256')}, "
                f"written: {written.get('sha256')}"]
    return []


@pytest.mark.storageclass
@pytest.mark.winstor_check("EBS-RESIZE-02", "The seed class refuses to grow its claim",
                           order=20)
def test_seed_class_refuses_resize(cluster: Cluster, gp2_windows: provision.ClassState,
                                   seed_workload: Deferred[Workload], evidence: dict) -> None:
    w = seed_workload.require()
    claim = w.claim["metadata"]["name"]
    sc = cluster.api.get(STORAGECLASSES, gp2_windows.name)
    expandable = sc.get("allowVolumeExpansion")
    evidence.update(storage_class=gp2_windows.name, allow_volume_expansion=expandable,
                    claim=f"{w.namespace}/{claim}", capacity=life.claim_capacity(w.claim),
                    request=GROWN, dry_run=True)
    if expandable is True:
        fail(f"StorageClass {gp2_windows.name} allows volume expansion "
             "(allowVolumeExpansion: true), unlike the seed's class: growing claim "
             f"{w.namespace}/{claim} would be accepted, so the seed's refusal cannot be shown")
    try:
        life.grow(cluster, w.namespace, claim, GROWN, dry_run=True)
    except KubeError as err:
        evidence.update(status=err.status, reason=err.reason, message=err.message)
        if err.status == 403 and REFUSAL in err.message:
            evidence["verdict"] = (f"refused, as the seed class {gp2_windows.name} (no "
                                   "allowVolumeExpansion) should: its claims keep their size")
            return
        fail(f"growing claim {w.namespace}/{claim} to {GROWN} was refused, but not by the "
             f"resize admission ({err.status} {err.reason}: {err.message})")
    fail(f"the API server accepted growing claim {w.namespace}/{claim} of class "
         f"{gp2_windows.name} to {GROWN} (a dry run), though the class does not allow volume "
         f"expansion: it should answer 403 Forbidden \"{REFUSAL}\"")


@pytest.mark.aws
@pytest.mark.winstor_check("EBS-RESIZE-01", "A running pod's claim grows from 1Gi to 2Gi, "
                           "and NTFS at C:\\data with it", order=55)
def test_claim_grows_while_pod_runs(cluster: Cluster,
                                    lifecycle_workload: Deferred[life.Lifecycle], aws: Any,
                                    evidence: dict) -> None:
    w = lifecycle_workload.require()
    ns, claim = w.namespace, life.CLAIM_NAME
    marker, written = _write_marker(cluster, w, evidence)
    before = probe(cluster, ns, w.pod_name, "volume-info", {"path": DATA}, evidence=evidence)
    evidence.update(claim=f"{ns}/{claim}", pv=w.pv_name, volume=w.volume_id, pod=w.pod_name,
                    node=w.node, capacity_before=life.claim_capacity(w.claim))
    seen: list[str] = []
    with cluster.phase("volume resize", claim):
        try:
            life.grow(cluster, ns, claim, GROWN)
        except KubeError as err:
            fail(f"the API server refused to grow claim {ns}/{claim} of class "
                 f"{life.CLASS_NAME} (allowVolumeExpansion: true) to {GROWN}: {err.status} "
                 f"{err.reason}: {err.message}")
        try:
            grown = life.wait_resized(cluster, ns, claim, GROWN, w.pod_name, seen)
        except WaitFailed as err:
            now = err.obj or cluster.api.get(PVCS, claim, ns)
            conditions = "; ".join(f"{c['type']}" + (f": {c['message']}" if c.get("message")
                                                     else "")
                                   for c in life.resize_conditions(now)) or "none"
            evidence.update(conditions_seen=seen, capacity_after=life.claim_capacity(now))
            fail(f"{err} (the claim's capacity: {life.claim_capacity(now)}; its resize "
                 f"conditions: {conditions})")
    pv = cluster.api.get(PVS, w.pv_name)
    w.claim, w.pv = grown, pv
    events = [e for e in life.events_about(cluster, ns, claim, w.pod_name)
              if e.get("reason") in RESIZE_REASONS]
    reasons = {e["reason"] for e in events}
    evidence.update(conditions_seen=seen, capacity_after=life.claim_capacity(grown),
                    pv_capacity=(pv["spec"].get("capacity") or {}).get("storage"),
                    events=[f"{e['reason']} on {(e.get('involvedObject') or {}).get('kind', '')}"
                            f" from {(e.get('source') or {}).get('component', '')}: "
                            f"{e.get('message', '')}" for e in events])
    problems = []
    if (pv["spec"].get("capacity") or {}).get("storage") != GROWN:
        problems.append(f"persistent volume {w.pv_name} has capacity "
                        f"{(pv['spec'].get('capacity') or {}).get('storage')}, not {GROWN}")
    if "Resizing" not in reasons:
        problems.append(f"no Resizing event: nothing reports the external resizer expanding "
                        f"{w.pv_name}")
    if "FileSystemResizeSuccessful" not in reasons:
        problems.append(f"no FileSystemResizeSuccessful event: the kubelet of {w.node} did "
                        "not report expanding the file system")
    volume_id = w.volume_id
    facts = awsfacts.volume_facts(aws, volume_id) if volume_id else None
    modifications = awsfacts.volume_modifications(aws, volume_id) if volume_id else []
    evidence.update(ec2_size_gib=facts and facts.size_gib, ec2_modifications=[
        [m.state, m.original_size_gib, m.target_size_gib] for m in modifications])
    if facts is None:
        problems.append(f"EBS volume {volume_id} behind {w.pv_name} does not exist in EC2")
    elif facts.size_gib != 2:
        problems.append(f"EBS volume {volume_id} is {facts.size_gib} GiB in EC2, not 2")
    last = modifications[-1] if modifications else None
    if facts is not None and (last is None or last.target_size_gib != 2
                              or last.state not in ("optimizing", "completed")):
        problems.append(f"EC2 shows no finished modification of {volume_id} to 2 GiB ("
                        + (f"last: {last.state}, {last.original_size_gib} -> "
                           f"{last.target_size_gib} GiB" if last else "none") + ")")
    after = probe(cluster, ns, w.pod_name, "volume-info", {"path": DATA}, evidence=evidence)
    size = after.get("size_bytes")
    evidence.update(ntfs_before=_gib(before.get("size_bytes")), ntfs_after=_gib(size))
    if (after.get("file_system") or "").upper() != "NTFS":
        problems.append(f"{DATA} in pod {w.pod_name} is on a {after.get('file_system')!r} "
                        "volume, not NTFS")
    if not isinstance(size, int) or not 1.9 * GIB <= size <= 2 * GIB:
        problems.append(f"the NTFS volume at {DATA} in pod {w.pod_name} is {_gib(size)} "
                        f"(partition {_gib(after.get('partition_bytes'))}, disk "
                        f"{_gib(after.get('disk_bytes'))}), not about 2 GiB")
    problems += _marker_problems(cluster, w, marker, written, evidence)
    if problems:
        fail("; ".join(problems))


def _multi_attach(ev: dict) -> bool:
    return ev.get("reason") == "FailedAttachVolume" and str(ev.get("message", "")).startswith(
        "Multi-Attach error")


@pytest.mark.winstor_check("EBS-MOVE-02", "A second pod on another node cannot attach the "
                           "ReadWriteOnce claim (Multi-Attach error)", order=60)
def test_second_node_cannot_attach(cluster: Cluster,
                                   lifecycle_workload: Deferred[life.Lifecycle],
                                   evidence: dict) -> None:
    w = lifecycle_workload.require()
    # The nodes of the zone must hold still: another run on the cluster may be draining one
    # (EBS-MOVE-01), and takes the same turn.
    hold = cluster.timeouts.pod_delete + cluster.timeouts.pod_start_windows
    try:
        with life.drain_lock(cluster, hold, hold) as lock:
            evidence["drain_lock"] = lock
            _second_pod(cluster, w, evidence)
    except WaitFailed as err:  # the lock (the probe waits fail inside)
        fail(str(err))


def _second_pod(cluster: Cluster, w: life.Lifecycle, evidence: dict) -> None:
    ns = w.namespace
    zone, others = life.same_zone_nodes(cluster, w.node)
    evidence.update(claim=f"{ns}/{life.CLAIM_NAME}", first_pod=w.pod_name, first_node=w.node,
                    zone=zone, other_nodes_in_zone=others)
    if not others:
        fail(f"no other Ready, schedulable Windows node of build {cluster.windows_build} in "
             f"zone {zone} besides {w.node}: a second pod of claim {ns}/{life.CLAIM_NAME} "
             "has nowhere its volume could be attached")
    target = others[0]
    evidence["second_node"] = target
    provision.create_pod(cluster, life.second_pod_body(cluster, w, target))
    try:
        try:
            event, pod = life.first_pod_event(cluster, ns, life.SECOND_POD, _multi_attach,
                                              cluster.timeouts.pod_start_windows)
        except WaitFailed as err:
            fail(f"pod {life.SECOND_POD} with claim {ns}/{life.CLAIM_NAME} on node {target} "
                 f"shows no Multi-Attach error: {err}")
        if event is None:
            fail(f"pod {life.SECOND_POD} started on node {target} with claim "
                 f"{ns}/{life.CLAIM_NAME} while pod {w.pod_name} uses it on {w.node}: the "
                 "ReadWriteOnce volume was attached to two nodes")
        message = event.get("message", "")
        phase = (pod.get("status") or {}).get("phase")
        evidence.update(event=f"{event.get('reason')}: {message}", second_pod_phase=phase)
        problems = []
        if w.pv_name not in message:
            problems.append(f"the Multi-Attach error does not name volume {w.pv_name}: "
                            f"{message}")
        if w.pod_name not in message:
            problems.append(f"the Multi-Attach error does not name pod {w.pod_name}, which "
                            f"uses the volume: {message}")
        current = cluster.api.get_or_none(PODS, life.SECOND_POD, ns) or pod
        if (current.get("status") or {}).get("phase") == "Running":
            problems.append(f"pod {life.SECOND_POD} is Running despite the Multi-Attach error")
        if problems:
            fail("; ".join(problems))
    finally:
        with contextlib.suppress(Exception):  # the fixture's teardown retries it
            life.remove_pod(cluster, ns, life.SECOND_POD)


@pytest.mark.aws
@pytest.mark.disruptive
@pytest.mark.drain
@pytest.mark.winstor_check("EBS-MOVE-01", "Draining the pod's node moves its EBS volume to "
                           "another node of the zone, data intact", order=70)
def test_volume_follows_drained_pod(cluster: Cluster,
                                    lifecycle_workload: Deferred[life.Lifecycle], aws: Any,
                                    evidence: dict) -> None:
    w = lifecycle_workload.require()
    ns = w.namespace
    first_node, old_uid = w.node, w.pod["metadata"]["uid"]
    zone, others = life.same_zone_nodes(cluster, first_node)
    evidence.update(first_pod=w.pod_name, first_node=first_node, zone=zone,
                    other_nodes_in_zone=others, pv=w.pv_name, volume=w.volume_id)
    marker, written = _write_marker(cluster, w, evidence)
    cordon: dict = {}
    hold = cluster.timeouts.pod_delete + cluster.timeouts.pod_start_windows
    try:
        with life.drain_lock(cluster, hold, hold) as lock, cluster.phase("drain", first_node), \
                life.cordoned(cluster, first_node, cordon):
            evidence["drain_lock"] = lock
            try:
                drained = life.drain(cluster, first_node)
            except KubeError as err:
                fail(f"draining node {first_node} failed: {err}")
            evidence.update(evicted=drained.evicted, left_on_node=drained.left)
            if f"{ns}/{w.pod_name}" not in drained.evicted:
                fail(f"draining node {first_node} did not evict pod {ns}/{w.pod_name}")
            try:
                moved = life.running(cluster, ns, w.deployment, not_uid=old_uid,
                                     terminal_event=life.move_terminal_event(cluster))
            except WaitFailed as err:
                fail(f"the pod of deployment {ns}/{life.DEPLOYMENT_NAME}, drained off "
                     f"{first_node}, did not start again (other Windows nodes of build "
                     f"{cluster.windows_build} in zone {zone}: {', '.join(others) or 'none'}):"
                     f" {err}")
    except WaitFailed as err:  # the drain lock
        fail(str(err))
    finally:
        evidence["cordon"] = cordon
    w.pod, w.claim, w.pv = moved.pod, moved.claim, moved.pv
    second_node = moved.node
    nodes = {n["metadata"]["name"]: n for n in cluster.api.items(NODES)}
    second_zone = (nodes.get(second_node, {}).get("metadata", {}).get("labels") or {}).get(
        life.ZONE_LABEL)
    attachments = life.attachments_of(cluster, w.pv_name)
    first_instance, second_instance = (_instance_of(cluster, first_node),
                                       _instance_of(cluster, second_node))
    facts = awsfacts.volume_facts(aws, w.volume_id) if w.volume_id else None
    evidence.update(second_pod=w.pod_name, second_node=second_node, second_zone=second_zone,
                    volume_attachments=[[va["spec"]["nodeName"],
                                         (va.get("status") or {}).get("attached")]
                                        for va in attachments],
                    first_instance=first_instance, second_instance=second_instance,
                    ec2_attachments=[[a.instance_id, a.state] for a in facts.attachments]
                    if facts else None)
    problems = []
    if second_node == first_node:
        problems.append(f"the replacement pod {w.pod_name} runs on the drained node {first_node}")
    if second_zone != zone:
        problems.append(f"the replacement pod runs on {second_node} in zone {second_zone}, not "
                        f"in the volume's zone {zone}")
    if [va["spec"]["nodeName"] for va in attachments
            if (va.get("status") or {}).get("attached")] != [second_node]:
        problems.append(f"VolumeAttachments of {w.pv_name}: "
                        + (", ".join(f"{va['spec']['nodeName']} (attached: "
                                     f"{(va.get('status') or {}).get('attached')})"
                                     for va in attachments) or "none")
                        + f"; expected one, attached, on {second_node}")
    if facts is None:
        problems.append(f"EBS volume {w.volume_id} does not exist in EC2")
    else:
        attached = {a.instance_id for a in facts.attachments if a.state == "attached"}
        if second_instance not in attached:
            problems.append(f"EBS volume {w.volume_id} is not attached to {second_instance} "
                            f"(node {second_node}) in EC2")
        if first_instance in {a.instance_id for a in facts.attachments}:
            problems.append(f"EBS volume {w.volume_id} is still attached to {first_instance} "
                            f"(drained node {first_node}) in EC2")
    problems += _marker_problems(cluster, w, marker, written, evidence)
    if problems:
        fail("; ".join(problems))


@pytest.mark.aws
@pytest.mark.disruptive
@pytest.mark.winstor_check("EBS-RETAIN-01", "A Retain claim leaves its PV Released and its EBS "
                           "volume; winstor removes both", order=80)
def test_retain_keeps_the_volume(cluster: Cluster,
                                 lifecycle_workload: Deferred[life.Lifecycle], aws: Any,
                                 evidence: dict) -> None:
    w = lifecycle_workload.require()
    ns, pv_name, volume_id = w.namespace, w.pv_name, w.volume_id
    pv = cluster.api.get(PVS, pv_name)
    policy = pv["spec"].get("persistentVolumeReclaimPolicy")
    evidence.update(claim=f"{ns}/{life.CLAIM_NAME}", pv=pv_name, volume=volume_id,
                    reclaim_policy=policy)
    if policy != "Retain":
        fail(f"persistent volume {pv_name} of class {life.CLASS_NAME} (reclaimPolicy: Retain) "
             f"has reclaim policy {policy}, not Retain: deleting its claim would delete EBS "
             f"volume {volume_id}")
    with cluster.phase("release", life.CLAIM_NAME):
        try:
            life.delete_workload(cluster, ns)
            released = life.wait_released(cluster, pv_name)
        except WaitFailed as err:
            fail(f"claim {ns}/{life.CLAIM_NAME} was deleted, but persistent volume {pv_name} "
                 f"did not stay as Released: {err}")
    ref = released["spec"].get("claimRef") or {}
    facts = awsfacts.volume_facts(aws, volume_id) if volume_id else None
    evidence.update(pv_phase=(released.get("status") or {}).get("phase"),
                    claim_ref=f"{ref.get('namespace')}/{ref.get('name')}",
                    volume_state_after_release=facts and facts.state)
    if facts is None or facts.state in ("deleting", "deleted"):
        fail(f"EBS volume {volume_id} was deleted with claim {ns}/{life.CLAIM_NAME}, though "
             f"persistent volume {pv_name} is Released with reclaim policy Retain")
    with cluster.phase("cleanup", f"{pv_name}, {volume_id}"):
        try:
            evidence["removed"] = life.remove_retained(cluster, aws, released)
        except (WaitFailed, awsebs.VolumeStays) as err:
            fail(f"winstor could not remove the retained persistent volume {pv_name} and EBS "
                 f"volume {volume_id}: {err}")
    left = []
    if cluster.api.get_or_none(PVS, pv_name) is not None:
        left.append(f"persistent volume {pv_name}")
    left += [f"persistent volume {p['metadata']['name']} (claim {ns}/{life.CLAIM_NAME})"
             for p in life.pvs_of_claim(cluster, ns)]
    after = awsfacts.volume_facts(aws, volume_id) if volume_id else None
    if after is not None and after.state != "deleted":
        left.append(f"EBS volume {volume_id} ({after.state})")
    # Any other volume made for this PV (the names are the claim's uid: clusters of one run
    # share claim names and namespaces, and may share an AWS account).
    tagged = {v for key in ("CSIVolumeName", "kubernetes.io/created-for/pv/name")
              for v in awsfacts.find_tagged_volumes(aws, key, pv_name)}
    for other in sorted(tagged):
        found = awsfacts.volume_facts(aws, other)
        if found and found.state != "deleted":
            left.append(f"EBS volume {other} tagged for persistent volume {pv_name} "
                        f"({found.state})")
    evidence["left"] = left
    if left:
        fail("after removing the retained volume, still there: " + ", ".join(sorted(set(left))))
