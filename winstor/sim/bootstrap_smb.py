"""What a fresh emulated EKS cluster holds of the SMB CSI driver and its shares.

As an administrator leaves it after installing csi-driver-smb in csi-proxy mode
(kubernetes-csi/csi-driver-smb `deploy/`): the CSIDriver `smb.csi.k8s.io`, the
node DaemonSets `csi-smb-node` (Linux) and `csi-smb-node-win` (Windows; its `smb`
container reaches csi-proxy through the `filesystem` and `smb` v1 pipes mounted as
hostPath volumes), one StorageClass per share naming the share as `source` with
provisioner and node-stage secrets, and those Secrets in kube-system. The DaemonSets'
pods and the CSINode registrations come from the controller that models the driver
(`controllers.smbcsi`), from the state of each node.

On the node side, the shares' file servers join the SMB network the nodes reach
(`nodes.smb`): the FSx for Windows file system (the seed's `share`, which G: maps, and
`k8s`), the ONTAP SVM and the File Gateway, the first two joined to one directory.

Scenario switches: `smb-csi-node-plugin-missing` (no csi-smb-node-win DaemonSet),
`smb-share-credentials-wrong` (the directory account's password was rotated after the
cluster stored it), `smb-share-server-unresolvable` (no DNS record for the ONTAP SVM's
SMB name).
"""

from __future__ import annotations

import base64
from collections.abc import Set
from typing import TYPE_CHECKING, Any

from .api.kinds import kind_of
from .api.store import Store
from .nodes import smb
from .nodes.windows import SmbShare
from .nodes.workloads import Workloads
from .topology import ClusterPlan

if TYPE_CHECKING:
    from .shares import SharesSeed

CSIDRIVER = kind_of("storage.k8s.io/v1", "CSIDriver")
DAEMONSET = kind_of("apps/v1", "DaemonSet")
SC = kind_of("storage.k8s.io/v1", "StorageClass")
SECRET = kind_of("v1", "Secret")

DRIVER = "smb.csi.k8s.io"
CHART_LABELS = {"app.kubernetes.io/name": "csi-driver-smb",
                "app.kubernetes.io/managed-by": "Helm"}
PLUGIN_IMAGE = "registry.k8s.io/sig-storage/smbplugin:v1.17.0"
REGISTRAR_IMAGE = "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.15.0"
LIVENESS_IMAGE = "registry.k8s.io/sig-storage/livenessprobe:v2.16.0"
# The pipes the Windows node plugin mounts (csi-proxy mode), v1 first as the driver tries.
PIPES = ("csi-proxy-filesystem-v1", "csi-proxy-smb-v1", "csi-proxy-filesystem-v1beta1",
         "csi-proxy-smb-v1beta1")
PIPE_VOLUMES = {"csi-proxy-filesystem-v1": "csi-proxy-fs-pipe-v1",
                "csi-proxy-smb-v1": "csi-proxy-smb-pipe-v1",
                "csi-proxy-filesystem-v1beta1": "csi-proxy-fs-pipe-v1beta1",
                "csi-proxy-smb-v1beta1": "csi-proxy-smb-pipe-v1beta1"}


def seed(plan: ClusterPlan, scenarios: Set[str], store: Store, workloads: Workloads,
         shares: SharesSeed | None) -> None:
    """Fill the store and the SMB network; `shares` is None without AWS (nothing to reach)."""
    if plan.flavour != "eks":
        return
    store.create(CSIDRIVER, {
        "metadata": {"name": DRIVER, "labels": dict(CHART_LABELS)},
        "spec": {"attachRequired": False, "podInfoOnMount": True,
                 "volumeLifecycleModes": ["Persistent", "Ephemeral"],
                 "fsGroupPolicy": "ReadWriteOnceWithFSType"}})
    store.create(DAEMONSET, _linux_daemonset())
    if "smb-csi-node-plugin-missing" not in scenarios:
        store.create(DAEMONSET, _windows_daemonset())
    if shares is not None:
        _seed_servers(scenarios, workloads, shares)
        _seed_classes(store, shares)


def _seed_servers(scenarios: Set[str], workloads: Workloads, seeded: SharesSeed) -> None:
    password = seeded.ad_password
    if "smb-share-credentials-wrong" in scenarios:
        password += "-rotated"  # the directory has a newer password than anyone stored
    directory = smb.ActiveDirectory(dns_domain="corp.example.com", netbios="CORP",
                                    accounts={seeded.ad_user.lower(): password})
    for share in seeded.shares:
        server = workloads.smb.servers.get(share.server.lower()) or workloads.smb.add_server(
            smb.SmbServer(name=share.server.lower(), address=share.address))
        if share.authentication == "GuestAccess":
            server.guest_password = share.password
        elif share.joined:
            server.directory = directory
        unc = f"\\\\{share.server}\\{share.share}"
        server.add_share(SmbShare(remote_path=unc))
        if share.kind == "fsx-windows":
            # The seed's share, which every node maps at G:, is on the same file server.
            for path, existing in workloads.shares.items():
                if smb.split_unc(path)[0].lower() == share.server.lower():
                    server.add_share(existing)
        if share.kind == "fsx-ontap" and "smb-share-server-unresolvable" in scenarios:
            workloads.smb.unresolvable.add(share.server.lower())


def _seed_classes(store: Store, seeded: SharesSeed) -> None:
    made: set[str] = set()
    for share in seeded.shares:
        # The gateway's guest credentials, or the directory account's.
        secret = "smb-creds-file-gateway" if share.kind == "file-gateway" else "smb-creds-ad"
        if secret not in made:
            made.add(secret)
            store.create(SECRET, {
                "metadata": {"name": secret, "namespace": "kube-system"},
                "type": "Opaque",
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in (
                    ("username", share.username), ("password", share.password),
                    ("domain", share.domain))}})
        store.create(SC, {
            "metadata": {"name": f"smb-{share.kind}"},
            "provisioner": DRIVER,
            "parameters": {
                "source": share.source,
                "csi.storage.k8s.io/provisioner-secret-name": secret,
                "csi.storage.k8s.io/provisioner-secret-namespace": "kube-system",
                "csi.storage.k8s.io/node-stage-secret-name": secret,
                "csi.storage.k8s.io/node-stage-secret-namespace": "kube-system"},
            "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True,
            "mountOptions": ["dir_mode=0777", "file_mode=0777"]})


def _container(name: str, image: str, args: list[str], mounts: list[dict]) -> dict[str, Any]:
    return {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "args": args,
            "env": [{"name": "CSI_ENDPOINT", "value": "unix://C:\\\\csi\\\\csi.sock"},
                    {"name": "KUBE_NODE_NAME", "valueFrom": {"fieldRef": {
                        "apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
            "volumeMounts": mounts}


def _windows_daemonset() -> dict[str, Any]:
    """deploy/csi-smb-node-windows.yaml (csi-proxy mode), as the driver ships it."""
    pipe_volumes = [{"name": PIPE_VOLUMES[p], "hostPath": {"path": f"\\\\.\\pipe\\{p}"}}
                    for p in PIPES]
    plugin_dir = {"name": "plugin-dir", "mountPath": "C:\\csi"}
    kubelet_dir = {"name": "kubelet-dir", "mountPath": "C:\\var\\lib\\kubelet"}
    smb_mounts = [kubelet_dir, plugin_dir] + [
        {"name": v["name"], "mountPath": v["hostPath"]["path"]} for v in pipe_volumes]
    labels = {"app": "csi-smb-node-win", **CHART_LABELS}
    return {
        "metadata": {"name": "csi-smb-node-win", "namespace": "kube-system", "labels": labels},
        "spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "selector": {"matchLabels": {"app": "csi-smb-node-win"}},
            "template": {"metadata": {"labels": {"app": "csi-smb-node-win"}}, "spec": {
                "tolerations": [{"key": "node.kubernetes.io/os", "operator": "Exists",
                                 "effect": "NoSchedule"}],
                "nodeSelector": {"kubernetes.io/os": "windows"},
                "priorityClassName": "system-node-critical",
                "serviceAccountName": "csi-smb-node-sa",
                "containers": [
                    _container("liveness-probe", LIVENESS_IMAGE,
                               ["--csi-address=$(CSI_ENDPOINT)", "--probe-timeout=3s",
                                "--health-port=29643", "--v=2"], [plugin_dir]),
                    _container("node-driver-registrar", REGISTRAR_IMAGE,
                               ["--v=2", "--csi-address=$(CSI_ENDPOINT)",
                                "--kubelet-registration-path=C:\\var\\lib\\kubelet\\plugins"
                                "\\smb.csi.k8s.io\\csi.sock"], [kubelet_dir, plugin_dir]),
                    _container("smb", PLUGIN_IMAGE,
                               ["--v=5", "--endpoint=$(CSI_ENDPOINT)",
                                "--nodeid=$(KUBE_NODE_NAME)",
                                "--remove-smb-mapping-during-unmount=true"], smb_mounts)],
                "volumes": [
                    *pipe_volumes,
                    {"name": "registration-dir", "hostPath": {
                        "path": "C:\\var\\lib\\kubelet\\plugins_registry\\",
                        "type": "Directory"}},
                    {"name": "kubelet-dir", "hostPath": {"path": "C:\\var\\lib\\kubelet\\",
                                                         "type": "Directory"}},
                    {"name": "plugin-dir", "hostPath": {
                        "path": "C:\\var\\lib\\kubelet\\plugins\\smb.csi.k8s.io\\",
                        "type": "DirectoryOrCreate"}}]}}},
        "status": {}}


def _linux_daemonset() -> dict[str, Any]:
    """deploy/csi-smb-node.yaml, reduced to what scheduling and status need."""
    labels = {"app": "csi-smb-node", **CHART_LABELS}
    return {
        "metadata": {"name": "csi-smb-node", "namespace": "kube-system", "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app": "csi-smb-node"}},
            "template": {"metadata": {"labels": {"app": "csi-smb-node"}}, "spec": {
                "hostNetwork": True, "nodeSelector": {"kubernetes.io/os": "linux"},
                "priorityClassName": "system-node-critical",
                "serviceAccountName": "csi-smb-node-sa",
                "containers": [
                    {"name": "liveness-probe", "image": LIVENESS_IMAGE},
                    {"name": "node-driver-registrar", "image": REGISTRAR_IMAGE},
                    {"name": "smb", "image": PLUGIN_IMAGE,
                     "args": ["--v=5", "--endpoint=$(CSI_ENDPOINT)",
                              "--nodeid=$(KUBE_NODE_NAME)"],
                     "securityContext": {"privileged": True}}]}}},
        "status": {}}
