"""winstor.aws.facts against a seeded moto backend, and its name parsing on its own."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from tenacity import wait_none

from winstor.aws import facts as awsfacts
from winstor.aws.facts import (
    expected_csi_proxy_version,
    find_tagged_volumes,
    fsx_windows_file_systems,
    instance_facts,
    make_session,
    parse_ami_name,
    parse_provider_id,
    volume_facts,
)
from winstor.sim.aws import AwsBackend, ClusterAws, ClusterSeed, NodeSeed, csi_volume_tags


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[AwsBackend, ClusterAws]]:
    with AwsBackend() as aws:
        cluster = aws.seed_cluster(ClusterSeed(
            "facts", "1.30",
            (NodeSeed("w19", "windows", "10.0.17763", "us-west-2a"),
             NodeSeed("w22", "windows", "10.0.20348", "us-west-2b"),
             NodeSeed("lin", "linux", None, "us-west-2a"),
             NodeSeed("vendor", "windows", "2022", "us-west-2a",
                      ami_name="Windows_Server-2022-English-Core-EKS_Optimized-1.30-2024.09.10",
                      ami_owner="111122223333")),
            ami_release="2024.07.10"))
        yield aws, cluster


@pytest.fixture
def session(seeded: tuple[AwsBackend, ClusterAws],
            monkeypatch: pytest.MonkeyPatch) -> boto3.Session:
    aws, _ = seeded
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    return make_session()


def test_endpoint_comes_from_the_environment(session: boto3.Session,
                                             seeded: tuple[AwsBackend, ClusterAws]) -> None:
    aws, _ = seeded
    assert session.client("ec2").meta.endpoint_url == aws.endpoint_url
    assert session.client("fsx").meta.endpoint_url == aws.endpoint_url
    assert session.region_name == "us-west-2"


def test_one_client_per_session_and_service(session: boto3.Session) -> None:
    # Making a client loads its service model; the facts ask for one per node and volume.
    ec2 = awsfacts.client(session, "ec2")
    assert awsfacts.client(session, "ec2") is ec2
    assert awsfacts.client(session, "fsx") is not ec2
    assert awsfacts.client(make_session(), "ec2") is not ec2


def test_make_session_without_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for key in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ValueError, match="region"):
        make_session()
    assert make_session(region="eu-west-1").region_name == "eu-west-1"


def test_instance_facts(session: boto3.Session, seeded: tuple[AwsBackend, ClusterAws]) -> None:
    _, cluster = seeded
    ids = {name: node.instance_id for name, node in cluster.nodes.items()}
    facts = instance_facts(session, [*ids.values(), "i-0123456789abcdef0"])
    assert set(facts) == set(ids.values())  # the unknown id is left out, no exception

    w19 = facts[ids["w19"]]
    assert w19.ami_name == "Windows_Server-2019-English-Core-EKS_Optimized-1.30-2024.07.10"
    assert w19.ami_owner == "801119661308" and w19.ami_owner_alias == "amazon"
    assert w19.is_eks_optimized_windows
    assert w19.windows_version == "2019"
    assert w19.k8s_version_from_ami == "1.30"
    assert w19.ami_release == date(2024, 7, 10)
    assert w19.zone == "us-west-2a" and w19.instance_type == "m5.large"
    assert w19.state == "running" and w19.platform == "windows"
    assert w19.tags["eks:cluster-name"] == "facts"

    assert facts[ids["w22"]].windows_version == "2022"
    assert facts[ids["w22"]].zone == "us-west-2b"

    lin = facts[ids["lin"]]
    assert not lin.is_eks_optimized_windows
    assert lin.windows_version is None and lin.k8s_version_from_ami == "1.30"

    vendor = facts[ids["vendor"]]  # right name, wrong owner: not Amazon's AMI
    assert vendor.windows_version == "2022"
    assert vendor.ami_owner == "111122223333"
    assert not vendor.is_eks_optimized_windows


def test_ami_that_cannot_be_described(session: boto3.Session,
                                      seeded: tuple[AwsBackend, ClusterAws]) -> None:
    _, cluster = seeded
    ec2 = session.client("ec2")
    ami = ec2.register_image(Name="short-lived", Architecture="x86_64",
                             RootDeviceName="/dev/sda1", VirtualizationType="hvm")["ImageId"]
    inst = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                             SubnetId=cluster.subnets["us-west-2a"])["Instances"][0]["InstanceId"]
    ec2.deregister_image(ImageId=ami)
    facts = instance_facts(session, [inst, cluster.nodes["w19"].instance_id])
    gone = facts[inst]
    assert gone.ami_id == ami
    assert gone.ami_name is None and gone.ami_owner is None
    assert not gone.is_eks_optimized_windows and gone.windows_version is None
    assert facts[cluster.nodes["w19"].instance_id].is_eks_optimized_windows
    ec2.terminate_instances(InstanceIds=[inst])


def test_volume_facts_and_tag_search(session: boto3.Session,
                                     seeded: tuple[AwsBackend, ClusterAws]) -> None:
    aws, cluster = seeded
    node = cluster.nodes["w19"].instance_id
    tags = {**csi_volume_tags("pvc-77", "ebs-windows-pv-claim", "windows"),
            "winstor.io/run": "facts-run", "app.kubernetes.io/managed-by": "winstor"}
    volume = aws.create_volume("us-west-2a", 1, "gp2", tags)
    other = aws.create_volume("us-west-2a", 1, "gp2", {"winstor.io/run": "someone-else"})
    aws.attach_volume(volume, node)
    try:
        facts = volume_facts(session, volume)
        assert facts is not None
        assert (facts.volume_type, facts.size_gib, facts.zone, facts.state) == \
            ("gp2", 1, "us-west-2a", "in-use")
        assert facts.tags == tags
        assert [(a.instance_id, a.device, a.state) for a in facts.attachments] == \
            [(node, "/dev/xvdaa", "attached")]

        assert set(find_tagged_volumes(session, "winstor.io/run")) == {volume, other}
        assert find_tagged_volumes(session, "winstor.io/run", "facts-run") == [volume]
        assert find_tagged_volumes(session, "winstor.io/run", "nobody") == []
    finally:
        aws.detach_volume(volume, node)
        aws.delete_volume(volume)
        aws.delete_volume(other)
    assert volume_facts(session, volume) is None


def test_fsx_facts(session: boto3.Session, seeded: tuple[AwsBackend, ClusterAws]) -> None:
    _, cluster = seeded
    assert cluster.fsx is not None
    systems = fsx_windows_file_systems(session)
    assert [s.file_system_id for s in systems] == [cluster.fsx.file_system_id]
    fs = systems[0]
    assert fs.type == "WINDOWS"
    assert fs.dns_name == cluster.fsx.dns_name
    assert fs.smb_server_names == (cluster.fsx.dns_name,)
    assert fs.lifecycle == "AVAILABLE"
    assert fs.self_managed_domain == "corp.example.com"
    assert fs.deployment_type == "SINGLE_AZ_2"
    assert fs.vpc_id == cluster.vpc_id


def test_fsx_without_lifecycle_is_unknown(session: boto3.Session,
                                          seeded: tuple[AwsBackend, ClusterAws]) -> None:
    """A file system moto made on its own has no Lifecycle: reported as None, not guessed."""
    _, cluster = seeded
    fsx = session.client("fsx")
    made = fsx.create_file_system(
        FileSystemType="WINDOWS", StorageCapacity=32, SubnetIds=[cluster.subnets["us-west-2b"]],
        WindowsConfiguration={"ActiveDirectoryId": "d-1234567890", "ThroughputCapacity": 8},
    )["FileSystem"]["FileSystemId"]
    lustre = fsx.create_file_system(FileSystemType="LUSTRE", StorageCapacity=1200,
                                    SubnetIds=[cluster.subnets["us-west-2b"]],
                                    )["FileSystem"]["FileSystemId"]
    try:
        systems = {s.file_system_id: s for s in fsx_windows_file_systems(session)}
        assert lustre not in systems
        assert systems[made].lifecycle is None
        assert systems[made].active_directory_id == "d-1234567890"
    finally:
        fsx.delete_file_system(FileSystemId=made)
        fsx.delete_file_system(FileSystemId=lustre)


# --------------------------------------------------------------------------- retries


def _stubbed(monkeypatch: pytest.MonkeyPatch) -> tuple[boto3.Session, Stubber]:
    monkeypatch.setattr(awsfacts, "RETRY_WAIT", wait_none())
    session = boto3.Session(region_name="us-west-2", aws_access_key_id="a",
                            aws_secret_access_key="b")
    client = session.client("ec2", endpoint_url="http://127.0.0.1:9")
    monkeypatch.setattr(awsfacts, "client", lambda _session, _service: client)
    return session, Stubber(client)


def test_throttling_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    session, stub = _stubbed(monkeypatch)
    stub.add_client_error("describe_volumes", "RequestLimitExceeded", http_status_code=503)
    stub.add_client_error("describe_volumes", "Throttling", http_status_code=400)
    stub.add_response("describe_volumes", {"Volumes": []})
    with stub:
        assert find_tagged_volumes(session, "k") == []
    stub.assert_no_pending_responses()


def test_retries_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    session, stub = _stubbed(monkeypatch)
    for _ in range(awsfacts.RETRY_ATTEMPTS):
        stub.add_client_error("describe_volumes", "InternalError", http_status_code=500)
    with stub, pytest.raises(ClientError, match="InternalError"):
        find_tagged_volumes(session, "k")


def test_client_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    session, stub = _stubbed(monkeypatch)
    stub.add_client_error("describe_volumes", "UnauthorizedOperation", http_status_code=403)
    with stub, pytest.raises(ClientError, match="UnauthorizedOperation"):
        find_tagged_volumes(session, "k")
    stub.assert_no_pending_responses()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(("provider_id", "expected"), [
    ("aws:///us-west-2a/i-0123", ("us-west-2a", "i-0123")),
    ("aws:///eu-central-1b/i-0abc1234def567890", ("eu-central-1b", "i-0abc1234def567890")),
    ("aws:///us-gov-west-1a/i-0abc", ("us-gov-west-1a", "i-0abc")),
    ("aws:///us-east-1-bos-1a/i-0abc", ("us-east-1-bos-1a", "i-0abc")),
])
def test_parse_provider_id(provider_id: str, expected: tuple[str, str]) -> None:
    assert parse_provider_id(provider_id) == expected


@pytest.mark.parametrize("bad", ["", "kind://docker/kind/node", "aws:///us-west-2a/",
                                 "azure:///subscriptions/x", "aws:///us-west-2a/vol-1"])
def test_parse_provider_id_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_provider_id(bad)


def test_parse_ami_names() -> None:
    win = parse_ami_name("Windows_Server-2022-English-Full-EKS_Optimized-1.31-2024.11.12")
    assert win is not None
    assert (win.family, win.windows_version, win.edition, win.k8s_version, win.release) == \
        ("eks-windows", "2022", "Full", "1.31", date(2024, 11, 12))
    w25 = parse_ami_name("Windows_Server-2025-English-Core-EKS_Optimized-1.34-2026.01.22")
    assert w25 is not None and w25.windows_version == "2025"
    odd = parse_ami_name("Windows_Server-2019-English-Core-EKS_Optimized-1.28-2025-01-01")
    assert odd is not None and odd.release == date(2025, 1, 1)  # the docs' own typo form

    for name, k8s in [("amazon-eks-node-1.29-v20240307", "1.29"),
                      ("amazon-eks-gpu-node-1.27-v20231116", "1.27"),
                      ("amazon-eks-node-al2023-x86_64-standard-1.30-v20240807", "1.30")]:
        linux = parse_ami_name(name)
        assert linux is not None and linux.family == "eks-linux" and linux.k8s_version == k8s

    base = parse_ami_name("Windows_Server-2019-English-Full-Base-2024.01.10")
    assert base is not None
    assert (base.family, base.windows_version, base.k8s_version) == ("windows", "2019", None)

    assert parse_ami_name("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server") is None
    assert parse_ami_name(None) is None


@pytest.mark.parametrize(("ami_name", "version"), [
    # FACTS.md rows
    ("Windows_Server-2019-English-Core-EKS_Optimized-1.24-2022.10.11", "1.1.1"),
    ("Windows_Server-2022-English-Core-EKS_Optimized-1.30-2024.07.10", "1.1.2"),
    ("Windows_Server-2019-English-Core-EKS_Optimized-1.31-2024.11.12", "1.1.3"),
    ("Windows_Server-2025-English-Core-EKS_Optimized-1.34-2026.01.22", "1.2.1"),
    # the edges of each range in the EKS user guide's tables
    ("Windows_Server-2019-English-Full-EKS_Optimized-1.27-2023.08.08", "1.1.1"),
    ("Windows_Server-2019-English-Core-EKS_Optimized-1.27-2023.08.17", "1.1.2"),
    ("Windows_Server-2022-English-Core-EKS_Optimized-1.29-2024.04.09", "1.1.2"),
    ("Windows_Server-2022-English-Full-EKS_Optimized-1.28-2024.08.13", "1.1.3"),
    ("Windows_Server-2019-English-Core-EKS_Optimized-1.32-2025.04.14", "1.1.3"),
    ("Windows_Server-2019-English-Core-EKS_Optimized-1.32-2025.05.17", "1.2.1"),
    # unknown
    ("Windows_Server-2019-English-Core-EKS_Optimized-1.23-2022.09.13", None),
    ("Windows_Server-2019-English-Core-EKS_Optimized-1.35-2026.06.10", None),
    ("Windows_Server-2019-English-Full-Base-2024.01.10", None),
    ("amazon-eks-node-1.29-v20240307", None),
    ("something else", None),
    (None, None),
])
def test_expected_csi_proxy_version(ami_name: str | None, version: str | None) -> None:
    assert expected_csi_proxy_version(ami_name) == version
