"""The seed's walkthrough with a real kubectl nobody here wrote: get, describe,
apply twice, exec, and data surviving `kubectl delete pod`. Also: the EBS
volume behind the claim, seen with plain boto3."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import eventually
from inspect_cluster import ec2

KUBECTL = shutil.which("kubectl")
SEED = Path(__file__).parent / "data" / "seed.yaml"
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


def kubectl(sim, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, f"--kubeconfig={sim.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_get_nodes_wide_and_describe_default_class(shared_sim) -> None:
    out = kubectl(shared_sim, "get", "nodes", "-o", "wide").stdout
    assert "Windows Server 2019 Datacenter" in out and "INTERNAL-IP" in out
    assert out.count("Ready") >= 3
    desc = kubectl(shared_sim, "describe", "storageclass", "gp2").stdout
    assert "IsDefaultClass:        Yes" in desc
    assert "Provisioner:           kubernetes.io/aws-ebs" in desc
    assert "Parameters:            fsType=ext4,type=gp2" in desc
    assert "VolumeBindingMode:     WaitForFirstConsumer" in desc


def test_seed_walkthrough(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1, [])
    # The class and the claim first: with no consumer the claim must stay Pending.
    docs = SEED.read_text().split("\n---\n")
    storage_only = tmp_path / "storage.yaml"
    storage_only.write_text("\n---\n".join(d for d in docs if "kind: Deployment" not in d))
    kubectl(sim, "apply", "-f", str(storage_only))
    eventually(lambda: "WaitForFirstConsumer" in kubectl(
        sim, "get", "events", "-n", "windows").stdout)
    assert kubectl(sim, "get", "pvc", "-n", "windows", "ebs-windows-pv-claim",
                   "-o", "jsonpath={.status.phase}").stdout == "Pending"
    first = kubectl(sim, "apply", "-f", str(SEED)).stdout
    assert "deployment.apps/windows-server-ltsc2019 created" in first
    eventually(lambda: kubectl(sim, "get", "pvc", "-n", "windows", "ebs-windows-pv-claim",
                               "-o", "jsonpath={.status.phase}").stdout == "Bound")
    assert "ProvisioningSucceeded" in kubectl(sim, "get", "events", "-n", "windows").stdout
    second = kubectl(sim, "apply", "-f", str(SEED)).stdout
    assert "unchanged" in second and "configured" not in second
    dep = kubectl(sim, "get", "deployment", "-n", "windows", "windows-server-ltsc2019",
                  "-o", "yaml").stdout
    for kept in ("containerPort: 80", "mountPath: C:\\data", "claimName: ebs-windows-pv-claim",
                 "node.kubernetes.io/windows-build: 10.0.17763", "track: stable"):
        assert kept in dep, kept

    def running_pod() -> str:
        out = kubectl(sim, "get", "pods", "-n", "windows", "--field-selector",
                      "status.phase=Running", "-o", "name").stdout.split()
        return out[0].split("/", 1)[1] if len(out) == 1 else ""

    pod = eventually(running_pod)
    ls = kubectl(sim, "exec", "-n", "windows", pod, "--", "powershell", "-Command", "ls").stdout
    assert "data" in ls.split() and "Directory: C:\\" in ls
    kubectl(sim, "exec", "-n", "windows", pod, "--", "powershell", "-Command",
            "Set-Content -Path C:\\data\\hello.txt -Value 'kept across pods'")
    failing = kubectl(sim, "exec", "-n", "windows", pod, "--", "powershell", "-Command",
                      "Get-Content C:\\nothing.txt", check=False)
    assert failing.returncode == 1 and "Cannot find path" in failing.stdout + failing.stderr
    kubectl(sim, "delete", "pod", "-n", "windows", pod)
    replacement = eventually(lambda: (p := running_pod()) and p != pod and p)
    back = kubectl(sim, "exec", "-n", "windows", replacement, "--", "powershell", "-Command",
                   "Get-Content C:\\data\\hello.txt").stdout
    assert back.strip() == "kept across pods"

    # The EBS volume behind the PV, with plain boto3.
    pv = kubectl(sim, "get", "pvc", "-n", "windows", "ebs-windows-pv-claim",
                 "-o", "jsonpath={.spec.volumeName}").stdout
    volume_ref = kubectl(sim, "get", "pv", pv, "-o",
                         "jsonpath={.spec.awsElasticBlockStore.volumeID}").stdout
    volume_id = volume_ref.rsplit("/", 1)[-1]
    node = kubectl(sim, "get", "pod", "-n", "windows", replacement, "-o",
                   "jsonpath={.spec.nodeName}").stdout
    instance = kubectl(sim, "get", "node", node, "-o",
                       "jsonpath={.spec.providerID}").stdout.rsplit("/", 1)[-1]
    vol = ec2(sim).describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    tags = {t["Key"]: t["Value"] for t in vol["Tags"]}
    assert (vol["VolumeType"], vol["Size"]) == ("gp2", 1)
    assert tags["CSIVolumeName"] == pv and tags["ebs.csi.aws.com/cluster"] == "true"
    assert tags["kubernetes.io/created-for/pvc/name"] == "ebs-windows-pv-claim"
    assert [(a["InstanceId"], a["State"]) for a in vol["Attachments"]] == [(instance, "attached")]

    kubectl(sim, "delete", "-f", str(SEED), "--ignore-not-found")

    def volume_gone() -> bool:
        vols = ec2(sim).describe_volumes(Filters=[{"Name": "volume-id",
                                                   "Values": [volume_id]}])["Volumes"]
        return not vols
    eventually(volume_gone)
