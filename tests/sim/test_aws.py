"""The sim's AWS side, checked from the outside with plain boto3, as the suite would see it."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from winstor.sim.aws import (
    EKS_WINDOWS_AMI_OWNER,
    AwsBackend,
    AwsError,
    ClusterAws,
    ClusterSeed,
    NodeSeed,
    csi_volume_tags,
    in_tree_volume_tags,
    windows_release,
)

SEED = ClusterSeed(
    name="alpha",
    k8s_version="1.29",
    nodes=(
        NodeSeed("win-a", "windows", "10.0.17763", "us-west-2a", "m5.large", "windows-ng"),
        NodeSeed("win-b", "windows", "2019", "us-west-2b", "m5.xlarge", "windows-ng"),
        NodeSeed("lin-a", "linux", None, "us-west-2a", "t3.medium", "linux-ng"),
    ),
    ami_release="2024.11.12",
)


@pytest.fixture(scope="module")
def backend() -> Iterator[AwsBackend]:
    with AwsBackend() as aws:
        yield aws


@pytest.fixture(scope="module")
def cluster(backend: AwsBackend) -> ClusterAws:
    return backend.seed_cluster(SEED)


def _session(aws: AwsBackend) -> boto3.Session:
    env = aws.env()
    return boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                         aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                         region_name=env["AWS_REGION"])


@pytest.fixture(scope="module")
def ec2(backend: AwsBackend):  # type: ignore[no-untyped-def]
    return _session(backend).client("ec2", endpoint_url=backend.endpoint_url)


def test_env_points_at_the_server(backend: AwsBackend, tmp_path: Path) -> None:
    env = backend.env()
    assert env["AWS_ENDPOINT_URL"] == backend.endpoint_url
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-west-2"
    path = backend.write_env_file(tmp_path / "aws.env")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    out = subprocess.run(
        ["bash", "-c", f"source {path} && printf '%s|%s' \"$AWS_ENDPOINT_URL\" \"$AWS_REGION\""],
        capture_output=True, text=True, check=True).stdout
    assert out == f"{backend.endpoint_url}|us-west-2"
    sts = _session(backend).client("sts", endpoint_url=backend.endpoint_url)
    assert sts.get_caller_identity()["Account"] == backend.account_id


def test_instances_and_amis(cluster: ClusterAws, ec2) -> None:  # type: ignore[no-untyped-def]
    ids = [n.instance_id for n in cluster.nodes.values()]
    found = {i["InstanceId"]: i
             for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
             for i in r["Instances"]}
    assert set(found) == set(ids)

    win_a = found[cluster.nodes["win-a"].instance_id]
    assert win_a["State"]["Name"] == "running"
    assert win_a["InstanceType"] == "m5.large"
    assert win_a["Placement"]["AvailabilityZone"] == "us-west-2a"
    assert win_a["SubnetId"] == cluster.subnets["us-west-2a"]
    assert win_a.get("Platform") == "windows"
    tags = {t["Key"]: t["Value"] for t in win_a["Tags"]}
    assert tags["eks:cluster-name"] == "alpha"
    assert tags["eks:nodegroup-name"] == "windows-ng"
    assert tags["kubernetes.io/cluster/alpha"] == "owned"
    assert tags["Name"]
    assert found[cluster.nodes["win-b"].instance_id]["Placement"]["AvailabilityZone"] == \
        "us-west-2b"

    win_name = "Windows_Server-2019-English-Core-EKS_Optimized-1.29-2024.11.12"
    assert cluster.nodes["win-a"].ami_name == win_name
    assert cluster.nodes["win-a"].ami_id == cluster.nodes["win-b"].ami_id  # one AMI, shared
    image = ec2.describe_images(ImageIds=[cluster.nodes["win-a"].ami_id])["Images"][0]
    assert image["Name"] == win_name
    assert image["OwnerId"] == EKS_WINDOWS_AMI_OWNER
    assert image.get("ImageOwnerAlias") == "amazon"
    assert image["Public"] is True
    assert image["CreationDate"].startswith("2024-11-12")
    linux = ec2.describe_images(ImageIds=[cluster.nodes["lin-a"].ami_id])["Images"][0]
    assert linux["Name"] == "amazon-eks-node-1.29-v20241112"
    # The way users look the AMI up works too.
    hits = ec2.describe_images(Owners=["amazon"], Filters=[
        {"Name": "name", "Values": ["Windows_Server-2019-English-Core-EKS_Optimized-1.29-*"]}])
    assert [i["ImageId"] for i in hits["Images"]] == [image["ImageId"]]

    assert cluster.nodes["win-a"].provider_id == \
        f"aws:///us-west-2a/{cluster.nodes['win-a'].instance_id}"
    assert cluster.nodes["win-a"].private_dns_name.endswith(".compute.internal")


def test_fsx_is_a_windows_file_system(backend: AwsBackend, cluster: ClusterAws) -> None:
    assert cluster.fsx is not None
    fsx = _session(backend).client("fsx", endpoint_url=backend.endpoint_url)
    systems = fsx.describe_file_systems()["FileSystems"]
    assert [s["FileSystemId"] for s in systems] == [cluster.fsx.file_system_id]
    fs = systems[0]
    assert fs["FileSystemType"] == "WINDOWS"
    assert fs["DNSName"] == cluster.fsx.dns_name
    assert fs["DNSName"].startswith("amznfsx") and fs["DNSName"].endswith(".corp.example.com")
    assert fs["Lifecycle"] == "AVAILABLE"
    assert fs["VpcId"] == cluster.vpc_id
    ad = fs["WindowsConfiguration"]["SelfManagedActiveDirectoryConfiguration"]
    assert ad["DomainName"] == "corp.example.com"
    assert "Password" not in ad
    assert cluster.fsx.share_remote_path == f"\\\\{fs['DNSName']}\\share"

    backend.set_fsx_lifecycle(cluster.fsx.file_system_id, "MISCONFIGURED")
    try:
        assert fsx.describe_file_systems()["FileSystems"][0]["Lifecycle"] == "MISCONFIGURED"
    finally:
        backend.set_fsx_lifecycle(cluster.fsx.file_system_id, "AVAILABLE")


def test_volume_lifecycle_and_tags(backend: AwsBackend, cluster: ClusterAws,
                                   ec2) -> None:  # type: ignore[no-untyped-def]
    run_tags = {"winstor.io/run": "run-1", "app.kubernetes.io/managed-by": "winstor"}
    tags = {**csi_volume_tags("pvc-1234", "ebs-windows-pv-claim", "windows"), **run_tags}
    volume_id = backend.create_volume("us-west-2a", 1, "gp2", tags)
    described = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert {t["Key"]: t["Value"] for t in described["Tags"]} == {
        "CSIVolumeName": "pvc-1234",
        "ebs.csi.aws.com/cluster": "true",
        "kubernetes.io/created-for/pvc/name": "ebs-windows-pv-claim",
        "kubernetes.io/created-for/pvc/namespace": "windows",
        "kubernetes.io/created-for/pv/name": "pvc-1234",
        "winstor.io/run": "run-1",
        "app.kubernetes.io/managed-by": "winstor",
    }
    assert described["VolumeType"] == "gp2" and described["Size"] == 1
    assert described["State"] == "available"

    win_a, win_b = cluster.nodes["win-a"].instance_id, cluster.nodes["win-b"].instance_id
    assert backend.next_device_name(win_a) == "/dev/xvdaa"
    device = backend.attach_volume(volume_id, win_a)
    assert device == "/dev/xvdaa"
    attachment = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Attachments"][0]
    assert (attachment["InstanceId"], attachment["Device"]) == (win_a, "/dev/xvdaa")
    assert backend.next_device_name(win_a) == "/dev/xvdab"
    assert backend.next_device_name(win_a, style="in-tree") == "/dev/xvdba"
    # What the attach path reads from moto's model is what DescribeInstances answers.
    for instance_id in (win_a, win_b):
        seen = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"][0]
        assert backend._instance(instance_id, "attach_volume") == (
            seen["Placement"]["AvailabilityZone"],
            {m["DeviceName"] for m in seen.get("BlockDeviceMappings") or []}
            | {seen["RootDeviceName"]})
    assert "/dev/xvdaa" in backend._instance(win_a, "attach_volume")[1]
    with pytest.raises(AwsError) as unknown:
        backend.attach_volume(volume_id, "i-0123456789abcdef0")
    assert unknown.value.code == "InvalidInstanceID.NotFound"

    with pytest.raises(AwsError) as in_use:
        backend.attach_volume(volume_id, win_a)
    assert in_use.value.code == "VolumeInUse"
    with pytest.raises(AwsError) as wrong_zone:
        backend.attach_volume(volume_id, win_b)
    assert wrong_zone.value.code == "InvalidVolume.ZoneMismatch"
    with pytest.raises(AwsError) as busy:
        backend.delete_volume(volume_id)
    assert busy.value.code == "VolumeInUse"

    backend.detach_volume(volume_id, win_a)
    state = backend.volume_state(volume_id)
    assert state is not None and state["state"] == "available" and state["attachments"] == []
    assert state["tags"]["winstor.io/run"] == "run-1"
    with pytest.raises(AwsError) as detached:
        backend.detach_volume(volume_id, win_a)
    assert detached.value.code == "IncorrectState"

    backend.delete_volume(volume_id)
    assert backend.volume_state(volume_id) is None
    with pytest.raises(ClientError):
        ec2.describe_volumes(VolumeIds=[volume_id])


def test_explicit_device_in_use_is_refused(backend: AwsBackend, cluster: ClusterAws) -> None:
    node = cluster.nodes["lin-a"].instance_id
    first = backend.create_volume("us-west-2a", 2, "gp3", {"winstor.io/run": "dev"})
    second = backend.create_volume("us-west-2a", 2, "gp3", {"winstor.io/run": "dev"})
    assert backend.attach_volume(first, node, "/dev/xvdba") == "/dev/xvdba"
    with pytest.raises(AwsError) as taken:
        backend.attach_volume(second, node, "/dev/xvdba")
    assert taken.value.code == "InvalidParameterValue"
    backend.detach_volume(first, node)
    for volume in (first, second):
        backend.delete_volume(volume)


def test_injected_fault(backend: AwsBackend, cluster: ClusterAws) -> None:
    volume = backend.create_volume("us-west-2b", 1, "gp2", {})
    backend.inject_fault("attach_volume", "InternalError", "We encountered an internal error.")
    node = cluster.nodes["win-b"].instance_id
    with pytest.raises(AwsError, match="InternalError"):
        backend.attach_volume(volume, node)
    backend.attach_volume(volume, node)  # only the next call failed
    backend.detach_volume(volume, node)
    backend.delete_volume(volume)


def test_unknown_volume_is_none(backend: AwsBackend) -> None:
    assert backend.volume_state("vol-0123456789abcdef0") is None


def test_two_backends_side_by_side(backend: AwsBackend, cluster: ClusterAws) -> None:
    with AwsBackend(region="us-east-1") as other:
        assert other.port != backend.port
        assert other.account_id != backend.account_id
        seeded = other.seed_cluster(ClusterSeed(
            "beta", "1.31", (NodeSeed("w", "windows", "2022", "us-east-1a"),), fsx=False))
        other_ec2 = _session(other).client("ec2", endpoint_url=other.endpoint_url)
        mine = _session(backend).client("ec2", endpoint_url=backend.endpoint_url)
        theirs = [i["InstanceId"]
                  for r in other_ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        assert theirs == [seeded.nodes["w"].instance_id]
        ours = {i["InstanceId"]
                for r in mine.describe_instances()["Reservations"] for i in r["Instances"]}
        assert ours == {n.instance_id for n in cluster.nodes.values()}
        assert seeded.nodes["w"].ami_name == \
            "Windows_Server-2022-English-Core-EKS_Optimized-1.31-2025.11.14"
        assert _session(other).client("fsx", endpoint_url=other.endpoint_url) \
            .describe_file_systems()["FileSystems"] == []


def test_background_start() -> None:
    aws = AwsBackend().start(wait=False)
    try:
        assert aws.port > 0  # known as soon as start() returns
        aws.wait_ready()
        assert aws.startup_seconds["ec2_backend"] >= 0
        aws.warm_clients()  # what the sim does once it is ready
        assert aws.startup_seconds["first_ec2_call"] >= 0
        assert aws.env()["AWS_ENDPOINT_URL"] == aws.endpoint_url
    finally:
        aws.stop()
    aws.stop()  # idempotent


def test_in_tree_tags() -> None:
    tags = in_tree_volume_tags("alpha", "pvc-1", "claim", "windows")
    assert tags == {
        "kubernetes.io/created-for/pvc/namespace": "windows",
        "kubernetes.io/created-for/pvc/name": "claim",
        "kubernetes.io/created-for/pv/name": "pvc-1",
        "Name": "alpha-dynamic-pvc-1",
        "kubernetes.io/cluster/alpha": "owned",
    }
    assert in_tree_volume_tags("alpha", "pvc-1", "claim", "windows",
                               legacy_cluster_tag=True)["KubernetesCluster"] == "alpha"
    assert len(in_tree_volume_tags("c" * 300, "pvc-" + "x" * 40, "a", "b")["Name"]) == 255


def test_csi_tags_without_metadata_and_with_cluster_id() -> None:
    assert csi_volume_tags("pvc-9", extra_create_metadata=False) == {
        "CSIVolumeName": "pvc-9", "ebs.csi.aws.com/cluster": "true"}
    tags = csi_volume_tags("pvc-9", "c", "ns", k8s_tag_cluster_id="alpha")
    assert tags["Name"] == "alpha-dynamic-pvc-9"
    assert tags["KubernetesCluster"] == "alpha"
    assert tags["kubernetes.io/cluster/alpha"] == "owned"


@pytest.mark.parametrize(("given", "expected"), [
    (None, "2019"), ("2019", "2019"), ("10.0.17763", "2019"), ("10.0.20348", "2022"),
    ("10.0.26100.1234", "2025"),
])
def test_windows_release(given: str | None, expected: str) -> None:
    assert windows_release(given) == expected


def test_windows_release_unknown() -> None:
    with pytest.raises(ValueError):
        windows_release("10.0.14393")
