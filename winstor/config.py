"""Run settings: target clusters, timeouts, and the clusters file.

Everything a user can get wrong is checked here, before any cluster is
contacted, and reported as one `ConfigError` line naming the file, key and
what was expected.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

DEFAULT_BUILD = "10.0.17763"
DEFAULT_HOST_PATH = "G:\\Directory\\app-state"
IMAGES_BY_BUILD = {
    "10.0.17763": "mcr.microsoft.com/windows/servercore:ltsc2019",
    "10.0.20348": "mcr.microsoft.com/windows/servercore:ltsc2022",
    "10.0.26100": "mcr.microsoft.com/windows/servercore:ltsc2025",
}
HOSTPROCESS_IMAGE = (
    "mcr.microsoft.com/oss/kubernetes/windows-host-process-containers-base-image:v1.0.0")
KIND_STANDIN_IMAGE = "mcr.microsoft.com/powershell:lts-7.4-ubuntu-22.04"


class ConfigError(Exception):
    """Bad input; the message is one line and names what to fix."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds. EKS defaults follow the upstream e2e framework (timeouts.go)."""

    pod_start: float = 300
    pod_start_windows: float = 900  # PodStartSlow: servercore pulls take minutes
    claim_provision: float = 300
    claim_bound: float = 180
    pod_delete: float = 300
    pv_delete: float = 300
    namespace_delete: float = 300
    exec: float = 120

    @classmethod
    def profile(cls, name: str) -> Timeouts:
        if name == "eks":
            return cls()
        if name == "sim":
            # The embedded cluster runs EKS latencies at 1/500: keep generous
            # margins so a loaded CI machine never turns slowness into a verdict.
            return cls(pod_start=60, pod_start_windows=90, claim_provision=60, claim_bound=60,
                       pod_delete=60, pv_delete=60, namespace_delete=60, exec=60)
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"--timeouts {name}: not eks, sim, or a readable file")
        data = _load_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of timeout names to seconds")
        known = {f.name for f in fields(cls)}
        base = cls.profile(str(data.pop("base", "eks")))
        values: dict[str, float] = {}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"{path}: unknown timeout {key!r} (known: "
                                  f"{', '.join(sorted(known))})")
            # YAML reads .nan and .inf as floats (NaN fails every comparison), and an int
            # of 400 digits overflows float(): all three are refused, not waited on.
            seconds = math.nan
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    seconds = float(value)
                except OverflowError:
                    seconds = math.inf
            if not math.isfinite(seconds) or seconds <= 0:
                raise ConfigError(f"{path}: {key} must be a positive number of seconds, "
                                  f"not {str(value)[:40]!r}")
            values[key] = seconds
        return replace(base, **values)


SHARE_KINDS = ("fsx-windows", "fsx-ontap", "file-gateway")
ON_DELETE = ("delete", "retain", "archive")


@dataclass(frozen=True)
class ShareConfig:
    """One SMB share of a cluster (the clusters file's `shares:`), and how to reach it.

    `kind` says which AWS service serves it (the checks read that service's facts);
    `source` is the SMB CSI driver's `//server/share`; `host_path` is where the Windows
    nodes map it (checked by SMB-MAP-01), if they do; the credentials are a Secret the
    cluster holds (`namespace/name`, keys username/password/domain) or an AWS Secrets
    Manager secret (id or ARN, a JSON object with the same keys); `on_delete` is the
    StorageClass's `onDelete` for the claims winstor provisions on it.
    """

    name: str
    kind: str
    source: str
    host_path: str | None = None
    secret: str | None = None
    secrets_manager: str | None = None
    on_delete: str = "delete"

    @property
    def server(self) -> str:
        return self.source.strip("/").split("/", 1)[0]

    @property
    def unc(self) -> str:
        """`\\\\server\\share` (what New-SmbGlobalMapping and Get-SmbGlobalMapping show)."""
        return "\\\\" + self.source.strip("/").replace("/", "\\")


@dataclass(frozen=True)
class ClusterTarget:
    """One cluster of the run and what the checks should expect of it."""

    name: str
    context: str | None
    kubeconfig: str | None = None
    aws_region: str | None = None
    aws_profile: str | None = None
    windows_build: str | None = None  # None: chosen from the nodes (see Cluster)
    fsx_share: str | None = None
    host_path: str = DEFAULT_HOST_PATH
    windows_image: str | None = None
    # Opt-in markers (winstor.plugin.checks.OPT_IN) this cluster lets run, sorted.
    opt_in: tuple[str, ...] = ()
    shares: tuple[ShareConfig, ...] = ()
    aws_env: dict[str, str] = field(default_factory=dict, compare=False)  # e.g. a moto endpoint
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


class _NoAliasLoader(yaml.SafeLoader):
    """Refuses anchors and aliases: a clusters file has no use for them, and
    they are how 'billion laughs' documents blow up memory."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigError(f"YAML aliases are not allowed (line {event.start_mark.line + 1})")
        return super().compose_node(parent, index)


def _load_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if len(text) > 1 << 20:
        raise ConfigError(f"{path}: larger than 1 MiB; that is not a clusters file")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None


_CLUSTER_KEYS = {"name": str, "context": str, "kubeconfig": str, "aws": dict,
                 "windows_build": str, "fsx": dict, "windows_image": str, "shares": list}
_SHARE_KEYS = {"name": str, "kind": str, "source": str, "host_path": str, "credentials": dict,
               "on_delete": str}
_CREDENTIAL_KEYS = {"secret": str, "secrets_manager": str}
_CLUSTER_KEYS["opt_in"] = list  # opt-in markers the cluster declares (see ClusterTarget)
_AWS_KEYS = {"region": str, "profile": str}
_FSX_KEYS = {"share": str, "host_path": str}


def _check(where: str, data: dict, schema: dict[str, type]) -> None:
    for key, value in data.items():
        if key not in schema:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: "
                              f"{', '.join(sorted(schema))})")
        want = schema[key]
        if not isinstance(value, want) or isinstance(value, bool):
            raise ConfigError(f"{where}.{key}: expected {want.__name__}, got "
                              f"{type(value).__name__} ({value!r})"[:200])


def load_clusters_file(path: str) -> list[ClusterTarget]:
    p = Path(path)
    data = _load_yaml(p)
    if not isinstance(data, dict) or set(data) != {"clusters"}:
        raise ConfigError(f"{p}: expected a mapping with one key, 'clusters' (a list)")
    items = data["clusters"]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{p}: 'clusters' must be a non-empty list")
    targets: list[ClusterTarget] = []
    for i, item in enumerate(items):
        where = f"{p}: clusters[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping")
        _check(where, item, _CLUSTER_KEYS)
        aws, fsx = item.get("aws") or {}, item.get("fsx") or {}
        _check(f"{where}.aws", aws, _AWS_KEYS)
        _check(f"{where}.fsx", fsx, _FSX_KEYS)
        context = item.get("context")
        name = item.get("name") or context
        if not name:
            raise ConfigError(f"{where}: needs a 'context' (or a 'name' for the current "
                              "context)")
        build = item.get("windows_build")
        if build is not None and build not in IMAGES_BY_BUILD:
            raise ConfigError(f"{where}.windows_build: {build!r} is not a known Windows "
                              f"Server build ({', '.join(IMAGES_BY_BUILD)})")
        targets.append(ClusterTarget(
            name=safe_name(name), context=context,
            kubeconfig=os.path.expanduser(item["kubeconfig"]) if item.get("kubeconfig")
            else None, aws_region=aws.get("region"), aws_profile=aws.get("profile"),
            windows_build=build, fsx_share=fsx.get("share"),
            host_path=fsx.get("host_path", DEFAULT_HOST_PATH),
            windows_image=item.get("windows_image"),
            shares=_shares(where, item.get("shares") or [])))
        targets[-1] = replace(targets[-1], opt_in=_opt_in(where, item))
    names = [t.name for t in targets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{p}: cluster names must be unique: {', '.join(dupes)}")
    return targets


def _shares(where: str, items: list) -> tuple[ShareConfig, ...]:
    """The `shares:` of one cluster, each checked (kind, source, credentials, onDelete)."""
    out: list[ShareConfig] = []
    for i, item in enumerate(items):
        here = f"{where}.shares[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{here}: expected a mapping")
        _check(here, item, _SHARE_KEYS)
        kind = item.get("kind")
        if kind not in SHARE_KINDS:
            raise ConfigError(f"{here}.kind: expected one of {', '.join(SHARE_KINDS)}, "
                              f"got {kind!r}"[:200])
        raw = item.get("source")
        parts = [p for p in str(raw or "").replace("\\", "/").split("/") if p]
        if len(parts) < 2:
            raise ConfigError(f"{here}.source: expected \\\\server\\share or //server/share, "
                              f"got {raw!r}"[:200])
        creds = item.get("credentials") or {}
        _check(f"{here}.credentials", creds, _CREDENTIAL_KEYS)
        if len(creds) > 1:
            raise ConfigError(f"{here}.credentials: give one of secret or secrets_manager")
        secret = creds.get("secret")
        if secret is not None and (secret.count("/") != 1 or not all(secret.split("/"))):
            raise ConfigError(f"{here}.credentials.secret: expected namespace/name, got "
                              f"{secret!r}"[:200])
        on_delete = item.get("on_delete", "delete")
        if on_delete not in ON_DELETE:
            raise ConfigError(f"{here}.on_delete: expected one of {', '.join(ON_DELETE)}, "
                              f"got {on_delete!r}"[:200])
        name = item.get("name") or kind
        if not name.replace("-", "").isalnum() or not name.islower() or len(name) > 30:
            raise ConfigError(f"{here}.name: lower-case letters, digits and '-', at most 30 "
                              f"characters, got {name!r}"[:200])
        out.append(ShareConfig(name=name, kind=kind, source="//" + "/".join(parts),
                               host_path=item.get("host_path"), secret=secret,
                               secrets_manager=creds.get("secrets_manager"),
                               on_delete=on_delete))
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{where}.shares: names must be unique (give each a name): "
                          f"{', '.join(dupes)}")
    return tuple(out)


def _opt_in(where: str, item: dict) -> tuple[str, ...]:
    """A clusters-file entry's `opt_in`: a list of marker names (checked by the plugin,
    which knows them)."""
    names = item.get("opt_in") or []
    if not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{where}.opt_in: expected a list of marker names, got {names!r}"[:200])
    return tuple(sorted(set(names)))


def safe_name(text: str) -> str:
    """A cluster name usable in test ids and file names (EKS ARNs have '/' and ':')."""
    short = text.rsplit("/", 1)[-1] if text.startswith("arn:") else text
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in short)[:63] or "cluster"
