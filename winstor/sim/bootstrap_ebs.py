"""What a fresh eks-flavour cluster holds for the EBS lifecycle scenarios.

Two scenarios bend the cluster before winstor arrives:

- `attach-limit-reached`: in each zone the second Windows node is an instance at its EBS
  attachment limit. Its other attachments (the node group's data volumes and ENIs) leave
  the EBS CSI node plugin one slot, the least it ever registers (aws-ebs-csi-driver
  `getVolumesLimit`), and a volume of another workload - a Windows log agent's buffer in
  `kube-system` - already holds it. kube-scheduler's NodeVolumeLimits then places no more
  EBS volumes there ("node(s) exceed max volume count").
- `defragsvc-disabled`: the Windows nodes' Optimize Drives service is disabled, as some
  hardening baselines do; the storage stack cannot size partitions without it.

Kept apart from `bootstrap` so that this one module holds the EBS lifecycle's seeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Set
from typing import TYPE_CHECKING

from .api.kinds import kind_of
from .api.store import Store
from .nodes.workloads import Workloads
from .topology import ClusterPlan, NodePlan

if TYPE_CHECKING:
    from .aws import ClusterAws
    from .cloud import SimCloud

NS = "kube-system"
PODS = kind_of("v1", "Pod")
PVCS = kind_of("v1", "PersistentVolumeClaim")
PVS = kind_of("v1", "PersistentVolume")
CSINODE = kind_of("storage.k8s.io/v1", "CSINode")
EBS_DRIVER = "ebs.csi.aws.com"
HOLDER_IMAGES = {"10.0.17763": "mcr.microsoft.com/windows/servercore:ltsc2019",
                 "10.0.20348": "mcr.microsoft.com/windows/servercore:ltsc2022"}


async def seed(plan: ClusterPlan, scenarios: Set[str], store: Store, workloads: Workloads,
               aws: SimCloud | None, aws_cluster: ClusterAws | None) -> None:
    """Apply the EBS lifecycle scenarios to a freshly seeded eks-flavour cluster."""
    if plan.flavour != "eks":
        return
    if "defragsvc-disabled" in scenarios:
        for node in workloads.nodes.values():
            node.services["defragsvc"].start_type = "Disabled"
    if "attach-limit-reached" in scenarios and aws is not None and aws_cluster is not None:
        for i, node in enumerate(_second_windows_node_per_zone(plan)):
            await _fill_attachments(node, i, store, workloads, aws)


def _second_windows_node_per_zone(plan: ClusterPlan) -> list[NodePlan]:
    seen: dict[str, int] = {}
    out = []
    for node in plan.nodes:
        if node.os != "windows":
            continue
        seen[node.zone] = seen.get(node.zone, 0) + 1
        if seen[node.zone] == 2:
            out.append(node)
    return out


async def _fill_attachments(node: NodePlan, index: int, store: Store, workloads: Workloads,
                            aws: SimCloud) -> None:
    """One slot left, and the log agent's buffer volume in it: a claim, its PV, its pod."""
    def slots(o: dict) -> None:
        for driver in o["spec"].get("drivers") or []:
            if driver.get("name") == EBS_DRIVER:
                driver["allocatable"] = {"count": 1}
    store.mutate(CSINODE, None, node.name, slots)
    claim = f"buffer-log-agent-{index}"
    tags = {"kubernetes.io/created-for/pvc/name": claim,
            "kubernetes.io/created-for/pvc/namespace": NS, "ebs.csi.aws.com/cluster": "true"}
    loop = asyncio.get_running_loop()
    volume_id = await loop.run_in_executor(
        None, lambda: aws.create_volume(node.zone, 8, "gp3", tags))
    workloads.volume(volume_id, 8)
    pv_name = f"pvc-log-agent-{index}-{volume_id[-8:]}"
    pvc = store.create(PVCS, {
        "metadata": {"name": claim, "namespace": NS,
                     "finalizers": ["kubernetes.io/pvc-protection"],
                     "annotations": {"pv.kubernetes.io/bind-completed": "yes"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp2",
                 "resources": {"requests": {"storage": "8Gi"}}, "volumeName": pv_name,
                 "volumeMode": "Filesystem"},
        "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"],
                   "capacity": {"storage": "8Gi"}}})
    store.create(PVS, {
        "metadata": {"name": pv_name, "finalizers": ["kubernetes.io/pv-protection"],
                     "annotations": {"pv.kubernetes.io/provisioned-by": EBS_DRIVER}},
        "spec": {"csi": {"driver": EBS_DRIVER, "volumeHandle": volume_id, "fsType": "ntfs"},
                 "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "8Gi"},
                 "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                              "name": claim, "namespace": NS,
                              "uid": pvc["metadata"]["uid"]},
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "gp2",
                 "volumeMode": "Filesystem",
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{
                     "key": "topology.kubernetes.io/zone", "operator": "In",
                     "values": [node.zone]}]}]}}},
        "status": {"phase": "Bound"}})
    image = HOLDER_IMAGES.get(node.windows_build or "", HOLDER_IMAGES["10.0.17763"])
    store.create(PODS, {
        "metadata": {"name": f"log-agent-{index}", "namespace": NS,
                     "labels": {"app": "log-agent"}},
        "spec": {"nodeName": node.name, "nodeSelector": {"kubernetes.io/os": "windows"},
                 "containers": [{"name": "agent", "image": image,
                                 "command": ["powershell.exe", "-Command",
                                             "while ($true) { Start-Sleep -Seconds 3600 }"],
                                 "volumeMounts": [{"name": "buffer",
                                                   "mountPath": "C:\\buffer"}]}],
                 "volumes": [{"name": "buffer",
                              "persistentVolumeClaim": {"claimName": claim}}]},
        "status": {"phase": "Pending"}})
