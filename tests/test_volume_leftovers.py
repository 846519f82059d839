"""Teardown removes every PV and EBS volume the run's claims produced, whatever the reclaim
policy, and says so - checked here from outside, in the API and in EC2 (moto).

Two ways a volume outlives its claim: a class of reclaim policy Retain (here the cluster's
own `gp2-windows`, which winstor adopts as it finds it), and a provisioner whose DeleteVolume
does not delete (the sim's `volumes-retained`). The Retain run is the one an earlier
teardown failed: under -n 2, next to a cluster whose attaches fail, where the provisioner is
still deleting volumes when teardown looks - it must wait for the provisioner's verdict,
never race it (it used to wait out the 60 s PV timeout and leave a PV).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kubernetes import client

from helpers import eventually, run_suite
from inspect_cluster import api_client, ec2, leftovers

RETAIN_CLASS = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "gp2-windows"}, "provisioner": "kubernetes.io/aws-ebs",
                "parameters": {"type": "gp2", "fsType": "ntfs"}, "reclaimPolicy": "Retain",
                "volumeBindingMode": "WaitForFirstConsumer"}


def _volumes(sim) -> list[str]:
    """Every EBS volume in moto that is not the cluster's own (kube-system's)."""
    out = []
    for vol in ec2(sim).describe_volumes()["Volumes"]:
        tags = {t["Key"]: t["Value"] for t in vol.get("Tags") or []}
        ns = tags.get("kubernetes.io/created-for/pvc/namespace")
        if ns and ns != "kube-system" and vol["State"] not in ("deleting", "deleted"):
            out.append(f"{vol['VolumeId']} {ns}/{tags.get('kubernetes.io/created-for/pvc/name')} "
                       f"{vol['State']}")
    return out


def _notes(tmp_path: Path, cluster: str) -> dict[str, list[str]]:
    doc = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    return next(c for c in doc["clusters"] if c["name"] == cluster)["notes"]


def test_a_retain_class_leaves_nothing_next_to_a_cluster_whose_attaches_fail(
        sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(2, ["2:ebs-attach-fails"])
    for context in sim.contexts:
        client.StorageV1Api(api_client(sim, context)).create_storage_class(RETAIN_CLASS)
    before = _volumes(sim)
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1",
                        "--context", "sim-2", "--timeouts", "sim", "-n", "2"], tmp_path,
                       env=sim.aws_env)
    tail = result.output[-4000:]
    # The class keeps the volume: EBS-CLEANUP-01 says so; winstor removes it afterwards.
    assert result.outcomes["sim-1:EBS-CLEANUP-01"] == "failed", tail
    # Detached or still detaching when the check looks: either way it is still there.
    assert re.search(r"still exists \((available|in-use)\) after its claim",
                     result.messages["sim-1:EBS-CLEANUP-01"]), result.messages
    for context in sim.contexts:
        assert leftovers(sim, context) == [], tail
        notes = _notes(tmp_path, context)
        assert notes["leftovers"] == [], notes
    assert _volumes(sim) == before == [], tail
    removed = _notes(tmp_path, "sim-1")["notes"]
    assert any("outlived it (Released, reclaim Retain): deleted" in n for n in removed), removed
    assert any("EBS volume" in n and "deleted" in n for n in removed), removed
    assert any("is left (checked in the API and EC2)" in n for n in removed), removed
    # Never raced the provisioner into its timeout (the sim profile's pv_delete is 60 s).
    assert "timed out" not in result.output, tail


def test_a_deletevolume_that_does_not_delete_leaves_nothing(sim_factory,
                                                            tmp_path: Path) -> None:
    sim = sim_factory(1, ["volumes-retained"])
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1",
                        "--timeouts", "sim"], tmp_path, env=sim.aws_env)
    tail = result.output[-4000:]
    assert result.outcomes["sim-1:EBS-CLEANUP-01"] == "failed", tail
    assert leftovers(sim) == [] and _volumes(sim) == [], tail
    notes = _notes(tmp_path, "sim-1")
    assert notes["leftovers"] == [], notes
    assert any("outlived its persistent volume (available): deleted" in n
               for n in notes["notes"]), notes


@pytest.mark.parametrize("scenario", [[], ["volumes-retained"]], ids=["healthy", "retained"])
def test_the_safety_net_never_touches_another_clusters_volumes(sim_factory, tmp_path: Path,
                                                               scenario: list[str]) -> None:
    """The run's namespaces have the same names on every cluster of the run, and two clusters
    may share an AWS account: the net finds volumes by their PVs' names, not by namespace.
    A claim of the run's namespace name made on a cluster the run does not check keeps its
    volume."""
    sim = sim_factory(2, scenario)
    run_id = "20990101-000000-abcd"
    other = client.CoreV1Api(api_client(sim, "sim-2"))
    ns = f"winstor-{run_id}"
    other.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    client.StorageV1Api(api_client(sim, "sim-2")).create_storage_class(
        {**RETAIN_CLASS, "metadata": {"name": "ebs-now"}, "reclaimPolicy": "Delete",
         "volumeBindingMode": "Immediate"})
    other.create_namespaced_persistent_volume_claim(ns, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="ebs-windows-pv-claim"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name="ebs-now",
            volume_mode="Filesystem",
            resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}))))
    eventually(lambda: other.read_namespaced_persistent_volume_claim(
        "ebs-windows-pv-claim", ns).status.phase == "Bound", timeout=30)
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1",
                        "--run-id", run_id, "--timeouts", "sim", "-k", "EBS"], tmp_path,
                       env=sim.aws_env)
    tail = result.output[-4000:]
    kept = other.read_namespaced_persistent_volume_claim("ebs-windows-pv-claim", ns)
    assert kept.status.phase == "Bound", kept.status
    pv = other.read_persistent_volume(kept.spec.volume_name)
    theirs = pv.spec.csi.volume_handle if pv.spec.csi else \
        pv.spec.aws_elastic_block_store.volume_id.rsplit("/", 1)[-1]
    assert [v.split()[0] for v in _volumes(sim)] == [theirs], (_volumes(sim), tail)
    # sim-1 has nothing of the run left (moto is shared: sim-2's volume is not sim-1's)
    assert [x for x in leftovers(sim, "sim-1") if theirs not in x] == [], tail
