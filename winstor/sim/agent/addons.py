"""What an EKS cluster holds before anyone uses it that the real control plane does not make.

The embedded cluster's bootstrap (`winstor.sim.bootstrap`) seeds the same things into its
own store; here they go to the real API server with admin credentials:

- the default StorageClass `gp2` exactly as EKS ships it (in-tree `kubernetes.io/aws-ebs`,
  WaitForFirstConsumer), and under `two-default-classes` a second default `gp3`;
- the Amazon EBS CSI driver add-on as its manifests (aws-ebs-csi-driver v1.44.0
  `deploy/kubernetes/base`) install it, with the add-on's ECR images: CSIDriver
  `ebs.csi.aws.com`, the ServiceAccounts `ebs-csi-controller-sa` and `ebs-csi-node-sa`,
  the node DaemonSets `ebs-csi-node` (Linux) and `ebs-csi-node-windows` and the
  `ebs-csi-controller` Deployment - unless the cluster has no driver
  (`intree-without-csi-driver`).

Not made here: what the control plane makes itself (namespaces, the `default`
ServiceAccounts, `kube-root-ca.crt`, the system PriorityClasses, the DaemonSets' and
Deployment's pods, Endpoints). csi-proxy is not a DaemonSet on EKS: the Windows AMIs run
it as the `csiproxy` service, which the Windows node models have (`no-csi-proxy` takes it
away).

The Deployment's pods are the API's view of the controller; the EBS CSI controller and its
sidecars really run beside the control plane as processes the launcher starts (with the
same flags), against this agent's moto.
"""

from __future__ import annotations

import logging
from collections.abc import Set
from typing import Any

from ..api.errors import ApiError
from ..api.kinds import Kind, kind_of
from .store import RemoteStore

log = logging.getLogger("winstor.sim.agent.addons")

SC = kind_of("storage.k8s.io/v1", "StorageClass")
CSIDRIVER = kind_of("storage.k8s.io/v1", "CSIDriver")
SA = kind_of("v1", "ServiceAccount")
DAEMONSET = kind_of("apps/v1", "DaemonSet")
DEPLOYMENT = kind_of("apps/v1", "Deployment")

EBS_DRIVER = "ebs.csi.aws.com"
ADDON_VERSION = "v1.44.0"
NAME_LABEL = {"app.kubernetes.io/name": "aws-ebs-csi-driver"}
ADDON_LABELS = {**NAME_LABEL, "app.kubernetes.io/managed-by": "EKS",
                "app.kubernetes.io/version": ADDON_VERSION.lstrip("v")}
SIDECAR_TAG = "eks-1-33-3"


def ecr(region: str, repository: str, tag: str) -> str:
    """An image of the EKS add-on, from the regional EKS ECR account (602401143452)."""
    return f"602401143452.dkr.ecr.{region}.amazonaws.com/eks/{repository}:{tag}"


def storage_classes(scenarios: Set[str]) -> list[dict]:
    classes = [{
        "metadata": {"name": "gp2", "annotations": {
            "storageclass.kubernetes.io/is-default-class": "true"}},
        "parameters": {"fsType": "ext4", "type": "gp2"},
        "provisioner": "kubernetes.io/aws-ebs", "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer"}]
    if "two-default-classes" in scenarios:
        classes.append({
            "metadata": {"name": "gp3", "annotations": {
                "storageclass.kubernetes.io/is-default-class": "true"}},
            "parameters": {"type": "gp3", "csi.storage.k8s.io/fstype": "ext4"},
            "provisioner": EBS_DRIVER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True})
    return classes


def csi_driver() -> dict:
    return {"metadata": {"name": EBS_DRIVER, "labels": dict(ADDON_LABELS)},
            "spec": {"attachRequired": True, "podInfoOnMount": False, "fsGroupPolicy": "File"}}


def service_accounts() -> list[dict]:
    return [{"metadata": {"name": name, "namespace": "kube-system", "labels": dict(ADDON_LABELS)},
             "automountServiceAccountToken": True}
            for name in ("ebs-csi-controller-sa", "ebs-csi-node-sa")]


def _small(memory_limit: str = "256Mi") -> dict:
    return {"limits": {"memory": memory_limit}, "requests": {"cpu": "10m", "memory": "40Mi"}}


_NODE_AFFINITY = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [
        {"key": "eks.amazonaws.com/compute-type", "operator": "NotIn",
         "values": ["fargate", "auto", "hybrid"]}]}]}}}


def node_daemonset(region: str, windows: bool) -> dict:
    """`ebs-csi-node` / `ebs-csi-node-windows` (node.yaml / node-windows.yaml)."""
    name = "ebs-csi-node-windows" if windows else "ebs-csi-node"
    selector = {"app": "ebs-csi-node", **NAME_LABEL}
    kubelet = "C:\\var\\lib\\kubelet" if windows else "/var/lib/kubelet"
    plugin_dir = (f"{kubelet}\\plugins\\{EBS_DRIVER}" if windows
                  else f"{kubelet}/plugins/{EBS_DRIVER}/")
    csi = "C:\\csi" if windows else "/csi"
    plugin_mounts: list[dict[str, Any]] = [
        {"name": "kubelet-dir", "mountPath": kubelet,
         "mountPropagation": "None" if windows else "Bidirectional"},
        {"name": "plugin-dir", "mountPath": csi}]
    volumes: list[dict[str, Any]] = [
        {"name": "kubelet-dir", "hostPath": {"path": kubelet, "type": "Directory"}},
        {"name": "plugin-dir", "hostPath": {"path": plugin_dir, "type": "DirectoryOrCreate"}},
        {"name": "registration-dir", "hostPath": {
            "path": f"{kubelet}\\plugins_registry" if windows else f"{kubelet}/plugins_registry/",
            "type": "Directory"}}]
    if windows:
        for api in ("disk", "volume", "filesystem"):
            pipe = f"\\\\.\\pipe\\csi-proxy-{api}-v1"
            plugin_mounts.append({"name": f"csi-proxy-{api}-pipe", "mountPath": pipe})
            volumes.append({"name": f"csi-proxy-{api}-pipe", "hostPath": {"path": pipe,
                                                                          "type": ""}})
        volumes.append({"name": "probe-dir", "emptyDir": {}})
    else:
        plugin_mounts.append({"name": "device-dir", "mountPath": "/dev"})
        volumes.append({"name": "device-dir", "hostPath": {"path": "/dev", "type": "Directory"}})
    registration = f"{kubelet}\\plugins\\{EBS_DRIVER}\\csi.sock" if windows else \
        f"{kubelet}/plugins/{EBS_DRIVER}/csi.sock"
    containers = [
        {"name": "ebs-plugin", "image": ecr(region, "aws-ebs-csi-driver", ADDON_VERSION),
         "imagePullPolicy": "IfNotPresent",
         "args": ["node", "--endpoint=$(CSI_ENDPOINT)", "--logging-format=text", "--v=2"],
         "env": [{"name": "CSI_ENDPOINT", "value": "unix:/csi/csi.sock"},
                 {"name": "CSI_NODE_NAME", "valueFrom": {"fieldRef": {
                     "fieldPath": "spec.nodeName"}}}],
         "volumeMounts": plugin_mounts,
         "ports": [{"name": "healthz", "containerPort": 9808, "protocol": "TCP"}],
         "resources": _small()},
        {"name": "node-driver-registrar",
         "image": ecr(region, "csi-node-driver-registrar", f"v2.13.0-{SIDECAR_TAG}"),
         "imagePullPolicy": "IfNotPresent",
         "args": ["--csi-address=$(ADDRESS)",
                  "--kubelet-registration-path=$(DRIVER_REG_SOCK_PATH)", "--v=2"],
         "env": [{"name": "ADDRESS", "value": "unix:/csi/csi.sock"},
                 {"name": "DRIVER_REG_SOCK_PATH", "value": registration}],
         "volumeMounts": [{"name": "plugin-dir", "mountPath": csi},
                          {"name": "registration-dir",
                           "mountPath": "C:\\registration" if windows else "/registration"}],
         "resources": _small()},
        {"name": "liveness-probe",
         "image": ecr(region, "livenessprobe", f"v2.15.0-{SIDECAR_TAG}"),
         "imagePullPolicy": "IfNotPresent", "args": ["--csi-address=unix:/csi/csi.sock"],
         "volumeMounts": [{"name": "plugin-dir", "mountPath": csi}],
         "resources": _small()}]
    if windows:
        containers[0]["securityContext"] = {"windowsOptions": {
            "runAsUserName": "ContainerAdministrator"}}
    else:  # Bidirectional propagation needs a privileged container (the API server says so)
        containers[0]["securityContext"] = {"privileged": True, "readOnlyRootFilesystem": True}
        for sidecar in containers[1:]:
            sidecar["securityContext"] = {"allowPrivilegeEscalation": False,
                                          "readOnlyRootFilesystem": True}
    return {
        "metadata": {"name": name, "namespace": "kube-system", "labels": dict(ADDON_LABELS)},
        "spec": {
            "revisionHistoryLimit": 10, "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate",
                               "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {"metadata": {"labels": dict(selector)}, "spec": {
                "affinity": _NODE_AFFINITY,
                "nodeSelector": {"kubernetes.io/os": "windows" if windows else "linux"},
                "serviceAccountName": "ebs-csi-node-sa", "terminationGracePeriodSeconds": 30,
                "priorityClassName": "system-node-critical",
                "tolerations": [{"operator": "Exists"}],
                **({} if windows else {"securityContext": {
                    "fsGroup": 0, "runAsGroup": 0, "runAsNonRoot": False, "runAsUser": 0}}),
                "containers": containers, "volumes": volumes}}}}


def controller_deployment(region: str) -> dict:
    """`ebs-csi-controller` (controller.yaml): two replicas on Linux nodes."""
    labels = {"app": "ebs-csi-controller", **NAME_LABEL}
    socket = [{"name": "socket-dir", "mountPath": "/var/lib/csi/sockets/pluginproxy/"}]

    def sidecar(name: str, repository: str, tag: str, args: list[str]) -> dict:
        return {"name": name, "image": ecr(region, repository, f"{tag}-{SIDECAR_TAG}"),
                "imagePullPolicy": "IfNotPresent", "args": args,
                "env": [{"name": "ADDRESS",
                         "value": "/var/lib/csi/sockets/pluginproxy/csi.sock"}],
                "volumeMounts": socket, "resources": _small()}
    containers = [
        {"name": "ebs-plugin", "image": ecr(region, "aws-ebs-csi-driver", ADDON_VERSION),
         "imagePullPolicy": "IfNotPresent",
         "args": ["controller", "--endpoint=$(CSI_ENDPOINT)", "--batching=true",
                  "--logging-format=text", "--v=2"],
         "env": [{"name": "CSI_ENDPOINT",
                  "value": "unix:///var/lib/csi/sockets/pluginproxy/csi.sock"},
                 {"name": "CSI_NODE_NAME", "valueFrom": {"fieldRef": {
                     "fieldPath": "spec.nodeName"}}}],
         "volumeMounts": socket,
         "ports": [{"name": "healthz", "containerPort": 9808, "protocol": "TCP"}],
         "resources": _small()},
        sidecar("csi-provisioner", "external-provisioner", "v5.2.0",
                ["--timeout=60s", "--csi-address=$(ADDRESS)", "--v=2",
                 "--feature-gates=Topology=true", "--extra-create-metadata",
                 "--leader-election=true", "--default-fstype=ext4"]),
        sidecar("csi-attacher", "external-attacher", "v4.8.1",
                ["--timeout=6m", "--csi-address=$(ADDRESS)", "--v=2",
                 "--leader-election=true"]),
        sidecar("csi-resizer", "external-resizer", "v1.13.2",
                ["--timeout=60s", "--csi-address=$(ADDRESS)", "--v=2",
                 "--handle-volume-inuse-error=false", "--leader-election=true"]),
        sidecar("liveness-probe", "livenessprobe", "v2.15.0",
                ["--csi-address=/csi/csi.sock"])]
    return {
        "metadata": {"name": "ebs-csi-controller", "namespace": "kube-system",
                     "labels": dict(ADDON_LABELS)},
        "spec": {
            "replicas": 2, "revisionHistoryLimit": 10, "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "serviceAccountName": "ebs-csi-controller-sa",
                "priorityClassName": "system-cluster-critical",
                "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                {"effect": "NoExecute", "operator": "Exists",
                                 "tolerationSeconds": 300}],
                "securityContext": {"fsGroup": 1000, "runAsGroup": 1000,
                                    "runAsNonRoot": True, "runAsUser": 1000},
                "containers": containers,
                "volumes": [{"name": "socket-dir", "emptyDir": {}}]}}}}


def install(store: RemoteStore, region: str, scenarios: Set[str]) -> list[str]:
    """Create the add-ons' objects; returns what was created, as `kind/name` lines."""
    made: list[str] = []

    def create(kind: Kind, obj: dict) -> None:
        try:
            store.create(kind, obj)
        except ApiError as err:
            if err.code != 409:  # the launcher may have made the CSIDriver first
                raise
        made.append(f"{kind.kind}/{obj['metadata']['name']}")
    for sc in storage_classes(scenarios):
        create(SC, sc)
    if "intree-without-csi-driver" in scenarios:
        return made
    create(CSIDRIVER, csi_driver())
    for sa in service_accounts():
        create(SA, sa)
    create(DAEMONSET, node_daemonset(region, windows=False))
    create(DAEMONSET, node_daemonset(region, windows=True))
    create(DEPLOYMENT, controller_deployment(region))
    return made
