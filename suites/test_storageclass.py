"""StorageClasses: one default, `gp2-windows` as the seed specifies, CSI migration."""

from __future__ import annotations

import pytest

from winstor.cluster import provision
from winstor.cluster.checkkit import fail
from winstor.cluster.kube import CSIDRIVERS, CSINODES, DAEMONSETS, STORAGECLASSES
from winstor.cluster.target import Cluster

pytestmark = pytest.mark.storageclass

DEFAULT = "storageclass.kubernetes.io/is-default-class"
EBS_DRIVER = "ebs.csi.aws.com"


@pytest.mark.winstor_check("SC-DEFAULT-01", "Exactly one default StorageClass")
def test_one_default_class(cluster: Cluster, evidence: dict) -> None:
    classes = cluster.api.items(STORAGECLASSES)
    defaults = [c for c in classes
                if (c["metadata"].get("annotations") or {}).get(DEFAULT) == "true"]
    evidence["classes"] = {c["metadata"]["name"]: {
        "provisioner": c.get("provisioner"), "binding": c.get("volumeBindingMode"),
        "default": c in defaults} for c in classes}
    if len(defaults) != 1:
        names = ", ".join(c["metadata"]["name"] for c in defaults) or "none"
        fail(f"{cluster.name} has {len(defaults)} default StorageClasses ({names}); claims "
             "without a class need exactly one")
    d = defaults[0]
    cluster.facts["default_class"] = {"name": d["metadata"]["name"],
                                      "provisioner": d.get("provisioner"),
                                      "binding": d.get("volumeBindingMode")}


@pytest.mark.ebs
@pytest.mark.winstor_check("SC-WINDOWS-01", "gp2-windows is the seed's NTFS class")
def test_gp2_windows_as_specified(cluster: Cluster, gp2_windows: provision.ClassState,
                                  evidence: dict) -> None:
    evidence["created_by_this_run"] = gp2_windows.created
    evidence["diff"] = gp2_windows.diff
    if gp2_windows.diff:
        fail(f"StorageClass gp2-windows on {cluster.name} differs from the seed: "
             + "; ".join(gp2_windows.diff))


@pytest.mark.ebs
@pytest.mark.winstor_check("SC-MIGRATION-01", "In-tree EBS classes are served by the EBS CSI "
                           "driver on Windows nodes")
def test_csi_migration_ready(cluster: Cluster, windows_nodes: list[dict],
                             gp2_windows: provision.ClassState, evidence: dict) -> None:
    major, minor = cluster.kube_minor()
    provisioner = (gp2_windows.obj or {}).get("provisioner")
    evidence["kubernetes"] = f"{major}.{minor}"
    if provisioner != "kubernetes.io/aws-ebs" or (major, minor) < (1, 23):
        pytest.skip(f"{cluster.name}: gp2-windows uses {provisioner} on Kubernetes "
                    f"{major}.{minor}; CSI migration does not apply")
    driver = cluster.api.get_or_none(CSIDRIVERS, EBS_DRIVER)
    if driver is None:
        fail(f"Kubernetes {major}.{minor} on {cluster.name} migrates kubernetes.io/aws-ebs to "
             f"{EBS_DRIVER}, but no CSIDriver {EBS_DRIVER} is installed: claims of gp2-windows "
             "will never be provisioned")
    missing = []
    for node in windows_nodes:
        name = node["metadata"]["name"]
        csinode = cluster.api.get_or_none(CSINODES, name)
        drivers = [d.get("name") for d in ((csinode or {}).get("spec") or {}).get("drivers")
                   or []]
        if EBS_DRIVER not in drivers:
            missing.append(name)
    ds = [d for d in cluster.api.items(DAEMONSETS, "kube-system")
          if (d["spec"]["template"]["spec"].get("nodeSelector") or {}).get("kubernetes.io/os")
          == "windows" and "ebs" in d["metadata"]["name"]]
    evidence["windows_node_plugin"] = [
        {"name": d["metadata"]["name"], "ready": d.get("status", {}).get("numberReady"),
         "desired": d.get("status", {}).get("desiredNumberScheduled")} for d in ds]
    if missing:
        plugin = "; ".join(f"DaemonSet kube-system/{d['name']} has {d['ready']}/{d['desired']} "
                           "ready" for d in evidence["windows_node_plugin"]) or \
            "no Windows node plugin DaemonSet found"
        fail(f"the {EBS_DRIVER} node plugin is not registered on Windows node(s) "
             f"{', '.join(missing)} (their CSINode lists no {EBS_DRIVER}; {plugin}): NTFS "
             "volumes cannot be attached or mounted there")
