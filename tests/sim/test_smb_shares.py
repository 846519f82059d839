"""The embedded cluster's SMB shares of each kind and the SMB CSI driver model.

AWS: the shares are seeded in moto and read back with plain boto3 over the endpoint,
as the suite reads them - FSx for ONTAP SVMs and File Gateway shares are moto-style
additions (`winstor.sim.fsx_ontap`, `winstor.sim.storagegateway`), so their calls and
errors are checked here against the API's shapes. Nodes: names, logons and shares fail
with the Windows system errors a node reports; the driver's volume ids and its
PowerShell error text follow csi-driver-smb and csi-proxy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from winstor.aws import shares as awsshares
from winstor.sim import fsx_ontap, storagegateway
from winstor.sim.aws import AwsBackend, ClusterSeed, NodeSeed
from winstor.sim.controllers.smbcsi import SmbVolume, cifs_output, powershell_error
from winstor.sim.nodes.smb import ActiveDirectory, SmbError, SmbNetwork, SmbServer, split_unc
from winstor.sim.nodes.windows import SmbShare
from winstor.sim.shares import seed_shares

SEED = ClusterSeed(name="alpha", k8s_version="1.31", nodes=(
    NodeSeed("win-a", "windows", "2019", "us-west-2a"),))


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[AwsBackend, boto3.Session, object]]:
    backend = AwsBackend().start()
    cluster = backend.seed_cluster(SEED)
    shares = seed_shares(backend, cluster, 1, set())
    env = backend.env()
    session = boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                            region_name=backend.region)
    yield backend, session, shares
    backend.stop()


def _client(backend: AwsBackend, session: boto3.Session, service: str) -> object:
    return session.client(service, endpoint_url=backend.endpoint_url)


def test_one_share_of_each_kind_is_found_by_its_server(seeded, monkeypatch) -> None:
    backend, session, shares = seeded
    monkeypatch.setenv("AWS_ENDPOINT_URL", backend.endpoint_url)  # what the suite's clients use
    kinds = {}
    for share in shares.shares:
        found, _ = awsshares.find(session, share.server, share.share)
        assert [f.kind for f in found] == [share.kind], share
        kinds[share.kind] = found[0].facts
    assert kinds["fsx-windows"]["type"] == "WINDOWS"
    assert kinds["fsx-windows"]["self_managed_domain"] == "corp.example.com"
    ontap = kinds["fsx-ontap"]
    assert ontap["lifecycle"] == "CREATED" and ontap["file_system_type"] == "ONTAP"
    assert ontap["smb_dns_name"] == "WINSTORSVM1.CORP.EXAMPLE.COM"
    gateway = kinds["file-gateway"]
    assert gateway["authentication"] == "GuestAccess" and gateway["guest_password_set"] is True
    assert gateway["status"] == "AVAILABLE" and gateway["gateway_state"] == "RUNNING"
    # A server nothing serves is no share of any kind.
    assert awsshares.find(session, "nowhere.corp.example.com", "x")[0] == []


def test_a_fleet_account_costs_a_check_a_few_calls(monkeypatch) -> None:
    """An account with many gateways whose shares carry the same name (a fleet: one gateway
    per cluster) is read once per check, ten file shares per DescribeSMBFileShares (the
    API's limit, which the sim enforces), and only gateways that hold a share of the wanted
    name are described - where asking afresh per share described every gateway for each."""
    backend = AwsBackend().start()
    try:
        cluster = backend.seed_cluster(SEED)
        shares = seed_shares(backend, cluster, 1, set())
        sgw = storagegateway.storagegateway_backends[backend.account_id][backend.region]
        for i in range(11):  # eleven more clusters' gateways, each with two SMB shares
            gateway = sgw.create_gateway(f"other-{i}", f"10.9.0.{i + 10}")
            for name in ("winstor-fgw", f"other-{i}"):
                sgw.create_smb_file_share(gateway_arn=gateway.arn, bucket=f"b-{i}",
                                          role="arn:aws:iam::1:role/r", name=name)
        monkeypatch.setenv("AWS_ENDPOINT_URL", backend.endpoint_url)
        env = backend.env()
        session = boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                                region_name=backend.region)
        calls: list[str] = []
        session.events.register("before-call.*.*",
                                lambda model, **_: calls.append(model.name))
        account = awsshares.Account(session)
        for share in shares.shares:
            found, _ = account.find(share.server, share.share)
            assert [f.kind for f in found] == [share.kind], share
        assert sorted(calls) == sorted(
            ["DescribeFileSystems", "DescribeStorageVirtualMachines", "ListFileShares"]
            + ["DescribeSMBFileShares"] * 3  # 23 SMB shares, ten at a time
            + ["DescribeGatewayInformation"] * 12  # the gateways with a "winstor-fgw"
            + ["DescribeSMBSettings"])  # the one whose address is the share's server
        # A gateway's name serves as its server too.
        assert [f.kind for f in account.find("other-3", "other-3")[0]] == ["file-gateway"]
        with pytest.raises(ClientError) as err:
            _client(backend, session, "storagegateway").describe_smb_file_shares(
                FileShareARNList=list(sgw.file_shares)[:11])
        assert err.value.response["Error"]["Code"] == "ValidationException"
    finally:
        backend.stop()


def test_svm_calls_and_errors_have_the_fsx_shapes(seeded) -> None:
    backend, session, shares = seeded
    fsx = _client(backend, session, "fsx")
    svms = fsx.describe_storage_virtual_machines()["StorageVirtualMachines"]
    assert len(svms) == 1
    svm = svms[0]
    assert svm["StorageVirtualMachineId"].startswith("svm-") and \
        len(svm["StorageVirtualMachineId"]) == 21
    assert set(svm["Endpoints"]) == {"Iscsi", "Management", "Nfs", "Smb"}
    assert shares.ad_password not in json.dumps(svm, default=str)  # never returned
    by_fs = fsx.describe_storage_virtual_machines(
        Filters=[{"Name": "file-system-id", "Values": [svm["FileSystemId"]]}])
    assert len(by_fs["StorageVirtualMachines"]) == 1
    with pytest.raises(ClientError) as err:
        fsx.describe_storage_virtual_machines(StorageVirtualMachineIds=["svm-0123456789abcdef0"])
    assert err.value.response["Error"]["Code"] == "StorageVirtualMachineNotFound"
    # Not joined: no SMB endpoint (what SHARE-AWS-01 reports when nothing serves a share).
    unjoined = fsx_ontap.svm_backends[backend.account_id][backend.region] \
        .create_storage_virtual_machine(file_system_id=svm["FileSystemId"], name="bare",
                                        active_directory=None)
    described = fsx.describe_storage_virtual_machines(
        StorageVirtualMachineIds=[unjoined.svm_id])["StorageVirtualMachines"][0]
    assert "Smb" not in described["Endpoints"] and "ActiveDirectoryConfiguration" not in described
    fsx.delete_storage_virtual_machine(StorageVirtualMachineId=unjoined.svm_id)


def test_storage_gateway_calls_and_errors(seeded) -> None:
    backend, session, shares = seeded
    sgw = _client(backend, session, "storagegateway")
    gateways = sgw.list_gateways()["Gateways"]
    assert [g["GatewayType"] for g in gateways] == ["FILE_S3"]
    arn = gateways[0]["GatewayARN"]
    info = sgw.describe_gateway_information(GatewayARN=arn)
    fgw = next(s for s in shares.shares if s.kind == "file-gateway")
    assert info["GatewayNetworkInterfaces"][0]["Ipv4Address"] == fgw.address
    listed = sgw.list_file_shares(GatewayARN=arn)["FileShareInfoList"]
    assert [s["FileShareType"] for s in listed] == ["SMB"]
    described = sgw.describe_smb_file_shares(FileShareARNList=[listed[0]["FileShareARN"]])
    assert described["SMBFileShareInfoList"][0]["FileShareName"] == fgw.share
    settings = sgw.describe_smb_settings(GatewayARN=arn)
    assert settings["SMBGuestPasswordSet"] is True and fgw.password not in json.dumps(settings)
    with pytest.raises(ClientError) as err:
        sgw.describe_gateway_information(GatewayARN=arn + "0")
    assert err.value.response["Error"]["Code"] == "InvalidGatewayRequestException"
    body = json.loads(storagegateway.models.InvalidGatewayRequest(
        "GatewayNotFound", "The specified gateway was not found.").description)
    assert body["error"]["errorCode"] == "GatewayNotFound"


def test_credentials_are_in_secrets_manager(seeded, monkeypatch) -> None:
    backend, session, shares = seeded
    monkeypatch.setenv("AWS_ENDPOINT_URL", backend.endpoint_url)
    for share in shares.shares:
        values = awsshares.secret_credentials(session, share.secret_name)
        assert values == {"username": share.username, "password": share.password,
                          "domain": share.domain}


def test_file_gateway_not_joined_is_what_aws_shows() -> None:
    backend = AwsBackend().start()
    try:
        cluster = backend.seed_cluster(SEED)
        shares = seed_shares(backend, cluster, 1, {"file-gateway-not-joined"})
        fgw = next(s for s in shares.shares if s.kind == "file-gateway")
        assert fgw.authentication == "ActiveDirectory" and not fgw.joined
        gateway = next(iter(storagegateway.storagegateway_backends[backend.account_id][
            backend.region].gateways.values()))
        assert gateway.smb_settings()["ActiveDirectoryStatus"] == "DETACHED"
        assert gateway.smb_settings()["SMBGuestPasswordSet"] is False
    finally:
        backend.stop()


# -- the nodes' side ----------------------------------------------------------------------
def _network() -> tuple[SmbNetwork, SmbShare]:
    network = SmbNetwork()
    directory = ActiveDirectory("corp.example.com", "CORP", {"svc": "right"})
    server = network.add_server(SmbServer("fsx.corp.example.com", "10.0.0.5",
                                          directory=directory))
    share = server.add_share(SmbShare(r"\\fsx.corp.example.com\share"))
    guest = network.add_server(SmbServer("10.0.0.9", "10.0.0.9", guest_password="guestpw"))
    guest.add_share(SmbShare(r"\\10.0.0.9\fgw"))
    return network, share


@pytest.mark.parametrize(("path", "user", "password", "code"), [
    (r"\\nowhere.corp.example.com\share", "CORP\\svc", "right", 53),
    (r"\\fsx.corp.example.com\share", "CORP\\svc", "wrong", 1326),
    (r"\\fsx.corp.example.com\share", "AZURE\\svc", "right", 1326),  # the driver's default
    (r"\\fsx.corp.example.com\nope", "CORP\\svc", "right", 67),
    (r"\\10.0.0.9\fgw", "sgw-1\\someone", "guestpw", 1326),
])
def test_connect_fails_as_windows_reports(path: str, user: str, password: str,
                                          code: int) -> None:
    network, _ = _network()
    with pytest.raises(SmbError) as err:
        network.connect(path, user, password)
    assert err.value.code == code


def test_connect_by_name_address_and_guest() -> None:
    network, share = _network()
    assert network.connect(r"\\FSX.corp.example.com\SHARE", "corp.example.com\\svc",
                           "right") is share
    assert network.connect(r"\\10.0.0.5\share", "CORP\\svc", "right") is share
    assert network.connect(r"\\10.0.0.9\fgw", "sgw-1\\smbguest", "guestpw").share_name == "fgw"
    network.unresolvable.add("fsx.corp.example.com")
    with pytest.raises(SmbError):
        network.connect(r"\\fsx.corp.example.com\share", "CORP\\svc", "right")
    assert network.connect(r"\\10.0.0.5\share", "CORP\\svc", "right") is share  # no DNS
    assert split_unc("//srv/share/a/b") == ("srv", "share", "a\\b")


def test_driver_volume_ids_and_error_text() -> None:
    """csi-driver-smb's ids (`<server>/<share>#<subDir>#<uuid>#<onDelete>`) and
    New-SmbGlobalMapping's error as csi-proxy 1.1 returns it (csi-driver-smb 294, 520)."""
    vol = SmbVolume("//srv/share", "pvc-1", "", "retain")
    assert vol.volume_id == "srv/share#pvc-1##retain"
    assert SmbVolume("//srv/share", "pvc-1").volume_id == "srv/share#pvc-1##"
    back = SmbVolume.from_id("srv/share#pvc-1##archive")
    assert back is not None and (back.source, back.sub_dir, back.on_delete) == (
        "//srv/share", "pvc-1", "archive")
    text = powershell_error(53, "The network path was not found.", "NotSpecified")
    assert text.startswith("New-SmbGlobalMapping : The network path was not found. \r\n")
    assert "FullyQualifiedErrorId : Windows System Error 53,New-SmbGlobalMapping" in text
    assert cifs_output(SmbError(1326)).startswith("mount error(13): Permission denied")
    assert cifs_output(SmbError(53, "x.corp")) == \
        "mount error: could not resolve address for x.corp: Unknown error\n"
