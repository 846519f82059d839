"""The sim's kubelet, against the real attach-detach path.

`AgentKubelet` is the embedded cluster's `Kubelet` (pull, mount, start, stop, with the
events real kubelets emit) with the three things that differ when the volumes are
attached by the real attach-detach controller, external-attacher and EBS CSI driver
instead of the sim's own `Volumes` controller (and what else differs):

- **Mounting an EBS volume** waits as the kubelet's volume manager does: the volume is
  first listed in the node's `status.volumesInUse`, then the kubelet waits until the
  attach-detach controller reports it in `status.volumesAttached` (its VolumeAttachment
  `ebs.csi.aws.com` is `attached: true`) and - the node side of the attach - EC2 (moto)
  shows it attached to the node's instance. Only then is the disk formatted NTFS on its
  first use (csi-proxy's PartitionDisk + FormatVolume in the node plugin's
  NodeStageVolume) and mounted; the volume's model is the same object wherever it goes,
  so its files move with it.
- **Letting go of a pod**: the sim's stop (containers killed, the pod's views dropped),
  then the pod's volumes leave `volumesInUse`, and only then the pod is deleted with
  grace 0 (`RemoteStore.before_pod_removed` runs between the two), so the volume is
  detached after the unmount, never under a running container.
- **The add-ons' images** (`602401143452.dkr.ecr...`, `public.ecr.aws/eks-distro/...`)
  are manifest lists with Windows and Linux images, as the EKS add-ons publish them; the
  EBS CSI node plugin's container crash-loops on a Windows node without csi-proxy's pipes
  (the driver exits when it cannot reach them), so its DaemonSet is not Ready there.
- **Node expansion** (`NodeExpansion`): the sim's kubelet half of growing a claim.

`AgentRecorder` records events like the sim's recorder but survives what the real API
server does to events: a repeated event whose object expired (TTL) is recorded anew,
and a namespace being deleted refuses new events (the kubelet carries on).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Set
from typing import Any

from ..api.errors import ApiError
from ..api.events import Recorder
from ..api.store import now_iso
from ..controllers.base import (
    ATTACHMENTS,
    CSINODES,
    NODES,
    PODS,
    PVCS,
    PVS,
    set_condition,
    terminating,
)
from ..controllers.expansion import Expansion
from ..controllers.kubelet import Kubelet, PodFailed
from ..controllers.volumes import EBS, Volumes, parse_gib
from ..nodes.workloads import volume_id_of
from .nodes import NodeAgent

log = logging.getLogger("winstor.sim.agent.kubelet")

ATTACHMENTS_POLL = 0.05
# What the EBS CSI Windows node plugin mounts of csi-proxy (aws-ebs-csi-driver v1.44
# node-windows.yaml): without these pipes it exits at start.
CSI_PROXY_PIPES = ("csi-proxy-disk-v1", "csi-proxy-volume-v1", "csi-proxy-filesystem-v1")
MULTI_OS_IMAGES = ("602401143452.dkr.ecr.", "public.ecr.aws/eks-distro/",
                   "public.ecr.aws/ebs-csi-driver/")


def unique_volume_name(handle: str) -> str:
    """The volume's name in `volumesInUse`/`volumesAttached` (the kubelet's and the
    attach-detach controller's `kubernetes.io/csi/<driver>^<handle>`; in-tree EBS volumes
    are migrated to the CSI driver, so theirs is the same)."""
    return f"kubernetes.io/csi/{EBS}^{handle}"


class _LegacyEvents:
    """The recorder's view of the store, writing events as a kubelet's recorder does:
    core/v1 events with count, firstTimestamp and lastTimestamp, without `eventTime` and
    `series` (the API server validates an event with `eventTime` as a new-style one, which
    needs `action` and more; kubelets still record the old style)."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def peek(self, kind: Any, namespace: str | None, name: str) -> dict | None:
        return self._store.peek(kind, namespace, name)

    def create(self, kind: Any, obj: dict) -> dict:
        obj.pop("eventTime", None)
        obj.pop("series", None)
        return self._store.create(kind, obj)

    def mutate(self, kind: Any, namespace: str | None, name: str,
               fn: Callable[[dict], None], **kwargs: Any) -> dict:
        def legacy(ev: dict) -> None:
            fn(ev)
            ev.pop("eventTime", None)
            ev.pop("series", None)
        return self._store.mutate(kind, namespace, name, legacy, **kwargs)


class AgentRecorder(Recorder):
    """The sim's event recorder, writing old-style events, and tolerant of the real API
    server's event lifecycle."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.store = _LegacyEvents(store)  # type: ignore[assignment]

    def record(self, obj: dict, type_: str, reason: str, message: str, component: str,
               host: str | None = None) -> None:
        try:
            super().record(obj, type_, reason, message, component, host)
        except ApiError as err:
            if err.code == 404:  # the aggregated event expired: a new one
                self._index.pop((obj["metadata"]["uid"], reason, message), None)
                try:
                    super().record(obj, type_, reason, message, component, host)
                    return
                except ApiError as again:
                    err = again
            log.info("event %s for %s/%s not recorded: %s", reason,
                     obj["metadata"].get("namespace"), obj["metadata"].get("name"), err.message)
        except Exception as err:  # an event must never stop a kubelet
            log.warning("event %s not recorded: %s", reason, err)


class AgentKubelet(Kubelet):
    """See the module docstring."""

    def __init__(self, *args: Any, nodes: NodeAgent, instances: dict[str, str],
                 describe_volume: Callable[[str], dict | None],
                 silent_nodes: Set[str] = frozenset(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nodes = nodes
        self.instances = instances
        self.describe_volume = describe_volume  # AwsBackend.volume_state: EC2's view
        self.silent_nodes = silent_nodes  # kubelets that stopped (windows-nodes-not-ready)
        self._stopped: set[str] = set()  # pods this kubelet has finished with

    def reconcile(self) -> None:
        """The sim kubelet's pass, for the pods of nodes whose kubelet runs: a pod bound
        to a silent node (it tolerates the unreachable taint) stays Pending there."""
        for pod in list(self.store.iter(PODS)):
            node = pod["spec"].get("nodeName")
            if not node or node in self.silent_nodes:
                continue
            uid = pod["metadata"]["uid"]
            if terminating(pod):
                if uid not in self._stopped:
                    self.manager.spawn(f"kubelet-stop:{uid}", self._stop(pod))
            elif (pod.get("status") or {}).get("phase") == "Pending" and \
                    f"kubelet:{uid}" not in self.manager.tasks:
                self.manager.spawn(f"kubelet:{uid}", self._run(pod))

    def _status(self, pod: dict, fn: Any) -> None:
        """The sim's status write, plus what a 1.35 kubelet also reports: `hostIPs`, and the
        `PodReadyToStartContainers` condition (True once the sandbox has its IP)."""
        def with_sandbox(o: dict) -> None:
            fn(o)
            st = o.setdefault("status", {})
            if st.get("hostIP") and not st.get("hostIPs"):
                st["hostIPs"] = [{"ip": st["hostIP"]}]
            conds = st.get("conditions")
            if conds is not None:
                set_condition(conds, "PodReadyToStartContainers",
                              "True" if st.get("podIP") else "False")
        super()._status(pod, with_sandbox)

    async def _stop(self, pod: dict) -> None:
        """The sim's stop; then, for a pod that someone's finalizer holds, the grace-0
        delete all the same (the sim's store would remove it outright, so its kubelet
        leaves such a pod alone): the API server removes it once the finalizers go."""
        meta = pod["metadata"]
        await super()._stop(pod)
        cur = self.store.peek(PODS, meta["namespace"], meta["name"])
        if cur is not None and cur["metadata"]["uid"] == meta["uid"] and \
                cur["metadata"].get("finalizers"):
            self.store.remove_now(PODS, meta["namespace"], meta["name"])
        self._stopped.add(meta["uid"])

    def _container_running(self, pod: dict, name: str) -> None:
        """Running, except the EBS CSI node plugin on a Windows node without csi-proxy: the
        driver exits at start when it cannot reach csi-proxy's pipes, so its container
        crash-loops (and the plugin never registers, as `NodeAgent` has it)."""
        if name == "ebs-plugin" and self._plugin_crashes(pod):
            self._crash_loop(pod, name)
            return
        super()._container_running(pod, name)

    def _plugin_crashes(self, pod: dict) -> bool:
        labels = pod["metadata"].get("labels") or {}
        model = self.cluster.workloads.nodes.get(pod["spec"].get("nodeName") or "")
        return (labels.get("app") == "ebs-csi-node" and model is not None
                and not set(CSI_PROXY_PIPES) <= model.pipes)

    def _crash_loop(self, pod: dict, name: str) -> None:
        meta = pod["metadata"]
        now = now_iso()
        self._event(pod, "Warning", "BackOff",
                    f"Back-off restarting failed container {name} in pod "
                    f"{meta['name']}_{meta['namespace']}({meta['uid']})")

        ip = f"10.{self.cluster.plan.index * 10}.{secrets.randbelow(200) + 20}." \
             f"{secrets.randbelow(250) + 2}"  # the sandbox's, as the sim's kubelet makes one

        def fn(o: dict) -> None:
            st = o["status"]
            if st.get("phase") != "Running":
                st.update(phase="Running", podIP=ip, podIPs=[{"ip": ip}])
            spec = {c["name"]: c for c in o["spec"]["containers"]}
            statuses = {c["name"]: c for c in st.get("containerStatuses") or []}
            image = spec[name].get("image", "")
            statuses[name] = {
                "name": name, "image": image,
                "imageID": f"{image.split(':')[0]}@sha256:" + "0" * 64,
                "containerID": "containerd://" + secrets.token_hex(32),
                "ready": False, "started": False, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message":
                                      f"back-off 5m0s restarting failed container={name} "
                                      f"pod={meta['name']}_{meta['namespace']}({meta['uid']})"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                             "startedAt": now, "finishedAt": now}}}
            st["containerStatuses"] = [statuses[n] for n in spec if n in statuses]
            conds = st.setdefault("conditions", [])
            for t in ("Ready", "ContainersReady"):
                set_condition(conds, t, "False", "ContainersNotReady",
                              f"containers with unready status: [{name}]")
        self._status(pod, fn)

    def _pull_error(self, image: str, node_os: str) -> str | None:
        if image.startswith(MULTI_OS_IMAGES):
            return None
        return super()._pull_error(image, node_os)

    async def _mount_claim(self, pod: dict, v: dict, ns: str, node_name: str,
                           node_os: str) -> None:
        claim = v["persistentVolumeClaim"]["claimName"]
        uid = pod["metadata"]["uid"]
        while True:
            if not self._alive(pod):
                raise PodFailed
            pvc = self.store.peek(PVCS, ns, claim)
            pv = self.store.peek(PVS, None, (pvc or {}).get("spec", {}).get("volumeName")
                                 or "") if pvc else None
            if pv is not None:
                spec = pv["spec"]
                ebs = "awsElasticBlockStore" in spec or (spec.get("csi") or {}).get(
                    "driver") == EBS
                if not ebs:
                    return  # a volume kind this kubelet does not model: nothing to mount
                handle = volume_id_of(pv) or ""
                self.nodes.use_volume(node_name, uid, unique_volume_name(handle))
                if self._attached(pv, node_name, handle) and await self._in_ec2(handle,
                                                                                node_name):
                    break
            await asyncio.sleep(ATTACHMENTS_POLL)
        await self._wait_registered(pod, pv, node_name)
        size = parse_gib(((pv["spec"].get("capacity") or {}).get("storage")) or "1Gi")
        volume = self.cluster.workloads.volume(handle, size)
        if node_os == "windows" and volume.formatted_fs and \
                "volume-loses-data" in self.cluster.scenarios:
            # A broken node plugin formats the disk on every mount, not only a blank one.
            await self.cluster.clock.spend("ntfs_format")
            volume.format("NTFS")
        if node_os == "windows" and not volume.formatted_fs:
            await self.cluster.clock.spend("ntfs_format")
            volume.formatted_fs = "NTFS"
            volume.partition()  # csi-proxy's PartitionDisk before FormatVolume

    def _attached(self, pv: dict, node_name: str, handle: str) -> bool:
        """Attached as the kubelet sees it: in the node's volumesAttached, and the
        VolumeAttachment the attach-detach controller made for it says so."""
        node = self.store.peek(NODES, None, node_name) or {}
        names = {a.get("name") for a in (node.get("status") or {}).get("volumesAttached") or []}
        if unique_volume_name(handle) not in names:
            return False
        va = self.store.peek(ATTACHMENTS, None,
                             Volumes.attachment_name(pv, node_name))
        return bool(va and (va.get("status") or {}).get("attached"))

    async def _in_ec2(self, handle: str, node_name: str) -> bool:
        """The disk is on the node: EC2 has the volume attached to its instance."""
        instance = self.instances.get(node_name)
        if not instance:
            return False
        loop = asyncio.get_running_loop()
        try:
            state = await loop.run_in_executor(None, self.describe_volume, handle)
        except Exception as err:  # asked again on the next pass
            log.info("describing %s: %s", handle, err)
            return False
        return any(a["instance_id"] == instance and a["state"] == "attached"
                   for a in (state or {}).get("attachments") or [])

    async def _wait_registered(self, pod: dict, pv: dict, node_name: str) -> None:
        """MountDevice needs the EBS CSI node plugin registered on the node."""
        attempt = 0
        while True:
            csinode = self.store.peek(CSINODES, None, node_name) or {}
            if any(d.get("name") == EBS for d in (csinode.get("spec") or {}).get("drivers")
                   or []):
                return
            self._event(pod, "Warning", "FailedMount",
                        f'MountVolume.MountDevice failed for volume "{pv["metadata"]["name"]}"'
                        f" : kubernetes.io/csi: attacher.MountDevice failed to create "
                        f"newCsiDriverClient: driver name {EBS} not found in the list of "
                        "registered CSI drivers")
            await self._backoff(pod, attempt)
            attempt += 1


class NodeExpansion(Expansion):
    """The kubelet's half of growing a claim (online expansion): for a claim the real
    external-resizer left `NodeResizePending`, the node plugin's NodeExpandVolume on the
    node where a pod runs with it (csi-proxy's ResizeVolume in the Windows model), then the
    claim's new capacity and `FileSystemResizeSuccessful` - the sim's `Expansion`, whose
    controller side (expand controller, external-resizer, ModifyVolume) the real
    components play here, so it is switched off."""

    def __init__(self, *args: Any, describe_volume: Callable[[str], dict | None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.describe_volume = describe_volume

    def _controller_side(self, pvc: dict, pv: dict, want: Any) -> None:
        return None

    async def _node_expand(self, pvc: dict, pv: dict, pod: dict) -> None:
        """The disk the node sees is EC2's volume, which the real EBS CSI controller grew
        (ModifyVolume in moto): its size first, then the sim's node expansion."""
        volume_id = volume_id_of(pv) or ""
        volume = self.cluster.workloads.volumes.get(volume_id)
        if volume is not None:
            loop = asyncio.get_running_loop()
            try:
                state = await loop.run_in_executor(None, self.describe_volume, volume_id)
            except Exception as err:  # the expansion is retried on the next pass
                log.info("describing %s: %s", volume_id, err)
                return
            volume.size_gib = max(volume.size_gib, int((state or {}).get("size_gib") or 0))
        await super()._node_expand(pvc, pv, pod)
