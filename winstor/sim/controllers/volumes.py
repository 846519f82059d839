"""The PV binder, the EBS and local-path provisioners, attach/detach, reclaim.

Provisioning follows CSI migration as EKS runs it: a `kubernetes.io/aws-ebs`
class is served by the `ebs.csi.aws.com` external-provisioner, so without the
CSI driver a claim waits forever with `ExternalProvisioning` events. Volumes
are real moto EC2 volumes in the selected node's zone, attached to the node's
instance, and deleted when the claim goes away.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from typing import Any

from ..api.store import now_iso
from ..aws import AwsError, csi_volume_tags
from ..nodes.workloads import volume_id_of
from .base import (
    ATTACHMENTS,
    CSIDRIVERS,
    CSINODES,
    NODES,
    PODS,
    PVCS,
    PVS,
    STORAGECLASSES,
    Controller,
    terminating,
)
from .scheduler import SELECTED_NODE

EBS = "ebs.csi.aws.com"
INTREE_EBS = "kubernetes.io/aws-ebs"
LOCAL_PATH = "rancher.io/local-path"
PV_PROTECTION = "kubernetes.io/pv-protection"
log = logging.getLogger("winstor.sim.volumes")
PROVISIONER_ID = "ebs-csi-controller-7c9f8d6b5-x2x4k"


def parse_gib(quantity: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTE]i?)?", str(quantity).strip())
    if not m:
        return 1
    value = float(m.group(1))
    scale = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6,
             "G": 1e9, "T": 1e12, None: 1}[m.group(2)]
    return max(1, math.ceil(value * scale / 2**30))


class Volumes(Controller):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._once: set[tuple[str, str]] = set()

    def _event_once(self, obj: dict, type_: str, reason: str, message: str,
                    component: str) -> None:
        key = (obj["metadata"]["uid"], reason + message)
        if key not in self._once:
            self._once.add(key)
            self.events.record(obj, type_, reason, message, component)

    def reconcile(self) -> None:
        for pvc in list(self.store.iter(PVCS)):
            if terminating(pvc):
                self._release_claim(pvc)
            elif not pvc["spec"].get("volumeName"):
                self._provision(pvc)
            else:
                self._sync_bound(pvc)
        for pv in list(self.store.iter(PVS)):
            self._reclaim(pv)
        self._attach_detach()

    # -- provisioning ----------------------------------------------------------------
    def driver_for(self, provisioner: str) -> str:
        if provisioner == INTREE_EBS and self.cluster.flavour == "eks":
            return EBS  # CSI migration: on by default on EKS since 1.23
        return provisioner

    def _provision(self, pvc: dict) -> None:
        meta = pvc["metadata"]
        name, ns = meta["name"], meta["namespace"]
        sc_name = pvc["spec"].get("storageClassName")
        if not sc_name:
            return  # static binding only; nothing here does that
        sc = self.store.peek(STORAGECLASSES, None, sc_name)
        if sc is None:
            self._event_once(pvc, "Warning", "ProvisioningFailed",
                             f'storageclass.storage.k8s.io "{sc_name}" not found',
                             "persistentvolume-controller")
            return
        driver = self.driver_for(sc["provisioner"])
        annotations = meta.get("annotations") or {}
        if annotations.get("volume.kubernetes.io/storage-provisioner") != driver:
            def annotate(o: dict) -> None:
                a = o["metadata"].setdefault("annotations", {})
                a["volume.beta.kubernetes.io/storage-provisioner"] = driver
                a["volume.kubernetes.io/storage-provisioner"] = driver
            self.store.mutate(PVCS, ns, name, annotate)
        node_name = annotations.get(SELECTED_NODE)
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not node_name and \
                driver == EBS and "binds-before-consumer" in self.cluster.scenarios:
            # A provisioner that ignores the binding mode provisions at once; it lands
            # in the zone the workloads can still reach, so only the wait is broken.
            node_name = self._eager_node()
        if sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not node_name:
            self._event_once(pvc, "Normal", "WaitForFirstConsumer",
                             "waiting for first consumer to be created before binding",
                             "persistentvolume-controller")
            return
        if driver not in (EBS, LOCAL_PATH) or (
                driver == EBS and self.store.peek(CSIDRIVERS, None, EBS) is None):
            # Nobody will ever answer: the PV controller only says it is waiting.
            self._event_once(
                pvc, "Normal", "ExternalProvisioning",
                f"Waiting for a volume to be created either by the external provisioner "
                f"'{driver}' or manually by the system administrator. If volume creation is "
                "delayed, please verify that the provisioner is running and correctly "
                "registered.", "persistentvolume-controller")
            return
        self.manager.spawn(f"provision:{meta['uid']}", self._provision_task(
            pvc, sc, driver, node_name))

    def _eager_node(self) -> str | None:
        """binds-before-consumer: the first Ready Windows node of the workloads' build -
        ltsc2019 where labelled so, else the most common label (as the suite picks)."""
        def ready(n: dict) -> bool:
            return any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (n.get("status") or {}).get("conditions") or [])
        windows = sorted((n for n in self.store.iter(NODES) if ready(n) and (
            n["metadata"].get("labels") or {}).get("kubernetes.io/os") == "windows"),
            key=lambda n: n["metadata"]["name"])
        builds = [(n["metadata"].get("labels") or {}).get("node.kubernetes.io/windows-build")
                  for n in windows]
        build = "10.0.17763" if "10.0.17763" in builds else max(
            sorted(set(builds), key=str), key=builds.count, default=None)
        node = next((n for n, b in zip(windows, builds, strict=True) if b == build), None)
        return node["metadata"]["name"] if node else None

    async def _provision_task(self, pvc: dict, sc: dict, driver: str,
                              node_name: str | None) -> None:
        meta = pvc["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        pv_name = f"pvc-{uid}"
        component = f"{driver}_{PROVISIONER_ID}" if driver == EBS else driver
        self.events.record(pvc, "Normal", "Provisioning",
                           f'External provisioner is provisioning volume for claim '
                           f'"{ns}/{name}"', component)
        node = self.store.peek(NODES, None, node_name) if node_name else None
        zones = sorted({(n["metadata"].get("labels") or {}).get("topology.kubernetes.io/zone")
                        for n in self.store.iter(NODES)} - {None})
        zone = ((node or {}).get("metadata", {}).get("labels") or {}).get(
            "topology.kubernetes.io/zone") or (zones[0] if zones else "us-west-2a")
        size = parse_gib(((pvc["spec"].get("resources") or {}).get("requests") or {}).get(
            "storage", "1Gi"))
        params = sc.get("parameters") or {}
        fs_type = params.get("csi.storage.k8s.io/fstype") or params.get("fsType") or \
            params.get("fstype") or "ext4"
        if driver == EBS and "ebs-fstype-ignored" in self.cluster.scenarios:
            fs_type = "ext4"  # the class's fsType is ignored; the Windows node formats NTFS
        access = pvc["spec"].get("accessModes") or ["ReadWriteOnce"]
        if driver == LOCAL_PATH:
            volume_id = pv_name
            source: dict[str, Any] = {"hostPath": {
                "path": f"/var/local-path-provisioner/{pv_name}_{ns}_{name}",
                "type": "DirectoryOrCreate"}}
            topo_key, topo_value = "kubernetes.io/hostname", node_name or ""
            annotations = {"pv.kubernetes.io/provisioned-by": LOCAL_PATH,
                           "local.path.provisioner/selected-node": node_name or ""}
        else:
            vtype = params.get("type") or ("gp2" if sc["provisioner"] == INTREE_EBS else "gp3")
            if "ebs-wrong-type" in self.cluster.scenarios:
                vtype = "gp2" if vtype == "gp3" else "gp3"  # the class's type is ignored
            # Migrated in-tree classes are provisioned by the CSI driver: its tags.
            tags = csi_volume_tags(pv_name, name, ns)
            # The driver's CreateVolume makes the volume, tagged, at once ("creating" in
            # EC2) and then waits for it to be available: the modelled time comes after
            # the call, so the volume is in EC2 for anyone who looks meanwhile.
            loop = asyncio.get_running_loop()
            volume_id = await loop.run_in_executor(
                None, lambda: self.cluster.aws.create_volume(zone, size, vtype, tags))
            await self.cluster.clock.spend("ebs_create")
            annotations = {"pv.kubernetes.io/provisioned-by": sc["provisioner"],
                           "volume.kubernetes.io/provisioner-deletion-secret-name": "",
                           "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""}
            if sc["provisioner"] == INTREE_EBS:
                annotations["pv.kubernetes.io/migrated-to"] = EBS
                source = {"awsElasticBlockStore": {"volumeID": f"aws://{zone}/{volume_id}",
                                                   "fsType": fs_type}}
                topo_key = "topology.kubernetes.io/zone"
            else:
                source = {"csi": {"driver": EBS, "volumeHandle": volume_id, "fsType": fs_type,
                                  "volumeAttributes": {
                                      "storage.kubernetes.io/csiProvisionerIdentity":
                                          f"1700000000000-8081-{EBS}"}}}
                topo_key = "topology.kubernetes.io/zone"
            topo_value = zone
        self.cluster.workloads.volume(volume_id, size)
        reclaim = sc.get("reclaimPolicy", "Delete")
        if driver == EBS and "retain-ignored" in self.cluster.scenarios:
            reclaim = "Delete"  # the class's reclaimPolicy is not carried to the PV
        current = self.store.peek(PVCS, ns, name)
        # A claim deleted while its volume was being made: the external-provisioner saves
        # the PV all the same, bound to the claim that was, and the PV controller then
        # releases it and its reclaim policy deletes (or keeps) the disk. Dropping the PV
        # here would leak the disk with no object left to say so.
        claim_gone = current is None or current["metadata"]["uid"] != uid
        claim_rv = (current if current is not None and not claim_gone else pvc)[
            "metadata"]["resourceVersion"]
        self.store.create(PVS, {
            "metadata": {"name": pv_name, "annotations": annotations,
                         "finalizers": ["kubernetes.io/pv-protection"] + (
                             ["external-provisioner.volume.kubernetes.io/finalizer"]
                             if driver == EBS else [])},
            "spec": {**source, "accessModes": access, "capacity": {"storage": f"{size}Gi"},
                     "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                  "name": name, "namespace": ns, "uid": uid,
                                  "resourceVersion": claim_rv},
                     "persistentVolumeReclaimPolicy": reclaim,
                     "storageClassName": sc["metadata"]["name"], "volumeMode": "Filesystem",
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{
                         "matchExpressions": [{"key": topo_key, "operator": "In",
                                               "values": [topo_value]}]}]}}},
            "status": {"phase": "Bound", "lastPhaseTransitionTime": now_iso()}})
        if claim_gone:
            return  # reconcile's _reclaim releases the PV and applies its reclaim policy

        def bind(o: dict) -> None:
            o["spec"]["volumeName"] = pv_name
            a = o["metadata"].setdefault("annotations", {})
            a["pv.kubernetes.io/bind-completed"] = "yes"
            a["pv.kubernetes.io/bound-by-controller"] = "yes"
        self.store.mutate(PVCS, ns, name, bind)

        def bound(o: dict) -> None:
            o["status"] = {"phase": "Bound", "accessModes": access,
                           "capacity": {"storage": f"{size}Gi"}}
        self.store.mutate(PVCS, ns, name, bound, subresource="status")
        self.events.record(pvc, "Normal", "ProvisioningSucceeded",
                           f"Successfully provisioned volume {pv_name}", component)

    def _sync_bound(self, pvc: dict) -> None:
        if (pvc.get("status") or {}).get("phase") == "Bound":
            return
        pv = self.store.peek(PVS, None, pvc["spec"]["volumeName"])
        if pv is not None and not (pv["spec"].get("claimRef") or {}).get("uid"):
            self._bind_static(pvc, pv)
            return
        if pv is None:
            def lost(o: dict) -> None:
                o.setdefault("status", {})["phase"] = "Lost"
            self.store.mutate(PVCS, pvc["metadata"]["namespace"], pvc["metadata"]["name"], lost,
                              subresource="status")

    def _bind_static(self, pvc: dict, pv: dict) -> None:
        """A claim naming a PV (`spec.volumeName`) binds to it when the PV is free or
        pre-bound to that claim by name, as the PV controller binds static volumes."""
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        ref = pv["spec"].get("claimRef") or {}
        if ref and (ref.get("namespace"), ref.get("name")) != (ns, name):
            return  # pre-bound to another claim: this one stays Pending
        if pv["spec"].get("storageClassName", "") != (pvc["spec"].get("storageClassName") or ""):
            return

        def claim_ref(o: dict) -> None:
            o["spec"]["claimRef"] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                     "name": name, "namespace": ns,
                                     "uid": pvc["metadata"]["uid"],
                                     "resourceVersion": pvc["metadata"]["resourceVersion"]}
        self.store.mutate(PVS, None, pv["metadata"]["name"], claim_ref)
        self.store.mutate(PVS, None, pv["metadata"]["name"], lambda o: o.setdefault(
            "status", {}).update(phase="Bound", lastPhaseTransitionTime=now_iso()),
            subresource="status")

        def bound(o: dict) -> None:
            o["metadata"].setdefault("annotations", {})["pv.kubernetes.io/bind-completed"] = "yes"
        self.store.mutate(PVCS, ns, name, bound)
        self.store.mutate(PVCS, ns, name, lambda o: o.__setitem__("status", {
            "phase": "Bound", "accessModes": pv["spec"].get("accessModes") or [],
            "capacity": pv["spec"].get("capacity") or {}}), subresource="status")

    # -- release and reclaim ---------------------------------------------------------
    def _claim_in_use(self, pvc: dict) -> bool:
        ns, name = pvc["metadata"]["namespace"], pvc["metadata"]["name"]
        for pod in self.store.iter(PODS, ns):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for v in pod["spec"].get("volumes") or []:
                if (v.get("persistentVolumeClaim") or {}).get("claimName") == name:
                    return True
        return False

    def _release_claim(self, pvc: dict) -> None:
        fins = pvc["metadata"].get("finalizers") or []
        if "kubernetes.io/pvc-protection" in fins and not self._claim_in_use(pvc):
            self.drop_finalizer(PVCS, pvc["metadata"]["namespace"], pvc["metadata"]["name"],
                                "kubernetes.io/pvc-protection")

    def _reclaim(self, pv: dict) -> None:
        ref = pv["spec"].get("claimRef")
        name = pv["metadata"]["name"]
        # A PV no claim has bound - free, or pre-bound by a claimRef without uid to a claim
        # yet to come - is `_unbound`'s; a free one that is deleted is reclaimed below.
        if (ref and not ref.get("uid")) or (not ref and not terminating(pv)):
            self._unbound(pv)
            return
        claim = self.store.peek(PVCS, ref["namespace"], ref["name"]) if ref else None
        released = not ref or claim is None or claim["metadata"]["uid"] != ref.get("uid")
        if not released:
            return  # pv-protection holds a bound PV until its claim goes
        if (pv.get("status") or {}).get("phase") != "Released" and not terminating(pv):
            def rel(o: dict) -> None:
                o.setdefault("status", {})["phase"] = "Released"
            self.store.mutate(PVS, None, name, rel, subresource="status")
        # Volumes of other CSI drivers (SMB) are deleted by their own provisioner.
        external = (pv["spec"].get("csi") or {}).get("driver") not in (None, EBS)
        delete = pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete" and not external
        if delete or terminating(pv):
            # A deleted Retain PV goes away; the disk behind it stays, as on EKS.
            self.manager.spawn(f"reclaim:{name}", self._delete_volume(pv, backing=delete))

    def _unbound(self, pv: dict) -> None:
        """A PV no claim has bound (yet), free or pre-bound by name: the PV controller
        shows it Available; deleted, a pre-bound one goes at once - the pv-protection
        controller keeps only a PV whose phase is Bound (its `isBeingUsed`), and reclaiming
        is for Released ones. Modelled as held for ever, it kept a run that was stopped
        before its claim came waiting in teardown for a PV that could not go. (A free PV
        that is deleted is reclaimed as before: `_reclaim`.)"""
        name = pv["metadata"]["name"]
        if terminating(pv):
            if PV_PROTECTION in (pv["metadata"].get("finalizers") or []):
                self.drop_finalizer(PVS, None, name, PV_PROTECTION)
            return
        if (pv.get("status") or {}).get("phase", "Pending") == "Pending":
            def available(o: dict) -> None:
                o.setdefault("status", {})["phase"] = "Available"
            self.store.mutate(PVS, None, name, available, subresource="status")

    async def _delete_volume(self, pv: dict, backing: bool = True) -> None:
        name = pv["metadata"]["name"]
        while any(va["spec"]["source"].get("persistentVolumeName") == name
                  for va in self.store.iter(ATTACHMENTS)):
            # EC2 refuses to delete an attached volume: wait for the detach to be written
            await self.manager.next_change()
        volume_id = volume_id_of(pv) if backing else None
        if volume_id and "volumes-retained" in self.cluster.scenarios:
            # DeleteVolume answers success without an EC2 call: the PV goes, the disk stays.
            volume_id = None
        if volume_id and ("awsElasticBlockStore" in pv["spec"] or "csi" in pv["spec"]):
            loop = asyncio.get_running_loop()
            delay = 0.05
            while True:
                # The external-provisioner retries a failed DeleteVolume with backoff, and
                # keeps the PV until it succeeds; EC2 answers VolumeInUse while a detach
                # is still under way.
                try:
                    await loop.run_in_executor(None, self.cluster.aws.delete_volume,
                                               volume_id)
                    break
                except AwsError as err:
                    if err.code == "InvalidVolume.NotFound":
                        break
                    if err.code != "VolumeInUse":
                        raise
                    log.info("delete of %s: %s; retrying in %.2fs", volume_id, err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        if volume_id:
            self.cluster.workloads.drop_volume(volume_id)
        if self.store.peek(PVS, None, name) is not None:
            def strip(o: dict) -> None:
                o["metadata"]["finalizers"] = []
            cur = self.store.peek(PVS, None, name)
            assert cur is not None
            if not terminating(cur):
                self.store.delete(PVS, None, name)
            if self.store.peek(PVS, None, name) is not None:
                self.store.mutate(PVS, None, name, strip)

    # -- attach / detach -------------------------------------------------------------
    def _attachable_pv(self, namespace: str, claim: str) -> dict | None:
        pvc = self.store.peek(PVCS, namespace, claim)
        if not pvc or not pvc["spec"].get("volumeName"):
            return None
        pv = self.store.peek(PVS, None, pvc["spec"]["volumeName"])
        if pv and "csi" in pv["spec"]:
            # The attach-detach controller skips drivers whose CSIDriver says no attach.
            driver = self.store.peek(CSIDRIVERS, None, pv["spec"]["csi"].get("driver", ""))
            if driver is not None and not (driver.get("spec") or {}).get("attachRequired", True):
                return None
        if pv and ("awsElasticBlockStore" in pv["spec"] or "csi" in pv["spec"]):
            return pv
        return None

    @staticmethod
    def attachment_name(pv: dict, node: str) -> str:
        handle = volume_id_of(pv) or pv["metadata"]["name"]
        return "csi-" + hashlib.sha256(f"{handle}{EBS}{node}".encode()).hexdigest()

    def _attach_detach(self) -> None:
        desired: dict[str, tuple[dict, str, list[dict]]] = {}
        for pod in self.store.iter(PODS):
            node = pod["spec"].get("nodeName")
            if not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for v in pod["spec"].get("volumes") or []:
                claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
                pv = self._attachable_pv(pod["metadata"]["namespace"], claim) if claim else None
                if pv is None:
                    continue
                key = self.attachment_name(pv, node)
                desired.setdefault(key, (pv, node, []))[2].append(pod)
        existing = {va["metadata"]["name"]: va for va in self.store.iter(ATTACHMENTS)}
        for key, (pv, node, pods) in desired.items():
            if key in existing:
                continue
            others = [va for va in existing.values()
                      if va["spec"]["source"].get("persistentVolumeName") == pv["metadata"]["name"]
                      and va["spec"]["nodeName"] != node]
            if others and "ReadWriteMany" not in (pv["spec"].get("accessModes") or []):
                users = [p["metadata"]["name"] for p in self.store.iter(PODS)
                         if p["spec"].get("nodeName") == others[0]["spec"]["nodeName"]
                         and any((v.get("persistentVolumeClaim") or {}).get("claimName")
                                 == (pv["spec"].get("claimRef") or {}).get("name")
                                 for v in p["spec"].get("volumes") or [])]
                for pod in pods:
                    msg = (f'Multi-Attach error for volume "{pv["metadata"]["name"]}" Volume is '
                           "already used by pod(s) " + ", ".join(users)) if users else (
                        f'Multi-Attach error for volume "{pv["metadata"]["name"]}" Volume is '
                        "already exclusively attached to one node and can't be attached to "
                        "another")
                    self._event_once(pod, "Warning", "FailedAttachVolume", msg,
                                     "attachdetach-controller")
                continue
            self.store.create(ATTACHMENTS, {
                "metadata": {"name": key, "annotations": {
                    "csi.alpha.kubernetes.io/node-id": self._instance_of(node)}},
                "spec": {"attacher": EBS, "nodeName": node,
                         "source": {"persistentVolumeName": pv["metadata"]["name"]}},
                "status": {"attached": False}})
            self.manager.spawn(f"attach:{key}", self._attach(key, pv, node))
        for key, va in existing.items():
            if key not in desired and not self.manager.running(f"attach:{key}"):
                self.manager.spawn(f"detach:{key}", self._detach(va))

    def _instance_of(self, node_name: str) -> str:
        node = self.store.peek(NODES, None, node_name) or {}
        provider = (node.get("spec") or {}).get("providerID", "")
        return provider.rsplit("/", 1)[-1] or node_name

    def _pods_on(self, pv_name: str, node: str) -> list[dict]:
        out = []
        for pod in self.store.iter(PODS):
            if pod["spec"].get("nodeName") != node:
                continue
            for v in pod["spec"].get("volumes") or []:
                claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
                pvc = self.store.peek(PVCS, pod["metadata"]["namespace"], claim) if claim else None
                if pvc and pvc["spec"].get("volumeName") == pv_name:
                    out.append(pod)
        return out

    async def _attach(self, key: str, pv: dict, node: str) -> None:
        pv_name = pv["metadata"]["name"]
        volume_id = volume_id_of(pv) or ""
        instance = self._instance_of(node)
        csinode = self.store.peek(CSINODES, None, node)
        registered = csinode is not None and any(
            d.get("name") == EBS for d in (csinode.get("spec") or {}).get("drivers") or [])
        error = None
        if not registered:
            error = f"CSINode {node} does not contain driver {EBS}"
        else:
            await self.cluster.clock.spend("ebs_attach")
            if "ebs-attach-fails" in self.cluster.scenarios:
                error = (f'rpc error: code = Internal desc = Could not attach volume '
                         f'"{volume_id}" to node "{instance}": attachment of disk '
                         f'"{volume_id}" failed, expected device to be attached but was '
                         "attaching")
            else:
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(None, self.cluster.aws.attach_volume,
                                               volume_id, instance)
                except Exception as exc:  # moto refusing is an attach failure too
                    error = f"rpc error: code = Internal desc = {exc}"
        if self.store.peek(ATTACHMENTS, None, key) is None:
            if error is None and volume_id:
                # The attachment went while EC2 attached: undo it, as the attacher's
                # detach of a deleted VolumeAttachment would.
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(None, self.cluster.aws.detach_volume,
                                               volume_id, instance)
                except AwsError as err:
                    log.info("detach of %s after its attachment went: %s", volume_id, err)
            return

        def status(o: dict) -> None:
            if error:
                o["status"] = {"attached": False,
                               "attachError": {"message": error, "time": now_iso()}}
            else:
                o["status"] = {"attached": True,
                               "attachmentMetadata": {"devicePath": "/dev/xvdaa"}}
        self.store.mutate(ATTACHMENTS, None, key, status, subresource="status")
        for pod in self._pods_on(pv_name, node):
            if error:
                self.events.record(pod, "Warning", "FailedAttachVolume",
                                   f'AttachVolume.Attach failed for volume "{pv_name}" : '
                                   f"{error}", "attachdetach-controller")
            else:
                self.events.record(pod, "Normal", "SuccessfulAttachVolume",
                                   f'AttachVolume.Attach succeeded for volume "{pv_name}" ',
                                   "attachdetach-controller")

    async def _detach(self, va: dict) -> None:
        pv_name = va["spec"]["source"].get("persistentVolumeName", "")
        pv = self.store.peek(PVS, None, pv_name)
        if va.get("status", {}).get("attached"):
            await self.cluster.clock.spend("ebs_detach")
            volume_id = volume_id_of(pv) if pv else None
            if volume_id:
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(None, self.cluster.aws.detach_volume, volume_id,
                                               self._instance_of(va["spec"]["nodeName"]))
                except AwsError as err:  # already detached: nothing left to do
                    log.info("detach of %s: %s", volume_id, err)
        self.store.remove_now(ATTACHMENTS, None, va["metadata"]["name"])
