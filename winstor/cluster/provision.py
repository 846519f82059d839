"""Create, wait for, and remove the seed's objects on one cluster.

Fixtures own *when* these run (and the yield between create and delete);
this module owns *how*: labels on everything, watch-based waits with the
profile's timeouts, adoption of a concurrently created class, and removal
that waits for the cloud resources behind the objects to go too.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from winstor.cluster import manifests
from winstor.cluster.kube import (
    CSIDRIVERS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    PVCS,
    PVS,
    STORAGECLASSES,
    KubeError,
)
from winstor.cluster.target import MANAGED_BY, RUN_LABEL, Cluster
from winstor.cluster.waits import (
    WaitFailed,
    default_terminal_event,
    pod_ready,
    pod_terminal_state,
    scheduling_terminal_event,
    wait_for,
    wait_gone,
)

log = logging.getLogger("winstor.cluster.provision")

CLASS_NAME = "gp2-windows"
CREATED_BY = "winstor.io/created-by-run"
PSA = "pod-security.kubernetes.io"


class ProvisionError(Exception):
    """The seed's objects cannot work on this cluster as configured (said in one line)."""


IMAGE_TAG_BUILDS = {"ltsc2019": "10.0.17763", "1809": "10.0.17763", "ltsc2022": "10.0.20348",
                    "ltsc2025": "10.0.26100"}


def check_image_runs(cluster: Cluster) -> None:
    """Refuse, before creating anything, a Windows image no node can run.

    Process-isolated Windows containers must match the host build; an image
    tagged for another build would only fail later with an OS mismatch.
    """
    image = cluster.image()
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    want = next((b for key, b in IMAGE_TAG_BUILDS.items() if key in tag), None)
    if want is None:
        return  # an image we cannot date: let the kubelet judge
    build = cluster.windows_build
    if want != build:
        raise ProvisionError(f"image {image} targets Windows build {want}, but the workloads "
                             f"run on nodes of build {build}: process-isolated containers must "
                             "match the host build (pick an image for that build, or leave "
                             "--windows-image unset)")


# -- namespaces ------------------------------------------------------------------------
def namespace_name(cluster: Cluster, suffix: str = "") -> str:
    return f"winstor-{cluster.run_id}{('-' + suffix) if suffix else ''}"[:63]


def ensure_namespace(cluster: Cluster, name: str, level: str) -> dict:
    """A labelled namespace enforcing Pod Security `level` (privileged for hostPath)."""
    labels = {**cluster.labels(), f"{PSA}/enforce": level, f"{PSA}/warn": level,
              f"{PSA}/audit": level}
    obj = {"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": labels}}
    with cluster.phase("namespace", name):
        return cluster.api.create(NAMESPACES, obj)


def delete_namespace(cluster: Cluster, name: str) -> list[str]:
    """Delete and wait (bounded); return what still holds it, with finalizers."""
    api = cluster.api
    api.delete(NAMESPACES, name)
    try:
        wait_gone(api, NAMESPACES, name, None, what=f"namespace {name} to be deleted",
                  timeout=cluster.timeouts.namespace_delete)
        return []
    except WaitFailed:
        return leftovers_in(cluster, name)


def leftovers_in(cluster: Cluster, namespace: str) -> list[str]:
    """What holds a namespace up: the namespace controller's own account of it
    (its conditions) and the objects of ours still there, with finalizers."""
    api = cluster.api
    ns = api.get_or_none(NAMESPACES, namespace)
    if ns is None:
        return []
    out = []
    for res in (PODS, PVCS, DEPLOYMENTS):
        for obj in api.items(res, namespace):
            fins = obj["metadata"].get("finalizers") or []
            out.append(f"{res.plural}/{obj['metadata']['name']}"
                       + (f" (finalizers: {', '.join(fins)})" if fins else ""))
    conditions = [c.get("message", "") for c in (ns.get("status") or {}).get("conditions") or []
                  if c.get("status") == "True" and c.get("message")]
    phase = (ns.get("status") or {}).get("phase")
    summary = f"namespaces/{namespace} still {phase}"
    if conditions:
        summary += ": " + "; ".join(conditions)
    return [summary, *out]


# -- the StorageClass ------------------------------------------------------------------
WANTED_CLASS = {"provisioner": "kubernetes.io/aws-ebs",
                "parameters": {"type": "gp2", "fsType": "ntfs"},
                "volumeBindingMode": "WaitForFirstConsumer"}


@dataclass
class ClassState:
    name: str
    created: bool
    diff: list[str] = field(default_factory=list)
    obj: dict | None = None


def class_diff(obj: dict, wanted: dict[str, Any] = WANTED_CLASS) -> list[str]:
    out = []
    for key, want in wanted.items():
        have = obj.get(key)
        if key == "parameters":
            have = have or {}
            for pk, pv in want.items():
                if have.get(pk) != pv:
                    out.append(f"parameters.{pk}: want {pv!r}, have {have.get(pk)!r}")
        elif have != want:
            out.append(f"{key}: want {want!r}, have {have!r}")
    return out


USERS_PREFIX = "users.winstor.io/"


def ensure_storage_class(cluster: Cluster, body: dict | None = None,
                         wanted: dict[str, Any] = WANTED_CLASS) -> ClassState:
    """Create `gp2-windows` (or the class `body` describes), or adopt it; a winstor-made
    class records its users.

    Runs on one cluster share the class: each run that uses a class winstor
    made adds its own `users.winstor.io/<run>` annotation, and the last user
    to leave removes the class - so it is neither deleted under another run's
    claims nor left behind by the run that happened to create it.
    """
    api = cluster.api
    body = body or manifests.storage_class(cluster.labels())
    name = body["metadata"]["name"]
    existing = api.get_or_none(STORAGECLASSES, name)
    created = False
    if existing is None:
        body["metadata"].setdefault("annotations", {})[CREATED_BY] = cluster.run_id
        try:
            existing = api.create(STORAGECLASSES, body)
            created = True
        except KubeError as err:
            if err.status != 409:
                raise
            existing = api.get(STORAGECLASSES, name)  # another run was faster: adopt
    if _winstor_made(existing):
        existing = api.patch(STORAGECLASSES, name, {"metadata": {"annotations": {
            USERS_PREFIX + cluster.run_id: "true"}}})
    return ClassState(name, created, class_diff(existing, wanted), existing)


def _winstor_made(obj: dict) -> bool:
    return (obj["metadata"].get("labels") or {}).get(MANAGED_BY) == "winstor"


def release_storage_class(cluster: Cluster, state: ClassState) -> str | None:
    """Leave the class; the last winstor run to leave an unused class removes it."""
    api = cluster.api
    name = state.name
    current = api.get_or_none(STORAGECLASSES, name)
    if current is None or not _winstor_made(current):
        return None  # someone else's class: never ours to delete
    current = api.patch(STORAGECLASSES, name, {"metadata": {"annotations": {
        USERS_PREFIX + cluster.run_id: None}}})
    users = [k for k in (current["metadata"].get("annotations") or {})
             if k.startswith(USERS_PREFIX)]
    if users:
        return None  # another run still uses it and will remove it
    claims = [f"{c['metadata']['namespace']}/{c['metadata']['name']}"
              for c in api.items(PVCS) if c["spec"].get("storageClassName") == name]
    claims += [f"pv/{p['metadata']['name']}" for p in api.items(PVS)
               if p["spec"].get("storageClassName") == name]
    if claims:
        return f"StorageClass {name} kept: still used by {', '.join(claims[:5])}"
    try:
        api.delete(STORAGECLASSES, name,
                   resource_version=current["metadata"]["resourceVersion"])
    except KubeError as err:
        if err.status != 409:
            raise
        return None  # a run adopted it meanwhile; it will remove it when it leaves
    return None


# -- the claim ---------------------------------------------------------------------------
@dataclass
class ClaimState:
    name: str
    namespace: str
    phase_before_consumer: str
    event_before_consumer: dict | None
    obj: dict


def first_event(cluster: Cluster, namespace: str, name: str, reasons: set[str],
                timeout: float) -> dict | None:
    """The first event with one of `reasons` about object `name`, or None by the deadline."""
    found: dict[str, dict] = {}

    def terminal(ev: dict) -> str | None:
        if ev.get("reason") in reasons:
            found["event"] = ev
            return "seen"
        return None
    with contextlib.suppress(WaitFailed):
        wait_for(cluster.api, PVCS, name, namespace, condition=lambda o: False,
                 what=f"an event on {name}", timeout=timeout, terminal_event=terminal)
    return found.get("event")


def create_claim(cluster: Cluster, namespace: str) -> ClaimState:
    api = cluster.api
    body = manifests.claim(namespace, cluster.labels())
    with cluster.phase("claim", body["metadata"]["name"]):
        obj = api.create(PVCS, body, namespace)
        name = obj["metadata"]["name"]
        # Before any consumer exists, a WaitForFirstConsumer claim must stay Pending and
        # say so; record what the cluster shows now, for the check to judge.
        event = first_event(cluster, namespace, name,
                            {"WaitForFirstConsumer", "ProvisioningSucceeded",
                             "ProvisioningFailed", "ExternalProvisioning"},
                            timeout=min(10.0, cluster.timeouts.claim_bound))
        now = api.get(PVCS, name, namespace)
    return ClaimState(name, namespace, (now.get("status") or {}).get("phase", ""), event, now)


def claim_terminal_event(cluster: Cluster) -> Callable[[dict], str | None]:
    """Terminal events for waits that depend on a claim being provisioned.

    `ExternalProvisioning` alone is only "waiting"; it becomes final when the
    provisioner it waits for has no CSIDriver object at all.
    """
    def terminal(ev: dict) -> str | None:
        why = default_terminal_event(ev)
        if why:
            return why
        if ev.get("reason") == "ExternalProvisioning":
            driver = [*ev.get("message", "").split("'"), "", ""][1]
            if driver and cluster.api.get_or_none(CSIDRIVERS, driver) is None:
                return (f"the claim waits for external provisioner {driver!r}, which is not "
                        f"installed (no CSIDriver {driver})")
        return None
    return terminal


def wait_claim_bound(cluster: Cluster, claim: ClaimState) -> dict:
    with cluster.phase("volume provision", claim.name):
        return wait_for(cluster.api, PVCS, claim.name, claim.namespace,
                        condition=lambda o: (o.get("status") or {}).get("phase") == "Bound",
                        what=f"claim {claim.namespace}/{claim.name} to be Bound",
                        timeout=cluster.timeouts.claim_provision,
                        terminal_event=claim_terminal_event(cluster)).obj


# -- pods and the Deployment ---------------------------------------------------------------
def ready_pods(cluster: Cluster, namespace: str, selector: str) -> list[dict]:
    pods = cluster.api.items(PODS, namespace, label_selector=selector)
    return [p for p in pods if pod_ready(p) and not p["metadata"].get("deletionTimestamp")]


def wait_pod_ready(cluster: Cluster, namespace: str, name: str, *, windows: bool = True,
                   what: str | None = None) -> dict:
    timeout = cluster.timeouts.pod_start_windows if windows else cluster.timeouts.pod_start
    return wait_for(cluster.api, PODS, name, namespace, condition=pod_ready,
                    what=what or f"pod {namespace}/{name} to be Ready", timeout=timeout,
                    terminal_state=pod_terminal_state).obj


def container_running(container: str) -> Callable[[dict], bool]:
    def running(pod: dict) -> bool:
        return any(cs.get("name") == container and "running" in (cs.get("state") or {})
                   for cs in (pod.get("status") or {}).get("containerStatuses") or [])
    return running


def container_terminal_state(container: str) -> Callable[[dict], str | None]:
    """`pod_terminal_state`, judged on one container (another may still be pulling)."""
    def terminal(pod: dict) -> str | None:
        st = pod.get("status") or {}
        mine = [cs for cs in st.get("containerStatuses") or [] if cs.get("name") == container]
        return pod_terminal_state({**pod, "status": {**st, "containerStatuses": mine}})
    return terminal


def wait_container_running(cluster: Cluster, namespace: str, name: str, container: str,
                           what: str | None = None) -> dict:
    """Wait until one container of a pod runs (its siblings may still be pulling).

    The pod's status decides, and of the events only the scheduler's: kubelet events
    do not say which container they are about, and a sibling's failing pull must not
    end this wait, but a pod no node can run never runs any container.
    """
    return wait_for(cluster.api, PODS, name, namespace, condition=container_running(container),
                    what=what or f"container {container} of pod {namespace}/{name} to run",
                    timeout=cluster.timeouts.pod_start_windows,
                    terminal_state=container_terminal_state(container),
                    terminal_event=scheduling_terminal_event).obj


def create_deployment(cluster: Cluster, namespace: str) -> dict:
    check_image_runs(cluster)
    body = manifests.deployment(namespace, cluster.labels(), cluster.image(),
                                cluster.windows_build, cluster.platform)
    return cluster.api.create(DEPLOYMENTS, body, namespace)


def deployment_pod(cluster: Cluster, namespace: str, deployment: dict,
                   not_uid: str | None = None, claims: tuple[str, ...] = (),
                   terminal_event: Callable[[dict], str | None] | None = None) -> dict:
    """Wait for a Ready pod of the Deployment (other than `not_uid`) and return it; the
    wait ends early on `terminal_event` (default: the claim's terminal events)."""
    app = deployment["spec"]["selector"]["matchLabels"]["app"]
    prefix = deployment["metadata"]["name"]

    def ready(pod: dict) -> bool:
        return pod["metadata"]["uid"] != not_uid and pod_ready(pod) and \
            not pod["metadata"].get("deletionTimestamp")

    def terminal(pod: dict) -> str | None:
        return None if pod["metadata"]["uid"] == not_uid else pod_terminal_state(pod)

    return wait_for(cluster.api, PODS, None, namespace, condition=ready,
                    label_selector=f"app={app},{RUN_LABEL}={cluster.run_id}",
                    what=f"a Ready pod of deployment {namespace}/{prefix}",
                    timeout=cluster.timeouts.pod_start_windows, terminal_state=terminal,
                    terminal_event=terminal_event or claim_terminal_event(cluster),
                    event_objects=(prefix, *claims)).obj


def delete_pod(cluster: Cluster, namespace: str, name: str) -> float:
    cluster.api.delete(PODS, name, namespace)
    return wait_gone(cluster.api, PODS, name, namespace, what=f"pod {namespace}/{name} to go",
                     timeout=cluster.timeouts.pod_delete)


def create_pod(cluster: Cluster, body: dict) -> dict:
    if "hostProcess" not in str(body["spec"].get("securityContext") or {}):
        check_image_runs(cluster)
    return cluster.api.create(PODS, body, body["metadata"]["namespace"])


def delete_claim_and_volume(cluster: Cluster, namespace: str, claim: str) -> str | None:
    """Delete the claim; wait until its PV is gone; return the PV name it had."""
    api = cluster.api
    pvc = api.get_or_none(PVCS, claim, namespace)
    if pvc is None:
        return None
    pv_name = pvc["spec"].get("volumeName")
    api.delete(PVCS, claim, namespace)
    wait_gone(api, PVCS, claim, namespace, what=f"claim {namespace}/{claim} to go",
              timeout=cluster.timeouts.claim_bound)
    if pv_name:
        wait_gone(api, PVS, pv_name, None, what=f"persistent volume {pv_name} to be deleted",
                  timeout=cluster.timeouts.pv_delete)
    return pv_name
