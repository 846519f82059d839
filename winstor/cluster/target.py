"""A cluster under test, as the fixtures and checks see it.

Holds the connection (made on first use), the run's labels, the timeouts,
cached node facts and the phase timeline the reports draw. Connection
problems become one-line `ConnectError`s that name the context and server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3

from winstor import kubeconfig as kubeconfig_file
from winstor.cluster.kube import NODES, Api, ConnectError, KubeError
from winstor.config import DEFAULT_BUILD, IMAGES_BY_BUILD, ClusterTarget, Timeouts
from winstor.targets.profiles import Profile
from winstor.targets.profiles import get as get_profile

MANAGED_BY = "app.kubernetes.io/managed-by"
RUN_LABEL = "winstor.io/run"
CLUSTER_LABEL = "winstor.io/cluster"
BUILD_LABEL = "node.kubernetes.io/windows-build"


log = logging.getLogger("winstor.cluster.target")
# The AWS services the checks read (EC2: nodes and volumes; FSx, Storage Gateway: the
# shares; Secrets Manager: their credentials), made while slow objects settle.
WARM_SERVICES = ("ec2", "fsx", "storagegateway", "secretsmanager")
WARM_NICE = 19


@dataclass
class Phase:
    name: str
    start: float
    end: float | None = None
    detail: str = ""


@dataclass
class Cluster:
    target: ClusterTarget
    run_id: str
    timeouts: Timeouts
    profile: str
    kubeconfig: str | None = None
    aws_env: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    timeline: list[Phase] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    keep_on_failure: bool = False
    _api: Api | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _aws_lock: threading.Lock = field(default_factory=threading.Lock)
    _opt_in: frozenset[str] | None = None

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def platform(self) -> Profile:
        """The rules of this cluster's profile: which nodes play Windows nodes, how
        pods are rendered, which shell runs probes, where the seed's paths live."""
        return get_profile(self.profile)

    def __repr__(self) -> str:
        return f"<Cluster {self.name}>"

    # -- connection ------------------------------------------------------------------
    @property
    def api(self) -> Api:
        with self._lock:
            if self._api is None:
                self._api = self._connect()
            return self._api

    def _connect(self) -> Api:
        kubeconfig = self.target.kubeconfig or self.kubeconfig
        api = Api.from_kubeconfig(kubeconfig, self.target.context)
        where = f"context {self.target.context or '(current)'} ({api.server})"
        try:
            version = api.version()
        except KubeError as err:
            if err.status == 401:
                raise ConnectError(f"{where}: the credentials were refused (401 Unauthorized); "
                                   "the token may be expired or wrong") from None
            raise ConnectError(f"{where}: {err.status} {err.reason}: {err.message}") from None
        except (ConnectionError, urllib3.exceptions.HTTPError, OSError) as err:
            text = str(err)
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                raise ConnectError(f"{where}: the server's certificate is not signed by the "
                                   "kubeconfig's certificate authority") from None
            raise ConnectError(f"{where}: the server does not answer ({text[:200]})") from None
        self.facts["kubernetes_version"] = f"{version.get('major')}.{version.get('minor')}"
        self.facts["server_version"] = version.get("gitVersion", "")
        return api

    # -- labels ----------------------------------------------------------------------
    def labels(self) -> dict[str, str]:
        return {MANAGED_BY: "winstor", RUN_LABEL: self.run_id, CLUSTER_LABEL: self.name}

    def run_selector(self) -> str:
        return f"{MANAGED_BY}=winstor,{RUN_LABEL}={self.run_id}"

    # -- facts -----------------------------------------------------------------------
    def nodes(self) -> list[dict]:
        if "nodes" not in self.facts:
            self.facts["nodes"] = self.api.items(NODES)
        return self.facts["nodes"]

    def windows_nodes(self) -> list[dict]:
        """The nodes that run the Windows workloads (on kind: their stand-ins)."""
        return [n for n in self.nodes() if self.platform.is_windows_node(n)]

    def workload_nodes(self) -> list[str]:
        """Names of the Windows nodes the workloads can run on: those of the workloads'
        build (a stand-in profile has no builds: all its stand-ins), sorted."""
        build = self.windows_build
        return sorted(n["metadata"]["name"] for n in self.windows_nodes()
                      if self.platform.stand_in_image
                      or (n["metadata"].get("labels") or {}).get(BUILD_LABEL) == build)

    @property
    def windows_build(self) -> str:
        """The Windows build the workloads target: configured, else read off the
        nodes - ltsc2019 where such nodes exist (the seed's choice), otherwise
        the build most Windows nodes run."""
        if self.target.windows_build:
            return self.target.windows_build
        builds = Counter((n["metadata"].get("labels") or {}).get(BUILD_LABEL)
                         for n in self.windows_nodes())
        builds.pop(None, None)
        if not builds or DEFAULT_BUILD in builds:
            return DEFAULT_BUILD
        return str(builds.most_common(1)[0][0])

    def image(self) -> str:
        """`--windows-image`, else the profile's stand-in, else servercore for the
        workloads' Windows build."""
        if self.target.windows_image:
            return self.target.windows_image
        if self.platform.stand_in_image:
            return self.platform.stand_in_image
        return IMAGES_BY_BUILD.get(self.windows_build, IMAGES_BY_BUILD[DEFAULT_BUILD])

    @property
    def opt_in(self) -> frozenset[str]:
        """The opt-in markers (`winstor.plugin.checks.OPT_IN`) this cluster lets run: from
        the run (`--opt-in`) or its clusters-file entry, and from its kubeconfig context's
        `winstor.io/opt-in` extension (`extension: {markers: [drain]}`), where whoever owns
        a cluster can declare it once - the embedded cluster's contexts do."""
        if self._opt_in is None:
            self._opt_in = frozenset(self.target.opt_in) | _declared_in_kubeconfig(
                self.target.kubeconfig or self.kubeconfig, self.target.context)
        return self._opt_in

    def keep_objects(self) -> bool:
        """Whether teardown must leave this cluster's objects for inspection."""
        return self.keep_on_failure and bool(self.failed_checks)

    def kube_minor(self) -> tuple[int, int]:
        _ = self.api
        major, minor = self.facts.get("kubernetes_version", "1.0").split(".")[:2]
        return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)

    # -- AWS ---------------------------------------------------------------------------
    def aws_session(self) -> Any:
        """A boto3 session, or None when this cluster has no AWS configuration."""
        with self._aws_lock:  # made once, whichever thread asks first (see warm_aws)
            return self._aws_session()

    def warm_aws(self) -> threading.Thread:
        """Make the AWS session and the clients the checks use in the background: importing
        boto3 and loading EC2's model cost a worker ~0.2 s of CPU, and each other service's
        model tens of ms more, which a run spends better while its cluster's slow objects
        settle (the head start) than when a check that reads AWS is waiting - in a fleet,
        the clusters reach the share checks at about the same moment, all of them busy.
        A failure here is the first check's to report.

        The thread runs at the lowest CPU priority (Linux schedules threads by their own
        nice value): in a fleet, other workers are still starting their clusters' slow
        objects at this moment, and every cluster's image pull waits on those, while this
        work has the whole pull to finish in."""
        def warm() -> None:
            with contextlib.suppress(AttributeError, OSError):  # not Linux: as it is
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WARM_NICE)
            try:
                session = self.aws_session()
                if session is not None:
                    from winstor.aws import facts as awsfacts
                    for service in WARM_SERVICES:
                        awsfacts.client(session, service)
            except Exception as exc:  # the check that asks again reports it
                log.debug("%s: preparing AWS in the background failed: %s", self.name, exc)

        thread = threading.Thread(target=warm, name=f"warm-aws-{self.name}", daemon=True)
        thread.start()
        return thread

    def _aws_session(self) -> Any:
        if "aws_session" in self.facts:
            return self.facts["aws_session"]
        from winstor.aws import facts as awsfacts
        session = None
        env = {**self.aws_env, **self.target.aws_env}
        region = self.target.aws_region or env.get("AWS_DEFAULT_REGION") or \
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if env:
            os.environ.update(env)  # the embedded cluster's moto endpoint and dummy keys
        with contextlib.suppress(ValueError):
            if region or self.target.aws_profile:
                candidate = awsfacts.make_session(region, self.target.aws_profile)
                if candidate.get_credentials() is not None:
                    session = candidate
        self.facts["aws_session"] = session
        return session

    # -- timeline ----------------------------------------------------------------------
    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[Phase]:
        p = Phase(name, time.time(), detail=detail)
        self.timeline.append(p)
        try:
            yield p
        finally:
            p.end = time.time()



OPT_IN_EXTENSION = "winstor.io/opt-in"


def _declared_in_kubeconfig(path: str | None, context: str | None) -> frozenset[str]:
    """The markers a kubeconfig context's `winstor.io/opt-in` extension names (none when
    the file cannot be read: this only ever turns checks on)."""
    import yaml

    try:
        data = kubeconfig_file.load(kubeconfig_file.chosen(path)) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return frozenset()
    if not isinstance(data, dict):
        return frozenset()
    name = context or data.get("current-context")
    entry = next((c for c in data.get("contexts") or []
                  if isinstance(c, dict) and c.get("name") == name), None)
    extensions = ((entry or {}).get("context") or {}).get("extensions") or []
    for ext in extensions if isinstance(extensions, list) else []:
        if isinstance(ext, dict) and ext.get("name") == OPT_IN_EXTENSION:
            markers = (ext.get("extension") or {}).get("markers") or []
            return frozenset(m for m in markers if isinstance(m, str))
    return frozenset()
