"""The node agent (`python -m winstor.sim.agent`) against the real control plane.

Its parts first, without any binary: the `RemoteStore`'s cache discipline (older watch
events never undo newer writes, conflicts are retried with the function applied again,
a no-op writes nothing, a pod is let go of before its grace-0 delete), the scenarios it
refuses, `exit N` in the PowerShell emulation.

Then whole clusters, started by the launcher (`winstor.targets.controlplane`: etcd,
kube-apiserver, controller-manager, scheduler, `winstor-kubelet-stream`, this agent, and
the real EBS CSI controller with its sidecars), looked at with `/usr/bin/kubectl` and the
official Python client - clients nobody here wrote - and boto3 against the agent's moto:

- a healthy cluster: the nodes as EKS registers them, Ready and still Ready after a
  minute (Lease renewals); CSINodes; the add-ons; the seed's claim and Deployment
  (scheduled by the real scheduler, provisioned, attached, mounted at C:\\data); exec
  with an exit code, a probe round trip, logs; a deleted pod gone, its replacement
  finding the first pod's files;
- broken clusters: no EBS CSI driver (no CSINode driver, no controller, the claim never
  provisioned), EC2 refusing AttachVolume (the real external-attacher's error, the
  attach-detach controller's FailedAttachVolume), a node running another Windows build
  than its label says, no csi-proxy (the Windows node plugin crash-looping and never
  registered, the real provisioner refusing), and image pulls failing.

Each cluster test is one function with one control plane: xdist may put tests on
different workers, and a control plane per test would cost more than the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from helpers import eventually
from winstor.cluster import probes
from winstor.sim.agent.__main__ import main as agent_main
from winstor.sim.agent.agent import UNPLAYABLE, ScenarioError, check_scenarios
from winstor.sim.agent.store import RemoteStore
from winstor.sim.api.errors import ApiError
from winstor.sim.api.kinds import kind_of
from winstor.sim.nodes import powershell
from winstor.sim.nodes.windows import ContainerView, WindowsNode
from winstor.targets.controlplane import build
from winstor.targets.controlplane.launcher import ControlPlane

PODS = kind_of("v1", "Pod")
NODES = kind_of("v1", "Node")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------- the parts alone


class FakeKube:
    """What RemoteStore asks of `Kube`, answered from a dict; records every request."""

    def __init__(self) -> None:
        self.objects: dict[str, dict] = {}
        self.requests: list[tuple[str, str, Any]] = []
        self.conflicts = 0  # PUTs to refuse with 409 before accepting
        self.rv = 100

    @staticmethod
    def path(kind: Any, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        return "/".join(p for p in (kind.plural, namespace or "", name or "", sub or "") if p)

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> dict:
        self.requests.append((method, path, body))
        key = path.removesuffix("/status")
        if method == "PUT":
            if self.conflicts:
                self.conflicts -= 1
                self.rv += 1
                self.objects[key]["metadata"]["resourceVersion"] = str(self.rv)
                raise ApiError(409, "Conflict", "the object has been modified")
            self.rv += 1
            stored = json.loads(json.dumps(body))
            stored["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = stored
            return json.loads(json.dumps(stored))
        if method == "DELETE":
            return json.loads(json.dumps(self.objects.pop(key, {"kind": "Status"})))
        raise AssertionError(method)

    def get(self, kind: Any, namespace: str | None, name: str) -> dict:
        self.requests.append(("GET", self.path(kind, namespace, name), None))
        return json.loads(json.dumps(self.objects[self.path(kind, namespace, name)]))


def _pod(name: str, rv: int, **status: Any) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}",
                         "resourceVersion": str(rv)},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}, "status": status}


def _store(kube: FakeKube) -> RemoteStore:
    return RemoteStore(kube, [])  # type: ignore[arg-type]


def test_an_older_watch_event_never_undoes_a_newer_write() -> None:
    kube = FakeKube()
    store = _store(kube)
    seen: list[str] = []
    store.add_listener(lambda kind, type_, obj: seen.append(
        f"{type_}:{obj['metadata']['resourceVersion']}"))
    store._deliver(PODS, "ADDED", _pod("p", 5, phase="Pending"))
    kube.objects["pods/ns/p"] = _pod("p", 5, phase="Pending")
    store.mutate(PODS, "ns", "p", lambda o: o["status"].update(phase="Running"),
                 subresource="status")
    assert store.peek(PODS, "ns", "p")["status"]["phase"] == "Running"
    store._deliver(PODS, "MODIFIED", _pod("p", 6, phase="Pending"))  # late, older event
    assert store.peek(PODS, "ns", "p")["status"]["phase"] == "Running"
    store._deliver(PODS, "DELETED", _pod("p", 200))
    store._deliver(PODS, "MODIFIED", _pod("p", 150, phase="Running"))  # before the delete
    assert store.peek(PODS, "ns", "p") is None
    store._deliver(PODS, "ADDED", _pod("p", 300))  # a new pod of that name
    assert store.peek(PODS, "ns", "p") is not None
    assert seen == ["ADDED:5", "MODIFIED:101", "DELETED:200", "ADDED:300"]


def test_mutate_applies_the_function_again_after_a_conflict_and_skips_no_ops() -> None:
    kube = FakeKube()
    store = _store(kube)
    kube.objects["pods/ns/p"] = _pod("p", 5, phase="Pending")
    store._deliver(PODS, "ADDED", _pod("p", 5, phase="Pending"))
    kube.conflicts = 2
    calls: list[str] = []

    def running(o: dict) -> None:
        calls.append(o["metadata"]["resourceVersion"])
        o["status"]["phase"] = "Running"
    out = store.mutate(PODS, "ns", "p", running, subresource="status")
    assert out["status"]["phase"] == "Running"
    assert len(calls) == 3 and calls[0] != calls[-1], calls  # fresh object each attempt
    puts = [r for r in kube.requests if r[0] == "PUT"]
    assert len(puts) == 3 and all(p[1] == "pods/ns/p/status" for p in puts)
    before = len(kube.requests)
    store.mutate(PODS, "ns", "p", lambda o: o["status"].update(phase="Running"))
    assert len(kube.requests) == before, "a write that changes nothing was sent"


def test_a_pod_is_let_go_of_before_its_grace_zero_delete() -> None:
    kube = FakeKube()
    store = _store(kube)
    kube.objects["pods/ns/p"] = _pod("p", 5)
    store._deliver(PODS, "ADDED", _pod("p", 5))
    order: list[str] = []
    store.before_pod_removed.append(lambda pod: order.append(f"release {pod['metadata']['name']}"))
    kube_request = kube.request

    def noting(method: str, path: str, body: Any = None, **kw: Any) -> dict:
        order.append(f"{method} {path}")
        return kube_request(method, path, body, **kw)
    kube.request = noting  # type: ignore[method-assign]
    store.remove_now(PODS, "ns", "p")
    assert order == ["release p", "DELETE pods/ns/p"]
    body = kube.requests[-1][2]
    assert body["gracePeriodSeconds"] == 0 and body["preconditions"] == {"uid": "uid-p"}
    assert store.peek(PODS, "ns", "p") is None


def test_scenarios_it_cannot_play_are_refused_with_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    check_scenarios(frozenset({"ebs-attach-fails", "image-pull-fails", "wrong-windows-build",
                               "intree-without-csi-driver"}))
    for bad in ("no-such-thing", "flaky-api"):
        with pytest.raises(ScenarioError):
            check_scenarios(frozenset({bad}))
    code = agent_main(["--kubeconfig", str(tmp_path / "k"), "--cluster", "cp-1", "--index", "1",
                       "--stream-port", "1", "--ready-file", str(tmp_path / "r"),
                       "--scenario", "pod-security-off"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pod-security-off" in err[0], err
    assert UNPLAYABLE["pod-security-off"] in err[0]
    assert not (tmp_path / "r").exists()


def test_powershell_exit_sets_the_exit_code() -> None:
    node = WindowsNode(name="n1")
    view = ContainerView(hostname="p", node=node, build=node.build, host_process=False,
                         mounts=[])
    for script, code, out in (("exit 3", 3, b""), ("exit", 0, b""),
                              ("Write-Output hi; exit 7", 7, b"hi\r\n")):
        result = powershell.run(["powershell", "-Command", script], view)
        assert (result.exit_code, result.stdout, result.stderr) == (code, out, b""), script


# ------------------------------------------------------------------ against real binaries


def _built() -> bool:
    try:
        bin_dir = build.cache_dir(build.default_module_dir()) / "bin"
    except build.BuildError:
        return False
    return all(os.access(bin_dir / c.binary, os.X_OK) for c in build.COMPONENTS)


needs_binaries = pytest.mark.skipif(
    not _built() or not os.access(KUBECTL, os.X_OK),
    reason="the controlplane binaries are not built (about 20 min on 2 cores, once: "
           "python -m winstor.targets.controlplane.build) or there is no kubectl")


class Kubectl:
    def __init__(self, kubeconfig: Path, context: str) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.context = context

    def run(self, *args: str, check: bool = True, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([KUBECTL, "--context", self.context, *args], env=self.env,
                              capture_output=True, text=True, input=stdin, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.returncode}: {done.stderr}")
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def apply(self, doc: dict, namespace: str | None = None) -> None:
        self.run("apply", *(("-n", namespace) if namespace else ()), "-f", "-",
                 stdin=json.dumps(doc))

    def events(self, namespace: str) -> list[dict]:
        return self.json("get", "events", "-n", namespace)["items"]


def _manifest(name: str) -> dict:
    import yaml
    return yaml.safe_load((ROOT / "manifests" / name).read_text(encoding="utf-8"))


def _namespace(k: Kubectl, name: str, privileged: bool = False) -> None:
    k.run("create", "namespace", name)
    if privileged:
        k.run("label", "namespace", name, "pod-security.kubernetes.io/enforce=privileged")
    # Pods are refused until the controller-manager made the namespace's ServiceAccount.
    eventually(lambda: k.run("get", "serviceaccount", "default", "-n", name,
                             check=False).returncode == 0, timeout=30)


def _pod_of(k: Kubectl, namespace: str, selector: str, phase: str = "Running") -> dict:
    def found() -> dict | None:
        pods = [p for p in k.json("get", "pods", "-n", namespace, "-l", selector)["items"]
                if (p.get("status") or {}).get("phase") == phase
                and not p["metadata"].get("deletionTimestamp")]
        return pods[0] if pods else None
    return eventually(found, timeout=90, every=0.3)


def _ec2(cp: ControlPlane, context: str) -> Any:
    env = cp.aws_envs[context]
    return boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"],
                        region_name=env["AWS_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def _client_exec(api: Any, namespace: str, pod: str, command: list[str]) -> tuple[str, str, int]:
    """Exec with the official client's stream (websocket): stdout, stderr, exit code."""
    from kubernetes.stream import stream

    resp = stream(api.connect_get_namespaced_pod_exec, pod, namespace, command=command,
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    out, err = [], []
    while resp.is_open():
        resp.update(timeout=30)
        out.append(resp.read_stdout())
        err.append(resp.read_stderr())
    resp.close()
    return "".join(out), "".join(err), int(resp.returncode or 0)


@pytest.fixture
def official_client() -> Any:
    from kubernetes import client, config

    def make(kubeconfig: Path, context: str) -> Any:
        return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig),
                                                              context=context))
    return make


@needs_binaries
def test_a_healthy_cluster_end_to_end(tmp_path: Path, official_client: Any) -> None:
    cp = ControlPlane(clusters=1, workdir=tmp_path / "cp", progress=lambda _line: None)
    began = time.monotonic()
    try:
        cp.start()
        _healthy_cluster(cp, official_client, began)
    finally:
        cp.stop()
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(tmp_path).encode()
            in _cmdline(p)]
    assert not left, f"processes left behind: {left}"


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def _healthy_cluster(cp: ControlPlane, official_client: Any, began: float) -> None:
    k = Kubectl(cp.kubeconfig, "cp-1")
    agent = cp.clusters[0].agent
    ec2 = _ec2(cp, "cp-1")
    instances = {i["InstanceId"]: i for r in ec2.describe_instances()["Reservations"]
                 for i in r["Instances"]}

    # -- nodes as EKS's kubelets register them --------------------------------------------
    nodes = k.json("get", "nodes")["items"]
    windows = [n for n in nodes if n["metadata"]["labels"]["kubernetes.io/os"] == "windows"]
    assert len(nodes) == 5 and len(windows) == 4
    for node in nodes:
        meta, status = node["metadata"], node["status"]
        labels = meta["labels"]
        zone = labels["topology.kubernetes.io/zone"]
        instance = node["spec"]["providerID"].rsplit("/", 1)[-1]
        assert node["spec"]["providerID"] == f"aws:///{zone}/{instance}"
        assert instances[instance]["Placement"]["AvailabilityZone"] == zone
        assert agent["instances"][meta["name"]] == instance
        for key in ("kubernetes.io/arch", "node.kubernetes.io/instance-type",
                    "topology.kubernetes.io/region", "eks.amazonaws.com/nodegroup",
                    "topology.ebs.csi.aws.com/zone"):
            assert key in labels, (meta["name"], key)
        assert meta["annotations"]["volumes.kubernetes.io/controller-managed-attach-detach"] \
            == "true"
        assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
        assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == cp.clusters[0].ports[
            "stream"]
        assert status["nodeInfo"]["kubeletVersion"].startswith("v1.35.4-eks-")
        assert int(status["allocatable"]["pods"]) > 0
        ready = {c["type"]: c["status"] for c in status["conditions"]}["Ready"]
        assert ready == "True", meta["name"]
        assert not any(t["key"] == "node.kubernetes.io/not-ready"
                       for t in node["spec"].get("taints") or [])
    for node in windows:
        assert node["metadata"]["labels"]["node.kubernetes.io/windows-build"] == "10.0.17763"
        assert node["status"]["nodeInfo"]["osImage"] == "Windows Server 2019 Datacenter"

    # -- CSINodes as the EBS CSI node plugin registers them --------------------------------
    for node in nodes:
        name = node["metadata"]["name"]
        csinode = k.json("get", "csinode", name)
        assert csinode["metadata"]["annotations"][
            "storage.alpha.kubernetes.io/migrated-plugins"].startswith("kubernetes.io/aws-ebs")
        assert csinode["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
        (driver,) = csinode["spec"]["drivers"]
        assert driver["name"] == "ebs.csi.aws.com"
        assert driver["nodeID"] == agent["instances"][name]
        assert "topology.ebs.csi.aws.com/zone" in driver["topologyKeys"]
        assert driver["allocatable"]["count"] > 0

    # -- the add-ons: their pods are the real DaemonSet and Deployment controllers' -------
    def addons_ready() -> bool:
        ds = {d["metadata"]["name"]: d["status"] for d in
              k.json("get", "daemonsets", "-n", "kube-system")["items"]}
        deploy = k.json("get", "deployment", "ebs-csi-controller", "-n", "kube-system")
        return (ds.get("ebs-csi-node-windows", {}).get("numberReady") == 4
                and ds.get("ebs-csi-node", {}).get("numberReady") == 1
                and deploy["status"].get("readyReplicas") == 2)
    eventually(addons_ready, timeout=60, every=0.5)
    assert k.json("get", "storageclass", "gp2")["metadata"]["annotations"][
        "storageclass.kubernetes.io/is-default-class"] == "true"
    assert k.json("get", "csidriver", "ebs.csi.aws.com")["spec"]["attachRequired"] is True
    controller = _pod_of(k, "kube-system", "app=ebs-csi-controller")
    logs = k.run("logs", "-n", "kube-system", controller["metadata"]["name"], "-c",
                 "csi-attacher", "--tail=2").stdout
    assert len(logs.splitlines()) == 2, logs  # the real csi-attacher's log, its last lines

    # -- the seed: claim, Deployment, scheduled by the real scheduler ----------------------
    _namespace(k, "seed")
    k.apply(_manifest("storageclass-gp2-windows.yaml"))
    k.apply(_manifest("pvc-ebs-windows.yaml"), "seed")
    k.apply(_manifest("deployment-windows-server.yaml"), "seed")
    pod = _pod_of(k, "seed", "app=windows-server-ltsc2019")
    name, node_name = pod["metadata"]["name"], pod["spec"]["nodeName"]
    assert node_name in {n["metadata"]["name"] for n in windows}
    (cs,) = pod["status"]["containerStatuses"]
    assert cs["ready"] and cs["started"] and cs["containerID"].startswith("containerd://")
    assert cs["imageID"] and pod["status"]["hostIP"] == "127.0.0.1" and pod["status"]["podIP"]
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds["Ready"] == "True" and conds["PodScheduled"] == "True"
    # The scheduler records events.k8s.io events (reportingComponent, no source); the
    # kubelet and the controllers the old kind (source.component).
    events = {(e["reason"], e.get("reportingComponent") or e["source"].get("component"))
              for e in k.events("seed") if e["involvedObject"]["name"] == name}
    for wanted in (("Scheduled", "default-scheduler"), ("Pulled", "kubelet"),
                   ("Created", "kubelet"), ("Started", "kubelet"),
                   ("SuccessfulAttachVolume", "attachdetach-controller")):
        assert wanted in events, (wanted, events)
    pvc = k.json("get", "pvc", "ebs-windows-pv-claim", "-n", "seed")
    assert pvc["status"]["phase"] == "Bound"
    pv = k.json("get", "pv", pvc["spec"]["volumeName"])
    assert pv["metadata"]["annotations"]["pv.kubernetes.io/migrated-to"] == "ebs.csi.aws.com"
    volume_id = pv["spec"]["awsElasticBlockStore"]["volumeID"].rsplit("/", 1)[-1]
    (volume,) = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    tags = {t["Key"]: t["Value"] for t in volume["Tags"]}
    assert tags["kubernetes.io/created-for/pvc/name"] == "ebs-windows-pv-claim"
    assert tags["kubernetes.io/cluster/cp-1"] == "owned"
    assert [a["InstanceId"] for a in volume["Attachments"]] == [agent["instances"][node_name]]
    vas = [va for va in k.json("get", "volumeattachments")["items"]
           if va["spec"]["source"].get("persistentVolumeName") == pv["metadata"]["name"]]
    assert len(vas) == 1 and vas[0]["status"]["attached"] and \
        vas[0]["spec"]["nodeName"] == node_name
    node = k.json("get", "node", node_name)
    assert f"kubernetes.io/csi/ebs.csi.aws.com^{volume_id}" in node["status"]["volumesInUse"]

    # -- exec, through the real API server: kubectl and the official client ---------------
    done = k.run("exec", "-n", "seed", name, "--", "powershell", "-Command", "exit 3",
                 check=False)
    assert done.returncode == 3, done
    k.run("exec", "-n", "seed", name, "--", "powershell", "-Command",
          r"Set-Content -Path C:\data\by-hand.txt -Value 'written by kubectl exec'")
    listing = k.run("exec", "-n", "seed", name, "--", "powershell", "-Command",
                    r"Get-ChildItem C:\data").stdout
    assert "by-hand.txt" in listing
    core = official_client(cp.kubeconfig, "cp-1")
    out, err, code = _client_exec(core, "seed", name, ["powershell", "-Command", "exit 4"])
    assert code == 4, (out, err)
    marker = f"winstor-agent-{int(time.time())}"
    command = probes.command(probes.load_probe("write-marker"),
                             {"path": "C:\\data", "marker": marker, "payload_bytes": 4096})
    out, err, code = _client_exec(core, "seed", name, command)
    written = probes.parse_output("write-marker", out, err, code).data
    assert written is not None
    # Logs: a Start-Sleep loop prints nothing; the controller's containers are the real
    # processes' logs (the official client, tailLines honoured).
    assert k.run("logs", "-n", "seed", name, "--tail=5").stdout == ""
    # (Unpreloaded: client 36 hands a log back as str(bytes), "b'...'", otherwise.)
    attacher = core.read_namespaced_pod_log(
        controller["metadata"]["name"], "kube-system", container="csi-attacher",
        tail_lines=3, _preload_content=False).data.decode()
    assert len(attacher.splitlines()) == 3 and "csi" in attacher.lower(), attacher

    # -- deleting the pod: gone, detached after the unmount, the files move with the volume
    began_delete = time.monotonic()
    k.run("delete", "pod", "-n", "seed", name, "--wait=true", timeout=60)
    assert time.monotonic() - began_delete < 30
    assert k.run("get", "pod", "-n", "seed", name, check=False).returncode != 0
    again = _pod_of(k, "seed", "app=windows-server-ltsc2019")
    assert again["metadata"]["name"] != name
    out, err, code = _client_exec(core, "seed", again["metadata"]["name"], probes.command(
        probes.load_probe("read-marker"), {"path": "C:\\data"}))
    read = probes.parse_output("read-marker", out, err, code).data
    assert read is not None and read["marker"] == marker, read
    assert read["sha256"] == written["sha256"] and read["bytes"] == 4096
    assert "written by kubectl exec" in k.run(
        "exec", "-n", "seed", again["metadata"]["name"], "--", "powershell", "-Command",
        r"Get-Content C:\data\by-hand.txt").stdout

    # -- a HostProcess probe pod sees its node -----------------------------------------------
    _namespace(k, "probes", privileged=True)
    k.apply(_manifest("pod-hostprocess-probe.yaml"), "probes")
    probe_pod = eventually(lambda: (lambda p: p if p["status"].get("phase") == "Running"
                                    else None)(k.json("get", "pod", "winstor-node-probe", "-n",
                                                      "probes")), timeout=60, every=0.3)
    out, err, code = _client_exec(core, "probes", "winstor-node-probe", probes.command(
        probes.load_probe("smb-mappings"), {}))
    mappings = probes.parse_output("smb-mappings", out, err, code).data
    assert mappings is not None and mappings["mappings"][0]["local_path"] == "G:"
    host = probe_pod["spec"]["nodeName"]
    out, err, code = _client_exec(core, "probes", "winstor-node-probe", probes.command(
        probes.load_probe("os-info"), {}))
    info = probes.parse_output("os-info", out, err, code).data
    assert info is not None and info["build"] == "10.0.17763"
    assert info["hostname"] == host.split(".")[0].upper()[:15]

    # -- still Ready a minute on: the Leases are renewed --------------------------------------
    time.sleep(max(0.0, began + 65 - time.monotonic()))
    for node in k.json("get", "nodes")["items"]:
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", (node["metadata"]["name"], ready)
    for lease in k.json("get", "leases", "-n", "kube-node-lease")["items"]:
        renewed = lease["spec"]["renewTime"]
        age = time.time() - time.mktime(time.strptime(renewed[:19], "%Y-%m-%dT%H:%M:%S")) \
            + time.mktime(time.gmtime(0))
        assert age < 25, (lease["metadata"]["name"], renewed)
    assert not [e for e in k.events("default") if e["reason"] == "NodeNotReady"]


@needs_binaries
def test_broken_clusters_fail_where_eks_fails(tmp_path: Path) -> None:
    scenarios = ["cp-1:intree-without-csi-driver", "cp-2:ebs-attach-fails",
                 "cp-2:wrong-windows-build", "cp-3:no-csi-proxy", "cp-3:image-pull-fails"]
    cp = ControlPlane(clusters=3, scenarios=scenarios, workdir=tmp_path / "cp",
                      progress=lambda _line: None)
    try:
        cp.start()
        _no_driver(cp)
        _attach_refused_wrong_build(cp)
        _no_csi_proxy_no_pulls(cp)
    finally:
        cp.stop()


def _no_driver(cp: ControlPlane) -> None:
    k = Kubectl(cp.kubeconfig, "cp-1")
    info = cp.info()["clusters"]["cp-1"]
    assert cp.clusters[0].agent["csi_controller"] is False and not info["csi_controller"]
    assert "ebs-csi-controller" not in info["pids"]
    assert k.run("get", "csidriver", "ebs.csi.aws.com", check=False).returncode != 0
    for csinode in k.json("get", "csinodes")["items"]:
        assert not csinode["spec"].get("drivers"), csinode["metadata"]["name"]
    assert not k.json("get", "daemonsets", "-n", "kube-system")["items"]
    _namespace(k, "seed")
    k.apply(_manifest("storageclass-gp2-windows.yaml"))
    k.apply(_manifest("pvc-ebs-windows.yaml"), "seed")
    k.apply(_manifest("deployment-windows-server.yaml"), "seed")
    eventually(lambda: any(e["reason"] == "ExternalProvisioning" and "ebs.csi.aws.com" in
                           e["message"] for e in k.events("seed")), timeout=60, every=0.5)
    assert k.json("get", "pvc", "ebs-windows-pv-claim", "-n", "seed")["status"]["phase"] == \
        "Pending"


def _no_csi_proxy_no_pulls(cp: ControlPlane) -> None:
    k = Kubectl(cp.kubeconfig, "cp-3")
    windows = {n["metadata"]["name"] for n in k.json("get", "nodes")["items"]
               if n["metadata"]["labels"]["kubernetes.io/os"] == "windows"}
    for csinode in k.json("get", "csinodes")["items"]:
        drivers = csinode["spec"].get("drivers") or []
        assert bool(drivers) == (csinode["metadata"]["name"] not in windows), csinode
    # The Windows node plugin's driver exits without csi-proxy: its DaemonSet is not Ready.
    def crashing() -> bool:
        pods = k.json("get", "pods", "-n", "kube-system", "-l", "app=ebs-csi-node")["items"]
        waiting = [cs["state"]["waiting"]["reason"] for p in pods
                   if p["spec"]["nodeName"] in windows
                   for cs in p["status"].get("containerStatuses") or []
                   if cs["name"] == "ebs-plugin" and "waiting" in cs["state"]]
        return waiting == ["CrashLoopBackOff"] * len(windows)
    eventually(crashing, timeout=60, every=0.5)
    ds = k.json("get", "daemonset", "ebs-csi-node-windows", "-n", "kube-system")
    assert ds["status"].get("numberReady", 0) == 0 and ds["status"][
        "desiredNumberScheduled"] == len(windows)
    # With no driver registered on the Windows node the real external-provisioner cannot
    # say where the volume may live (what EKS answers too).
    _namespace(k, "seed")
    k.apply(_manifest("storageclass-gp2-windows.yaml"))
    k.apply(_manifest("pvc-ebs-windows.yaml"), "seed")
    k.apply(_manifest("deployment-windows-server.yaml"), "seed")
    eventually(lambda: any(e["reason"] == "ProvisioningFailed" and "no topology key found"
                           in e["message"] for e in k.events("seed")), timeout=60, every=0.5)
    # image-pull-fails: a servercore pod without a volume meets the failing pull.
    k.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pull"}, "spec": {
        "nodeSelector": {"kubernetes.io/os": "windows"},
        "containers": [{"name": "c", "image": "mcr.microsoft.com/windows/servercore:ltsc2019",
                        "command": ["powershell.exe", "-Command", "Start-Sleep 3600"]}]}},
        "seed")

    def pull_failed() -> dict | None:
        pod = k.json("get", "pod", "pull", "-n", "seed")
        waiting = [((cs.get("state") or {}).get("waiting") or {}).get("reason")
                   for cs in pod["status"].get("containerStatuses") or []]
        return pod if waiting and waiting[0] in ("ErrImagePull", "ImagePullBackOff") else None
    pod = eventually(pull_failed, timeout=60, every=0.3)
    assert pod["status"]["phase"] == "Pending"
    messages = [e["message"] for e in k.events("seed") if e["involvedObject"]["name"] == "pull"
                and e["reason"] == "Failed"]
    assert any("failed to pull and unpack image" in m for m in messages), messages


def _attach_refused_wrong_build(cp: ControlPlane) -> None:
    k = Kubectl(cp.kubeconfig, "cp-2")
    nodes = [n for n in k.json("get", "nodes")["items"]
             if n["metadata"]["labels"]["kubernetes.io/os"] == "windows"]
    assert {n["metadata"]["labels"]["node.kubernetes.io/windows-build"] for n in nodes} == \
        {"10.0.20348"}
    assert {n["status"]["nodeInfo"]["osImage"] for n in nodes} == \
        {"Windows Server 2019 Datacenter"}
    _namespace(k, "seed")
    sc = _manifest("storageclass-gp2-windows.yaml")
    k.apply(sc)
    k.apply(_manifest("pvc-ebs-windows.yaml"), "seed")
    deployment = _manifest("deployment-windows-server.yaml")
    spec = deployment["spec"]["template"]["spec"]
    spec["nodeSelector"]["node.kubernetes.io/windows-build"] = "10.0.20348"
    spec["containers"][0]["image"] = "mcr.microsoft.com/windows/servercore:ltsc2022"
    k.apply(deployment, "seed")

    def attach_failed() -> list[dict]:
        return [e for e in k.events("seed") if e["reason"] == "FailedAttachVolume"
                and e["source"].get("component") == "attachdetach-controller"]
    (event, *_) = eventually(attach_failed, timeout=90, every=0.5)
    assert "UnauthorizedOperation" in event["message"] and "AttachVolume" in event["message"]
    vas = k.json("get", "volumeattachments")["items"]
    assert vas and all(not va["status"].get("attached") for va in vas)
    assert "UnauthorizedOperation" in vas[0]["status"]["attachError"]["message"]
    pods = k.json("get", "pods", "-n", "seed")["items"]
    assert all(p["status"]["phase"] == "Pending" for p in pods)
    # wrong-windows-build: an ltsc2022 container on a node that runs 10.0.17763.
    k.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "build"}, "spec": {
        "nodeSelector": {"kubernetes.io/os": "windows",
                         "node.kubernetes.io/windows-build": "10.0.20348"},
        "containers": [{"name": "c", "image": "mcr.microsoft.com/windows/servercore:ltsc2022",
                        "command": ["powershell.exe", "-Command", "Start-Sleep 3600"]}]}},
        "seed")

    def mismatch() -> list[str]:
        return [e["message"] for e in k.events("seed") if e["involvedObject"]["name"] == "build"
                and e["reason"] == "Failed"]
    messages = eventually(mismatch, timeout=60, every=0.3)
    assert any("does not match the host operating system" in m for m in messages), messages
    pod = k.json("get", "pod", "build", "-n", "seed")
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == \
        "CreateContainerError"
