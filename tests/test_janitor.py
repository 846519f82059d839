"""`winstor janitor` against an embedded cluster and its moto: leftovers of interrupted
runs are planted the way a killed run leaves them (labelled namespaces with pods and a
claim whose EBS volume exists and is attached, a Released PV, the class a run created,
orphaned and attached EBS volumes), next to objects without winstor's marks. The janitor
must take exactly the selected run's leftovers; what it leaves is checked with the
official client and plain boto3, never with winstor's own code."""

from __future__ import annotations

import itertools
import os
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import ROOT
from inspect_cluster import api_client, ec2
from winstor.targets.embedded import SimProcess

MANAGED = {"app.kubernetes.io/managed-by": "winstor", "winstor.io/cluster": "sim-1"}
NS_TAG = "kubernetes.io/created-for/pvc/namespace"
# Device names for planted attachments, clear of the sim's own (/dev/xvdaa...); moto, unlike
# EC2, lets two volumes share one and then cannot detach the second.
DEVICES = (f"/dev/sd{c}" for c in itertools.cycle(string.ascii_lowercase[5:16]))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    """One cluster for the module: every test plants runs of its own ids."""
    proc = SimProcess(1, [])
    proc.start()
    yield proc
    proc.stop()


def janitor(sim: SimProcess | None, *args: str, aws: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull})
    if sim is not None and aws:
        full.update(sim.aws_env)
    full.update(env or {})
    cmd = [sys.executable, "-m", "winstor", "janitor", *args]
    if sim is not None:
        cmd.append(f"--kubeconfig={sim.kubeconfig}")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=full)


def eventually(check: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Planter:
    """Plants objects through the official client and plain boto3."""

    def __init__(self, sim: SimProcess) -> None:
        ac = api_client(sim)
        self.v1 = client.CoreV1Api(ac)
        self.storage = client.StorageV1Api(ac)
        self.ec2 = ec2(sim)
        nodes = self.v1.list_node(label_selector="kubernetes.io/os=linux").items
        self.instance = nodes[0].spec.provider_id.rsplit("/", 1)[-1]

    def namespace(self, name: str, run: str | None) -> None:
        labels = {**MANAGED, "winstor.io/run": run} if run else {"team": "someone-else"}
        self.v1.create_namespace({"metadata": {"name": name, "labels": labels}})

    def bound_claim(self, namespace: str, claim: str = "data", cls: str = "gp2") -> str:
        """A claim with a pod using it, so the sim provisions and attaches an EBS volume."""
        self.v1.create_namespaced_persistent_volume_claim(namespace, {
            "metadata": {"name": claim}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                "resources": {"requests": {"storage": "1Gi"}}}})
        self.v1.create_namespaced_pod(namespace, {
            "metadata": {"name": f"{claim}-user"}, "spec": {
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "containers": [{"name": "c", "image": "busybox",
                                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}})
        pv_name = eventually(lambda: self.v1.read_namespaced_persistent_volume_claim(
            claim, namespace).spec.volume_name, f"{namespace}/{claim} to bind")
        pv = self.v1.read_persistent_volume(pv_name)
        volume_id = pv.spec.aws_elastic_block_store.volume_id.rsplit("/", 1)[-1]
        eventually(lambda: self.volume(volume_id)["State"] == "in-use", f"{volume_id} attached")
        return volume_id

    def ebs(self, tags: dict[str, str], attach: bool = False) -> str:
        spec = [{"ResourceType": "volume", "Tags": [{"Key": k, "Value": v}
                                                    for k, v in tags.items()]}] if tags else []
        vol = self.ec2.create_volume(AvailabilityZone="us-west-2a", Size=1, VolumeType="gp2",
                                     TagSpecifications=spec)["VolumeId"]
        if attach:
            self.ec2.attach_volume(VolumeId=vol, InstanceId=self.instance, Device=next(DEVICES))
        return vol

    def volume(self, volume_id: str) -> dict:
        try:
            found = self.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
        except Exception as err:  # botocore ClientError: InvalidVolume.NotFound
            if "NotFound" in str(err):
                return {"State": "gone"}
            raise
        return found[0] if found else {"State": "gone"}

    def released_pv(self, name: str, namespace: str) -> None:
        """A Retain PV whose claim is gone: what a run leaves when its class retains."""
        self.v1.create_persistent_volume({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "gp2",
            "hostPath": {"path": f"/tmp/{name}"},
            "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                         "namespace": namespace, "name": "gone", "uid": "0000-gone"}}})
        eventually(lambda: self.v1.read_persistent_volume(name).status.phase == "Released",
                   f"{name} Released")

    def created_class(self, run: str) -> None:
        self.storage.create_storage_class({
            "metadata": {"name": "gp2-windows", "labels": {**MANAGED, "winstor.io/run": run},
                         "annotations": {"winstor.io/created-by-run": run}},
            "provisioner": "kubernetes.io/aws-ebs", "volumeBindingMode": "WaitForFirstConsumer",
            "parameters": {"type": "gp2", "fsType": "ntfs"}})

    def pending_claim(self, namespace: str, claim: str, cls: str) -> None:
        self.v1.create_namespaced_persistent_volume_claim(namespace, {
            "metadata": {"name": claim}, "spec": {
                "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                "resources": {"requests": {"storage": "1Gi"}}}})

    def exists(self, kind: str, name: str) -> bool:
        read = {"namespace": self.v1.read_namespace, "pv": self.v1.read_persistent_volume,
                "storageclass": self.storage.read_storage_class}[kind]
        try:
            read(name)
        except ApiException as err:
            if err.status == 404:
                return False
            raise
        return True


def plant_run(p: Planter, run: str) -> dict[str, Any]:
    """A run killed mid-way: its namespaces, pods, a bound claim with an attached EBS volume,
    a Released PV, an orphaned attached volume and one tagged with the run."""
    ns = f"winstor-{run}"
    p.namespace(ns, run)
    p.namespace(f"{ns}-host", run)
    bound = p.bound_claim(ns)
    p.released_pv(f"{ns}-released", ns)
    orphan = p.ebs({NS_TAG: ns, "kubernetes.io/created-for/pvc/name": "old-claim",
                    "ebs.csi.aws.com/cluster": "true"}, attach=True)
    tagged = p.ebs({"winstor.io/run": run})
    return {"namespaces": [ns, f"{ns}-host"], "pvs": [f"{ns}-released"],
            "volumes": [bound, orphan, tagged]}


def objects(stdout: str, verb: str) -> set[str]:
    """`kind/name` of every line of the janitor's output starting with `verb`."""
    return {line[len(verb):].split()[1].rstrip(":") for line in stdout.splitlines()
            if line.startswith(verb + " ")}


def test_run_removes_only_that_runs_leftovers_and_dry_run_lists_the_same(sim: SimProcess) -> None:
    p = Planter(sim)
    a = plant_run(p, "runa")
    b = plant_run(p, "runb")
    p.created_class("runa")
    p.pending_claim("winstor-runb", "windows", "gp2-windows")  # runb adopted runa's class
    # Nothing of these carries winstor's marks, however winstor-like some look.
    p.namespace("bystander", None)
    bystander_vol = p.bound_claim("bystander")
    p.storage.create_storage_class({"metadata": {"name": "bystander-sc"},
                                    "provisioner": "kubernetes.io/aws-ebs"})
    untagged = p.ebs({})
    misleading = p.ebs({"Name": "winstor-runa", "owner": "winstor-runa"})
    survivors = [bystander_vol, untagged, misleading, *b["volumes"]]

    dry = janitor(sim, "--run", "runa", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    listed = objects(dry.stdout, "would remove")
    bound_pv = p.v1.read_namespaced_persistent_volume_claim("data", "winstor-runa").spec.volume_name
    expected = {"namespace/winstor-runa", "namespace/winstor-runa-host",
                "pv/winstor-runa-released", f"pv/{bound_pv}",
                *(f"ebs/{v}" for v in a["volumes"])}
    assert listed == expected, dry.stdout
    assert "kept" in dry.stdout and "storageclass/gp2-windows: still used by winstor-runb/windows" \
        in dry.stdout
    assert "dry run, nothing was changed" in dry.stdout
    assert all(p.exists("namespace", n) for n in a["namespaces"])
    assert all(p.volume(v)["State"] == "in-use" for v in a["volumes"][:2])

    real = janitor(sim, "--run", "runa")
    assert real.returncode == 0, real.stdout + real.stderr
    assert objects(real.stdout, "removed") == expected, real.stdout
    assert f"detached from {p.instance}" in real.stdout
    assert real.stdout.splitlines()[-1].startswith("janitor: removed 7 objects")
    for n in a["namespaces"]:
        assert not p.exists("namespace", n)
    assert not p.exists("pv", "winstor-runa-released") and not p.exists("pv", bound_pv)
    assert [p.volume(v)["State"] for v in a["volumes"]] in (
        ["gone"] * 3, ["deleted"] * 3, ["gone", "gone", "deleted"])
    # runb's leftovers, the class runb still uses, and everything unmarked stay.
    assert all(p.exists("namespace", n) for n in [*b["namespaces"], "bystander"])
    assert p.exists("pv", "winstor-runb-released") and p.exists("storageclass", "gp2-windows")
    assert p.exists("storageclass", "bystander-sc")
    assert all(p.volume(v)["State"] in ("in-use", "available") for v in survivors)

    # runb goes; the class runa created stays until runa's turn, as nothing uses it then.
    assert janitor(sim, "--run", "runb").returncode == 0
    assert p.exists("storageclass", "gp2-windows")
    again = janitor(sim, "--run", "runa")
    assert again.returncode == 0 and objects(again.stdout, "removed") == \
        {"storageclass/gp2-windows"}, again.stdout
    assert all(p.volume(v)["State"] in ("gone", "deleted") for v in b["volumes"])
    assert p.exists("namespace", "bystander") and p.exists("storageclass", "bystander-sc")
    assert all(p.volume(v)["State"] in ("in-use", "available")
               for v in (bystander_vol, untagged, misleading))


def test_namespace_named_like_a_run_but_unlabelled_is_not_touched(sim: SimProcess) -> None:
    p = Planter(sim)
    p.namespace("winstor-runc", "runc")
    p.namespace("winstor-runc-host", None)  # the run's name, somebody else's namespace
    theirs = p.bound_claim("winstor-runc-host")
    result = janitor(sim, "--run", "runc")
    assert result.returncode == 0, result.stdout + result.stderr
    assert objects(result.stdout, "removed") == {"namespace/winstor-runc"}
    assert p.exists("namespace", "winstor-runc-host")
    assert p.volume(theirs)["State"] == "in-use"


def test_older_than_selects_runs_by_age(sim: SimProcess) -> None:
    p = Planter(sim)
    p.namespace("winstor-old1", "old1")
    old_vol = p.bound_claim("winstor-old1")
    gone_ns_vol = p.ebs({NS_TAG: "winstor-vanished-run"})  # its namespace exists nowhere
    time.sleep(6)  # creation times have one-second resolution: keep clear margins
    p.namespace("winstor-new1", "new1")
    new_vol = p.bound_claim("winstor-new1")
    young_orphan = p.ebs({NS_TAG: "winstor-vanished-too"})

    result = janitor(sim, "--older-than", "5s")
    assert result.returncode == 0, result.stdout + result.stderr
    removed = objects(result.stdout, "removed")
    assert {"namespace/winstor-old1", f"ebs/{old_vol}", f"ebs/{gone_ns_vol}"} <= removed
    assert not {"namespace/winstor-new1", f"ebs/{new_vol}", f"ebs/{young_orphan}"} & removed
    assert not p.exists("namespace", "winstor-old1") and p.exists("namespace", "winstor-new1")
    assert p.volume(old_vol)["State"] in ("gone", "deleted")
    assert p.volume(gone_ns_vol)["State"] in ("gone", "deleted")
    assert p.volume(new_vol)["State"] == "in-use"
    assert p.volume(young_orphan)["State"] == "available"
    assert janitor(sim, "--run", "new1").returncode == 0


def test_stuck_namespace_is_reported_with_its_finalizers(sim: SimProcess) -> None:
    p = Planter(sim)
    p.namespace("winstor-stuck", "stuck")
    p.v1.create_namespaced_persistent_volume_claim("winstor-stuck", {
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "no-such-class",
                 "resources": {"requests": {"storage": "1Gi"}}}})
    started = time.monotonic()
    result = janitor(sim, "--run", "stuck", "--timeout", "2", aws=False)
    assert time.monotonic() - started < 20
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT REMOVED" in result.stdout
    assert "namespace/winstor-stuck: still Terminating after 2s; held by " \
        "persistentvolumeclaims/held (finalizers: example.com/hold" in result.stdout
    assert "AWS skipped: no region configured" in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    p.v1.patch_namespaced_persistent_volume_claim("held", "winstor-stuck",
                                                  {"metadata": {"finalizers": None}})
    eventually(lambda: not p.exists("namespace", "winstor-stuck"), "winstor-stuck to go")


def _kubeconfig(tmp_path: Path, context: str = "sim-1") -> Path:
    """A kubeconfig whose server never answers: bad input must be caught before contact."""
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"apiVersion: v1\nkind: Config\ncurrent-context: {context}\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        f"contexts: [{{name: {context}, context: {{cluster: c, user: u}}}}]\n")
    return path


@pytest.mark.parametrize(("args", "message"), [
    (["--run", "a", "--older-than", "2h"], "--run and --older-than cannot be combined"),
    (["--older-than", "2h", "--all"], "--older-than and --all cannot be combined"),
    (["--older-than", "2 hours"], "not a duration"),
    (["--older-than", "0m"], "must be longer than zero"),
    ([], "say whose leftovers to remove"),
    (["--run", "a,b=c"], "not a run id"),
    (["--run", "a", "--timeout", "0"], "--timeout 0: must be a positive number"),
    (["--run", "a", "--context", "nope"], "unknown context 'nope' (the kubeconfig has: sim-1)"),
    (["--run", "a", "--aws-profile", "nosuch"], "--aws-profile nosuch: no such AWS profile"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    from winstor.cli.main import main

    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    code = main(["janitor", *args, f"--kubeconfig={_kubeconfig(tmp_path)}"])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert err.count("\n") == 1 and message in err, err
    assert out == ""


@pytest.mark.parametrize("content", [None, "clusters: [unclosed", "apiVersion: v1\n"])
def test_unusable_kubeconfig_is_one_line_and_exit_2(tmp_path: Path, content: str | None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from winstor.cli.main import main

    kubeconfig = tmp_path / "kubeconfig"
    if content is not None:
        kubeconfig.write_text(content)
    assert main(["janitor", "--run", "a", f"--kubeconfig={kubeconfig}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"kubeconfig {kubeconfig}" in err, err


def test_bad_input_from_the_command_line_has_no_traceback(tmp_path: Path) -> None:
    result = janitor(None, "--older-than", "soon", f"--kubeconfig={_kubeconfig(tmp_path)}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "winstor: error: --older-than 'soon': not a duration (use e.g. " \
        "45s, 30m, 2h, 1d, 1h30m)\n"


def test_unreachable_cluster_is_a_failure_not_a_hang(tmp_path: Path) -> None:
    started = time.monotonic()
    result = janitor(None, "--run", "a", f"--kubeconfig={_kubeconfig(tmp_path, 'dead')}")
    assert time.monotonic() - started < 30
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT REMOVED   dead" in result.stdout and "cannot be scanned" in result.stdout
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
