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
    no_terminal_event,
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
    """A labelled namespace enforcing Pod Security `level` (privileged for hostPath).

    One that already exists with this run's and this cluster's labels was made by a
    predecessor: an xdist worker of this run that died (SIGKILL, out of memory) with the
    cluster's checks half done, whose replacement runs the rest. What it left is in no
    known state - a pod mid-replacement, a claim mid-deletion, a node probe half begun -
    so it goes, with what it owned, and the namespace is made anew for this worker's
    fixtures, exactly as a fresh run makes it (`replace_predecessor`)."""
    labels = {**cluster.labels(), f"{PSA}/enforce": level, f"{PSA}/warn": level,
              f"{PSA}/audit": level}
    obj = {"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": labels}}
    with cluster.phase("namespace", name):
        try:
            return cluster.api.create(NAMESPACES, obj)
        except KubeError as err:
            if err.status != 409:
                raise
            existing = cluster.api.get_or_none(NAMESPACES, name)
            if existing is None or not _same_run(existing, cluster):
                raise  # someone else's: never ours to replace
        cluster.facts.setdefault("notes", []).extend(replace_predecessor(cluster, existing))
        return cluster.api.create(NAMESPACES, obj)


def _same_run(obj: dict, cluster: Cluster) -> bool:
    labels = obj["metadata"].get("labels") or {}
    mine = cluster.labels()
    return all(labels.get(k) == v for k, v in mine.items())


def replace_predecessor(cluster: Cluster, namespace: dict) -> list[str]:
    """Remove a namespace a dead worker of this run made, and what it made along with it:
    the namespace's objects, the cluster-scoped objects it owns (an SMB class, a static
    volume), and the volumes its claims left (`remove_claim_leftovers`). Raises
    ProvisionError (one line) when something stays; returns what was done."""
    api = cluster.api
    name, uid = namespace["metadata"]["name"], namespace["metadata"].get("uid")
    mine = claim_volumes(cluster, name)
    left = delete_namespace(cluster, name, sweep_volumes=False)
    if left:
        raise ProvisionError(f"namespace {name} of this run was left by a worker that died, "
                             f"and cannot be removed: {'; '.join(left[:3])}")
    owned = [(res, obj["metadata"]["name"]) for res in (STORAGECLASSES, PVS)
             for obj in api.items(res, label_selector=f"{RUN_LABEL}={cluster.run_id}")
             if uid and any(ref.get("uid") == uid
                            for ref in obj["metadata"].get("ownerReferences") or [])]
    for res, obj_name in owned:
        api.delete(res, obj_name)
    for res, obj_name in owned:
        wait_gone(api, res, obj_name, None, what=f"{res.plural[:-1]} {obj_name} to go",
                  timeout=cluster.timeouts.pv_delete)
    try:
        volumes = remove_claim_leftovers(cluster, mine)
    except VolumesStay as err:
        raise ProvisionError(f"namespace {name} of this run was left by a worker that died: "
                             f"{err}") from None
    return [f"namespace {name} was left by a worker of this run that died: removed with its "
            f"objects{' and ' + ', '.join(f'{r.plural}/{n}' for r, n in owned) if owned else ''}"
            ", made anew", *volumes]


def delete_namespace(cluster: Cluster, name: str, sweep_volumes: bool = True) -> list[str]:
    """Delete and wait (bounded); return what still holds it, with finalizers. Once it is
    gone, the volumes its claims left are removed too (`remove_claim_leftovers`: the safety
    net for every claim of the run, whatever its reclaim policy); what was removed goes to
    the cluster's notes, what stays is returned with the rest."""
    api = cluster.api
    mine = claim_volumes(cluster, name) if sweep_volumes else None
    api.delete(NAMESPACES, name)
    try:
        wait_gone(api, NAMESPACES, name, None, what=f"namespace {name} to be deleted",
                  timeout=cluster.timeouts.namespace_delete)
    except WaitFailed:
        return leftovers_in(cluster, name)
    if mine is None:
        return []
    try:
        cluster.facts.setdefault("notes", []).extend(remove_claim_leftovers(cluster, mine))
    except VolumesStay as err:
        return [str(err)]
    return []


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


def _mounts(pod_spec: dict, claim: str) -> bool:
    return any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim
               for v in pod_spec.get("volumes") or [])


def remove_claim_consumers(cluster: Cluster, namespace: str, claim: str) -> list[str]:
    """Delete this run's workloads that still mount `claim` when the claim's owner tears it
    down: its Deployments (their pods go with them) and its bare pods. None in a run that
    went to the end - the workloads' own teardowns come first - but a run stopped between
    creating a workload and its fixture registering a teardown leaves one, and the claim
    waited for its deletion (pvc-protection) until its timeout, minutes on EKS. Returns one
    line per object deleted."""
    api, selector, done = cluster.api, cluster.run_selector(), []
    for dep in api.items(DEPLOYMENTS, namespace, label_selector=selector):
        name = dep["metadata"]["name"]
        if not dep["metadata"].get("deletionTimestamp") and \
                _mounts(dep["spec"]["template"].get("spec") or {}, claim):
            api.delete(DEPLOYMENTS, name, namespace, propagation="Foreground")
            done.append(f"deployment {namespace}/{name} of this run still mounted claim "
                        f"{claim} at its teardown: deleted")
    for pod in api.items(PODS, namespace, label_selector=selector):
        name = pod["metadata"]["name"]
        if not pod["metadata"].get("deletionTimestamp") and \
                not pod["metadata"].get("ownerReferences") and _mounts(pod["spec"], claim):
            api.delete(PODS, name, namespace)
            done.append(f"pod {namespace}/{name} of this run still mounted claim {claim} at "
                        "its teardown: deleted")
    return done


def delete_claim_and_volume(cluster: Cluster, namespace: str, claim: str) -> str | None:
    """Delete the claim and wait for the provisioner's verdict on its PV (`volume_verdict`):
    gone, or - reclaim policy Retain, or a deleter that failed - Released or Failed and
    staying, which this leaves for `remove_claim_leftovers` (so that a check judging what
    the cluster did with the volume sees the cluster's doing, not winstor's). Returns the
    PV's name."""
    api = cluster.api
    pvc = api.get_or_none(PVCS, claim, namespace)
    if pvc is None:
        return None
    pv_name = pvc["spec"].get("volumeName")
    api.delete(PVCS, claim, namespace)
    wait_gone(api, PVCS, claim, namespace, what=f"claim {namespace}/{claim} to go",
              timeout=cluster.timeouts.claim_bound)
    if pv_name:
        volume_verdict(cluster, pv_name)
    return pv_name


# -- volumes that outlive their claims -----------------------------------------------------
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"
PVC_NAME_TAG = "kubernetes.io/created-for/pvc/name"
"""Tags the EBS CSI driver (and the in-tree provisioner) put on a volume made for a claim."""


class VolumesStay(Exception):
    """A volume of the run's claims could not be removed (one line: which, and why)."""


def given_up(pv: dict) -> bool:
    """Nobody will delete this PV whose claim is gone: Failed (its deleter failed), Released
    under a policy that keeps it (Retain), or Available (a static volume never bound, which
    no provisioner deletes)."""
    phase = (pv.get("status") or {}).get("phase")
    policy = pv["spec"].get("persistentVolumeReclaimPolicy", "Delete")
    return phase in ("Failed", "Available") or (phase == "Released" and policy != "Delete")


def volume_verdict(cluster: Cluster, pv_name: str) -> dict | None:
    """Wait until the provisioner has decided about a PV whose claim is gone: None when it
    deleted the PV, else the PV as it leaves it (`given_up`). A PV of policy Delete still
    Released is still being deleted (the volume detaches first): it is waited for, never
    raced - removing it meanwhile left it stuck behind the provisioner's finalizer. Raises
    WaitFailed when no verdict comes within the profile's pv_delete."""
    api = cluster.api
    what = f"the provisioner to delete or release persistent volume {pv_name}"
    waited: set[str] = cluster.facts.setdefault(_NO_VERDICT, set())
    if pv_name in waited:
        # Waited for in full already (the claim's teardown, then its namespace's): the
        # answer now is the answer.
        pv = api.get_or_none(PVS, pv_name)
        if pv is not None and not given_up(pv):
            raise WaitFailed(f"{what}: still {(pv.get('status') or {}).get('phase')} after "
                             f"{cluster.timeouts.pv_delete:.0f}s", obj=pv)
    else:
        try:
            wait_for(api, PVS, pv_name, None, condition=given_up, gone_ok=True, what=what,
                     timeout=cluster.timeouts.pv_delete, terminal_event=no_terminal_event)
        except WaitFailed:
            waited.add(pv_name)
            raise
    pv = api.get_or_none(PVS, pv_name)
    return pv if pv is not None and given_up(pv) else None


_NO_VERDICT = "pv_without_verdict"
"""Key in `Cluster.facts`: PVs whose verdict was waited for to the timeout (not reported)."""


def _volume_id(pv: dict) -> str | None:
    """The EBS volume behind a PV: in-tree (`aws://zone/vol-`) or the EBS CSI driver's."""
    spec = pv.get("spec") or {}
    if "awsElasticBlockStore" in spec:
        return str(spec["awsElasticBlockStore"]["volumeID"]).rsplit("/", 1)[-1]
    if (spec.get("csi") or {}).get("driver") == "ebs.csi.aws.com":
        return str(spec["csi"]["volumeHandle"])
    return None


def _claimed_from(pv: dict, namespace: str, claim: str | None) -> bool:
    ref = pv["spec"].get("claimRef") or {}
    return ref.get("namespace") == namespace and (claim is None or ref.get("name") == claim)


PV_NAME_TAG = "kubernetes.io/created-for/pv/name"


def _tagged_volumes(session: Any, pv_names: set[str]) -> dict[str, str]:
    """EBS volumes made for these PVs that still exist: id -> state. By the PV's name (unique
    to one claim of one cluster), never by the claim's namespace: a run's namespaces have the
    same names on every cluster of the run, and clusters may share an AWS account."""
    from winstor.aws.facts import client

    found: dict[str, str] = {}
    names = sorted(pv_names)
    ec2 = client(session, "ec2")
    for i in range(0, len(names), 100):  # EC2 takes up to 200 values a filter
        token = None
        for _ in range(1000):  # pages; bounded
            page = ec2.describe_volumes(
                Filters=[{"Name": f"tag:{PV_NAME_TAG}", "Values": names[i:i + 100]}],
                **({"NextToken": token} if token else {}))
            for vol in page.get("Volumes") or []:
                if vol.get("State") not in ("deleting", "deleted"):
                    found[vol["VolumeId"]] = str(vol.get("State"))
            token = page.get("NextToken")
            if not token:
                break
    return found


@dataclass
class ClaimVolumes:
    """What a claim (or every claim of a namespace) had, read while it could be: the names
    its PVs have or will have (`pvc-<claim uid>`, the provisioners' naming) and the EBS
    volumes behind them. Read before the claims go, it is what `remove_claim_leftovers`
    judges after - then the claims can tell nothing any more."""

    namespace: str
    claim: str | None
    pv_names: set[str] = field(default_factory=set)
    volume_ids: set[str] = field(default_factory=set)


def claim_volumes(cluster: Cluster, namespace: str, claim: str | None = None,
                  known: tuple[dict, ...] = ()) -> ClaimVolumes:
    """The volumes of claim `namespace/claim` (every claim of `namespace` without one), from
    the claims there now, the claims in `known` (as they were made: a claim a check deleted
    already), and the PVs of this cluster bound to them."""
    api = cluster.api
    claims = [c for c in [*known, *api.items(PVCS, namespace)]
              if claim is None or c["metadata"]["name"] == claim]
    out = ClaimVolumes(namespace, claim)
    for c in claims:
        out.pv_names.add(f"pvc-{c['metadata']['uid']}")
        if (c.get("spec") or {}).get("volumeName"):
            out.pv_names.add(c["spec"]["volumeName"])
    for pv in api.items(PVS):
        if _claimed_from(pv, namespace, claim) or pv["metadata"]["name"] in out.pv_names:
            out.pv_names.add(pv["metadata"]["name"])
            volume_id = _volume_id(pv)
            if volume_id:
                out.volume_ids.add(volume_id)
    return out


def remove_claim_leftovers(cluster: Cluster, mine: ClaimVolumes) -> list[str]:
    """The safety net for volumes that outlive their claims, whatever the reclaim policy:
    once the claims `mine` was read from are gone, wait for the provisioner's verdict on
    each of their PVs (`volume_verdict`), remove the PVs it gave up on and the EBS volumes
    behind them, and the EBS volumes of those claims that outlived a PV the provisioner did
    delete (a DeleteVolume that did not delete). Then prove it: none of those PVs in the
    API, none of those volumes in EC2 but deleted ones (EC2 only where the cluster has
    AWS). Returns one line per object removed; raises VolumesStay naming what stays."""
    api = cluster.api
    namespace, claim = mine.namespace, mine.claim
    live = {c["metadata"].get("uid") for c in api.items(PVCS, namespace)}

    def released() -> list[dict]:
        return [pv for pv in api.items(PVS)
                if (pv["metadata"]["name"] in mine.pv_names
                    or _claimed_from(pv, namespace, claim))
                and (pv["spec"].get("claimRef") or {}).get("uid") not in live]

    whose = f"claim {namespace}/{claim}" if claim else f"the claims of namespace {namespace}"
    done: list[str] = []
    volumes = set(mine.volume_ids)
    try:
        for pv in released():
            name = pv["metadata"]["name"]
            mine.pv_names.add(name)
            kept = volume_verdict(cluster, name)
            if kept is None:
                continue  # the provisioner deleted it; EC2 below tells whether the disk went
            ref = kept["spec"].get("claimRef") or {}
            api.delete(PVS, name)
            wait_gone(api, PVS, name, None, what=f"persistent volume {name} to go",
                      timeout=cluster.timeouts.pv_delete)
            done.append(f"persistent volume {name} of claim {namespace}/{ref.get('name')} "
                        f"outlived it ({(kept.get('status') or {}).get('phase')}, reclaim "
                        f"{kept['spec'].get('persistentVolumeReclaimPolicy')}): deleted")
            volume_id = _volume_id(kept)
            if volume_id:
                volumes.add(volume_id)
    except (KubeError, WaitFailed) as err:
        raise VolumesStay(f"persistent volumes of {whose}: {str(err)[:300]}") from None
    session = cluster.aws_session() if "ebs" not in cluster.platform.lacks else None
    ec2_left: dict[str, str] = {}
    if session is not None and (volumes or mine.pv_names):
        from winstor.aws import ebs

        try:
            tagged = _tagged_volumes(session, mine.pv_names)
            for volume_id in sorted(volumes | set(tagged)):
                what = ebs.delete_volume(session, volume_id, cluster.timeouts.pv_delete)
                if what != "already gone":
                    done.append(f"EBS volume {volume_id} of {whose} outlived its persistent "
                                "volume" + (f" ({tagged[volume_id]})" if volume_id in tagged
                                            else "") + f": {what}")
            # delete_volume saw each of these gone or deleted; one more look by tag finds
            # any volume of these PVs that appeared meanwhile
            ec2_left = _tagged_volumes(session, mine.pv_names)
        except Exception as err:  # boto3's errors, ebs.VolumeStays: one line, never lost
            raise VolumesStay(f"EBS volumes of {whose}: {str(err)[:300]}") from None
    stays = [f"pv/{pv['metadata']['name']}" for pv in released()]
    stays += [f"ebs/{v} ({state})" for v, state in ec2_left.items()]
    if stays:
        raise VolumesStay(f"volumes of {whose} stay after teardown: {', '.join(stays)}")
    if done:
        done.append(f"no volume of {whose} is left (checked in the API"
                    + (" and EC2)" if session is not None else ")"))
    return done
