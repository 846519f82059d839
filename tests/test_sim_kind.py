"""The embedded cluster's kind flavour: the Linux PowerShell 7 stand-ins that
answer winstor's probes on a laptop's kind cluster.

Driven from outside as the kind profile drives it - `winstor sim up --flavour
kind`, pods made with the official client, the real probe files sent with
`pwsh` and the `stand-in` library - and checked against moto with plain
boto3, so the contract the client side relies on is pinned down here: the
nodes and their labels, the one share every stand-in sees under /winstor, the
mapping record naming the cluster's FSx file system, local-path claims that
keep their files, and failures worded as pwsh and .NET on Linux word them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from kubernetes import client

from helpers import eventually
from inspect_cluster import api_client
from winstor.cluster import execs, probes
from winstor.cluster.kube import Api
from winstor.targets.embedded import SimProcess

STAND_IN = "mcr.microsoft.com/powershell:lts-7.4-ubuntu-22.04"
KEEP_ALIVE = ["pwsh", "-NoLogo", "-NoProfile", "-Command",
              "while ($true) { Start-Sleep -Seconds 3600 }"]
STAND_IN_LABEL = "winstor.io/windows-stand-in"
NOT_RECOGNIZED = ("The term 'Get-SmbGlobalMapping' is not recognized as a name of a cmdlet, "
                  "function, script file, or executable program.\nCheck the spelling of the "
                  "name, or if a path was included, verify that the path is correct and try "
                  "again.")


@pytest.fixture(scope="module")
def kind_sim() -> Iterator[SimProcess]:
    """Two kind clusters: sim-1 healthy, sim-2 without the SMB mapping record."""
    sim = SimProcess(2, ["2:smb-mapping-missing"], flavour="kind")
    sim.start()
    yield sim
    sim.stop()


class Cluster:
    """One kind cluster as a test sees it: the official client and winstor's exec path."""

    def __init__(self, sim: SimProcess, context: str) -> None:
        self.sim = sim
        self.v1 = client.CoreV1Api(api_client(sim, context))
        self.api = Api.from_kubeconfig(str(sim.kubeconfig), context)

    def namespace(self, name: str) -> str:
        self.v1.create_namespace({"metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "privileged"}}})
        return name

    def pod(self, namespace: str, name: str, mounts: list[tuple[str, dict, str]],
            node: str | None = None, read_only: bool = False, wait: bool = True) -> None:
        """A stand-in pod; `mounts` are (volume name, volume source, mount path)."""
        spec: dict[str, Any] = {
            "nodeSelector": {STAND_IN_LABEL: "true"},
            "containers": [{"name": "c", "image": STAND_IN, "command": KEEP_ALIVE,
                            "volumeMounts": [{"name": v, "mountPath": path,
                                              "readOnly": read_only}
                                             for v, _, path in mounts]}],
            "volumes": [{"name": v, **source} for v, source, _ in mounts]}
        if node is not None:
            spec["nodeSelector"] = {"kubernetes.io/hostname": node}
            spec["tolerations"] = [{"operator": "Exists"}]
        self.v1.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": spec})
        if wait:
            eventually(lambda: self.v1.read_namespaced_pod(name, namespace).status.phase
                       == "Running")

    def node_probe_pod(self, namespace: str, name: str = "node-probe") -> None:
        """The kind stand-in for the HostProcess node probe: the node directory at /winstor."""
        self.pod(namespace, name, [("node", {"hostPath": {"path": "/winstor",
                                                          "type": "Directory"}}, "/winstor")],
                 node="winstor-worker", read_only=True)

    def share_pod(self, namespace: str, name: str = "test-fsx") -> None:
        """`test-fsx` as the kind profile renders it: G:\\Directory\\app-state via hostPath."""
        self.pod(namespace, name, [("app-state", {"hostPath": {
            "path": "/winstor/share/Directory/app-state", "type": "Directory"}},
            "/dotnetapp/app-state")])

    def probe(self, namespace: str, pod: str, name: str, params: dict | None = None,
              libs: tuple[str, ...] = ("stand-in",)) -> dict:
        result = execs.run_probe(self.api, namespace, pod, name, params, shell="pwsh",
                                 libs=libs)
        assert result.data is not None
        return result.data

    def probe_error(self, namespace: str, pod: str, name: str, params: dict | None = None,
                    libs: tuple[str, ...] = ("stand-in",)) -> str:
        with pytest.raises(probes.ProbeFailed) as failed:
            execs.run_probe(self.api, namespace, pod, name, params, shell="pwsh", libs=libs)
        return failed.value.error

    def events(self, namespace: str, name: str) -> list[str]:
        return [f"{e.reason}: {e.message}" for e in self.v1.list_namespaced_event(namespace).items
                if e.involved_object.name == name]


@pytest.fixture(scope="module")
def healthy(kind_sim: SimProcess) -> Cluster:
    return Cluster(kind_sim, "sim-1")


def _fsx_dns_names(sim: SimProcess) -> set[str]:
    env = sim.aws_env
    fsx = boto3.client("fsx", endpoint_url=env["AWS_ENDPOINT_URL"],
                       region_name=env["AWS_DEFAULT_REGION"],
                       aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    return {fs["DNSName"] for fs in fsx.describe_file_systems()["FileSystems"]}


# ------------------------------------------------------------------ nodes and storage


def test_nodes_are_kinds_with_one_stand_in(healthy: Cluster) -> None:
    nodes = {n.metadata.name: n for n in healthy.v1.list_node().items}
    assert sorted(nodes) == ["winstor-control-plane", "winstor-worker"]
    plane, worker = nodes["winstor-control-plane"], nodes["winstor-worker"]
    assert plane.metadata.labels["node-role.kubernetes.io/control-plane"] == ""
    assert [(t.key, t.effect) for t in plane.spec.taints] == [
        ("node-role.kubernetes.io/control-plane", "NoSchedule")]
    assert STAND_IN_LABEL not in plane.metadata.labels
    assert worker.metadata.labels[STAND_IN_LABEL] == "true"
    for node in nodes.values():
        assert node.metadata.labels["kubernetes.io/os"] == "linux"
        assert node.spec.provider_id == f"kind://docker/winstor/{node.metadata.name}"
        assert "topology.kubernetes.io/zone" not in node.metadata.labels
    storage = client.StorageV1Api(api_client(healthy.sim, "sim-1"))
    [standard] = storage.list_storage_class().items
    assert (standard.metadata.name, standard.provisioner, standard.volume_binding_mode) == (
        "standard", "rancher.io/local-path", "WaitForFirstConsumer")


def test_aws_env_points_at_moto_holding_each_clusters_fsx(kind_sim: SimProcess) -> None:
    assert kind_sim.aws_env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert len(_fsx_dns_names(kind_sim)) == 2  # one file system per cluster
    ec2 = boto3.client("ec2", endpoint_url=kind_sim.aws_env["AWS_ENDPOINT_URL"],
                       region_name=kind_sim.aws_env["AWS_DEFAULT_REGION"],
                       aws_access_key_id=kind_sim.aws_env["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=kind_sim.aws_env["AWS_SECRET_ACCESS_KEY"])
    assert ec2.describe_instances()["Reservations"] == []  # kind nodes are no EC2 instances


# ----------------------------------------------------------------------- the share


def test_node_probe_reports_the_fsx_share_as_g(healthy: Cluster, kind_sim: SimProcess) -> None:
    ns = healthy.namespace("kind-smb")
    healthy.node_probe_pod(ns)
    [mapping] = healthy.probe(ns, "node-probe", "smb-mappings")["mappings"]
    assert (mapping["local_path"], mapping["status"], mapping["status_name"]) == ("G:", 0, "OK")
    server, share = mapping["remote_path"].lstrip("\\").split("\\")
    assert share == "share"
    assert server in _fsx_dns_names(kind_sim)
    listing = healthy.probe(ns, "node-probe", "list-dir", {"path": "/winstor"})
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [
        ("share", "Directory"), ("smb-global-mappings.json", "File")]
    # A pod that does not mount /winstor has no record: the stand-in cmdlet returns nothing.
    healthy.share_pod(ns)
    assert healthy.probe(ns, "test-fsx", "smb-mappings") == {"mappings": []}


def test_without_the_stand_in_library_pwsh_does_not_know_the_cmdlet(healthy: Cluster) -> None:
    ns = healthy.namespace("kind-nolib")
    healthy.node_probe_pod(ns)
    assert healthy.probe_error(ns, "node-probe", "smb-mappings", libs=()) == NOT_RECOGNIZED
    # csi-proxy's cmdlets are just as absent (the kind profile skips that check).
    error = healthy.probe_error(ns, "node-probe", "csi-proxy")
    assert error.startswith("The term 'Get-Service' is not recognized as a name of a cmdlet")


def test_a_file_written_in_one_pod_is_read_through_the_share_in_others(
        healthy: Cluster) -> None:
    ns = healthy.namespace("kind-share")
    healthy.share_pod(ns, "writer")
    healthy.share_pod(ns, "reader")
    healthy.node_probe_pod(ns)
    written = healthy.probe(ns, "writer", "write-file", {
        "path": "/dotnetapp/app-state/kind-share.txt", "content": "from the writer \u00e9"})
    assert written["sha256"] == written["read_back_sha256"]
    for pod, path in (("reader", "/dotnetapp/app-state/kind-share.txt"),
                      ("node-probe", "/winstor/share/Directory/app-state/kind-share.txt")):
        read = healthy.probe(ns, pod, "read-file", {"path": path})
        assert (read["exists"], read["content"], read["sha256"], read["bytes"]) == (
            True, "from the writer \u00e9", written["sha256"], written["bytes"])
    # Linux paths are case-sensitive: another spelling is another (missing) file.
    read = healthy.probe(ns, "reader", "read-file",
                         {"path": "/dotnetapp/app-state/KIND-SHARE.txt"})
    assert read["exists"] is False
    # .NET on Linux words the failures; /winstor is mounted read-only in the node probe.
    assert healthy.probe_error(ns, "writer", "write-file", {
        "path": "/dotnetapp/app-state/x/y.txt", "content": "."}) == (
        "Could not find a part of the path '/dotnetapp/app-state/x/y.txt'.")
    assert healthy.probe_error(ns, "node-probe", "write-file", {
        "path": "/winstor/share/Directory/app-state/ro.txt", "content": "."}) == (
        "Read-only file system : '/winstor/share/Directory/app-state/ro.txt'")


def test_missing_host_path_directory_fails_the_mount(healthy: Cluster) -> None:
    ns = healthy.namespace("kind-hostpath")
    healthy.pod(ns, "nope", [("app-state", {"hostPath": {
        "path": "/winstor/share/Directory/nope", "type": "Directory"}}, "/x")], wait=False)
    want = ('FailedMount: MountVolume.SetUp failed for volume "app-state" : hostPath type '
            "check failed: /winstor/share/Directory/nope is not a directory")
    eventually(lambda: want in healthy.events(ns, "nope"))
    assert healthy.v1.read_namespaced_pod("nope", ns).status.phase == "Pending"


# ------------------------------------------------------------------- local-path claim


def test_local_path_claim_binds_on_scheduling_and_keeps_its_files(healthy: Cluster) -> None:
    ns = healthy.namespace("kind-claim")
    healthy.v1.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}})
    claim = healthy.v1.read_namespaced_persistent_volume_claim("data", ns)
    assert claim.spec.storage_class_name == "standard" and claim.status.phase == "Pending"
    volume = ("data", {"persistentVolumeClaim": {"claimName": "data"}}, "/data")
    healthy.pod(ns, "first", [volume])
    claim = healthy.v1.read_namespaced_persistent_volume_claim("data", ns)
    assert claim.status.phase == "Bound"
    assert claim.metadata.annotations["volume.kubernetes.io/selected-node"] == "winstor-worker"
    pv = healthy.v1.read_persistent_volume(claim.spec.volume_name)
    assert pv.spec.host_path.path.startswith("/var/local-path-provisioner/")
    written = healthy.probe(ns, "first", "write-marker",
                            {"path": "/data", "marker": "kept", "payload_bytes": 4096})
    assert written["marker_path"] == "/data/winstor-marker.txt"
    assert healthy.probe_error(ns, "first", "write-file", {
        "path": "/data/nope/x.txt", "content": "."}) == (
        "Could not find a part of the path '/data/nope/x.txt'.")
    healthy.v1.delete_namespaced_pod("first", ns, grace_period_seconds=0)
    eventually(lambda: not healthy.v1.list_namespaced_pod(ns).items)
    healthy.pod(ns, "second", [volume])
    read = healthy.probe(ns, "second", "read-marker", {"path": "/data"})
    assert (read["marker"], read["sha256"], read["bytes"]) == (
        "kept", written["sha256"], 4096)
    info = healthy.probe(ns, "second", "os-info")
    worker = healthy.v1.read_node("winstor-worker").status.node_info
    # pwsh on Linux: no registry, so [Environment]::OSVersion - the kernel's numbers.
    assert worker.kernel_version.startswith(info["build"] + "-")
    assert (info["hostname"], info["edition"], info["powershell"]) == ("second", "Core", "7.4.6")
    # The volume is a directory on the node: seen there, and gone with the claim.
    healthy.pod(ns, "node-view", [("lp", {"hostPath": {
        "path": "/var/local-path-provisioner", "type": "Directory"}}, "/lp")],
        node="winstor-worker")
    directory = pv.spec.host_path.path.rsplit("/", 1)[-1]
    on_node = healthy.probe(ns, "node-view", "read-marker", {"path": f"/lp/{directory}"})
    assert on_node["sha256"] == written["sha256"]
    healthy.v1.delete_namespaced_pod("second", ns, grace_period_seconds=0)
    healthy.v1.delete_namespaced_persistent_volume_claim("data", ns)
    eventually(lambda: not healthy.v1.list_persistent_volume().items)
    listing = healthy.probe(ns, "node-view", "list-dir", {"path": "/lp"})
    assert listing["entries"] == []


# ----------------------------------------------------------------------- scenarios


def test_smb_mapping_missing_leaves_the_stand_in_without_a_mapping(
        kind_sim: SimProcess) -> None:
    broken = Cluster(kind_sim, "sim-2")
    ns = broken.namespace("kind-missing")
    broken.node_probe_pod(ns)
    assert broken.probe(ns, "node-probe", "smb-mappings") == {"mappings": []}
    listing = broken.probe(ns, "node-probe", "list-dir", {"path": "/winstor"})
    assert [e["name"] for e in listing["entries"]] == ["share"]


def test_image_pull_fails_applies_to_the_stand_in_image(sim_factory) -> None:
    sim = sim_factory(1, ["image-pull-fails"], flavour="kind")
    cluster = Cluster(sim, "sim-1")
    ns = cluster.namespace("kind-pull")
    cluster.pod(ns, "p", [], wait=False)

    def waiting() -> str | None:
        statuses = cluster.v1.read_namespaced_pod("p", ns).status.container_statuses or []
        return next((s.state.waiting.reason for s in statuses if s.state.waiting), None)
    assert eventually(waiting) in ("ErrImagePull", "ImagePullBackOff")


def test_cli_refuses_scenarios_that_need_windows_nodes(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "winstor", "sim", "up", "--flavour", "kind",
                           "--kubeconfig", str(tmp_path / "kc"), "--scenario", "no-csi-proxy"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "use --flavour eks" in proc.stderr


# ------------------------------------------------------------------------- kubectl

KUBECTL = "/usr/bin/kubectl"
needs_kubectl = pytest.mark.skipif(shutil.which(KUBECTL) is None,
                                   reason=f"{KUBECTL} is not installed")


def _kubectl(sim: SimProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, "--kubeconfig", str(sim.kubeconfig), "--context", "sim-1",
                           *args], capture_output=True, text=True, timeout=60)


@needs_kubectl
def test_kubectl_walkthrough_on_the_stand_in(healthy: Cluster, kind_sim: SimProcess) -> None:
    shown = _kubectl(kind_sim, "get", "nodes", "--show-labels")
    assert shown.returncode == 0, shown.stderr
    worker = next(line for line in shown.stdout.splitlines() if line.startswith("winstor-worker"))
    assert f"{STAND_IN_LABEL}=true" in worker
    ns = healthy.namespace("kind-kubectl")
    healthy.node_probe_pod(ns)
    # pwsh on Linux has no `ls` alias: the native ls answers, one name per line.
    listed = _kubectl(kind_sim, "exec", "-n", ns, "node-probe", "--", "pwsh", "-Command",
                      "ls /winstor")
    assert (listed.returncode, listed.stdout) == (0, "share\nsmb-global-mappings.json\n")
    typed = _kubectl(kind_sim, "exec", "-n", ns, "node-probe", "--", "pwsh", "-Command",
                     "Get-Content /winstor/smb-global-mappings.json -Raw")
    assert typed.returncode == 0 and '"LocalPath": "G:"' in typed.stdout
    missing = _kubectl(kind_sim, "exec", "-n", ns, "node-probe", "--", "pwsh", "-Command",
                       "Get-Content /winstor/nope")
    assert missing.returncode == 1
    assert "Get-Content: Cannot find path '/winstor/nope' because it does not exist." in (
        missing.stderr)
    windows = _kubectl(kind_sim, "exec", "-n", ns, "node-probe", "--", "powershell.exe",
                       "-Command", "ls")
    assert windows.returncode == 126
    assert 'exec: "powershell.exe": executable file not found in $PATH' in (
        windows.stdout + windows.stderr)
