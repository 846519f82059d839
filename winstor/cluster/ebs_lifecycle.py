"""The EBS lifecycle's objects and operations: grow a claim, move its pod off a drained
node, give a second pod the same claim, and let a `Retain` claim go.

They work on a workload of their own - a claim of the class `gp2-windows-lifecycle` (the
seed's `gp2-windows` with `allowVolumeExpansion: true` and `reclaimPolicy: Retain`) and a
Deployment like the seed's mounting it at `C:\\data` - so that growing, moving and
releasing it leave the seed's claim and pod to the checks that judge them. The class is
shared by concurrent runs the way `gp2-windows` is (`provision.ensure_storage_class`).

Fixtures own when these run; checks call the operations and judge what they show.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from winstor.cluster import manifests, provision
from winstor.cluster.kube import (
    DEPLOYMENTS,
    EVENTS,
    NODES,
    PODS,
    PVCS,
    PVS,
    VOLUMEATTACHMENTS,
    KubeError,
    Resource,
    transient_retry,
)
from winstor.cluster.target import BUILD_LABEL, MANAGED_BY, RUN_LABEL, Cluster
from winstor.cluster.waits import (
    WaitFailed,
    default_terminal_event,
    pod_ready,
    wait_for,
    wait_gone,
)

CLASS_NAME = "gp2-windows-lifecycle"
CLAIM_NAME = "ebs-lifecycle-claim"
DEPLOYMENT_NAME = "windows-server-lifecycle"
SECOND_POD = "winstor-second-writer"
ZONE_LABEL = "topology.kubernetes.io/zone"
WANTED_CLASS: dict[str, Any] = {**provision.WANTED_CLASS, "allowVolumeExpansion": True,
                                "reclaimPolicy": "Retain"}
#: Set on a node while winstor holds it cordoned, so a later run or the janitor can tell
#: whose cordon it is.
CORDONED_BY = "winstor.io/cordoned-by-run"
#: One run at a time drains a node of a cluster: concurrent runs would cordon each other's
#: move targets. The Lease that says which run it is (kube-system, a fixed name).
LEASES = Resource("coordination.k8s.io/v1", "leases")
DRAIN_LEASE = "winstor-node-drain"
DRAIN_LEASE_NAMESPACE = "kube-system"
RESIZE_CONDITIONS = ("Resizing", "FileSystemResizePending", "ControllerResizeError",
                     "NodeResizeError")
_TRANSIENT_RESIZE = ("RequestLimitExceeded", "Throttling", "already exists", "Aborted")


@dataclass
class Lifecycle:
    """The lifecycle workload as the checks last saw it."""

    namespace: str
    deployment: dict
    pod: dict
    claim: dict
    pv: dict
    notes: list[str] = field(default_factory=list)

    @property
    def pod_name(self) -> str:
        return self.pod["metadata"]["name"]

    @property
    def node(self) -> str:
        return self.pod["spec"]["nodeName"]

    @property
    def pv_name(self) -> str:
        return self.pv["metadata"]["name"]

    @property
    def volume_id(self) -> str | None:
        return volume_id_of(self.pv)


def volume_id_of(pv: dict) -> str | None:
    """The EBS volume behind a PV: in-tree (`aws://zone/vol-`) or CSI."""
    spec = pv.get("spec") or {}
    if "awsElasticBlockStore" in spec:
        return str(spec["awsElasticBlockStore"]["volumeID"]).rsplit("/", 1)[-1]
    if (spec.get("csi") or {}).get("driver") == "ebs.csi.aws.com":
        return str(spec["csi"]["volumeHandle"])
    return None


# -- the objects -------------------------------------------------------------------------
def class_body(cluster: Cluster) -> dict:
    """The seed's class, renamed, growable and kept after its claim."""
    body = manifests.storage_class(cluster.labels())
    body["metadata"]["name"] = CLASS_NAME
    body["allowVolumeExpansion"] = True
    body["reclaimPolicy"] = "Retain"
    return body


def claim_body(cluster: Cluster, namespace: str) -> dict:
    body = manifests.claim(namespace, cluster.labels())
    body["metadata"]["name"] = CLAIM_NAME
    body["spec"]["storageClassName"] = CLASS_NAME
    return body


def deployment_body(cluster: Cluster, namespace: str) -> dict:
    """The seed's Deployment for the cluster's build, on the lifecycle claim."""
    dep = manifests.deployment(namespace, cluster.labels(), cluster.image(),
                               cluster.windows_build, cluster.platform)
    dep["metadata"]["name"] = DEPLOYMENT_NAME
    dep["spec"]["selector"]["matchLabels"]["app"] = DEPLOYMENT_NAME
    template = dep["spec"]["template"]
    template["metadata"]["labels"]["app"] = DEPLOYMENT_NAME
    for volume in template["spec"]["volumes"]:
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"]["claimName"] = CLAIM_NAME
    return dep


def start(cluster: Cluster, namespace: str) -> dict:
    """Create the claim and the Deployment (returned); its pod is waited for later."""
    provision.check_image_runs(cluster)
    cluster.api.create(PVCS, claim_body(cluster, namespace), namespace)
    return cluster.api.create(DEPLOYMENTS, deployment_body(cluster, namespace), namespace)


def running(cluster: Cluster, namespace: str, deployment: dict,
            not_uid: str | None = None,
            terminal_event: Callable[[dict], str | None] | None = None) -> Lifecycle:
    """Wait for a Ready pod of the Deployment (other than `not_uid`); the workload then."""
    pod = provision.deployment_pod(cluster, namespace, deployment, not_uid=not_uid,
                                   claims=(CLAIM_NAME,), terminal_event=terminal_event)
    claim = cluster.api.get(PVCS, CLAIM_NAME, namespace)
    pv = cluster.api.get(PVS, claim["spec"]["volumeName"])
    return Lifecycle(namespace, deployment, pod, claim, pv)


# -- growing a claim -------------------------------------------------------------------------
def grow(cluster: Cluster, namespace: str, claim: str, size: str, *,
         dry_run: bool = False) -> dict:
    """Ask for `size` (a merge patch of `spec.resources.requests.storage`); with `dry_run`
    admission answers and nothing changes. KubeError when the API server refuses."""
    path = PVCS.path(namespace, claim) + ("?dryRun=All" if dry_run else "")

    @transient_retry  # the same patch again changes nothing
    def patch() -> dict:
        return cluster.api.raw("PATCH", path, body={"spec": {"resources": {"requests": {
            "storage": size}}}}, content_type="application/merge-patch+json")
    return patch()


def resize_terminal_event(ev: dict) -> str | None:
    """A resize that cannot finish: the external resizer or the kubelet said it failed
    (retried throttling and in-flight operations aside)."""
    reason, message = ev.get("reason", ""), ev.get("message", "")
    if ev.get("type") == "Warning" and reason in ("VolumeResizeFailed",
                                                  "FileSystemResizeFailed"):
        if any(t in message for t in _TRANSIENT_RESIZE):
            return None
        return ("the volume could not be resized" if reason == "VolumeResizeFailed"
                else "the file system could not be resized")
    return default_terminal_event(ev)


def claim_capacity(claim: dict) -> str | None:
    return ((claim.get("status") or {}).get("capacity") or {}).get("storage")


def resize_conditions(claim: dict) -> list[dict]:
    return [c for c in (claim.get("status") or {}).get("conditions") or []
            if c.get("type") in RESIZE_CONDITIONS]


def wait_resized(cluster: Cluster, namespace: str, claim: str, size: str, pod: str,
                 seen: list[str]) -> dict:
    """Wait until the claim's capacity is `size` with no resize condition left; each
    resize condition the claim shows on the way is added to `seen` when first shown."""
    def done(obj: dict) -> bool:
        for c in resize_conditions(obj):
            if c["type"] not in seen:
                seen.append(c["type"])
        return claim_capacity(obj) == size and not resize_conditions(obj) and not (
            (obj.get("status") or {}).get("allocatedResourceStatuses") or {}).get("storage")
    return wait_for(cluster.api, PVCS, claim, namespace, condition=done,
                    what=f"the resize of claim {namespace}/{claim} to {size}",
                    timeout=cluster.timeouts.claim_provision,
                    terminal_event=resize_terminal_event, event_objects=(pod,)).obj


def events_about(cluster: Cluster, namespace: str, *names: str) -> list[dict]:
    """The events the namespace holds about the objects named (any kind), oldest first."""
    out = []
    for name in names:
        out += cluster.api.items(EVENTS, namespace, field_selector=f"involvedObject.name={name}")
    return sorted(out, key=lambda e: e.get("eventTime") or e.get("lastTimestamp") or "")


# -- nodes: cordon, drain -------------------------------------------------------------------
@dataclass
class Drain:
    node: str
    evicted: list[str] = field(default_factory=list)  # namespace/name
    left: list[str] = field(default_factory=list)  # namespace/name (why)


def cordon(cluster: Cluster, node: str) -> bool:
    """Mark the node unschedulable (as `kubectl cordon`); False when it already was, in
    which case it is not ours to uncordon."""
    current = cluster.api.get(NODES, node)
    if current["spec"].get("unschedulable"):
        return False
    cluster.api.patch(NODES, node, {"spec": {"unschedulable": True}, "metadata": {
        "annotations": {CORDONED_BY: cluster.run_id}}})
    return True


def uncordon(cluster: Cluster, node: str) -> None:
    cluster.api.patch(NODES, node, {"spec": {"unschedulable": None}, "metadata": {
        "annotations": {CORDONED_BY: None}}})


@contextlib.contextmanager
def cordoned(cluster: Cluster, node: str, record: dict) -> Iterator[None]:
    """The node stays cordoned for the block and is uncordoned after it, also when the
    block fails; `record` says what happened (for the check's evidence)."""
    record["cordoned"] = cordon(cluster, node)
    try:
        yield
    finally:
        if record["cordoned"]:
            uncordon(cluster, node)
            record["uncordoned"] = True


def uncordon_leftovers(cluster: Cluster) -> list[str]:
    """Uncordon the nodes this run cordoned and did not uncordon (an interrupted check)."""
    done = []
    for node in cluster.api.items(NODES):
        meta = node["metadata"]
        if (meta.get("annotations") or {}).get(CORDONED_BY) == cluster.run_id:
            uncordon(cluster, meta["name"])
            done.append(meta["name"])
    return done


def _micro(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _expired(lease: dict) -> bool:
    spec = lease.get("spec") or {}
    renewed = str(spec.get("renewTime") or spec.get("acquireTime") or "")
    try:
        at = datetime.strptime(renewed.replace("Z", ""), "%Y-%m-%dT%H:%M:%S.%f").replace(
            tzinfo=timezone.utc)
    except ValueError:
        return True
    age = (datetime.now(timezone.utc) - at).total_seconds()
    return age > float(spec.get("leaseDurationSeconds") or 0)


@contextlib.contextmanager
def drain_lock(cluster: Cluster, timeout: float, hold: float) -> Iterator[dict]:
    """Hold the cluster's drain Lease for the block (waiting up to `timeout` for another
    run's to go; one older than its `hold` seconds is a crashed run's and is taken over).
    Yields what happened, for the check's evidence."""
    api = cluster.api
    record: dict[str, Any] = {"lease": f"{DRAIN_LEASE_NAMESPACE}/{DRAIN_LEASE}", "waited": 0.0}
    started = time.monotonic()
    pause = 0.2
    while True:
        now = _micro(datetime.now(timezone.utc))
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": DRAIN_LEASE, "namespace": DRAIN_LEASE_NAMESPACE,
                             "labels": cluster.labels()},
                "spec": {"holderIdentity": cluster.run_id,
                         "leaseDurationSeconds": max(1, int(hold)), "acquireTime": now,
                         "renewTime": now}}
        try:
            mine = api.create(LEASES, body, DRAIN_LEASE_NAMESPACE)
            break
        except KubeError as err:
            if err.status != 409:
                raise
        held = api.get_or_none(LEASES, DRAIN_LEASE, DRAIN_LEASE_NAMESPACE)
        holder = ((held or {}).get("spec") or {}).get("holderIdentity")
        if held is not None and holder == cluster.run_id:
            mine = held
            break
        if held is not None and _expired(held):
            record["taken_over_from"] = holder
            with contextlib.suppress(KubeError):
                api.delete(LEASES, DRAIN_LEASE, DRAIN_LEASE_NAMESPACE,
                           resource_version=held["metadata"]["resourceVersion"])
            continue
        if time.monotonic() - started > timeout:
            raise WaitFailed(f"another winstor run ({holder}) has been draining a node of "
                             f"{cluster.name} for over {timeout:.0f}s (Lease "
                             f"{DRAIN_LEASE_NAMESPACE}/{DRAIN_LEASE})")
        record["waited_for"] = holder
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
    record["waited"] = round(time.monotonic() - started, 3)
    try:
        yield record
    finally:
        with contextlib.suppress(KubeError):
            api.delete(LEASES, DRAIN_LEASE, DRAIN_LEASE_NAMESPACE,
                       resource_version=mine["metadata"]["resourceVersion"])


def _managed(pod: dict, run_id: str) -> str | None:
    """Why this drain does not evict the pod, or None if it does: what `kubectl drain`
    would not evict, and another winstor run's pods (that run is using them)."""
    meta = pod["metadata"]
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) == "winstor" and labels.get(RUN_LABEL) != run_id:
        return f"winstor run {labels.get(RUN_LABEL)} uses it"
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return "a mirror pod"
    owners = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if any(r.get("kind") == "DaemonSet" for r in owners):
        return "a DaemonSet's pod"
    if not owners:
        return "no controller would replace it (kubectl drain needs --force)"
    return None


def evict(cluster: Cluster, namespace: str, pod: str, timeout: float) -> None:
    """POST the pod's eviction (policy/v1); a disruption budget's 429 is retried, as
    `kubectl drain` does, until `timeout`."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": pod, "namespace": namespace}}
    deadline = time.monotonic() + timeout

    @transient_retry  # an eviction posted twice evicts once (the second finds it gone)
    def post() -> None:
        cluster.api.raw("POST", PODS.path(namespace, pod, "eviction"), body=body)

    while True:
        try:
            post()
            return
        except KubeError as err:
            if err.status == 404:
                return  # gone already
            if err.status != 429 or time.monotonic() > deadline:
                raise
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))


def drain(cluster: Cluster, node: str) -> Drain:
    """Evict what `kubectl drain --ignore-daemonsets --delete-emptydir-data` evicts from
    the (cordoned) node; pods without a controller, and other winstor runs' pods, are
    left and named, not deleted."""
    out = Drain(node)
    pods = cluster.api.items(PODS, None, field_selector=f"spec.nodeName={node}")
    for pod in pods:
        meta = pod["metadata"]
        where = f"{meta['namespace']}/{meta['name']}"
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in (
                "Succeeded", "Failed"):
            continue
        why = _managed(pod, cluster.run_id)
        if why:
            out.left.append(f"{where} ({why})")
            continue
        evict(cluster, meta["namespace"], meta["name"], cluster.timeouts.pod_delete)
        out.evicted.append(where)
    return out


def move_terminal_event(cluster: Cluster) -> Callable[[dict], str | None]:
    """The claim's terminal events, and a replacement that no node can take: its volume's
    zone has no other node (volume node affinity conflict) or none with an attachment
    slot left (max volume count). The drained node is cordoned, so the scheduler also
    names it unschedulable, which alone would only be waiting."""
    claim_terminal = provision.claim_terminal_event(cluster)

    def terminal(ev: dict) -> str | None:
        message = ev.get("message", "")
        if ev.get("reason") == "FailedScheduling" and (
                "volume node affinity conflict" in message
                or "exceed max volume count" in message):
            return "no other node in the volume's zone can take the pod"
        return claim_terminal(ev)
    return terminal


def attachments_of(cluster: Cluster, pv_name: str) -> list[dict]:
    return [va for va in cluster.api.items(VOLUMEATTACHMENTS)
            if (va.get("spec") or {}).get("source", {}).get("persistentVolumeName") == pv_name]


def same_zone_nodes(cluster: Cluster, node: str) -> tuple[str | None, list[str]]:
    """The node's zone, and the other Ready, schedulable Windows nodes of the workloads'
    build in it."""
    nodes = {n["metadata"]["name"]: n for n in cluster.api.items(NODES)}
    zone = (nodes.get(node, {}).get("metadata", {}).get("labels") or {}).get(ZONE_LABEL)
    build = cluster.windows_build
    out = []
    for name, n in sorted(nodes.items()):
        labels = n["metadata"].get("labels") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (n.get("status") or {}).get("conditions") or [])
        if name != node and ready and not n["spec"].get("unschedulable") and \
                cluster.platform.is_windows_node(n) and labels.get(ZONE_LABEL) == zone and \
                labels.get(BUILD_LABEL) == build:
            out.append(name)
    return zone, out


# -- a second pod of the claim ----------------------------------------------------------------
def second_pod_body(cluster: Cluster, w: Lifecycle, node: str) -> dict:
    """A bare pod like the Deployment's, pinned to `node`, on the same claim."""
    template = w.deployment["spec"]["template"]
    spec = dict(template["spec"])
    spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), "kubernetes.io/hostname": node}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": SECOND_POD, "namespace": w.namespace,
                         "labels": cluster.labels()},
            "spec": spec}


def remove_pod(cluster: Cluster, namespace: str, name: str) -> None:
    cluster.api.delete(PODS, name, namespace)
    wait_gone(cluster.api, PODS, name, namespace, what=f"pod {namespace}/{name} to go",
              timeout=cluster.timeouts.pod_delete)


# -- letting a Retain claim go ----------------------------------------------------------------
def delete_workload(cluster: Cluster, namespace: str) -> None:
    """Delete the Deployment and wait for its pods, then the claim (its PV stays)."""
    api = cluster.api
    if api.get_or_none(DEPLOYMENTS, DEPLOYMENT_NAME, namespace) is not None:
        api.delete(DEPLOYMENTS, DEPLOYMENT_NAME, namespace, propagation="Foreground")
    for pod in api.items(PODS, namespace,
                         label_selector=f"app={DEPLOYMENT_NAME},{RUN_LABEL}={cluster.run_id}"):
        wait_gone(api, PODS, pod["metadata"]["name"], namespace,
                  what=f"pod {pod['metadata']['name']} to go",
                  timeout=cluster.timeouts.pod_delete)
    if api.get_or_none(PVCS, CLAIM_NAME, namespace) is not None:
        api.delete(PVCS, CLAIM_NAME, namespace)
        wait_gone(api, PVCS, CLAIM_NAME, namespace,
                  what=f"claim {namespace}/{CLAIM_NAME} to go",
                  timeout=cluster.timeouts.claim_bound)


def wait_released(cluster: Cluster, pv_name: str) -> dict:
    return wait_for(cluster.api, PVS, pv_name, None,
                    condition=lambda o: (o.get("status") or {}).get("phase") == "Released",
                    what=f"persistent volume {pv_name} to be Released",
                    timeout=cluster.timeouts.pv_delete).obj


def pvs_of_claim(cluster: Cluster, namespace: str, claim: str = CLAIM_NAME) -> list[dict]:
    return [pv for pv in cluster.api.items(PVS)
            if ((pv["spec"].get("claimRef") or {}).get("namespace"),
                (pv["spec"].get("claimRef") or {}).get("name")) == (namespace, claim)]


def remove_retained(cluster: Cluster, session: Any, pv: dict) -> list[str]:
    """Delete a Released `Retain` PV and the EBS volume behind it; what was done."""
    from winstor.aws import ebs

    name = pv["metadata"]["name"]
    volume_id = volume_id_of(pv)
    done = []
    cluster.api.delete(PVS, name)
    wait_gone(cluster.api, PVS, name, None, what=f"persistent volume {name} to go",
              timeout=cluster.timeouts.pv_delete)
    done.append(f"persistent volume {name} deleted")
    if volume_id:
        if session is None:
            raise ebs.VolumeStays(f"EBS volume {volume_id} kept: no AWS configuration to "
                                  "delete it with")
        done.append(f"EBS volume {volume_id} "
                    + ebs.delete_volume(session, volume_id, cluster.timeouts.pv_delete))
    return done


def first_pod_event(cluster: Cluster, namespace: str, pod: str,
                    wanted: Callable[[dict], bool], timeout: float) -> tuple[dict | None, dict]:
    """Watch `pod` until an event `wanted` accepts arrives (returned), the pod becomes Ready
    (no event), or a terminal event or the deadline ends it (WaitFailed)."""
    found: dict[str, dict] = {}

    def terminal(ev: dict) -> str | None:
        if wanted(ev):
            found["event"] = ev
            return "seen"
        return default_terminal_event(ev)
    try:
        obj = wait_for(cluster.api, PODS, pod, namespace, condition=pod_ready,
                       what=f"pod {namespace}/{pod}", timeout=timeout,
                       terminal_event=terminal).obj
    except WaitFailed as err:
        if "event" in found:
            return found["event"], err.obj or {}
        raise
    return None, obj
