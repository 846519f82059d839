"""The kubelets: mount, pull, start, stop - with the events real kubelets emit.

The order is the kubelet's: volumes are attached and mounted before the
sandbox starts, images are pulled once per node (a second pod on the node
finds the image "already present"), and a Windows container whose image
targets another Windows build fails the way hcsshim does.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..api.kinds import kind_of
from ..api.store import now_iso
from ..nodes.windows import WinError
from ..nodes.workloads import image_build, is_host_process
from .base import (
    ATTACHMENTS,
    CSINODES,
    NODES,
    PODS,
    PVCS,
    PVS,
    Controller,
    set_condition,
    terminating,
)
from .volumes import Volumes

SERVERCORE = "mcr.microsoft.com/windows/servercore"
STAND_IN_REPOSITORY = "mcr.microsoft.com/powershell"  # kind: the Windows pods' stand-in image
WINDOWS_IMAGE_PREFIXES = ("mcr.microsoft.com/windows/", "mcr.microsoft.com/powershell:nanoserver",
                          "mcr.microsoft.com/oss/kubernetes/windows-host-process")
IMAGE_SIZES = {"servercore": 2763547119, "hostprocess": 9023312}
BACKOFF = (10.0, 20.0, 40.0, 80.0, 160.0, 300.0)  # kubelet's image/mount retry backoff
SECRETS = kind_of("v1", "Secret")


class PodFailed(Exception):
    """A container cannot start; the reason is already in events and status."""


class CsiNodePlugin(Protocol):
    """What the kubelet asks of a CSI node plugin that needs no attach (SMB): stage and
    publish a volume for a pod, and let go of a pod's volumes when it stops."""

    async def mount(self, pod: dict, volume: dict, pv: dict, node_name: str,
                    secret: dict[str, str]) -> tuple[str, str] | None:
        """None when published; else the kubelet operation that failed (`MountDevice`,
        `SetUp`) and the driver's error."""

    def release(self, pod: dict) -> None: ...


def _image_os(image: str) -> str:
    if image.startswith(WINDOWS_IMAGE_PREFIXES) or "nanoserver" in image or \
            "servercore" in image or "windows" in image.split(":")[0]:
        return "windows"
    return "linux" if not image.startswith("mcr.microsoft.com/powershell") else "any"


def _pull_kind(image: str) -> str:
    """Which modelled pull latency an image has."""
    return ("servercore" if "servercore" in image else
            "hostprocess" if "host-process" in image else "other")


class Kubelet(Controller):
    def __init__(self, *args: Any, csi_plugins: Mapping[str, CsiNodePlugin] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.csi_plugins: Mapping[str, CsiNodePlugin] = csi_plugins or {}
        # (node, image) -> the pull in progress there, which other pods wait for
        self.inflight_pulls: dict[tuple[str, str], asyncio.Future[bool]] = {}

    def reconcile(self) -> None:
        for pod in list(self.store.iter(PODS)):
            node = pod["spec"].get("nodeName")
            if not node:
                continue
            uid = pod["metadata"]["uid"]
            if terminating(pod):
                self.manager.spawn(f"kubelet-stop:{uid}", self._stop(pod))
            elif not self.manager.running(f"kubelet:{uid}") and \
                    (pod.get("status") or {}).get("phase") == "Pending" and \
                    f"kubelet:{uid}" not in self.manager.tasks:
                self.manager.spawn(f"kubelet:{uid}", self._run(pod))

    def _node(self, pod: dict) -> dict:
        return self.store.peek(NODES, None, pod["spec"]["nodeName"]) or {}

    def _status(self, pod: dict, fn: Any) -> None:
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        cur = self.store.peek(PODS, ns, name)
        if cur is None or cur["metadata"]["uid"] != pod["metadata"]["uid"]:
            raise asyncio.CancelledError
        self.store.mutate(PODS, ns, name, fn, subresource="status")

    def _alive(self, pod: dict) -> bool:
        cur = self.store.peek(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        return cur is not None and cur["metadata"]["uid"] == pod["metadata"]["uid"] and \
            not terminating(cur)

    def _event(self, pod: dict, type_: str, reason: str, message: str) -> None:
        self.events.record(pod, type_, reason, message, "kubelet", pod["spec"]["nodeName"])

    def _waiting(self, pod: dict, container: str, reason: str, message: str) -> None:
        def fn(o: dict) -> None:
            st = o.setdefault("status", {})
            statuses = st.setdefault("containerStatuses", [])
            cs = next((c for c in statuses if c["name"] == container), None)
            if cs is None:
                spec_c = next(c for c in o["spec"]["containers"] if c["name"] == container)
                cs = {"name": container, "image": spec_c.get("image", ""), "imageID": "",
                      "ready": False, "started": False, "restartCount": 0}
                statuses.append(cs)
            cs["state"] = {"waiting": {"reason": reason, "message": message}}
            cs["ready"] = False
            conds = st.setdefault("conditions", [])
            set_condition(conds, "Ready", "False", "ContainersNotReady",
                          f"containers with unready status: [{container}]")
            set_condition(conds, "ContainersReady", "False", "ContainersNotReady",
                          f"containers with unready status: [{container}]")
        self._status(pod, fn)

    # -- the pod lifecycle -----------------------------------------------------------
    async def _run(self, pod: dict) -> None:
        node = self._node(pod)
        node_os = (node.get("metadata", {}).get("labels") or {}).get("kubernetes.io/os",
                                                                     "linux")
        self._status(pod, lambda o: o["status"].update(
            hostIP=next((a["address"] for a in node.get("status", {}).get("addresses", [])
                         if a["type"] == "InternalIP"), ""),
            startTime=now_iso()))
        self._status(pod, lambda o: [set_condition(o["status"].setdefault("conditions", []),
                                                   t, "True" if t == "PodScheduled" else "False",
                                                   "ContainersNotReady" if "Ready" in t else "")
                                     for t in ("PodScheduled", "Initialized", "Ready",
                                               "ContainersReady")])
        try:
            await self._mount_volumes(pod, node_os)
            await self.cluster.clock.spend(f"pod_sandbox:{node_os}")
            # Like the kubelet's SyncPod: containers in spec order, each pulled and
            # started before the next one is pulled, so a pod whose second container
            # is still pulling (or cannot pull) already runs its first.
            for container in pod["spec"]["containers"]:
                await self._pull(pod, container, node_os)
                self._check_platform(pod, container, node_os)
                await self.cluster.clock.spend(f"container_start:{node_os}")
                if not self._alive(pod):
                    return
                self._event(pod, "Normal", "Created", f"Created container {container['name']}")
                self.cluster.workloads.start_container(pod, container)
                self._event(pod, "Normal", "Started", f"Started container {container['name']}")
                self._container_running(pod, container["name"])
        except PodFailed:
            return

    def _container_running(self, pod: dict, name: str) -> None:
        """Mark container `name` running; the pod is Running from its first running
        container on, and Ready once all of them run."""
        ip = f"10.{self.cluster.plan.index * 10}.{secrets.randbelow(200) + 20}." \
             f"{secrets.randbelow(250) + 2}"

        def fn(o: dict) -> None:
            st = o["status"]
            if st.get("phase") != "Running":
                st["phase"] = "Running"
                st["podIP"] = ip
                st["podIPs"] = [{"ip": ip}]
            spec = {c["name"]: c for c in o["spec"]["containers"]}
            statuses = {c["name"]: c for c in st.get("containerStatuses") or []}
            image = spec[name].get("image", "")
            statuses[name] = {
                "name": name, "image": image,
                "imageID": f"{image.split(':')[0]}@sha256:" + "0" * 64,
                "containerID": "containerd://" + secrets.token_hex(32),
                "ready": True, "started": True, "restartCount": 0,
                "state": {"running": {"startedAt": now_iso()}}}
            st["containerStatuses"] = [statuses[n] for n in spec if n in statuses]
            waiting = [n for n in spec if "running" not in (statuses.get(n) or {}).get(
                "state", {})]
            conds = st.setdefault("conditions", [])
            for t in ("Initialized", "PodScheduled"):
                set_condition(conds, t, "True")
            for t in ("Ready", "ContainersReady"):
                if waiting:
                    set_condition(conds, t, "False", "ContainersNotReady",
                                  f"containers with unready status: [{' '.join(waiting)}]")
                else:
                    set_condition(conds, t, "True")
        self._status(pod, fn)

    async def _mount_volumes(self, pod: dict, node_os: str) -> None:
        ns = pod["metadata"]["namespace"]
        node_name = pod["spec"]["nodeName"]
        for v in pod["spec"].get("volumes") or []:
            if "persistentVolumeClaim" in v:
                await self._mount_claim(pod, v, ns, node_name, node_os)
            elif "hostPath" in v and (node_os == "windows"
                                      or node_name in self.cluster.workloads.linux_nodes):
                await self._check_host_path(pod, v, node_name)

    async def _mount_claim(self, pod: dict, v: dict, ns: str, node_name: str,
                           node_os: str) -> None:
        claim = v["persistentVolumeClaim"]["claimName"]
        while True:
            if not self._alive(pod):
                raise PodFailed
            pvc = self.store.peek(PVCS, ns, claim)
            pv = self.store.peek(PVS, None, (pvc or {}).get("spec", {}).get("volumeName", "")
                                 or "") if pvc else None
            if pv is not None:
                if (pv["spec"].get("csi") or {}).get("driver") in self.csi_plugins:
                    await self._mount_csi(pod, v, pv, node_name)
                    return
                if not ("awsElasticBlockStore" in pv["spec"] or "csi" in pv["spec"]):
                    break
                va = self.store.peek(ATTACHMENTS, None, Volumes.attachment_name(pv, node_name))
                if va and (va.get("status") or {}).get("attached"):
                    break
            await self.manager.next_change()
        vol_id = (pv["spec"].get("csi") or {}).get("volumeHandle") or \
            (pv["spec"].get("awsElasticBlockStore") or {}).get("volumeID", "").rsplit("/", 1)[-1]
        volume = self.cluster.workloads.volumes.get(vol_id) if vol_id else None
        if volume is not None and node_os == "windows" and volume.formatted_fs and \
                "volume-loses-data" in self.cluster.scenarios:
            # A broken node plugin formats the disk on every mount, not only a blank one.
            await self.cluster.clock.spend("ntfs_format")
            volume.format("NTFS")
        if volume is not None and node_os == "windows" and not volume.formatted_fs:
            await self.cluster.clock.spend("ntfs_format")
            volume.formatted_fs = "NTFS"
            volume.partition()  # csi-proxy's PartitionDisk before FormatVolume

    async def _mount_csi(self, pod: dict, v: dict, pv: dict, node_name: str) -> None:
        """MountDevice and SetUp through a CSI node plugin, retried with the kubelet's
        back-off; each failure is a FailedMount event in the kubelet's words."""
        csi = pv["spec"]["csi"]
        driver, pv_name = csi["driver"], pv["metadata"]["name"]
        attempt = 0
        while True:
            if not self._alive(pod):
                raise PodFailed
            csinode = self.store.peek(CSINODES, None, node_name) or {}
            secret_ref = csi.get("nodeStageSecretRef") or {}
            secret = self.store.peek(SECRETS, secret_ref.get("namespace"),
                                     secret_ref.get("name", "")) if secret_ref else None
            failed: tuple[str, str] | None
            if not any(d.get("name") == driver
                       for d in (csinode.get("spec") or {}).get("drivers") or []):
                failed = ("MountDevice", "kubernetes.io/csi: attacher.MountDevice failed to "
                          f"create newCsiDriverClient: driver name {driver} not found in the "
                          "list of registered CSI drivers")
            elif secret_ref and secret is None:
                ns, name = secret_ref.get("namespace"), secret_ref.get("name")
                failed = ("MountDevice", f"fetching NodeStageSecretRef {ns}/{name} failed: "
                          f"kubernetes.io/csi: failed to find the secret {name} in the "
                          f'namespace {ns} with error: secrets "{name}" not found')
            else:
                data = {k: base64.b64decode(val).decode("utf-8", errors="replace")
                        for k, val in ((secret or {}).get("data") or {}).items()}
                failed = await self.csi_plugins[driver].mount(pod, v, pv, node_name, data)
            if failed is None:
                return
            self._event(pod, "Warning", "FailedMount",
                        f'MountVolume.{failed[0]} failed for volume "{pv_name}" : {failed[1]}')
            await self._backoff(pod, attempt)
            attempt += 1

    async def _check_host_path(self, pod: dict, v: dict, node_name: str) -> None:
        path = v["hostPath"]["path"]
        want = v["hostPath"].get("type", "")
        workloads = self.cluster.workloads
        model: Any = workloads.nodes.get(node_name) or workloads.linux_nodes.get(node_name)
        if want == "DirectoryOrCreate" and node_name in workloads.linux_nodes:
            fs, rel = model.resolve_host_path(path)
            if not fs.exists(rel):
                fs.mkdir(rel)  # the kubelet creates it (0755), as on any Linux node
            return
        attempt = 0
        while want == "Directory" and model is not None:
            try:
                fs, rel = model.resolve_host_path(path)
                if fs.is_dir(rel):
                    return
            except WinError:
                pass  # no such drive, or a mapping that cannot reconnect
            self._event(pod, "Warning", "FailedMount",
                        f'MountVolume.SetUp failed for volume "{v["name"]}" : hostPath type '
                        f"check failed: {path} is not a directory")
            await self._backoff(pod, attempt)
            attempt += 1

    async def _backoff(self, pod: dict, attempt: int) -> None:
        delay = BACKOFF[min(attempt, len(BACKOFF) - 1)]
        await self.cluster.clock.spend("backoff", delay)
        if not self._alive(pod):
            raise PodFailed

    async def _pull(self, pod: dict, container: dict, node_os: str) -> None:
        image = container.get("image", "")
        cache = self.cluster.workloads.images.setdefault(pod["spec"]["nodeName"], set())
        policy = container.get("imagePullPolicy", "IfNotPresent")
        if image in cache and policy != "Always":
            self._event(pod, "Normal", "Pulled",
                        f'Container image "{image}" already present on machine')
            return
        # containerd fetches an image once per node: a pod that needs an image
        # another pod is pulling there waits for that pull instead of starting its own.
        inflight = self.inflight_pulls
        key = (pod["spec"]["nodeName"], image)
        loop = asyncio.get_running_loop()
        if key in inflight and policy != "Always":
            self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
            began = loop.time()
            if await asyncio.shield(inflight[key]):
                waited = (loop.time() - began) / (self.cluster.clock.scale or 1)
                self._event(pod, "Normal", "Pulled",
                            f'Successfully pulled image "{image}" in 212ms '
                            f"({int(waited // 60)}m{waited % 60:.1f}s including waiting). "
                            f"Image size: {IMAGE_SIZES.get(_pull_kind(image), 52413100)} bytes.")
                return
        owned: asyncio.Future[bool] = loop.create_future()
        inflight[key] = owned

        def settle(ok: bool) -> None:
            # Waiters learn the first attempt's outcome; after a failure each pod
            # retries (and reports) its own pulls, as separate kubelet syncs do.
            if not owned.done():
                owned.set_result(ok)
            if inflight.get(key) is owned:
                del inflight[key]
        try:
            await self._pull_now(pod, container, node_os, image, cache, settle)
        finally:
            settle(False)

    async def _pull_now(self, pod: dict, container: dict, node_os: str, image: str,
                        cache: set[str], settle: Callable[[bool], None]) -> None:
        name = container["name"]
        attempt = 0
        while True:
            self._event(pod, "Normal", "Pulling", f'Pulling image "{image}"')
            error = self._pull_error(image, node_os)
            kind = _pull_kind(image)
            if error is None:
                await self.cluster.clock.spend(f"image_pull:{kind}")
                self.cluster.metrics.image_pulls[image] += 1
                cache.add(image)
                settle(True)
                took = {"servercore": "4m1.2s", "hostprocess": "3.9s"}.get(kind, "7.8s")
                size = IMAGE_SIZES.get(kind, 52413100)
                self._event(pod, "Normal", "Pulled",
                            f'Successfully pulled image "{image}" in {took} ({took} including '
                            f"waiting). Image size: {size} bytes.")
                return
            await self.cluster.clock.spend("image_pull:other")
            settle(False)
            self._event(pod, "Warning", "Failed", f'Failed to pull image "{image}": {error}')
            self._event(pod, "Warning", "Failed", "Error: ErrImagePull")
            self._waiting(pod, name, "ErrImagePull", error)
            await self._backoff(pod, attempt)
            self._event(pod, "Normal", "BackOff", f'Back-off pulling image "{image}"')
            self._event(pod, "Warning", "Failed", "Error: ImagePullBackOff")
            self._waiting(pod, name, "ImagePullBackOff", f'Back-off pulling image "{image}"')
            await self._backoff(pod, attempt)
            attempt += 1

    def _pull_error(self, image: str, node_os: str) -> str | None:
        ref = image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"
        if "image-pull-fails" in self.cluster.scenarios and (image.startswith(SERVERCORE) or (
                self.cluster.flavour == "kind" and image.startswith(STAND_IN_REPOSITORY + ":"))):
            return (f'rpc error: code = NotFound desc = failed to pull and unpack image '
                    f'"{ref}": failed to resolve reference "{ref}": {ref}: not found')
        image_os = _image_os(image)
        if image_os not in ("any", node_os):
            return (f'rpc error: code = NotFound desc = failed to pull and unpack image '
                    f'"{ref}": no match for platform in manifest: not found')
        return None

    def _check_platform(self, pod: dict, container: dict, node_os: str) -> None:
        if node_os != "windows" or is_host_process(pod, container):
            return
        model = self.cluster.workloads.nodes.get(pod["spec"]["nodeName"])
        want = image_build(container.get("image", ""))
        if model is None or want is None or want == model.build:
            return
        msg = ("failed to create containerd task: failed to create shim task: "
               f"hcs::CreateComputeSystem {container['name']}: The container operating system "
               "does not match the host operating system.: unknown")
        self._event(pod, "Warning", "Failed", f"Error: {msg}")
        self._waiting(pod, container["name"], "CreateContainerError", msg)
        raise PodFailed

    async def _stop(self, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        running = self.manager.tasks.get(f"kubelet:{uid}")
        if running is not None and not running.done():
            running.cancel()
        for c in pod["spec"]["containers"]:
            if (pod.get("status") or {}).get("phase") == "Running":
                self.events.record(pod, "Normal", "Killing", f"Stopping container {c['name']}",
                                   "kubelet", pod["spec"]["nodeName"])
        if (pod.get("status") or {}).get("phase") == "Running":
            await self.cluster.clock.spend("container_stop")
        for plugin in self.csi_plugins.values():
            plugin.release(pod)  # NodeUnpublishVolume (and NodeUnstageVolume when last)
        self.cluster.workloads.forget_pod(uid)
        cur = self.store.peek(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        if cur is not None and cur["metadata"]["uid"] == uid:
            if cur["metadata"].get("finalizers"):
                return  # someone else's finalizer holds it; the API shows it terminating
            self.store.remove_now(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
