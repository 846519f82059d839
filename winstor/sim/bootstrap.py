"""What a freshly created cluster already holds before winstor arrives.

For the `eks` flavour: the EC2 instances behind the nodes (in moto), the
Node objects with the labels EKS sets, the default `gp2` class exactly as EKS
ships it, the EBS CSI driver objects, and on each Windows node csi-proxy and
an SMB Global Mapping of the FSx share. Scenarios remove or bend exactly one
of these things.

For the `kind` flavour: the nodes kind creates (a tainted control plane and a
worker labelled `winstor.io/windows-stand-in=true`), kind's `standard`
local-path class, the FSx file system in moto that the stand-in share plays,
and on the stand-in the node directory `/winstor` with the share and the
record of its "mapping" (absent under `smb-mapping-missing`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Set
from typing import TYPE_CHECKING, Any

from . import bootstrap_ebs, bootstrap_smb
from .api.kinds import kind_of
from .api.store import Store
from .nodes.workloads import Workloads
from .topology import (
    KERNEL_REVISION,
    KIND_CLUSTER,
    KIND_HOST_KERNEL,
    OS_IMAGES,
    ClusterPlan,
    NodePlan,
)

if TYPE_CHECKING:
    from .aws import ClusterAws
    from .cloud import SimCloud

NS = kind_of("v1", "Namespace")
NODE = kind_of("v1", "Node")
SC = kind_of("storage.k8s.io/v1", "StorageClass")
CSIDRIVER = kind_of("storage.k8s.io/v1", "CSIDriver")
CSINODE = kind_of("storage.k8s.io/v1", "CSINode")
DAEMONSET = kind_of("apps/v1", "DaemonSet")

EBS_DRIVER = "ebs.csi.aws.com"
SHARE_DIR = "Directory\\app-state"
STAND_IN_LABEL = "winstor.io/windows-stand-in"
# kindest/node images per Kubernetes minor (kind v0.25/v0.26).
KIND_NODE_VERSIONS = {"1.31": "v1.31.2", "1.32": "v1.32.0"}


async def seed(plan: ClusterPlan, scenarios: Set[str], store: Store, workloads: Workloads,
               aws: SimCloud | None) -> ClusterAws | None:
    """Fill `store` and `workloads` as the cluster starts; returns the cluster's AWS
    resources (instances, FSx) seeded in `aws`, or None without AWS.

    The parts come as arguments rather than as the cluster, so that the cluster,
    which calls this, is the only module that knows them all.
    """
    aws_cluster: ClusterAws | None = None
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        store.create(NS, {"metadata": {"name": ns, "labels": {
            "kubernetes.io/metadata.name": ns}}, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}})
    aws_nodes: dict[str, Any] = {}
    if aws is not None:  # kind too: no instances, but the FSx its share plays
        loop = asyncio.get_running_loop()
        aws_cluster = await loop.run_in_executor(None, aws.seed_for_plan, plan)
        aws_nodes = aws_cluster.nodes
    has_driver = plan.flavour == "eks" and "intree-without-csi-driver" not in scenarios
    for node in plan.nodes:
        facts = aws_nodes.get(node.name)
        store.create(NODE, _node_object(plan, scenarios, node, facts))
        if plan.flavour == "kind":
            workloads.add_linux_node(node)
        if node.os == "windows":
            workloads.add_windows_node(node, csi_proxy=node_csi_proxy(facts, scenarios))
        if plan.flavour == "eks":
            drivers = []
            plugin_ok = has_driver and (node.os == "linux"
                                        or "no-csi-proxy" not in scenarios)
            if plugin_ok:
                drivers.append({"name": EBS_DRIVER,
                                "nodeID": facts.instance_id if facts else node.name,
                                "topologyKeys": ["kubernetes.io/os",
                                                 "topology.ebs.csi.aws.com/zone",
                                                 "topology.kubernetes.io/zone"],
                                "allocatable": {"count": 25 if node.os == "windows" else 26}})
            store.create(CSINODE, {
                "metadata": {"name": node.name, "annotations": {
                    "storage.alpha.kubernetes.io/migrated-plugins":
                        "kubernetes.io/aws-ebs,kubernetes.io/azure-disk,kubernetes.io/azure-file,"
                        "kubernetes.io/cinder,kubernetes.io/gce-pd,kubernetes.io/portworx-volume,"
                        "kubernetes.io/vsphere-volume"},
                    "ownerReferences": []},
                "spec": {"drivers": drivers}})
    if plan.flavour == "eks":
        _seed_eks_storage(plan, scenarios, store, has_driver)
        if aws_cluster is not None and "smb-mapping-missing" not in scenarios:
            fsx = aws_cluster.fsx
            workloads.map_share_on_windows_nodes(fsx.share_remote_path, SHARE_DIR)
        shares = None
        if aws is not None and aws_cluster is not None:
            shares = await asyncio.get_running_loop().run_in_executor(
                None, aws.seed_shares, plan, aws_cluster, scenarios)
        bootstrap_smb.seed(plan, scenarios, store, workloads, shares)
    else:
        store.create(SC, {
            "metadata": {"name": "standard", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer"})
        fsx = aws_cluster.fsx if aws_cluster is not None else None
        missing = fsx is None or "smb-mapping-missing" in scenarios
        workloads.set_up_stand_ins(None if missing else fsx.share_remote_path,
                                   SHARE_DIR.replace("\\", "/"))
    await bootstrap_ebs.seed(plan, scenarios, store, workloads, aws, aws_cluster)
    return aws_cluster


def _csi_proxy_version(facts: Any) -> str:
    """The csi-proxy build an EKS-optimized AMI of that date ships (FACTS.md table)."""
    name = getattr(facts, "ami_name", "") or ""
    from winstor.aws.facts import expected_csi_proxy_version
    return expected_csi_proxy_version(name) or "1.1.3"


# What `csi-proxy-replaced` installs over the AMI's build: an older published release
# (the 2022.10-2023.08 AMIs' csi-proxy), as a hand-made node image might carry.
REPLACED_CSI_PROXY = "1.1.1"


def node_csi_proxy(facts: Any, scenarios: Set[str]) -> str | None:
    """The csi-proxy version a Windows node runs, or None without the service."""
    if "no-csi-proxy" in scenarios:
        return None
    if "csi-proxy-replaced" in scenarios:
        return REPLACED_CSI_PROXY
    return _csi_proxy_version(facts)


def _node_object(plan: ClusterPlan, scenarios: Set[str], node: NodePlan, facts: Any) -> dict:
    labels = {
        "kubernetes.io/os": node.os, "beta.kubernetes.io/os": node.os,
        "kubernetes.io/arch": "amd64", "beta.kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": node.name,
    }
    if plan.flavour == "eks":  # kind has no cloud provider: no topology labels
        labels.update({
            "topology.kubernetes.io/zone": node.zone,
            "topology.kubernetes.io/region": plan.region,
            "failure-domain.beta.kubernetes.io/zone": node.zone,
            "failure-domain.beta.kubernetes.io/region": plan.region,
        })
    if plan.flavour == "eks":
        labels.update({
            "node.kubernetes.io/instance-type": node.instance_type,
            "beta.kubernetes.io/instance-type": node.instance_type,
            "eks.amazonaws.com/nodegroup": node.nodegroup,
            "eks.amazonaws.com/capacityType": "ON_DEMAND",
            "topology.ebs.csi.aws.com/zone": node.zone,
            "k8s.io/cloud-provider-aws": "winstor-sim",
        })
        if facts is not None:
            labels["eks.amazonaws.com/nodegroup-image"] = facts.ami_id
    if node.os == "windows" and node.label_build:
        labels["node.kubernetes.io/windows-build"] = node.label_build
    if plan.flavour == "kind" and node.name.endswith("control-plane"):
        labels["node-role.kubernetes.io/control-plane"] = ""
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
    if node.stand_in:
        labels[STAND_IN_LABEL] = "true"
    windows = node.os == "windows"
    build = node.windows_build or ""
    patch = plan.kube_version
    info = {
        "machineID": node.name, "systemUUID": node.name.upper()[:36], "bootID": "",
        "kernelVersion": f"{build}.{KERNEL_REVISION.get(build, '1')}" if windows
        else "5.10.228-219.884.amzn2.x86_64",
        "osImage": OS_IMAGES.get(build, "Windows Server") if windows
        else "Amazon Linux 2",
        "containerRuntimeVersion": "containerd://1.7.20",
        "kubeletVersion": f"v{patch}.4-eks-winstor", "kubeProxyVersion": "",
        "operatingSystem": node.os, "architecture": "amd64",
    }
    spec: dict[str, Any] = {}
    if plan.flavour == "eks":
        spec["providerID"] = facts.provider_id if facts else f"aws:///{node.zone}/i-unknown"
    else:
        # A kind node is a kindest/node container on the host's kernel.
        release = KIND_NODE_VERSIONS.get(plan.kube_version, f"v{plan.kube_version}.0")
        info.update(kernelVersion=KIND_HOST_KERNEL, osImage="Debian GNU/Linux 12 (bookworm)",
                    containerRuntimeVersion="containerd://1.7.24", kubeletVersion=release)
        spec["providerID"] = f"kind://docker/{KIND_CLUSTER}/{node.name}"
        spec["podCIDR"] = f"10.244.{plan.nodes.index(node)}.0/24"
        spec["podCIDRs"] = [spec["podCIDR"]]
    if plan.flavour == "kind" and node.name.endswith("control-plane"):
        spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane",
                           "effect": "NoSchedule"}]
    now = "2026-01-01T00:00:00Z"
    conditions = [
        {"type": t, "status": "False", "reason": f"KubeletHas{r}", "message": m,
         "lastHeartbeatTime": now, "lastTransitionTime": now}
        for t, r, m in (("MemoryPressure", "SufficientMemory", "kubelet has sufficient memory"),
                        ("DiskPressure", "NoDiskPressure", "kubelet has no disk pressure"),
                        ("PIDPressure", "SufficientPID", "kubelet has sufficient PID available"))
    ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady",
          "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
          "lastTransitionTime": now}]
    if windows and "windows-nodes-not-ready" in scenarios:
        # What the node lifecycle controller makes of a kubelet gone silent.
        for c in conditions:
            c.update(status="Unknown", reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.")
        spec["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": effect,
                           "timeAdded": now} for effect in ("NoSchedule", "NoExecute")]
    capacity = {"cpu": "4", "memory": "16417196Ki", "pods": "110" if not windows else "29",
                "ephemeral-storage": "52416492Ki"}
    return {
        "metadata": {"name": node.name, "labels": labels, "annotations": {
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": {
            "capacity": capacity, "allocatable": capacity, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": node.ip},
                          {"type": "Hostname", "address": node.name}]
            + ([{"type": "InternalDNS", "address": node.name}] if plan.flavour == "eks" else []),
            "nodeInfo": info, "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        },
    }


def _seed_eks_storage(plan: ClusterPlan, scenarios: Set[str], store: Store,
                      has_driver: bool) -> None:
    store.create(SC, {
        "metadata": {"name": "gp2", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "parameters": {"fsType": "ext4", "type": "gp2"},
        "provisioner": "kubernetes.io/aws-ebs", "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer"})
    if "two-default-classes" in scenarios:
        # A second default, as when an add-on installs its own class marked default.
        store.create(SC, {
            "metadata": {"name": "gp3", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "parameters": {"type": "gp3", "csi.storage.k8s.io/fstype": "ext4"},
            "provisioner": EBS_DRIVER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True})
    if not has_driver:
        return
    store.create(CSIDRIVER, {
        "metadata": {"name": EBS_DRIVER, "labels": {
            "app.kubernetes.io/name": "aws-ebs-csi-driver",
            "app.kubernetes.io/managed-by": "EKS"}},
        "spec": {"attachRequired": True, "podInfoOnMount": False,
                 "fsGroupPolicy": "ReadWriteOnceWithFSType"}})
    windows = [n for n in plan.nodes if n.os == "windows"]
    linux = [n for n in plan.nodes if n.os == "linux"]
    proxy_ok = "no-csi-proxy" not in scenarios
    for name, nodes, selector, ready in (
            ("ebs-csi-node", linux, {"kubernetes.io/os": "linux"}, len(linux)),
            ("ebs-csi-node-windows", windows, {"kubernetes.io/os": "windows"},
             len(windows) if proxy_ok else 0)):
        labels = {"app": name, "app.kubernetes.io/name": "aws-ebs-csi-driver"}
        store.create(DAEMONSET, {
            "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": selector, "containers": [{
                    "name": "ebs-plugin",
                    "image": "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/"
                             "aws-ebs-csi-driver:v1.37.0"}]}}},
            "status": {"desiredNumberScheduled": len(nodes),
                       "currentNumberScheduled": len(nodes), "numberReady": ready,
                       "numberAvailable": ready, "numberMisscheduled": 0,
                       "updatedNumberScheduled": len(nodes),
                       "numberUnavailable": len(nodes) - ready}})
