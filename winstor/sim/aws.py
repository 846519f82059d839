"""The AWS half of the embedded cluster: a moto server seeded to match the emulated EKS clusters.

The suite inspects AWS with plain boto3 (node AMIs, EBS volumes behind PVs, the FSx file system
behind the SMB mapping). On the sim target those calls go to a moto server that this module runs
in-process and fills so that what boto3 sees agrees with what the Kubernetes side reports:
one instance per node, the EKS-optimized AMI behind it, a volume per provisioned PV carrying the
tags a real driver sets, and an FSx for Windows file system whose DNS name is the SMB server.

Isolation: moto keeps its state in module globals, so every ``ThreadedMotoServer`` in one process
shares it. To let several backends run side by side (tests, or several sims in one process), each
backend works in its own AWS account: it creates an IAM user inside a fresh account id (moto
honours the ``x-moto-account-id`` header for that one call) and hands that user's access key to
the suite via :meth:`AwsBackend.env`. Moto maps every later request signed with that key to the
same account, so one backend never sees another's instances, volumes or file systems.

Where moto is less faithful than AWS in ways the suite can observe, this module fills the gap
*server-side*, never in the client (``winstor.aws.facts`` reports what it is given):

- AMI owner: moto's RegisterImage always makes the caller's account the owner. Real EKS-optimized
  Windows AMIs are public, owned by 801119661308 with owner alias ``amazon``. There is no API to
  change an image's owner, and an image registered in account 801119661308 is invisible to other
  accounts in moto (DescribeImages only looks at the caller's account), so after registering we set
  ``owner_id``/``owner_alias``/``platform`` on moto's in-process image object and publish the
  image with ModifyImageAttribute. This only works because the server runs in this process.
- FSx: moto's DescribeFileSystems has no ``Lifecycle``, ``OwnerId``, ``CreationTime`` or
  ``VpcId`` and echoes WindowsConfiguration as it was sent (password included). Our file systems
  get a per-object ``to_dict`` that renders the real response shape with ``Lifecycle`` (default
  ``AVAILABLE``, settable for fault scenarios via :meth:`AwsBackend.set_fsx_lifecycle`), and a DNS
  name of the documented form for a self-managed-AD file system: ``amznfsx<8 chars>.<domain>``
  (FSx for Windows user guide, "Mapping a file share"). File systems not made by this module keep
  moto's shape, so a missing Lifecycle stays missing.
- EBS attach: moto attaches anything anywhere. AWS refuses a volume that is already attached
  (``VolumeInUse``), one in another zone (``InvalidVolume.ZoneMismatch``) and a device name already
  in use on the instance; :meth:`AwsBackend.attach_volume` checks these first and raises
  :class:`AwsError` with AWS's codes and messages.

Startup cost (2-core dev machine, moto 5.2.5, boto3 1.44, with the garbage collector held off
as `winstor sim up` does; the sim is not ready before it is seeded, so all of this is on its
start-up path): importing boto3 and ``moto.server`` ~0.28 s, binding ~0 s, the IAM account
~0.04 s, importing moto's EC2 models and building the account's backends ~0.19 s (moto decodes
the instance-type offerings of every region at import; its default AMI catalogue, another ~0.2 s,
is skipped by ``MOTO_EC2_LOAD_DEFAULT_AMIS=false`` in the sim process's environment), seeding a
three-node cluster with FSx ~0.005 s. Not on the path any more: decoding EC2's service model
(three times, before :func:`_share_botocore_data`) and, since seeding calls moto's backends
rather than going through botocore clients and the server, making the clients and moto's request
handling (~0.6 s); :meth:`AwsBackend.warm_clients` does the client part (~0.16 s) once the sim
is ready. :meth:`AwsBackend.start` with ``wait=False`` returns after the bind and does the rest on
a warm-up thread; every other method waits for it.

The direct calls follow the backend signatures of moto 5.2 (what its request handlers pass);
tests/sim/test_aws.py and tests/test_awsfacts.py read everything seeded back through boto3, so a
moto release that changes them fails there first.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import shlex
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

log = logging.getLogger(__name__)

#: Owner of the public EKS-optimized Windows AMIs in the commercial partition (FACTS.md).
EKS_WINDOWS_AMI_OWNER = "801119661308"
#: Owner of the EKS-optimized Amazon Linux AMIs in most commercial regions (amazon-eks-ami docs).
EKS_LINUX_AMI_OWNER = "602401143452"

#: Windows Server release -> the build that `node.kubernetes.io/windows-build` carries.
WINDOWS_BUILDS: dict[str, str] = {
    "2019": "10.0.17763",
    "2022": "10.0.20348",
    "2025": "10.0.26100",
}

#: Device names in the order the current EBS CSI driver hands them out
#: (aws-ebs-csi-driver pkg/cloud/devicemanager/device_names.go: /dev/xvda{a-z}, /dev/xvdb{a-z}
#: first, because /dev/xvda itself is broken on Windows). We use the first 52; a node never
#: holds more volumes than that in the sim.
CSI_DEVICE_NAMES: tuple[str, ...] = tuple(
    f"/dev/xvd{a}{b}" for a in "ab" for b in string.ascii_lowercase
)
#: The legacy in-tree provisioner and early CSI releases used ba..bz, ca..cz
#: (kubernetes legacy-cloud-providers aws/device_allocator.go).
IN_TREE_DEVICE_NAMES: tuple[str, ...] = tuple(
    f"/dev/xvd{a}{b}" for a in "bc" for b in string.ascii_lowercase
)

FSX_LIFECYCLES = frozenset(
    {"AVAILABLE", "CREATING", "FAILED", "DELETING", "MISCONFIGURED", "UPDATING",
     "MISCONFIGURED_UNAVAILABLE"}
)


# --------------------------------------------------------------------------- seeds and results


@dataclass(frozen=True)
class NodeSeed:
    """One node of an emulated cluster, as the sim's cluster spec describes it."""

    name: str
    os: Literal["windows", "linux"]
    windows_build: str | None = None  # "2019"/"2022"/"2025" or "10.0.17763"...; None -> 2019
    zone: str = "us-west-2a"
    instance_type: str = "m5.large"
    nodegroup: str = "ng-1"
    ami_name: str | None = None  # override, e.g. a vendor's own AMI for a scenario
    ami_owner: str | None = None  # override; default: Amazon for EKS names, else our account


@dataclass(frozen=True)
class ClusterSeed:
    """What the sim needs in AWS for one emulated EKS cluster."""

    name: str
    k8s_version: str  # "1.29"; a patch suffix ("1.29.6") is dropped for AMI names
    nodes: tuple[NodeSeed, ...] | list[NodeSeed] = ()
    ami_release: str = "2025.11.14"  # the YYYY.MM.DD part of the Windows AMI names
    fsx: bool = True
    ad_domain: str = "corp.example.com"
    extra_zones: tuple[str, ...] = ()  # subnets in zones that have no node


@dataclass(frozen=True)
class NodeAws:
    """What AWS holds for one node."""

    name: str
    instance_id: str
    ami_id: str
    ami_name: str
    zone: str
    subnet_id: str
    private_dns_name: str
    private_ip: str

    @property
    def provider_id(self) -> str:
        """The node's `spec.providerID`, in the form the AWS cloud provider writes."""
        return f"aws:///{self.zone}/{self.instance_id}"


@dataclass(frozen=True)
class FsxInfo:
    """The FSx for Windows file system seeded for a cluster, and how nodes map its share."""

    file_system_id: str
    dns_name: str
    share_remote_path: str  # \\<dns>\share, what New-SmbGlobalMapping -RemotePath gets
    domain_name: str


@dataclass(frozen=True)
class ClusterAws:
    """Everything seeded for one cluster."""

    cluster_name: str
    vpc_id: str
    subnets: dict[str, str]  # zone -> subnet id
    nodes: dict[str, NodeAws]  # node name -> facts
    fsx: FsxInfo | None
    amis: dict[str, str] = field(default_factory=dict)  # AMI name -> id

    def node(self, name: str) -> NodeAws:
        return self.nodes[name]


class AwsError(Exception):
    """An EC2/FSx error as AWS would report it, for controllers to turn into events.

    ``code`` is AWS's error code (``VolumeInUse``...), ``message`` its text. ``str()`` gives
    ``"<code>: <message>"``, close to what the CSI driver puts into FailedAttachVolume events.
    """

    def __init__(self, code: str, message: str, operation: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.operation = operation


# --------------------------------------------------------------------------- volume tags


def csi_volume_tags(
    pv_name: str,
    pvc_name: str | None = None,
    pvc_namespace: str | None = None,
    *,
    extra_create_metadata: bool = True,
    k8s_tag_cluster_id: str | None = None,
) -> dict[str, str]:
    """Tags the EBS CSI driver (``ebs.csi.aws.com``) puts on a volume it creates.

    Always ``CSIVolumeName`` and ``ebs.csi.aws.com/cluster=true``; with the external-provisioner's
    ``--extra-create-metadata`` (the Helm chart's and the EKS add-on's default) also the
    ``kubernetes.io/created-for/...`` trio. With the controller flag ``--k8s-tag-cluster-id`` the
    driver adds ``kubernetes.io/cluster/<id>=owned``, ``KubernetesCluster=<id>`` and
    ``Name=<id>-dynamic-<pv>`` (aws-ebs-csi-driver pkg/driver/controller.go, CreateVolume).
    """
    tags = {"CSIVolumeName": pv_name, "ebs.csi.aws.com/cluster": "true"}
    if extra_create_metadata and pvc_name is not None and pvc_namespace is not None:
        tags["kubernetes.io/created-for/pvc/name"] = pvc_name
        tags["kubernetes.io/created-for/pvc/namespace"] = pvc_namespace
        tags["kubernetes.io/created-for/pv/name"] = pv_name
    if k8s_tag_cluster_id:
        tags[f"kubernetes.io/cluster/{k8s_tag_cluster_id}"] = "owned"
        tags["KubernetesCluster"] = k8s_tag_cluster_id
        tags["Name"] = f"{k8s_tag_cluster_id}-dynamic-{pv_name}"
    return tags


def in_tree_volume_tags(
    cluster_name: str,
    pv_name: str,
    pvc_name: str,
    pvc_namespace: str,
    *,
    legacy_cluster_tag: bool = False,
) -> dict[str, str]:
    """Tags the legacy in-tree ``kubernetes.io/aws-ebs`` provisioner put on a volume.

    Sources (kubernetes/kubernetes and kubernetes/legacy-cloud-providers):
    - pv_controller.go: ``kubernetes.io/created-for/pvc/namespace``, ``.../pvc/name``,
      ``.../pv/name`` as CloudTags;
    - pkg/volume/awsebs/aws_util.go CreateVolume: ``Name`` =
      ``GenerateVolumeName(clusterName, pvName, 255)`` = ``<cluster>-dynamic-<pv>``, where the
      cluster name is kube-controller-manager's ``--cluster-name``;
    - aws/tags.go buildTags (called from CreateDisk): ``kubernetes.io/cluster/<id>=owned``, and
      ``KubernetesCluster=<id>`` only when the cloud provider found the legacy tag on its instance.
    On Kubernetes >= 1.23 on EKS, CSI migration sends such claims to the CSI driver instead, which
    tags them with :func:`csi_volume_tags`.
    """
    name = f"{cluster_name}-dynamic"
    if len(pv_name) + 1 + len(name) > 255:
        name = name[: 255 - len(pv_name) - 1]
    tags = {
        "kubernetes.io/created-for/pvc/namespace": pvc_namespace,
        "kubernetes.io/created-for/pvc/name": pvc_name,
        "kubernetes.io/created-for/pv/name": pv_name,
        "Name": f"{name}-{pv_name}",
        f"kubernetes.io/cluster/{cluster_name}": "owned",
    }
    if legacy_cluster_tag:
        tags["KubernetesCluster"] = cluster_name
    return tags


# --------------------------------------------------------------------------- names


def windows_release(windows_build: str | None) -> str:
    """``"2019"`` for ``None``, ``"2019"`` or ``"10.0.17763"``; ValueError for an unknown build."""
    if windows_build is None:
        return "2019"
    if windows_build in WINDOWS_BUILDS:
        return windows_build
    for release, build in WINDOWS_BUILDS.items():
        if windows_build == build or windows_build.startswith(build + "."):
            return release
    raise ValueError(f"unknown Windows build {windows_build!r}; known: {WINDOWS_BUILDS}")


def _minor(k8s_version: str) -> str:
    parts = k8s_version.lstrip("v").split(".")
    return ".".join(parts[:2])


def eks_windows_ami_name(release: str, k8s_version: str, ami_release: str,
                         edition: str = "Core") -> str:
    """``Windows_Server-2019-English-Core-EKS_Optimized-1.29-2025.11.14``."""
    return (f"Windows_Server-{release}-English-{edition}-EKS_Optimized-"
            f"{_minor(k8s_version)}-{ami_release}")


def eks_linux_ami_name(k8s_version: str, ami_release: str) -> str:
    """``amazon-eks-node-1.29-v20251114``: the AL2 EKS AMI, dated like the Windows one."""
    return f"amazon-eks-node-{_minor(k8s_version)}-v{ami_release.replace('.', '')}"


def _is_eks_name(name: str) -> bool:
    return "-EKS_Optimized-" in name or name.startswith("amazon-eks-")


# --------------------------------------------------------------------------- the backend


#: Services whose endpoint prefix is their name, so their regions can be read from the endpoint
#: tables alone. Moto asks for these regions while importing its models and making backends.
_PREFIX_IS_NAME = frozenset({"ec2", "fsx", "config"})
_shared_loader: Any = None
_shared_lock = threading.Lock()


def _share_botocore_data() -> Any:
    """Make moto, its region tables and our clients read botocore's data files once.

    Left alone, one start decodes EC2's service model (the largest one, ~0.2 s of JSON) three
    times and the endpoint tables five: moto asks three fresh boto3 sessions for EC2's regions
    while importing its models (each loading the service model just to read its endpoint prefix),
    its backend registry asks a botocore session of its own for each service's regions, moto's
    request parser and serializer load the model through a loader of their own, and each
    botocore client loads it again. Here one loader - moto's, which also applies moto's small
    additions (two error shapes for EC2) - serves all of them, and region lists for services whose
    endpoint prefix is their name come straight from the endpoint tables. This patches boto3 and
    moto in the sim process only, which serves AWS and makes no real AWS calls; returns the loader.
    """
    global _shared_loader
    with _shared_lock:
        if _shared_loader is not None:
            return _shared_loader
        import boto3.session
        import botocore.session
        import moto.core.base_backend
        import moto.core.utils
        from moto.core.loaders import create_loader

        class SharedSession(botocore.session.Session):
            def get_available_regions(self, service_name: str, partition_name: str = "aws",
                                      allow_non_regional: bool = False) -> list[str]:
                if service_name not in _PREFIX_IS_NAME:
                    return list(super().get_available_regions(service_name, partition_name,
                                                              allow_non_regional))
                resolver = self._get_internal_component("endpoint_resolver")
                return list(resolver.get_available_endpoints(service_name, partition_name,
                                                             allow_non_regional))

        loader = create_loader()
        shared = SharedSession()
        shared.register_component("data_loader", loader)

        def get_available_regions(self: Any, service_name: str, partition_name: str = "aws",
                                  allow_non_regional: bool = False) -> list[str]:
            return shared.get_available_regions(service_name, partition_name, allow_non_regional)

        boto3.session.Session.get_available_regions = get_available_regions  # type: ignore[method-assign]
        moto.core.utils.create_loader = lambda: loader
        moto.core.base_backend.Session = lambda: shared  # type: ignore[attr-defined]
        _shared_loader = loader
        return loader


class AwsBackend:
    """A moto server on 127.0.0.1 with its own AWS account, plus the calls the sim makes.

    Thread-safe: controllers call it from worker threads. botocore clients are thread-safe, so one
    set is shared; EBS mutations hold a lock so the attach checks and the attach are one step.

    Two ways in, for two reasons. Seeding (account, VPC, subnets, AMIs, instances, FSx) calls
    moto's backends directly in this process: it must finish before the sim reports ready, and a
    botocore client plus moto's request parsing cost ~0.6 s more than the seeding itself. The
    seeded objects are then exactly what boto3 reads back through the server. EBS calls made while
    the suite runs go through botocore clients and the server, so moto validates them as it does
    the suite's own requests; the clients are made on first use or by :meth:`warm_clients`. The
    one read the attach path makes of an instance (its zone and devices) comes from the backend,
    like seeding: see :meth:`_instance`.
    """

    def __init__(self, region: str = "us-west-2", account_id: str | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.region = region
        self.host = host
        self.requested_port = port  # 0: the kernel picks (the node agent may be given one)
        self.account_id = account_id or _random_account_id()
        self._server: ThreadedMotoServer | None = None
        self._port: int | None = None
        self._access_key_id: str | None = None
        self._secret_access_key: str | None = None
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._ready = threading.Event()
        self._ready_error: BaseException | None = None
        self._ebs_lock = threading.RLock()
        self._seed_lock = threading.Lock()  # seeding: one cluster at a time, shared AMIs
        self._ami_ids: dict[str, str] = {}
        self._vpc_count = 0
        self._faults: dict[str, list[tuple[str, str]]] = {}
        self._fsx_lifecycle: dict[str, str] = {}
        self.startup_seconds: dict[str, float] = {}

    # ----------------------------------------------------------------- lifecycle

    def start(self, wait: bool = True) -> AwsBackend:
        """Bind the server on a free port; set up the account and warm EC2 (maybe in background).

        The port is chosen by the kernel (port 0) and read back from the bound socket, so several
        backends never race for a port.
        """
        if self._server is not None:
            raise RuntimeError("AwsBackend already started")
        t0 = time.perf_counter()
        _share_botocore_data()
        from moto.server import ThreadedMotoServer  # lazy: moto is heavy to import

        from . import motofast

        motofast.apply()

        # werkzeug logs every request at INFO and installs its own handler if nothing is set.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        t1 = time.perf_counter()
        server = ThreadedMotoServer(ip_address=self.host, port=self.requested_port,
                                    verbose=False)
        server.start()
        self._server = server
        self._port = int(server.get_host_and_port()[1])
        t2 = time.perf_counter()
        self.startup_seconds.update(import_moto=t1 - t0, bind=t2 - t1)
        if wait:
            self._warm_up()
            self.wait_ready()
        else:
            threading.Thread(target=self._warm_up, name="winstor-aws-warmup",
                             daemon=True).start()
        return self

    def _warm_up(self) -> None:
        try:
            t0 = time.perf_counter()
            self._create_account()
            t1 = time.perf_counter()
            # Importing moto's EC2 models is most of it (~0.35 s: it decodes the instance-type
            # offerings of every region); building the account's backends is the rest.
            self._ec2()
            self._fsx()
            t2 = time.perf_counter()
            self.startup_seconds.update(account=t1 - t0, ec2_backend=t2 - t1)
        except BaseException as exc:  # reported by wait_ready()
            self._ready_error = exc
        finally:
            self._ready.set()

    def _create_account(self) -> None:
        """An IAM user in this backend's account; moto maps its access key to the account."""
        from moto.iam.models import iam_backends
        from moto.utilities.utils import get_partition

        iam = iam_backends[self.account_id][get_partition(self.region)]
        iam.create_user(self.region, user_name="winstor-sim")
        key = iam.create_access_key(user_name="winstor-sim")
        self._access_key_id = key.access_key_id
        self._secret_access_key = key.secret_access_key

    def _ec2(self) -> Any:
        """This account's moto EC2 backend in our region (what EC2 requests signed with our key
        reach)."""
        from moto.ec2.models import ec2_backends

        return ec2_backends[self.account_id][self.region]

    def _fsx(self) -> Any:
        from moto.fsx.models import fsx_backends

        return fsx_backends[self.account_id][self.region]

    def _client(self, service: str) -> Any:
        """The botocore client for ``ec2`` or ``fsx``, made on first use."""
        client = self._clients.get(service)
        if client is None:
            self.wait_ready()
            with self._clients_lock:
                if not self._clients:
                    self._make_clients()
                client = self._clients[service]
        return client

    def _make_clients(self) -> None:
        import boto3
        import botocore.session
        from botocore.config import Config

        botocore_session = botocore.session.Session()
        botocore_session.register_component("data_loader", _share_botocore_data())
        session = boto3.Session(aws_access_key_id=self._access_key_id,
                                aws_secret_access_key=self._secret_access_key,
                                region_name=self.region, botocore_session=botocore_session)
        config = Config(retries={"mode": "standard", "max_attempts": 3},
                        connect_timeout=5, read_timeout=30, max_pool_connections=32)
        clients = {service: session.client(service, endpoint_url=self.endpoint_url,
                                           config=config) for service in ("ec2", "fsx")}
        self._clients.update(clients)

    def warm_clients(self) -> None:
        """Make the clients and send one EC2 request, so that neither the controllers' first EBS
        call nor the suite's first EC2 request waits for botocore and moto to load EC2's model.

        Meant for a worker thread once the sim is ready; costs ~0.4 s of CPU.
        """
        t0 = time.perf_counter()
        client = self._client("ec2")
        if self._server is None:  # stopped meanwhile: nothing to warm
            return
        client.describe_availability_zones()
        self.startup_seconds["first_ec2_call"] = time.perf_counter() - t0

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the account exists and EC2 answered; re-raise a warm-up failure."""
        if self._server is None:
            raise RuntimeError("AwsBackend not started")
        if not self._ready.wait(timeout):
            raise TimeoutError(f"moto server not ready after {timeout}s")
        if self._ready_error is not None:
            raise RuntimeError("moto warm-up failed") from self._ready_error

    def stop(self) -> None:
        """Stop the server and drop this backend's account from moto's in-process state."""
        server, self._server = self._server, None
        if server is None:
            return
        self._ready.wait(60)
        server.stop()
        self._forget_account()

    def _forget_account(self) -> None:
        try:
            from moto.ec2.models import ec2_backends
            from moto.fsx.models import fsx_backends
            from moto.iam.models import iam_backends
        except ImportError:  # pragma: no cover - moto layout changed; state just stays
            return
        for backends in (ec2_backends, fsx_backends, iam_backends):
            backends.pop(self.account_id, None)

    def __enter__(self) -> AwsBackend:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- how the suite reaches it

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("AwsBackend not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def access_key_id(self) -> str:
        self.wait_ready()
        assert self._access_key_id is not None
        return self._access_key_id

    def env(self) -> dict[str, str]:
        """Environment that points boto3 (>= 1.28, which reads ``AWS_ENDPOINT_URL``) here.

        The keys are moto-issued dummies that select this backend's account; they are not secret
        but are still only written where the suite reads them, never printed.
        """
        self.wait_ready()
        assert self._access_key_id is not None and self._secret_access_key is not None
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self._access_key_id,
            "AWS_SECRET_ACCESS_KEY": self._secret_access_key,
        }

    def write_env_file(self, path: str | Path) -> Path:
        """Write ``export K='V'`` lines (shell-quoted) that a shell can ``source``; mode 0600."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)  # as the kubeconfig's folder is made
        lines = [f"export {key}={shlex.quote(value)}" for key, value in self.env().items()]
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
        target.chmod(0o600)
        return target

    # ----------------------------------------------------------------- seeding

    def seed_cluster(self, spec: ClusterSeed) -> ClusterAws:
        """Create the VPC, subnets, AMIs, instances and FSx file system for one cluster.

        Calls moto's backends directly (see the class docstring), with the arguments moto's own
        request handlers pass for the requests a client would send, so what boto3 reads back is
        the same as for objects made over the wire.
        """
        self.wait_ready()
        with self._seed_lock:
            return self._seed(spec)

    def _seed(self, spec: ClusterSeed) -> ClusterAws:
        ec2 = self._ec2()
        index = self._vpc_count
        self._vpc_count += 1
        network = ipaddress.ip_network(f"10.{index % 250}.0.0/16")
        cluster_tag = {f"kubernetes.io/cluster/{spec.name}": "shared"}
        vpc_id = ec2.create_vpc(
            str(network), "default", amazon_provided_ipv6_cidr_block=False,
            ipv6_cidr_block_network_border_group=self.region,
            tags=_tag_list({"Name": f"eksctl-{spec.name}-cluster/VPC", **cluster_tag}),
        ).id

        zones = list(dict.fromkeys([n.zone for n in spec.nodes] + list(spec.extra_zones)))
        if not zones:
            zones = [f"{self.region}a"]
        subnets: dict[str, str] = {}
        cidrs: dict[str, str] = {}
        subnet_nets = network.subnets(new_prefix=20)
        for zone in zones:
            cidrs[zone] = str(next(subnet_nets))
            subnets[zone] = ec2.create_subnet(
                vpc_id, cidrs[zone], None, zone, None,
                tags={"subnet": {
                    "Name": f"eksctl-{spec.name}-cluster/SubnetPrivate{zone[-1].upper()}",
                    "kubernetes.io/role/internal-elb": "1", **cluster_tag}},
            ).id

        amis: dict[str, str] = {}
        nodes: dict[str, NodeAws] = {}
        for node in spec.nodes:
            ami_name = node.ami_name or self._default_ami_name(spec, node)
            ami_id = self._ensure_ami(ami_name, node)
            amis[ami_name] = ami_id
            tags = {
                "Name": f"{spec.name}-{node.nodegroup}-Node",
                "eks:cluster-name": spec.name,
                "eks:nodegroup-name": node.nodegroup,
                f"kubernetes.io/cluster/{spec.name}": "owned",
                "winstor.io/node-name": node.name,
            }
            instance = self._run_instance(ami_id, node.instance_type, subnets[node.zone], tags)
            nodes[node.name] = NodeAws(
                name=node.name, instance_id=instance.id, ami_id=ami_id,
                ami_name=ami_name, zone=node.zone, subnet_id=subnets[node.zone],
                private_dns_name=getattr(instance, "private_dns_name", None) or "",
                private_ip=getattr(instance, "private_ip_address", None) or "",
            )

        fsx = (self._create_fsx(spec, vpc_id, subnets[zones[0]], cidrs[zones[0]])
               if spec.fsx else None)
        return ClusterAws(cluster_name=spec.name, vpc_id=vpc_id, subnets=subnets, nodes=nodes,
                          fsx=fsx, amis=amis)

    def _run_instance(self, ami_id: str, instance_type: str, subnet_id: str,
                      tags: Mapping[str, str]) -> Any:
        """One instance, as moto's RunInstances handler makes it for ImageId, MinCount=MaxCount=1,
        InstanceType, SubnetId and instance tags (plus the ClientToken botocore adds)."""
        reservation = self._ec2().run_instances(
            ami_id, 1, None, [],
            instance_type=instance_type, is_instance_type_default=False, placement=None,
            placement_hostid=None, region_name=self.region, subnet_id=subnet_id, key_name=None,
            security_group_ids=[], nics=[], private_ip=None, associate_public_ip=None,
            tags={"instance": dict(tags)}, ebs_optimized=False, disable_api_stop=False,
            instance_market_options={}, instance_initiated_shutdown_behavior=None,
            launch_template={}, hibernation_options={}, iam_instance_profile_name=None,
            iam_instance_profile_arn=None, monitoring_state="disabled", ipv6_address_count=None,
            metadata_options={}, client_token=str(uuid.uuid4()),
        )
        return reservation.instances[0]

    @staticmethod
    def _default_ami_name(spec: ClusterSeed, node: NodeSeed) -> str:
        if node.os == "windows":
            release = windows_release(node.windows_build)
            return eks_windows_ami_name(release, spec.k8s_version, spec.ami_release)
        return eks_linux_ami_name(spec.k8s_version, spec.ami_release)

    def _ensure_ami(self, name: str, node: NodeSeed) -> str:
        """Register an AMI once per backend and make it look like the real, public one.

        Called with the seed lock held. Moto's RegisterImage keeps only the name and description
        (architecture, root device and virtualization type are moto's defaults whatever is sent).
        """
        if name in self._ami_ids:
            return self._ami_ids[name]
        ec2 = self._ec2()
        windows = node.os == "windows"
        ami_id = ec2.register_image(name, f"{name} (registered by the winstor sim)").id
        owner = node.ami_owner
        if owner is None and _is_eks_name(name):
            owner = EKS_WINDOWS_AMI_OWNER if windows else EKS_LINUX_AMI_OWNER
        self._patch_image(ami_id, owner=owner, windows=windows, name=name)
        if owner is not None and owner != self.account_id:
            ec2.modify_image_attribute(ami_id=ami_id,
                                       launch_permissions_to_add=[{"Group": "all"}],
                                       launch_permissions_to_remove=[])
        self._ami_ids[name] = ami_id
        return ami_id

    def _patch_image(self, ami_id: str, *, owner: str | None, windows: bool, name: str) -> None:
        from datetime import datetime

        image = self._ec2().amis[ami_id]
        if owner is not None:
            image.owner_id = owner
            image.owner_alias = "amazon" if owner in (EKS_WINDOWS_AMI_OWNER,
                                                      EKS_LINUX_AMI_OWNER) else None
        if windows:
            image.platform = "windows"  # run_instances copies it to the instance's Platform
        date = _release_date_from_name(name)
        if date is not None:
            image.creation_date = datetime(*date)  # moto keeps naive UTC datetimes

    def _create_fsx(self, spec: ClusterSeed, vpc_id: str, subnet_id: str,
                    subnet_cidr: str) -> FsxInfo:
        ad = {
            "DomainName": spec.ad_domain,
            "OrganizationalUnitDistinguishedName":
                "OU=Computers,OU=" + spec.ad_domain.split(".")[0] + ","
                + ",".join(f"DC={part}" for part in spec.ad_domain.split(".")),
            "FileSystemAdministratorsGroup": "AWS Delegated FSx Administrators",
            "UserName": "Admin",
            "Password": "NotARealPassword-1",  # moto stores it; our to_dict never renders it
            "DnsIps": ["10.0.0.10", "10.0.0.11"],
        }
        created = self._fsx().create_file_system(
            client_request_token=str(uuid.uuid4()), file_system_type="WINDOWS",
            storage_capacity=32, storage_type="SSD", subnet_ids=[subnet_id],
            security_group_ids=[],
            tags=[{"Key": "Name", "Value": f"{spec.name}-fsx"},
                  {"Key": f"kubernetes.io/cluster/{spec.name}", "Value": "shared"}],
            kms_key_id=None,
            windows_configuration={
                "SelfManagedActiveDirectoryConfiguration": ad,
                "DeploymentType": "SINGLE_AZ_2",
                "PreferredSubnetId": subnet_id,
                "ThroughputCapacity": 32,
                "AutomaticBackupRetentionDays": 7,
            },
            lustre_configuration=None, ontap_configuration=None, file_system_type_version=None,
            open_zfs_configuration=None,
        )
        fs_id = created.file_system_id
        dns_name = f"amznfsx{_random_lower(8)}.{spec.ad_domain}"
        self._fsx_lifecycle[fs_id] = "AVAILABLE"
        self._patch_file_system(fs_id, vpc_id=vpc_id, subnet_id=subnet_id,
                                subnet_cidr=subnet_cidr, dns_name=dns_name,
                                domain=spec.ad_domain, ad=ad)
        return FsxInfo(file_system_id=fs_id, dns_name=dns_name,
                       share_remote_path=f"\\\\{dns_name}\\share", domain_name=spec.ad_domain)

    def _patch_file_system(self, fs_id: str, *, vpc_id: str, subnet_id: str, subnet_cidr: str,
                           dns_name: str, domain: str, ad: Mapping[str, Any]) -> None:
        """Give moto's file-system object the response shape real FSx for Windows returns."""
        fs = self._fsx().file_systems[fs_id]
        fs.dns_name = dns_name
        created_at = time.time()
        owner = self.account_id
        lifecycles = self._fsx_lifecycle
        subnet_net = ipaddress.ip_network(subnet_cidr)
        preferred_ip = str(subnet_net.network_address + 250)
        windows = {
            "ActiveDirectoryId": None,
            "SelfManagedActiveDirectoryConfiguration": {
                key: ad[key] for key in ("DomainName", "OrganizationalUnitDistinguishedName",
                                         "FileSystemAdministratorsGroup", "UserName", "DnsIps")
            },
            "DeploymentType": "SINGLE_AZ_2",
            "RemoteAdministrationEndpoint": f"amznfsx{_random_lower(8)}.{domain}",
            "PreferredSubnetId": subnet_id,
            "PreferredFileServerIp": preferred_ip,
            "ThroughputCapacity": 32,
            "MaintenanceOperationsInProgress": [],
            "WeeklyMaintenanceStartTime": "7:03:00",
            "DailyAutomaticBackupStartTime": "03:00",
            "AutomaticBackupRetentionDays": 7,
            "CopyTagsToBackups": False,
            "Aliases": [],
        }
        windows = {k: v for k, v in windows.items() if v is not None}

        def to_dict() -> dict[str, Any]:
            return {
                "OwnerId": owner,
                "CreationTime": created_at,
                "FileSystemId": fs.file_system_id,
                "FileSystemType": fs.file_system_type,
                "Lifecycle": lifecycles.get(fs.file_system_id, "AVAILABLE"),
                "StorageCapacity": fs.storage_capacity,
                "StorageType": fs.storage_type,
                "VpcId": vpc_id,
                "SubnetIds": fs.subnet_ids,
                "NetworkInterfaceIds": [],
                "DNSName": fs.dns_name,
                "ResourceARN": fs.resource_arn,
                "Tags": fs.backend.list_tags_for_resource(fs.resource_arn),
                "WindowsConfiguration": windows,
            }

        fs.to_dict = to_dict  # per object: other file systems keep moto's own shape

    def set_fsx_lifecycle(self, file_system_id: str, lifecycle: str) -> None:
        """Make DescribeFileSystems report another lifecycle (for fault scenarios)."""
        if lifecycle not in FSX_LIFECYCLES:
            raise ValueError(f"unknown FSx lifecycle {lifecycle!r}")
        if file_system_id not in self._fsx_lifecycle:
            raise KeyError(f"{file_system_id} was not seeded by this backend")
        self._fsx_lifecycle[file_system_id] = lifecycle

    # ----------------------------------------------------------------- EBS

    def inject_fault(self, operation: str, code: str, message: str, count: int = 1) -> None:
        """Make the next ``count`` calls of ``operation`` fail with an AWS-style error.

        ``operation`` is one of ``create_volume``, ``attach_volume``, ``detach_volume``,
        ``delete_volume``. For scenarios such as "attach failure".
        """
        if operation not in ("create_volume", "attach_volume", "detach_volume",
                             "delete_volume", "modify_volume"):
            raise ValueError(f"cannot inject faults into {operation!r}")
        with self._ebs_lock:
            self._faults.setdefault(operation, []).extend([(code, message)] * count)

    def _take_fault(self, operation: str) -> None:
        queue = self._faults.get(operation)
        if queue:
            code, message = queue.pop(0)
            raise AwsError(code, message, operation)

    def create_volume(self, zone: str, size_gib: int, volume_type: str,
                      tags: Mapping[str, str]) -> str:
        """Create an EBS volume with exactly ``tags`` (build them with the ``*_volume_tags``
        helpers plus the run's labels); return its id."""
        self.wait_ready()
        with self._ebs_lock:
            self._take_fault("create_volume")
        kwargs: dict[str, Any] = {"AvailabilityZone": zone, "Size": int(size_gib),
                                  "VolumeType": volume_type}
        if tags:
            kwargs["TagSpecifications"] = _tag_spec("volume", tags)
        if volume_type == "gp3":
            kwargs.update(Iops=3000, Throughput=125)
        created = self._call("create_volume", self._client("ec2").create_volume, **kwargs)
        return str(created["VolumeId"])

    def next_device_name(self, instance_id: str, style: Literal["csi", "in-tree"] = "csi") -> str:
        """The device name the driver would pick next on this instance."""
        self.wait_ready()
        _zone, used = self._instance(instance_id, "attach_volume")
        names = CSI_DEVICE_NAMES if style == "csi" else IN_TREE_DEVICE_NAMES
        for name in names:
            if name not in used:
                return name
        raise AwsError("AttachmentLimitExceeded",
                       f"no free device name on instance {instance_id}", "attach_volume")

    def attach_volume(self, volume_id: str, instance_id: str, device: str | None = None) -> str:
        """Attach, refusing what AWS refuses; returns the device name used."""
        self.wait_ready()
        ec2 = self._client("ec2")
        with self._ebs_lock:
            self._take_fault("attach_volume")
            volume = self._describe_volume(volume_id, "attach_volume")
            zone, used = self._instance(instance_id, "attach_volume")
            if volume["AvailabilityZone"] != zone:
                raise AwsError("InvalidVolume.ZoneMismatch",
                               f"The volume '{volume_id}' is not in the same availability zone "
                               f"as instance '{instance_id}'", "attach_volume")
            if volume.get("Attachments"):
                raise AwsError("VolumeInUse", f"{volume_id} is already attached to an instance",
                               "attach_volume")
            if device is None:
                device = next((n for n in CSI_DEVICE_NAMES if n not in used), None)
                if device is None:
                    raise AwsError("AttachmentLimitExceeded",
                                   f"no free device name on instance {instance_id}",
                                   "attach_volume")
            elif device in used:
                raise AwsError("InvalidParameterValue",
                               f"Invalid value '{device}' for unixDevice. Attachment point "
                               f"{device} is already in use", "attach_volume")
            self._call("attach_volume", ec2.attach_volume, VolumeId=volume_id,
                       InstanceId=instance_id, Device=device)
            return device

    def detach_volume(self, volume_id: str, instance_id: str) -> None:
        """Detach; AWS's errors for a volume that is not attached there."""
        self.wait_ready()
        with self._ebs_lock:
            self._take_fault("detach_volume")
            volume = self._describe_volume(volume_id, "detach_volume")
            attachments = volume.get("Attachments") or []
            if not attachments:
                raise AwsError("IncorrectState",
                               f"Volume '{volume_id}' is in the 'available' state.",
                               "detach_volume")
            if all(a.get("InstanceId") != instance_id for a in attachments):
                raise AwsError("InvalidAttachment.NotFound",
                               f"The volume '{volume_id}' is not attached to instance "
                               f"'{instance_id}'", "detach_volume")
            self._call("detach_volume", self._client("ec2").detach_volume,
                       VolumeId=volume_id, InstanceId=instance_id)

    def modify_volume(self, volume_id: str, size_gib: int) -> str:
        """Grow a volume (ModifyVolume, what the EBS CSI controller's ControllerExpandVolume
        calls); returns the modification's state, which moto completes at once where AWS
        passes through ``modifying`` and ``optimizing`` (the driver waits for either of the
        last two)."""
        self.wait_ready()
        with self._ebs_lock:
            self._take_fault("modify_volume")
            done = self._call("modify_volume", self._client("ec2").modify_volume,
                              VolumeId=volume_id, Size=int(size_gib))
        return str(done["VolumeModification"].get("ModificationState") or "completed")

    def delete_volume(self, volume_id: str) -> None:
        """Delete; ``VolumeInUse`` while attached, ``InvalidVolume.NotFound`` if gone."""
        self.wait_ready()
        with self._ebs_lock:
            self._take_fault("delete_volume")
            self._call("delete_volume", self._client("ec2").delete_volume, VolumeId=volume_id)

    def volume_state(self, volume_id: str) -> dict[str, Any] | None:
        """A plain summary of a volume, or None if it does not exist."""
        self.wait_ready()
        try:
            volume = self._describe_volume(volume_id, "describe_volumes")
        except AwsError as exc:
            if exc.code == "InvalidVolume.NotFound":
                return None
            raise
        return {
            "volume_id": volume["VolumeId"],
            "state": volume["State"],
            "zone": volume["AvailabilityZone"],
            "size_gib": volume["Size"],
            "volume_type": volume["VolumeType"],
            "tags": {t["Key"]: t["Value"] for t in volume.get("Tags") or []},
            "attachments": [
                {"instance_id": a["InstanceId"], "device": a["Device"], "state": a["State"]}
                for a in volume.get("Attachments") or []
            ],
        }

    # ----------------------------------------------------------------- helpers

    def _call(self, operation: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise AwsError(error.get("Code", "Unknown"), error.get("Message", str(exc)),
                           operation) from exc

    def _describe_volume(self, volume_id: str, operation: str) -> dict[str, Any]:
        volumes = self._call(operation, self._client("ec2").describe_volumes,
                             VolumeIds=[volume_id])["Volumes"]
        if not volumes:
            raise AwsError("InvalidVolume.NotFound",
                           f"The volume '{volume_id}' does not exist.", operation)
        return dict(volumes[0])

    def _instance(self, instance_id: str, operation: str) -> tuple[str, set[str]]:
        """An instance's zone and the device names in use on it (its block device mappings
        and root device), as DescribeInstances shows them.

        Read from this account's moto EC2 backend, as seeding writes it, not through the
        client and the server: the driver's attach path asks twice per attach, and each
        DescribeInstances cost ~10 ms of the sim's one interpreter (moto renders the whole
        instance as XML, botocore parses it back) - with 16 clusters attaching at once,
        time every cluster's requests queued behind. tests/sim/test_aws.py compares this
        read with DescribeInstances' answer."""
        from moto.ec2.exceptions import InvalidInstanceIdError

        try:
            instance = self._ec2().get_instance(instance_id)
        except InvalidInstanceIdError:
            raise AwsError("InvalidInstanceID.NotFound",
                           f"The instance ID '{instance_id}' does not exist",
                           operation) from None
        devices = set(instance.block_device_mapping)
        if instance.root_device_name:
            devices.add(instance.root_device_name)
        return str(instance.placement.zone), devices


# --------------------------------------------------------------------------- small helpers


def _tag_spec(resource_type: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"ResourceType": resource_type, "Tags": _tag_list(tags)}]


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _random_account_id() -> str:
    # Never moto's default 123456789012, never an Amazon AMI owner; 12 digits, no leading 0.
    return str(random.SystemRandom().randrange(200_000_000_000, 799_999_999_999))


def _random_lower(n: int) -> str:
    rng = random.SystemRandom()
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def _release_date_from_name(name: str) -> tuple[int, int, int] | None:
    match = re.search(r"(\d{4})\.(\d{2})\.(\d{2})$", name) or re.search(
        r"-v(\d{4})(\d{2})(\d{2})$", name)
    if not match:
        return None
    year, month, day = (int(g) for g in match.groups())
    return year, month, day
