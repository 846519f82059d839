"""The SMB CSI driver (kubernetes-csi/csi-driver-smb, `smb.csi.k8s.io`) as a cluster runs it.

Four parts, each doing what the real component does and failing the way it fails:

- **The node DaemonSets** (`csi-smb-node`, `csi-smb-node-win`): one pod per matching
  node. On Windows, in csi-proxy mode, the `smb` container connects to csi-proxy
  through the `filesystem` and `smb` pipes mounted into it (v1, else v1beta1); a node
  without them leaves it crash-looping (the driver exits when `NewSafeMounter` finds
  no csi-proxy). A HostProcess plugin (`--enable-windows-host-process=true`) needs no
  csi-proxy. The node-driver-registrar registers the driver in the node's CSINode
  only while the plugin runs.
- **The controller** (csi-smb-controller's external-provisioner and the driver's
  CreateVolume, on a Linux node): for a claim of a class with provisioner
  `smb.csi.k8s.io`, it mounts the share (`mount -t cifs` with the provisioner
  secret) and creates the volume's subdirectory (`subDir`, default the PV name), then
  creates the PV with the volume id `<server>/<share>#<subDir>#<uuid>#<onDelete>`.
  Deleting a released PV removes the subdirectory, archives it (`archived-<subDir>`)
  or keeps it, per `onDelete`.
- **The node plugin** (NodeStageVolume / NodePublishVolume through csi-proxy): maps
  the share's root on the node with `New-SmbGlobalMapping` and the node-stage secret
  (reusing a mapping of that root that is already OK, as csi-proxy does), links the
  volume's directory, and publishes it to the pod. Unstaging the last volume of a
  root on a node removes every global mapping of that root
  (`--remove-smb-mapping-during-unmount=true`, the deploy default), as
  `Remove-SmbGlobalMapping -RemotePath <root> -Force` does.
- Errors carry the driver's, csi-proxy's and PowerShell's words (csi-driver-smb
  issues 294, 520: `New-SmbGlobalMapping : The network path was not found.` for
  System error 53, `... The user name or password is incorrect.` for 1326); the
  controller's Linux mount reports `mount error(13): Permission denied` instead.

The kubelet calls `mount` and `release` (its `CsiNodePlugin`); the rest runs in
`reconcile` like any controller.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from ..api import defaults
from ..api.kinds import kind_of
from ..api.store import now_iso
from ..nodes.smb import SmbError, split_unc
from ..nodes.windows import Filesystem, SmbGlobalMapping, SmbShare, WinError, join_path
from .base import (
    CSINODES,
    NODES,
    PODS,
    PVCS,
    PVS,
    STORAGECLASSES,
    Controller,
    owned_by,
    owner_ref,
    terminating,
)

DRIVER = "smb.csi.k8s.io"
DAEMONSETS = kind_of("apps/v1", "DaemonSet")
SECRETS = kind_of("v1", "Secret")
CHART_NAME = ("app.kubernetes.io/name", "csi-driver-smb")
PROVISIONER_ID = "csi-smb-controller-6d8f9c7b5-q4zxw"
FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
DELETION_SECRET = "volume.kubernetes.io/provisioner-deletion-secret-"
V1_PIPES = ("csi-proxy-filesystem-v1", "csi-proxy-smb-v1")
V1BETA1_PIPES = ("csi-proxy-filesystem-v1beta1", "csi-proxy-smb-v1beta1")
KNOWN_PARAMETERS = ("source", "subdir", "ondelete", "csi.storage.k8s.io/pvc/name",
                    "csi.storage.k8s.io/pvc/namespace", "csi.storage.k8s.io/pv/name")
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 300.0)
CIFS_HELP = ("Refer to the mount.cifs(8) manual page (e.g. man mount.cifs) and kernel log "
             "messages (dmesg)\n")


def go_quote(text: str) -> str:
    """Go's %q of a string (what the driver's error messages use)."""
    return json.dumps(text, ensure_ascii=False)


def powershell_error(code: int, message: str, category: str) -> str:
    """What `New-SmbGlobalMapping` printed through csi-proxy's PowerShell (1.1.x, 1.2.x)."""
    return (f"New-SmbGlobalMapping : {message} \r\n"
            "At line:1 char:190\r\n"
            "+ ... ser, $PWord;New-SmbGlobalMapping -RemotePath $Env:smbremotepath -Cred ...\r\n"
            "+                 ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\r\n"
            f"    + CategoryInfo          : {category}: (MSFT_SmbGlobalMapping:ROOT/Microsoft/"
            "...mbGlobalMapping) [New-SmbGlobalMapping], CimException\r\n"
            f"    + FullyQualifiedErrorId : Windows System Error {code},New-SmbGlobalMapping\r\n"
            " \r\n")


def cifs_output(err: SmbError) -> str:
    """What `mount -t cifs` prints on the controller's Linux node for the same failure."""
    if err.code == 53:
        return f"mount error: could not resolve address for {err.server}: Unknown error\n"
    if err.code == 67:
        return "mount error(2): No such file or directory\n" + CIFS_HELP
    return "mount error(13): Permission denied\n" + CIFS_HELP


def decode_secret(secret: dict) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode("utf-8", errors="replace")
            for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


@dataclass
class SmbVolume:
    """The driver's view of a volume id (`getSmbVolFromID`)."""

    source: str
    sub_dir: str
    uuid: str = ""
    on_delete: str = ""

    @property
    def volume_id(self) -> str:
        elements = [self.source.strip("/"), self.sub_dir.strip("/"), self.uuid,
                    self.on_delete if self.on_delete.lower() in ("retain", "archive") else ""]
        return "#".join(elements)

    @classmethod
    def from_id(cls, volume_id: str) -> SmbVolume | None:
        parts = volume_id.split("#")
        if len(parts) < 2:
            return None
        return cls("//" + parts[0].lstrip("/"), parts[1], *[*parts[2:4], "", ""][:2])


@dataclass
class Staged:
    """A volume staged on a node: the share it reaches and the path inside it."""

    root: str
    share: SmbShare
    sub_path: str
    volume_id: str
    pods: set[str] = field(default_factory=set)


class SmbCsi(Controller):
    """The driver's DaemonSets, controller and node plugin (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.staged: dict[tuple[str, str], Staged] = {}  # (node, pv name) -> what is staged
        self.roots: dict[tuple[str, str], set[str]] = {}  # (node, root) -> volume ids using it
        self._deleting: set[str] = set()

    # -- reconcile ---------------------------------------------------------------
    def reconcile(self) -> None:
        if self.cluster.flavour != "eks":
            return
        running: dict[str, bool] = {}
        for ds in list(self.store.iter(DAEMONSETS)):
            if (ds["metadata"].get("labels") or {}).get(CHART_NAME[0]) == CHART_NAME[1]:
                running.update(self._daemonset(ds))
        self._register(running)
        for pvc in list(self.store.iter(PVCS)):
            if not pvc["spec"].get("volumeName") and not terminating(pvc):
                sc = self.store.peek(STORAGECLASSES, None,
                                     pvc["spec"].get("storageClassName") or "")
                if sc is not None and sc.get("provisioner") == DRIVER:
                    self.manager.spawn(f"smb-provision:{pvc['metadata']['uid']}",
                                       self._provision(pvc, sc))
        for pv in list(self.store.iter(PVS)):
            self._maybe_delete(pv)

    # -- the node DaemonSets -------------------------------------------------------
    def _daemonset(self, ds: dict) -> dict[str, bool]:
        """Keep one pod per matching node and the DaemonSet's status; return node ->
        whether the plugin runs there."""
        ns = ds["metadata"]["namespace"]
        template = ds["spec"]["template"]
        selector = (template.get("spec") or {}).get("nodeSelector") or {}
        nodes = [n for n in self.store.iter(NODES)
                 if all((n["metadata"].get("labels") or {}).get(k) == v
                        for k, v in selector.items())]
        pods = {p["spec"].get("nodeName"): p for p in self.store.iter(PODS, ns)
                if owned_by(p, ds)}
        running: dict[str, bool] = {}
        ready_count = 0
        for node in nodes:
            name = node["metadata"]["name"]
            pod = pods.pop(name, None)
            if pod is None:
                pod = self._create_pod(ds, node)
            if terminating(pod):
                continue
            ok, status = self._pod_status(ds, pod, node)
            running[name] = ok
            ready_count += ok
            if pod.get("status") != status:
                self.store.mutate(PODS, ns, pod["metadata"]["name"],
                                  lambda o, s=status: o.__setitem__("status", s),
                                  subresource="status")
        for pod in pods.values():  # on nodes it no longer matches
            if not terminating(pod):
                self.store.delete(PODS, ns, pod["metadata"]["name"], graceful=True)
        want = len(nodes)
        status = {"desiredNumberScheduled": want, "currentNumberScheduled": want,
                  "numberReady": ready_count, "numberAvailable": ready_count,
                  "numberMisscheduled": 0, "updatedNumberScheduled": want,
                  "observedGeneration": ds["metadata"].get("generation", 1)}
        if want - ready_count:
            status["numberUnavailable"] = want - ready_count
        if ds.get("status") != status:
            self.store.mutate(DAEMONSETS, ns, ds["metadata"]["name"],
                              lambda o: o.__setitem__("status", status),
                              subresource="status")
        return running

    def _create_pod(self, ds: dict, node: dict) -> dict:
        template = copy.deepcopy(ds["spec"]["template"])
        spec = template.get("spec") or {}
        spec["nodeName"] = node["metadata"]["name"]
        pod = {"metadata": {**(template.get("metadata") or {}),
                            "name": f"{ds['metadata']['name']}-{secrets.token_hex(3)[:5]}",
                            "namespace": ds["metadata"]["namespace"],
                            "ownerReferences": [owner_ref(ds)]},
               "spec": spec, "status": {"phase": "Pending"}}
        pod["metadata"].pop("creationTimestamp", None)
        defaults.apply("Pod", pod)
        return self.store.create(PODS, pod)

    def _plugin_runs(self, ds: dict, node: dict) -> bool:
        """Whether the `smb` container can start on the node (see the module docstring)."""
        labels = node["metadata"].get("labels") or {}
        if labels.get("kubernetes.io/os") != "windows":
            return True
        spec = ds["spec"]["template"].get("spec") or {}
        smb = next((c for c in spec.get("containers") or [] if c.get("name") == "smb"), {})
        if "--enable-windows-host-process=true" in (smb.get("args") or []):
            return True
        volumes = {v["name"]: ((v.get("hostPath") or {}).get("path") or "")
                   for v in spec.get("volumes") or []}
        mounted = {volumes.get(m["name"], "").rsplit("\\", 1)[-1].lower()
                   for m in smb.get("volumeMounts") or []
                   if volumes.get(m["name"], "").startswith("\\\\.\\pipe\\")}
        model = self.cluster.workloads.nodes.get(node["metadata"]["name"])
        pipes = {p.lower() for p in (model.pipes if model is not None else set())} & mounted
        return any(set(pair) <= pipes for pair in (V1_PIPES, V1BETA1_PIPES))

    def _pod_status(self, ds: dict, pod: dict, node: dict) -> tuple[bool, dict]:
        node_ready = any(c["type"] == "Ready" and c["status"] == "True"
                         for c in (node.get("status") or {}).get("conditions") or [])
        plugin = self._plugin_runs(ds, node)
        started = (pod.get("status") or {}).get("startTime") or now_iso()
        ip = next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                   if a["type"] == "InternalIP"), "")
        statuses = []
        for c in pod["spec"]["containers"]:
            image = c.get("image", "")
            cs: dict[str, Any] = {"name": c["name"], "image": image,
                                  "imageID": f"{image.split(':')[0]}@sha256:" + "0" * 64,
                                  "containerID": "containerd://" + hashlib.sha256(
                                      (pod["metadata"]["uid"] + c["name"]).encode()).hexdigest(),
                                  "started": True, "restartCount": 0, "ready": True,
                                  "state": {"running": {"startedAt": started}}}
            if c["name"] == "smb" and not plugin:
                cs.update(ready=False, started=False, restartCount=5, state={"waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 5m0s restarting failed container=smb "
                               f"pod={pod['metadata']['name']}_{pod['metadata']['namespace']}"
                               f"({pod['metadata']['uid']})"}},
                    lastState={"terminated": {"exitCode": 255, "reason": "Error",
                                              "startedAt": started, "finishedAt": started}})
            statuses.append(cs)
        ready = node_ready and plugin
        unready = [c["name"] for c in statuses if not c["ready"]]
        conditions = [
            {"type": "Initialized", "status": "True", "lastTransitionTime": started},
            {"type": "Ready", "status": "True" if ready else "False",
             "lastTransitionTime": started,
             **({} if ready else {"reason": "ContainersNotReady" if unready else "NodeNotReady",
                                  "message": f"containers with unready status: "
                                             f"[{' '.join(unready)}]" if unready
                                  else "node is not ready"})},
            {"type": "ContainersReady", "status": "True" if not unready else "False",
             "lastTransitionTime": started},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": started}]
        return plugin and node_ready, {
            "phase": "Running", "hostIP": ip, "podIP": ip, "podIPs": [{"ip": ip}],
            "startTime": started, "qosClass": "Burstable", "conditions": conditions,
            "containerStatuses": statuses}

    def _register(self, running: dict[str, bool]) -> None:
        """node-driver-registrar: the driver is in a node's CSINode while its plugin runs."""
        for csinode in list(self.store.iter(CSINODES)):
            name = csinode["metadata"]["name"]
            drivers = (csinode.get("spec") or {}).get("drivers") or []
            has = any(d.get("name") == DRIVER for d in drivers)
            want = running.get(name, False)
            if has == want:
                continue

            def update(o: dict, want: bool = want, name: str = name) -> None:
                spec = o.setdefault("spec", {})
                kept = [d for d in spec.get("drivers") or [] if d.get("name") != DRIVER]
                if want:
                    kept.append({"name": DRIVER, "nodeID": name, "topologyKeys": None})
                spec["drivers"] = kept
            self.store.mutate(CSINODES, None, name, update)

    # -- the controller: provisioning --------------------------------------------
    def _secret(self, name: str | None, namespace: str | None) -> dict[str, str]:
        if not name or not namespace:
            return {}
        found = self.store.peek(SECRETS, namespace, name)
        return decode_secret(found) if found is not None else {}

    @staticmethod
    def _template(value: str, pvc: dict, pv_name: str) -> str:
        meta = pvc["metadata"]
        return (value.replace("${pvc.namespace}", meta["namespace"])
                .replace("${pvc.name}", meta["name"]).replace("${pv.name}", pv_name))

    async def _provision(self, pvc: dict, sc: dict) -> None:
        meta = pvc["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        pv_name = f"pvc-{uid}"
        component = f"{DRIVER}_{PROVISIONER_ID}_{uid[:8]}"
        params = dict(sc.get("parameters") or {})
        prov_secret = (self._template(params.get("csi.storage.k8s.io/provisioner-secret-name",
                                                 ""), pvc, pv_name),
                       self._template(params.get(
                           "csi.storage.k8s.io/provisioner-secret-namespace", ""), pvc, pv_name))
        stage_secret = (self._template(params.get("csi.storage.k8s.io/node-stage-secret-name",
                                                  ""), pvc, pv_name),
                        self._template(params.get(
                            "csi.storage.k8s.io/node-stage-secret-namespace", ""), pvc, pv_name))
        # external-provisioner strips its own keys and adds the claim's (extra-create-metadata).
        context = {k: v for k, v in params.items() if not k.startswith("csi.storage.k8s.io/")}
        context.update({"csi.storage.k8s.io/pvc/name": name,
                        "csi.storage.k8s.io/pvc/namespace": ns,
                        "csi.storage.k8s.io/pv/name": pv_name})
        attempt = 0
        self.events.record(pvc, "Normal", "Provisioning",
                           f'External provisioner is provisioning volume for claim "{ns}/{name}"',
                           component)
        while True:
            current = self.store.peek(PVCS, ns, name)
            if current is None or current["metadata"]["uid"] != uid or terminating(current) \
                    or current["spec"].get("volumeName"):
                return
            error, vol = await self._create_volume(pv_name, context,
                                                   self._secret(*prov_secret))
            if error is None and vol is not None:
                break
            self.events.record(pvc, "Warning", "ProvisioningFailed",
                               f'failed to provision volume with StorageClass '
                               f'"{sc["metadata"]["name"]}": {error}', component)
            await self.cluster.clock.spend("backoff", BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1
        current = self.store.peek(PVCS, ns, name)
        if current is None or current["metadata"]["uid"] != uid:
            return
        if vol.sub_dir and (vol.uuid or self._secret(*prov_secret)):
            context["subdir"] = vol.sub_dir
        access = pvc["spec"].get("accessModes") or ["ReadWriteMany"]
        size = ((pvc["spec"].get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        annotations = {"pv.kubernetes.io/provisioned-by": DRIVER,
                       "volume.kubernetes.io/provisioner-deletion-secret-name": prov_secret[0],
                       "volume.kubernetes.io/provisioner-deletion-secret-namespace":
                           prov_secret[1]}
        csi: dict[str, Any] = {"driver": DRIVER, "volumeHandle": vol.volume_id,
                               "volumeAttributes": context}
        if stage_secret[0]:
            csi["nodeStageSecretRef"] = {"name": stage_secret[0], "namespace": stage_secret[1]}
        pv = {"metadata": {"name": pv_name, "annotations": annotations,
                           "finalizers": ["kubernetes.io/pv-protection", FINALIZER]},
              "spec": {"csi": csi, "accessModes": access, "capacity": {"storage": size},
                       "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                    "name": name, "namespace": ns, "uid": uid,
                                    "resourceVersion": current["metadata"]["resourceVersion"]},
                       "persistentVolumeReclaimPolicy": sc.get("reclaimPolicy", "Delete"),
                       "storageClassName": sc["metadata"]["name"], "volumeMode": "Filesystem",
                       "mountOptions": list(sc.get("mountOptions") or [])},
              "status": {"phase": "Bound", "lastPhaseTransitionTime": now_iso()}}
        if not pv["spec"]["mountOptions"]:
            del pv["spec"]["mountOptions"]
        self.store.create(PVS, pv)

        def bind(o: dict) -> None:
            o["spec"]["volumeName"] = pv_name
            a = o["metadata"].setdefault("annotations", {})
            a["pv.kubernetes.io/bind-completed"] = "yes"
            a["pv.kubernetes.io/bound-by-controller"] = "yes"
        self.store.mutate(PVCS, ns, name, bind)
        self.store.mutate(PVCS, ns, name, lambda o: o.__setitem__("status", {
            "phase": "Bound", "accessModes": access, "capacity": {"storage": size}}),
            subresource="status")
        self.events.record(pvc, "Normal", "ProvisioningSucceeded",
                           f"Successfully provisioned volume {pv_name}", component)

    async def _create_volume(self, pv_name: str, context: dict[str, str],
                             secret: dict[str, str]) -> tuple[str | None, SmbVolume | None]:
        """The driver's CreateVolume: (error text as the provisioner reports it, volume)."""
        lowered = {k.lower(): v for k, v in context.items()}
        for key in lowered:
            if key not in KNOWN_PARAMETERS:
                return (f"rpc error: code = InvalidArgument desc = invalid parameter {key} in "
                        "storage class", None)
        source = lowered.get("source", "")
        if not source:
            return "rpc error: code = InvalidArgument desc = source is a required parameter", None
        on_delete = lowered.get("ondelete", "")
        if on_delete and on_delete.lower() not in ("delete", "retain", "archive"):
            return (f"rpc error: code = InvalidArgument desc = invalid ondelete value: "
                    f"{on_delete}, supported values: [delete retain archive]", None)
        sub_dir = lowered.get("subdir", "")
        vol = SmbVolume(source, self._template_context(sub_dir, lowered) if sub_dir else pv_name,
                        pv_name if sub_dir else "", on_delete)
        if not secret and not vol.uuid:
            return None, vol  # no secret: the driver creates no subdirectory
        error = await self._in_share(vol, secret, lambda fs, path: fs.mkdir(path))
        return (f"rpc error: code = Internal desc = {error}" if error else None), vol

    @staticmethod
    def _template_context(sub_dir: str, lowered: dict[str, str]) -> str:
        return (sub_dir.replace("${pvc.metadata.name}", lowered.get(
            "csi.storage.k8s.io/pvc/name", "")).replace("${pvc.metadata.namespace}", lowered.get(
                "csi.storage.k8s.io/pvc/namespace", "")).replace("${pv.metadata.name}", lowered.get(
                    "csi.storage.k8s.io/pv/name", "")))

    async def _in_share(self, vol: SmbVolume, secret: dict[str, str], act: Any) -> str | None:
        """Mount the share as the controller does (`mount -t cifs` on Linux, at
        /tmp/<volume>) and act on the volume's directory; the error text, or None."""
        await self.cluster.clock.spend("smb_mount")
        server, share_name, base = split_unc(vol.source)
        root = f"\\\\{server}\\{share_name}"
        mount_dir = f"/tmp/{vol.uuid or vol.sub_dir}"
        user = secret.get("username", "").strip()
        domain = secret.get("domain", "").strip()
        network = self.cluster.workloads.smb
        try:
            target = network.resolve(server)
            if not domain and target.directory is not None:
                domain = target.directory.netbios  # cifs without domain=: the server's own
            share = network.connect(root, f"{domain}\\{user}", secret.get("password", "").strip())
        except SmbError as err:
            options = "dir_mode=0777,file_mode=0777,<masked>"
            return (f"failed to mount smb server: rpc error: code = Internal desc = volume("
                    f"{vol.volume_id}) mount {go_quote(vol.source)} on {go_quote(mount_dir)} "
                    f"failed with mount failed: exit status 32\nMounting command: mount\n"
                    f"Mounting arguments: -t cifs -o {options} {vol.source} {mount_dir}\n"
                    f"Output: {cifs_output(err)}")
        path = join_path(base, vol.sub_dir)
        try:
            act(share.client_fs(), path)
        except WinError as err:
            linux_path = f"{mount_dir}/{vol.sub_dir}"
            reason = "permission denied" if err.kind == "access_denied" else \
                "no such file or directory"
            return f"failed to make subdirectory: mkdir {linux_path}: {reason}"
        return None

    # -- the controller: deletion ------------------------------------------------------
    def _maybe_delete(self, pv: dict) -> None:
        meta = pv["metadata"]
        if (meta.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") != DRIVER:
            return
        if pv["spec"].get("persistentVolumeReclaimPolicy") != "Delete" or terminating(pv):
            return
        ref = pv["spec"].get("claimRef") or {}
        claim = self.store.peek(PVCS, ref.get("namespace"), ref.get("name", "")) if ref else None
        if claim is not None and claim["metadata"]["uid"] == ref.get("uid"):
            return
        self.manager.spawn(f"smb-delete:{meta['name']}", self._delete(pv))

    async def _delete(self, pv: dict) -> None:
        name = pv["metadata"]["name"]
        annotations = pv["metadata"].get("annotations") or {}
        vol = SmbVolume.from_id(pv["spec"]["csi"]["volumeHandle"])
        secret = self._secret(annotations.get(DELETION_SECRET + "name"),
                              annotations.get(DELETION_SECRET + "namespace"))
        attempt = 0
        while vol is not None and secret and vol.on_delete.lower() != "retain":
            archive = vol.on_delete.lower() == "archive"
            error = await self._in_share(
                vol, secret, (lambda fs, path: _move(fs, path, _archived(path))) if archive
                else (lambda fs, path: fs.remove(path, recursive=True)
                      if fs.exists(path) else None))
            if error is None:
                break
            current = self.store.peek(PVS, None, name)
            if current is None:
                return
            self.events.record(current, "Warning", "VolumeFailedDelete",
                               f"rpc error: code = Internal desc = {error}",
                               f"{DRIVER}_{PROVISIONER_ID}")
            await self.cluster.clock.spend("backoff", BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1
        current = self.store.peek(PVS, None, name)
        if current is None:
            return

        self.drop_finalizer(PVS, None, name, FINALIZER)
        if self.store.peek(PVS, None, name) is not None and not terminating(
                self.store.peek(PVS, None, name) or {}):
            self.store.delete(PVS, None, name)

    # -- the node plugin (the kubelet's CsiNodePlugin) ---------------------------------
    async def mount(self, pod: dict, volume: dict, pv: dict, node_name: str,
                    secret: dict[str, str]) -> tuple[str, str] | None:
        """NodeStageVolume (once per node and volume) and NodePublishVolume for `pod`;
        None, or (the kubelet operation that failed, the driver's error)."""
        pv_name = pv["metadata"]["name"]
        csi = pv["spec"]["csi"]
        key = (node_name, pv_name)
        staged = self.staged.get(key)
        if staged is None:
            error, staged = await self._stage(node_name, pv_name, csi, secret)
            if staged is None:
                return "MountDevice", error or "staging failed"
            self.staged[key] = staged
        staged.pods.add(pod["metadata"]["uid"])
        self.cluster.workloads.published[(pod["metadata"]["uid"], volume["name"])] = (
            staged.share.client_fs(), staged.sub_path)
        return None

    async def _stage(self, node_name: str, pv_name: str, csi: dict,
                     secret: dict[str, str]) -> tuple[str | None, Staged | None]:
        volume_id = csi.get("volumeHandle", "")
        context = {k.lower(): v for k, v in (csi.get("volumeAttributes") or {}).items()}
        source = context.get("source", "")
        if not source:
            return (f"rpc error: code = InvalidArgument desc = source field is missing, current "
                    f"context: {context}"), None
        if context.get("subdir"):
            source = f"{source.rstrip('/')}/{context['subdir']}"
        staging = ("\\var\\lib\\kubelet\\plugins\\kubernetes.io\\csi\\smb.csi.k8s.io\\"
                   f"{hashlib.sha256(volume_id.encode()).hexdigest()}\\globalmount")
        username = secret.get("username", "").strip()
        domain = secret.get("domain", "").strip() or "AZURE"
        user = username if "\\" in username else f"{domain}\\{username}"
        remote = source.replace("/", "\\").rstrip("\\")
        server, share_name, sub_path = split_unc(remote)
        root = f"\\\\{server}\\{share_name}".lower()
        node = self.cluster.workloads.nodes.get(node_name)
        if node is None:
            return "rpc error: code = Internal desc = node not found", None
        await self.cluster.clock.spend("smb_mount")
        mapping = next((m for m in node.smb_mappings
                        if m.remote_path.lower().rstrip("\\") == root and m.status == 0
                        and m.share is not None), None)
        if mapping is not None:
            share = mapping.share
        else:
            try:
                share = self.cluster.workloads.smb.connect(
                    root, user, secret.get("password", "").strip())
            except SmbError as err:
                output = powershell_error(err.code, err.message, err.category)
                return (f"rpc error: code = Internal desc = volume({volume_id}) mount "
                        f"{go_quote(source)} on {go_quote(staging)} failed with "
                        f"NewSmbGlobalMapping({remote}, c:{staging}) failed with error: rpc "
                        f"error: code = Unknown desc = NewSmbGlobalMapping failed. output: "
                        f"{go_quote(output)}, err: exit status 1"), None
            node.smb_mappings.append(SmbGlobalMapping(local_path="", remote_path=root,
                                                      status=0, share=share))
        assert share is not None
        self.roots.setdefault((node_name, root), set()).add(volume_id)
        return None, Staged(root, share, sub_path, volume_id)

    def release(self, pod: dict) -> None:
        """The pod's volumes are unpublished; a volume no pod on the node uses any more
        is unstaged, and a root no staged volume uses is unmapped."""
        uid = pod["metadata"]["uid"]
        node_name = pod["spec"].get("nodeName") or ""
        for key, staged in list(self.staged.items()):
            if key[0] != node_name or uid not in staged.pods:
                continue
            staged.pods.discard(uid)
            if staged.pods:
                continue
            del self.staged[key]
            users = self.roots.get((node_name, staged.root), set())
            users.discard(staged.volume_id)
            if not users:
                self.roots.pop((node_name, staged.root), None)
                node = self.cluster.workloads.nodes.get(node_name)
                if node is not None:  # Remove-SmbGlobalMapping -RemotePath <root> -Force
                    node.smb_mappings = [m for m in node.smb_mappings
                                         if m.remote_path.lower().rstrip("\\") != staged.root]


def _archived(path: str) -> str:
    head, _, tail = path.rpartition("\\")
    return f"{head}\\archived-{tail}" if head else f"archived-{tail}"


def _move(fs: Filesystem, src: str, dst: str) -> None:
    """A directory rename on the share (the driver's os.Rename), as copy and remove."""
    if not fs.exists(src):
        return
    fs.mkdir(dst)
    for entry in fs.listdir(src):
        child, target = f"{src}\\{entry.name}", f"{dst}\\{entry.name}"
        if entry.is_dir:
            _move(fs, child, target)
        else:
            fs.write(target, fs.read(child))
    fs.remove(src, recursive=True)
