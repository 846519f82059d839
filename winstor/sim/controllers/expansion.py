"""Growing a bound claim, as the three parts of an EKS cluster that do it report it.

1. kube-controller-manager's expand controller sees a claim asking for more than it has.
   A migrated in-tree volume (`kubernetes.io/aws-ebs`) is handed to the CSI driver's
   resizer: `ExternalExpanding` ("CSI migration enabled for kubernetes.io/aws-ebs; waiting
   for external resizer to expand the pvc") and the `volume.kubernetes.io/storage-resizer`
   annotation (pkg/controller/volume/expand/expand_controller.go).
2. The EBS CSI driver's external-resizer (kubernetes-csi/external-resizer, with
   RecoverVolumeExpansionFailure, GA there): the claim's `Resizing` condition and
   `allocatedResources`/`allocatedResourceStatuses` (`ControllerResizeInProgress`), a
   `Resizing` event, ControllerExpandVolume (EC2 ModifyVolume), then the PV's new capacity
   (and its `volume.alpha.kubernetes.io/pre-resize-capacity` annotation), the claim's
   `FileSystemResizePending` condition and `NodeResizePending` status, and a
   `FileSystemResizeRequired` event; or a `VolumeResizeFailed` event and a
   `ControllerResizeError` condition.
3. The kubelet of a node where a pod runs with the volume (online expansion,
   pkg/volume/util/operationexecutor/node_expander.go): `NodeResizeInProgress`, the node
   plugin's NodeExpandVolume (csi-proxy's ResizeVolume on Windows: the NTFS partition
   grows to the disk), then `FileSystemResizeSuccessful` events on the pod and the claim
   and the claim's new `status.capacity` with the resize conditions and status gone; or a
   `VolumeResizeFailed` event on the pod and a `NodeResizeError` condition.

Each stage reports once; the real components retry with back-off and repeat their events,
which changes nothing a check can tell apart.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

from ..api import quantity
from ..api.store import now_iso
from ..aws import AwsError
from ..nodes.windows import ResizeError
from ..nodes.workloads import volume_id_of
from .base import CSIDRIVERS, PODS, PVCS, PVS, Controller, terminating

EBS = "ebs.csi.aws.com"
INTREE_EBS = "kubernetes.io/aws-ebs"
RESIZER = "volume.kubernetes.io/storage-resizer"
PRE_RESIZE = "volume.alpha.kubernetes.io/pre-resize-capacity"
NOT_REQUIRED = "volume.kubernetes.io/node-expansion-not-required"
RESIZE_CONDITIONS = ("Resizing", "FileSystemResizePending", "ControllerResizeError",
                     "NodeResizeError")
PENDING_MESSAGE = ("Waiting for user to (re-)start a pod to finish file system resize of "
                   "volume on node.")
GIB = Decimal(2) ** 30


def _whole_gib(size: Decimal) -> int:
    """The size ControllerExpandVolume gives the volume: whole GiB, rounded up."""
    return int(-(-size // GIB))


class Expansion(Controller):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._requests: set[str] = set()  # (claim uid, size) requests already taken up

    def reconcile(self) -> None:
        for pvc in list(self.store.iter(PVCS)):
            st = pvc.get("status") or {}
            if terminating(pvc) or st.get("phase") != "Bound" or not pvc["spec"].get(
                    "volumeName"):
                continue
            pv = self.store.peek(PVS, None, pvc["spec"]["volumeName"])
            if pv is None:
                continue
            want, have = quantity.storage(pvc), quantity.storage(pvc, "status")
            progress = (st.get("allocatedResourceStatuses") or {}).get("storage")
            uid = pvc["metadata"]["uid"]
            if want is not None and have is not None and want > have and not progress:
                self._controller_side(pvc, pv, want)
            elif progress == "NodeResizePending":
                pod = self._running_pod(pvc)
                if pod is not None:
                    self.manager.spawn(f"node-expand:{uid}:{want}",
                                       self._node_expand(pvc, pv, pod))
            elif not progress and PRE_RESIZE in (pv["metadata"].get("annotations") or {}) \
                    and have is not None and have >= (quantity.value(
                        (pv["spec"].get("capacity") or {}).get("storage")) or 0):
                # Node expansion is complete: the expand controller drops the annotation.
                def drop(o: dict) -> None:
                    o["metadata"].get("annotations", {}).pop(PRE_RESIZE, None)
                self.store.mutate(PVS, None, pv["metadata"]["name"], drop)

    # -- kube-controller-manager and the external-resizer ------------------------------
    def _resizer_of(self, pv: dict) -> str | None:
        """The CSI driver that resizes this PV, when its controller runs here."""
        if "awsElasticBlockStore" in pv["spec"] and self.cluster.flavour == "eks":
            driver = EBS  # CSI migration of kubernetes.io/aws-ebs
        else:
            driver = (pv["spec"].get("csi") or {}).get("driver")
        if driver != EBS or self.store.peek(CSIDRIVERS, None, EBS) is None:
            return None
        return driver

    def _controller_side(self, pvc: dict, pv: dict, want: Decimal) -> None:
        meta = pvc["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        migrated = "awsElasticBlockStore" in pv["spec"]
        key = f"expand:{uid}:{want}"
        if key in self._requests:
            return
        self._requests.add(key)
        if migrated:
            self.events.record(pvc, "Normal", "ExternalExpanding",
                               f"CSI migration enabled for {INTREE_EBS}; waiting for external "
                               "resizer to expand the pvc", "volume_expand")
        else:
            self.events.record(pvc, "Normal", "ExternalExpanding",
                               "waiting for an external controller to expand this PVC",
                               "volume_expand")
        driver = self._resizer_of(pv)
        if driver is None:
            return  # nobody resizes: the claim keeps asking, as on a cluster without one
        if migrated and (meta.get("annotations") or {}).get(RESIZER) != driver:
            def annotate(o: dict) -> None:
                o["metadata"].setdefault("annotations", {})[RESIZER] = driver
            self.store.mutate(PVCS, ns, name, annotate)
        self.manager.spawn(key, self._resize(pvc, pv, want, driver))

    async def _resize(self, pvc: dict, pv: dict, want: Decimal, driver: str) -> None:
        meta = pvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        pv_name = pv["metadata"]["name"]
        requested = pvc["spec"]["resources"]["requests"]["storage"]
        component = f"external-resizer {driver}"

        def in_progress(o: dict) -> None:
            st = o.setdefault("status", {})
            _set_resize_condition(st, "Resizing", "", keep_old=False)
            st.setdefault("allocatedResources", {})["storage"] = requested
            st.setdefault("allocatedResourceStatuses", {})["storage"] = \
                "ControllerResizeInProgress"
        self.store.mutate(PVCS, ns, name, in_progress, subresource="status")
        self.events.record(pvc, "Normal", "Resizing",
                           f"External resizer is resizing volume {pv_name}", component)
        volume_id = volume_id_of(pv) or ""
        gib = _whole_gib(want)
        new_size = f"{gib}Gi"
        await self.cluster.clock.spend("ebs_modify")
        loop = asyncio.get_running_loop()
        error = None
        try:
            await loop.run_in_executor(None, lambda: self.cluster.aws.modify_volume(
                volume_id, gib, denied="ebs-modify-refused" in self.cluster.scenarios))
        except AwsError as err:
            status = 403 if err.code == "UnauthorizedOperation" else 400
            error = (f'rpc error: code = Internal desc = Could not resize volume "{volume_id}": '
                     f"operation error EC2: ModifyVolume, https response error StatusCode: "
                     f"{status}, RequestID: {_request_id()}, api error {err.code}: "
                     f"{err.message}")
        if self.store.peek(PVCS, ns, name) is None:
            return
        if error is not None:
            def failed(o: dict) -> None:
                _set_resize_condition(o.setdefault("status", {}), "ControllerResizeError",
                                      f"failed to expand pvc with {error}", keep_old=True)
            self.store.mutate(PVCS, ns, name, failed, subresource="status")
            self.events.record(pvc, "Warning", "VolumeResizeFailed",
                               f'resize volume "{pv_name}" by resizer "{driver}" failed: '
                               f"{error}", component)
            return
        volume = self.cluster.workloads.volumes.get(volume_id)
        if volume is not None:
            volume.size_gib = gib  # the disk the node sees grows
        old_capacity = ((pvc.get("status") or {}).get("capacity") or {}).get("storage", "")

        def grown(o: dict) -> None:
            o["spec"].setdefault("capacity", {})["storage"] = new_size
            annotations = o["metadata"].setdefault("annotations", {})
            annotations.setdefault(PRE_RESIZE, old_capacity)
        if self.store.peek(PVS, None, pv_name) is not None:
            self.store.mutate(PVS, None, pv_name, grown)

        def pending(o: dict) -> None:
            st = o.setdefault("status", {})
            _set_resize_condition(st, "FileSystemResizePending", PENDING_MESSAGE, keep_old=True)
            st.setdefault("allocatedResourceStatuses", {})["storage"] = "NodeResizePending"
            o["metadata"].get("annotations", {}).pop(NOT_REQUIRED, None)
        self.store.mutate(PVCS, ns, name, pending, subresource="status")
        self.events.record(pvc, "Normal", "FileSystemResizeRequired",
                           "Require file system resize of volume on node", component)

    # -- the kubelet: online expansion through the node plugin ----------------------------
    def _running_pod(self, pvc: dict) -> dict | None:
        """A pod running on a node with this claim's volume mounted."""
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        for pod in self.store.iter(PODS, ns):
            if terminating(pod) or (pod.get("status") or {}).get("phase") != "Running":
                continue
            if any((v.get("persistentVolumeClaim") or {}).get("claimName") == name
                   for v in pod["spec"].get("volumes") or []):
                return pod
        return None

    async def _node_expand(self, pvc: dict, pv: dict, pod: dict) -> None:
        meta = pvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        pv_name = pv["metadata"]["name"]
        node_name = pod["spec"]["nodeName"]
        model: Any = self.cluster.workloads.nodes.get(node_name)
        volume_id = volume_id_of(pv) or ""
        volume = self.cluster.workloads.volumes.get(volume_id)
        if model is None or volume is None:
            return  # a Linux node (kind's local-path volumes do not grow)

        def node_in_progress(o: dict) -> None:
            o.setdefault("status", {}).setdefault("allocatedResourceStatuses", {})[
                "storage"] = "NodeResizeInProgress"
        self.store.mutate(PVCS, ns, name, node_in_progress, subresource="status")
        await self.cluster.clock.spend("node_expand")
        try:
            model.resize_volume(volume)
        except ResizeError as err:
            driver = (f'rpc error: code = Internal desc = Could not resize volume "{volume_id}" '
                      f'("1"): rpc error: code = Unknown desc = {err}')
            if self.store.peek(PVCS, ns, name) is None:
                return

            def failed(o: dict) -> None:
                _set_resize_condition(o.setdefault("status", {}), "NodeResizeError",
                                      f"failed to expand pvc with {driver}", keep_old=True)
            self.store.mutate(PVCS, ns, name, failed, subresource="status")
            self.events.record(pod, "Warning", "VolumeResizeFailed",
                               f'NodeExpandVolume.NodeExpandVolume failed for volume "{pv_name}" '
                               f": Expander.NodeExpand failed to expand the volume : {driver}",
                               "kubelet", node_name)
            return
        current = self.store.peek(PVCS, ns, name)
        if current is None:
            return
        message = f'MountVolume.NodeExpandVolume succeeded for volume "{pv_name}" {node_name}'
        self.events.record(pod, "Normal", "FileSystemResizeSuccessful", message, "kubelet",
                           node_name)
        self.events.record(current, "Normal", "FileSystemResizeSuccessful", message, "kubelet",
                           node_name)
        capacity = ((self.store.peek(PVS, None, pv_name) or pv)["spec"].get("capacity")
                    or {}).get("storage")

        def finished(o: dict) -> None:
            st = o.setdefault("status", {})
            st.setdefault("capacity", {})["storage"] = capacity
            st["conditions"] = [c for c in st.get("conditions") or []
                                if c.get("type") not in RESIZE_CONDITIONS]
            if not st["conditions"]:
                st.pop("conditions")
            statuses = st.get("allocatedResourceStatuses") or {}
            statuses.pop("storage", None)
            if not statuses:
                st.pop("allocatedResourceStatuses", None)
        self.store.mutate(PVCS, ns, name, finished, subresource="status")


def _set_resize_condition(status: dict, type_: str, message: str, *, keep_old: bool) -> None:
    """util.MergeResizeConditionsOfPVC with one new condition: conditions of other kinds
    stay; other resize conditions stay only with `keep_old`."""
    kept = [c for c in status.get("conditions") or []
            if c.get("type") == type_ or c.get("type") not in RESIZE_CONDITIONS or keep_old]
    kept = [c for c in kept if c.get("type") != type_]
    cond: dict[str, Any] = {"type": type_, "status": "True", "lastTransitionTime": now_iso()}
    if message:
        cond["message"] = message
    status["conditions"] = [*kept, cond]


def _request_id() -> str:
    return str(uuid.uuid4())
