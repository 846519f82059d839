"""What AWS says about a cluster's nodes, volumes and file shares, read with plain boto3.

The conformance checks use these facts as evidence ("the node runs an EKS-optimized Windows AMI",
"the PV's volume is a gp2 in the pod's zone, attached to the node's instance", "the SMB server is
this FSx for Windows file system"). The same code runs against EKS and against the embedded
cluster's moto server: the endpoint comes from ``AWS_ENDPOINT_URL``, which boto3 >= 1.28 reads by
itself (checked with boto3 1.44: a client made without ``endpoint_url`` uses it for every
service). Nothing here knows about the sim; a fact AWS does not return is reported as ``None``
rather than guessed.

Only read-only calls are made, so they are retried (tenacity) on throttling, 5xx and dropped
connections: bounded, with jittered backoff, and each retry logged. botocore's own retries are
switched off for these clients so that there is one retry policy, not two stacked.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError, ConnectionClosedError
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from winstor import heap

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Owners of the public EKS-optimized Windows AMIs that winstor knows of (FACTS.md: commercial
#: partition). Images whose owner alias is ``amazon`` are accepted too, which covers Amazon's
#: accounts in other partitions without listing them.
EKS_WINDOWS_AMI_OWNERS = frozenset({"801119661308"})

#: Error codes AWS uses for throttling across EC2 (query protocol) and FSx (JSON protocol).
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
    "EC2ThrottledException", "SlowDown",
})

#: Retry policy for read-only calls; module-level so a caller (or a test) can tune it.
RETRY_ATTEMPTS = 5
RETRY_WAIT = wait_exponential_jitter(max=8.0)  # 1 s, 2 s, 4 s... plus up to 1 s jitter

# One attempt per call (retries are winstor's, bounded and logged), and timeouts a stuck
# endpoint cannot stretch. boto3 and botocore.config are imported on first use: a worker
# begins its cluster's slow objects before it needs AWS, and they cost ~0.1 s to import.
_CLIENT_SETTINGS = {"retries": {"total_max_attempts": 1}, "connect_timeout": 10,
                    "read_timeout": 60}

_WINDOWS_NAME = re.compile(r"^Windows_Server-(?P<release>\d{4})-English-(?P<edition>[A-Za-z]+)-")
_EKS_WINDOWS_NAME = re.compile(
    r"^Windows_Server-(?P<release>2019|2022|2025)-English-(?P<edition>Core|Full)-EKS_Optimized-"
    r"(?P<k8s>\d+\.\d+)-(?P<date>\d{4}[.-]\d{2}[.-]\d{2})$"
)
_EKS_LINUX_NAME = re.compile(
    r"^amazon-eks-(?:[a-z0-9]+-)*node-(?:[a-z0-9_]+-)*?(?P<k8s>\d+\.\d+)-v(?P<date>\d{8})$"
)
# Zones include Local/Wavelength zones such as us-east-1-bos-1a.
_PROVIDER_ID = re.compile(
    r"^aws://(?:/)?(?P<zone>[a-z]{2}(?:-[a-z0-9]+)+)/(?P<instance>i-[0-9a-f]+)$"
)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class AmiName:
    """What an AMI name says about itself (names are conventions, not proofs: see owner)."""

    name: str
    family: str  # "eks-windows", "eks-linux", "windows" (a non-EKS Windows AMI)
    windows_version: str | None  # "2019" / "2022" / "2025"
    edition: str | None  # "Core" / "Full"
    k8s_version: str | None  # "1.29"
    release: date | None  # the AMI's release date from its name


@dataclass(frozen=True)
class InstanceFacts:
    instance_id: str
    instance_type: str | None
    zone: str | None
    ami_id: str | None
    ami_name: str | None  # None when the AMI cannot be described (deregistered, private...)
    ami_owner: str | None
    is_eks_optimized_windows: bool  # name is EKS Windows AND the owner is Amazon's
    windows_version: str | None
    k8s_version_from_ami: str | None
    state: str | None
    ami_owner_alias: str | None = None
    ami_release: date | None = None
    platform: str | None = None
    private_dns_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VolumeAttachment:
    instance_id: str
    device: str
    state: str


@dataclass(frozen=True)
class VolumeFacts:
    volume_id: str
    volume_type: str
    size_gib: int
    zone: str
    state: str
    tags: dict[str, str]
    attachments: list[VolumeAttachment]
    encrypted: bool | None = None


@dataclass(frozen=True)
class FsxFacts:
    file_system_id: str
    type: str
    dns_name: str | None
    lifecycle: str | None  # None: the endpoint did not say (moto's own FSx never does)
    deployment_type: str | None = None
    active_directory_id: str | None = None  # AWS Managed Microsoft AD
    self_managed_domain: str | None = None  # self-managed AD domain name
    aliases: tuple[str, ...] = ()
    subnet_ids: tuple[str, ...] = ()
    vpc_id: str | None = None
    owner_id: str | None = None
    storage_capacity_gib: int | None = None
    preferred_file_server_ip: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def smb_server_names(self) -> tuple[str, ...]:
        """Names a node may map the share by: the DNS name and its DNS aliases."""
        return tuple(n for n in (self.dns_name, *self.aliases) if n)


# --------------------------------------------------------------------------- session and retries


def make_session(region: str | None = None, profile: str | None = None) -> boto3.Session:
    """A boto3 session for the target; the endpoint is boto3's business.

    ``AWS_ENDPOINT_URL`` (and the per-service ``AWS_ENDPOINT_URL_<SERVICE>``) in the environment
    or ``endpoint_url`` in the profile's config redirect every client made from this session, which
    is how the same checks read moto on the sim and real AWS on EKS. Raises ValueError when no
    region is configured anywhere, rather than failing later inside a check.
    """
    kwargs: dict[str, str] = {}
    if profile:
        kwargs["profile_name"] = profile
    if region:
        kwargs["region_name"] = region
    import boto3

    session = boto3.Session(**kwargs)
    if not session.region_name:
        raise ValueError("no AWS region: pass one, set AWS_REGION, or configure the profile")
    return session


_clients: weakref.WeakKeyDictionary[boto3.Session, dict[str, Any]] = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


def client(session: boto3.Session, service: str) -> Any:
    """One client per session and service. Making a client loads and checks the service's
    model, tenths of a second each time, and a run asks for facts per node, volume and
    check; clients are thread-safe, sessions are not, hence the lock."""
    with _clients_lock:
        made = _clients.setdefault(session, {})
        if service not in made:
            from botocore.config import Config

            made[service] = session.client(service, config=Config(**_CLIENT_SETTINGS))
            heap.keep_settled()  # its service model stays for the process
        return made[service]


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: BaseException) -> bool:
    """Throttling, a 5xx, or a connection dropped mid-request: worth retrying a read."""
    if isinstance(exc, ConnectionClosedError):
        return True
    if isinstance(exc, ClientError):
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return _error_code(exc) in THROTTLING_CODES or status >= 500
    return False


def _read(fn: Callable[..., T], **kwargs: Any) -> T:
    """Call a read-only API, retrying transient failures (bounded, logged)."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(RETRY_ATTEMPTS),
        wait=RETRY_WAIT,
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
    return retrying(fn, **kwargs)


def _pages(fn: Callable[..., dict[str, Any]], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Follow ``NextToken`` with each page read through :func:`_read`."""
    token: str | None = None
    while True:
        page = _read(fn, **kwargs, **({"NextToken": token} if token else {}))
        yield page
        token = page.get("NextToken")
        if not token:
            return


def _tags(items: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or ()}


# --------------------------------------------------------------------------- names


def parse_provider_id(provider_id: str) -> tuple[str, str]:
    """``aws:///us-west-2a/i-0123`` -> ``("us-west-2a", "i-0123")``; ValueError otherwise."""
    match = _PROVIDER_ID.match(provider_id.strip())
    if not match:
        raise ValueError(f"not an AWS EC2 providerID: {provider_id!r}")
    return match.group("zone"), match.group("instance")


def _parse_date(text: str) -> date | None:
    digits = re.sub(r"\D", "", text)
    if len(digits) != 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def parse_ami_name(name: str | None) -> AmiName | None:
    """Read an AMI name by the published conventions (FACTS.md); None if it follows none.

    ``Windows_Server-<2019|2022|2025>-English-<Core|Full>-EKS_Optimized-<k8s>-<YYYY.MM.DD>``,
    EKS Linux ``amazon-eks-[...-]node-[...-]<k8s>-v<YYYYMMDD>``, and any other
    ``Windows_Server-<year>-English-<edition>-...`` as a plain Windows AMI.
    """
    if not name:
        return None
    match = _EKS_WINDOWS_NAME.match(name)
    if match:
        return AmiName(name=name, family="eks-windows", windows_version=match["release"],
                       edition=match["edition"], k8s_version=match["k8s"],
                       release=_parse_date(match["date"]))
    match = _EKS_LINUX_NAME.match(name)
    if match:
        return AmiName(name=name, family="eks-linux", windows_version=None, edition=None,
                       k8s_version=match["k8s"], release=_parse_date(match["date"]))
    match = _WINDOWS_NAME.match(name)
    if match:
        release = match["release"] if match["release"] in ("2019", "2022", "2025") else None
        return AmiName(name=name, family="windows", windows_version=release,
                       edition=match["edition"], k8s_version=None, release=None)
    return None


def is_amazon_owner(owner_id: str | None, owner_alias: str | None) -> bool:
    return owner_id in EKS_WINDOWS_AMI_OWNERS or owner_alias == "amazon"


# csi-proxy shipped in the EKS-optimized Windows AMIs, by AMI release date. Read from the
# "Retrieve Windows AMI version information" tables of the Amazon EKS user guide (awsdocs/
# amazon-eks-user-guide, eks-ami-versions-windows), which list the csi-proxy column from
# 1.24-2022.10.11 on. Within each release every Kubernetes version and every variant (2019/2022,
# Core/Full) carries the same csi-proxy, so the release date alone decides. Ranges run from the
# first release that listed a version to the last one checked; outside them the answer is None.
# (FACTS.md's "1.1.2 from 1.30-2024.07.10" and "1.1.3 in 1.31-2024.11.12" are rows inside
# these ranges, not their starts.)
_CSI_PROXY_BY_RELEASE: tuple[tuple[date, date, str], ...] = (
    (date(2022, 10, 11), date(2023, 8, 8), "1.1.1"),
    (date(2023, 8, 17), date(2024, 7, 10), "1.1.2"),
    (date(2024, 8, 13), date(2025, 4, 14), "1.1.3"),
    (date(2025, 5, 17), date(2026, 1, 22), "1.2.1"),
)


def expected_csi_proxy_version(ami_name: str | None) -> str | None:
    """The csi-proxy version an EKS-optimized Windows AMI of this name ships, if known.

    Known: AMIs released from 2022.10.11 to 2026.01.22, for which the EKS user guide's AMI
    version tables give the csi-proxy column: 1.1.1 (2022.10.11-2023.08.08), 1.1.2
    (2023.08.17-2024.07.10), 1.1.3 (2024.08.13-2025.04.14), 1.2.1 (2025.05.17-2026.01.22).
    A date between two ranges (no AMI was released then) gets the earlier range's version.

    Unknown, so None: names that are not EKS-optimized Windows AMIs; releases before 2022.10.11
    (the best-practices guide says csi-proxy ships since April 2022, but no version is
    published for those); releases after the last date checked (a later AMI may ship csi-proxy
    1.3.x). The name is the only input: a copied or renamed AMI answers like the original, so
    callers should weigh this together with the AMI's owner.
    """
    parsed = parse_ami_name(ami_name)
    if parsed is None or parsed.family != "eks-windows" or parsed.release is None:
        return None
    released = parsed.release
    if released < _CSI_PROXY_BY_RELEASE[0][0] or released > _CSI_PROXY_BY_RELEASE[-1][1]:
        return None
    version: str | None = None
    for first, _last, ships in _CSI_PROXY_BY_RELEASE:
        if released >= first:
            version = ships
    return version


# --------------------------------------------------------------------------- facts


def instance_facts(session: boto3.Session,
                   instance_ids: Iterable[str]) -> dict[str, InstanceFacts]:
    """Facts per instance id. Unknown instance ids are left out of the result; an AMI that
    cannot be described gives None for its name/owner fields, never an exception."""
    ids = list(dict.fromkeys(i for i in instance_ids if i))
    if not ids:
        return {}
    ec2 = client(session, "ec2")
    instances = _describe_instances(ec2, ids)
    images = _describe_images(ec2, {i.get("ImageId") for i in instances.values()} - {None})
    result: dict[str, InstanceFacts] = {}
    for instance_id, inst in instances.items():
        ami_id = inst.get("ImageId")
        image = images.get(ami_id or "")
        ami_name = image.get("Name") if image else None
        owner = image.get("OwnerId") if image else None
        alias = image.get("ImageOwnerAlias") if image else None
        parsed = parse_ami_name(ami_name)
        eks_windows = parsed is not None and parsed.family == "eks-windows"
        result[instance_id] = InstanceFacts(
            instance_id=instance_id,
            instance_type=inst.get("InstanceType"),
            zone=(inst.get("Placement") or {}).get("AvailabilityZone"),
            ami_id=ami_id,
            ami_name=ami_name,
            ami_owner=owner,
            is_eks_optimized_windows=eks_windows and is_amazon_owner(owner, alias),
            windows_version=parsed.windows_version if parsed else None,
            k8s_version_from_ami=parsed.k8s_version if parsed else None,
            state=(inst.get("State") or {}).get("Name"),
            ami_owner_alias=alias,
            ami_release=parsed.release if parsed else None,
            platform=inst.get("Platform"),
            private_dns_name=inst.get("PrivateDnsName"),
            tags=_tags(inst.get("Tags")),
        )
    return result


def _describe_instances(ec2: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Describe in batches; on ``InvalidInstanceID.NotFound`` fall back to one by one so that
    one terminated node does not hide the others."""
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 100):
        batch = ids[start:start + 100]
        try:
            for page in _pages(ec2.describe_instances, InstanceIds=batch):
                for reservation in page.get("Reservations", []):
                    for inst in reservation.get("Instances", []):
                        found[inst["InstanceId"]] = inst
        except ClientError as exc:
            if not _error_code(exc).startswith("InvalidInstanceID"):
                raise
            for instance_id in batch:
                try:
                    page = _read(ec2.describe_instances, InstanceIds=[instance_id])
                except ClientError as one:
                    if _error_code(one).startswith("InvalidInstanceID"):
                        continue
                    raise
                for reservation in page.get("Reservations", []):
                    for inst in reservation.get("Instances", []):
                        found[inst["InstanceId"]] = inst
    return found


def _describe_images(ec2: Any, ami_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Describe AMIs; ones that are gone or not visible are simply absent."""
    ids = sorted(ami_ids)
    if not ids:
        return {}
    try:
        return {img["ImageId"]: img
                for img in _read(ec2.describe_images, ImageIds=ids).get("Images", [])}
    except ClientError as exc:
        if not _error_code(exc).startswith(("InvalidAMIID", "AuthFailure",
                                            "UnauthorizedOperation")):
            raise
    images: dict[str, dict[str, Any]] = {}
    for ami_id in ids:
        try:
            for img in _read(ec2.describe_images, ImageIds=[ami_id]).get("Images", []):
                images[img["ImageId"]] = img
        except ClientError as exc:
            log.info("AMI %s cannot be described: %s", ami_id, _error_code(exc))
    return images


def volume_facts(session: boto3.Session, volume_id: str) -> VolumeFacts | None:
    """The EBS volume's facts, or None if it does not exist (e.g. deleted after cleanup)."""
    ec2 = client(session, "ec2")
    try:
        volumes = _read(ec2.describe_volumes, VolumeIds=[volume_id]).get("Volumes", [])
    except ClientError as exc:
        if _error_code(exc) in ("InvalidVolume.NotFound", "InvalidVolumeID.Malformed"):
            return None
        raise
    if not volumes:
        return None
    vol = volumes[0]
    return VolumeFacts(
        volume_id=vol["VolumeId"],
        volume_type=vol.get("VolumeType", ""),
        size_gib=int(vol.get("Size", 0)),
        zone=vol.get("AvailabilityZone", ""),
        state=vol.get("State", ""),
        tags=_tags(vol.get("Tags")),
        attachments=[VolumeAttachment(a.get("InstanceId", ""), a.get("Device", ""),
                                      a.get("State", ""))
                     for a in vol.get("Attachments") or []],
        encrypted=vol.get("Encrypted"),
    )


@dataclass(frozen=True)
class VolumeModification:
    """One DescribeVolumesModifications entry: a resize (or type change) of a volume."""

    state: str  # modifying | optimizing | completed | failed
    original_size_gib: int | None
    target_size_gib: int | None
    progress: int | None = None
    status_message: str | None = None


def volume_modifications(session: boto3.Session, volume_id: str) -> list[VolumeModification]:
    """The modifications EC2 records for a volume, oldest first (none for a volume never
    modified, or one that does not exist)."""
    ec2 = client(session, "ec2")
    try:
        found = _read(ec2.describe_volumes_modifications, VolumeIds=[volume_id]).get(
            "VolumesModifications") or []
    except ClientError as exc:
        if _error_code(exc) in ("InvalidVolume.NotFound", "InvalidVolumeModification.NotFound",
                                "InvalidVolumeID.Malformed"):
            return []
        raise
    found = sorted(found, key=lambda m: str(m.get("StartTime") or ""))
    return [VolumeModification(
        state=str(m.get("ModificationState") or ""),
        original_size_gib=m.get("OriginalSize"), target_size_gib=m.get("TargetSize"),
        progress=m.get("Progress"), status_message=m.get("StatusMessage")) for m in found]


def fsx_windows_file_systems(session: boto3.Session) -> list[FsxFacts]:
    """Every FSx for Windows File Server file system in the session's account and region."""
    return fsx_windows_facts(fs for page in _pages(client(session, "fsx").describe_file_systems)
                             for fs in page.get("FileSystems", []))


def fsx_windows_facts(file_systems: Iterable[dict[str, Any]]) -> list[FsxFacts]:
    """The FSx for Windows File Server file systems among DescribeFileSystems' entries."""
    result: list[FsxFacts] = []
    for fs in file_systems:
        if fs.get("FileSystemType") != "WINDOWS":
            continue
        windows = fs.get("WindowsConfiguration") or {}
        self_managed = windows.get("SelfManagedActiveDirectoryConfiguration") or {}
        result.append(FsxFacts(
            file_system_id=fs["FileSystemId"],
            type=fs["FileSystemType"],
            dns_name=fs.get("DNSName"),
            lifecycle=fs.get("Lifecycle"),
            deployment_type=windows.get("DeploymentType"),
            active_directory_id=windows.get("ActiveDirectoryId"),
            self_managed_domain=self_managed.get("DomainName"),
            aliases=tuple(a["Name"] for a in windows.get("Aliases") or [] if a.get("Name")),
            subnet_ids=tuple(fs.get("SubnetIds") or ()),
            vpc_id=fs.get("VpcId"),
            owner_id=fs.get("OwnerId"),
            storage_capacity_gib=fs.get("StorageCapacity"),
            preferred_file_server_ip=windows.get("PreferredFileServerIp"),
            tags=_tags(fs.get("Tags")),
        ))
    return result


def find_tagged_volumes(session: boto3.Session, tag_key: str,
                        tag_value: str | None = None) -> list[str]:
    """Ids of volumes carrying ``tag_key`` (with ``tag_value`` if given): leak checks, janitor."""
    ec2 = client(session, "ec2")
    if tag_value is None:
        filters = [{"Name": "tag-key", "Values": [tag_key]}]
    else:
        filters = [{"Name": f"tag:{tag_key}", "Values": [tag_value]}]
    ids: list[str] = []
    for page in _pages(ec2.describe_volumes, Filters=filters):
        ids.extend(v["VolumeId"] for v in page.get("Volumes", []))
    return ids
