"""`winstor janitor`: remove what interrupted runs left behind, in clusters and in AWS.

A run cleans up after itself, but a killed CI job, a SIGKILLed xdist worker or a
cluster that stopped answering mid-teardown leaves namespaces, PersistentVolumes
and - the expensive part - EBS volumes behind. The janitor finds them by the marks
winstor puts on everything (labels `app.kubernetes.io/managed-by=winstor` and
`winstor.io/run`; the `gp2-windows` class's `winstor.io/created-by-run`
annotation; on EBS the `kubernetes.io/created-for/pvc/namespace` tag the CSI
driver sets, which names a run's namespace, or a `winstor.io/run` tag) and
removes only what carries them. An unmarked object is never touched, whatever its
name.

The order matters: namespaces first (their claims release the PVs, and the
cluster's provisioner usually deletes the volumes itself), then PVs still left,
then classes nobody uses any more, and only then AWS volumes that are still
there. Every wait is bounded by `--timeout`; what is stuck is reported with what
holds it (finalizers) instead of hanging.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import urllib3
from tenacity import Retrying, before_sleep_log, retry_if_exception, stop_after_attempt

from .cli import UsageError
from .config import ClusterTarget, Timeouts
from .kube import (
    DAEMONSETS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    PVCS,
    PVS,
    REPLICASETS,
    STORAGECLASSES,
    Api,
    ConnectError,
    KubeError,
    Resource,
)
from .provision import CREATED_BY
from .target import MANAGED_BY, RUN_LABEL, Cluster
from .waits import WaitFailed, wait_gone

log = logging.getLogger("winstor.janitor")
T = TypeVar("T")

#: The tag the EBS CSI driver (and the in-tree provisioner) puts on a volume it creates
#: for a claim: the claim's namespace, which for winstor's claims names the run.
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"
#: Namespaces a run creates: `winstor-<run>` and `winstor-<run>-<suffix>` (provision.py).
NAMESPACE_PREFIX = "winstor-"
RUN_NAMESPACE_SUFFIXES = ("", "host")

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
#: Kinds whose finalizers typically hold a namespace in Terminating.
_HOLDERS = (PODS, PVCS, DEPLOYMENTS, REPLICASETS, DAEMONSETS, Resource("v1", "configmaps"),
            Resource("v1", "services"))


# -- selection -------------------------------------------------------------------------
def parse_duration(text: str) -> float:
    """Seconds in `30m`, `2h`, `1d`, `1h30m` (units s, m, h, d, w); ValueError otherwise."""
    spec = text.strip().lower()
    if not spec or _DURATION.sub("", spec):
        raise ValueError(f"--older-than {text!r}: not a duration (use e.g. 45s, 30m, 2h, 1d, "
                         "1h30m)")
    seconds = float(sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(spec)))
    if seconds <= 0:
        raise ValueError(f"--older-than {text!r}: must be longer than zero (--all removes "
                         "every run's leftovers)")
    return seconds


def run_namespace_names(run: str) -> set[str]:
    """The namespace names a run with this id creates (see `provision.namespace_name`)."""
    return {f"{NAMESPACE_PREFIX}{run}{('-' + s) if s else ''}"[:63]
            for s in RUN_NAMESPACE_SUFFIXES}


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True)
class Selector:
    """Which runs' leftovers to take: one run, every run older than a duration, or all."""

    run: str | None = None
    older_than: float | None = None
    everything: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def describe(self) -> str:
        if self.run:
            return f"run {self.run}"
        if self.older_than is not None:
            return f"runs older than {self.older_than:.0f}s"
        return "all runs"

    def old_enough(self, stamp: Any) -> bool:
        """Whether an object created at `stamp` falls in the selection by age alone."""
        if self.everything:
            return True
        if self.older_than is None:
            return False
        created = _timestamp(stamp)
        return created is not None and (self.now - created).total_seconds() > self.older_than


# -- output ----------------------------------------------------------------------------
KIND_NAMES = {"namespace": ("namespace", "namespaces"),
              "pv": ("persistent volume", "persistent volumes"),
              "storageclass": ("storage class", "storage classes"),
              "ebs": ("EBS volume", "EBS volumes")}


def _count(n: int, singular: str, plural: str) -> str:
    return f"{n} {singular if n == 1 else plural}"


@dataclass
class Report:
    """One line per object as it is settled, then a summary; failures decide the exit code."""

    dry_run: bool
    out: Any = field(default_factory=lambda: sys.stdout)
    removed: Counter[str] = field(default_factory=Counter)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def _line(self, verb: str, where: str, what: str, detail: str = "") -> None:
        print(f"{verb:<13} {where:<14} {what}{(': ' + detail) if detail else ''}",
              file=self.out, flush=True)

    def gone(self, where: str, kind: str, name: str, detail: str = "") -> None:
        self.removed[kind] += 1
        self._line("would remove" if self.dry_run else "removed", where, f"{kind}/{name}",
                   detail)

    def keep(self, where: str, kind: str, name: str, why: str) -> None:
        self.kept.append(f"{kind}/{name}")
        self._line("kept", where, f"{kind}/{name}", why)

    def fail(self, where: str, what: str, why: str) -> None:
        self.failed.append(f"{where} {what}: {why}")
        self._line("NOT REMOVED", where, what, why)

    def note(self, where: str, text: str) -> None:
        self._line("note", where, text)

    def summary(self) -> str:
        total = sum(self.removed.values())
        parts = ", ".join(_count(n, *KIND_NAMES.get(k, (k, k))) for k, n in self.removed.items())
        verb = "would remove" if self.dry_run else "removed"
        text = f"janitor: {verb} {_count(total, 'object', 'objects')}" + (
            f" ({parts})" if parts else "")
        if self.kept:
            text += f"; kept {len(self.kept)} still in use"
        if self.failed:
            text += f"; {len(self.failed)} could not be removed"
        if self.dry_run:
            text += "; dry run, nothing was changed"
        return text


# -- one cluster -----------------------------------------------------------------------
def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _labels(obj: dict) -> dict[str, str]:
    return _meta(obj).get("labels") or {}


@dataclass
class ClusterPlan:
    """What one cluster holds of the selected runs, found before anything is removed."""

    where: str
    api: Api
    namespaces: list[dict] = field(default_factory=list)
    pvs: list[dict] = field(default_factory=list)
    classes: list[dict] = field(default_factory=list)
    runs: set[str] = field(default_factory=set)
    #: names whose claims/volumes belong to the selected runs
    names: set[str] = field(default_factory=set)
    #: namespaces that exist here and are not selected (live runs, or not winstor's)
    live: set[str] = field(default_factory=set)


def scan_cluster(api: Api, where: str, sel: Selector) -> ClusterPlan:
    plan = ClusterPlan(where, api)
    every = api.items(NAMESPACES)
    labelled = [ns for ns in every if _labels(ns).get(MANAGED_BY) == "winstor"]
    if sel.run:
        chosen = [ns for ns in labelled if _labels(ns).get(RUN_LABEL) == sel.run]
    else:
        # A run is old when any of its namespaces is: take all of that run's namespaces.
        old_runs = {_labels(ns).get(RUN_LABEL) for ns in labelled
                    if sel.old_enough(_meta(ns).get("creationTimestamp"))} - {None, ""}
        chosen = [ns for ns in labelled
                  if sel.old_enough(_meta(ns).get("creationTimestamp"))
                  or _labels(ns).get(RUN_LABEL) in old_runs]
    plan.namespaces = chosen
    plan.runs = {r for r in (_labels(ns).get(RUN_LABEL) for ns in chosen) if r}
    if sel.run:
        plan.runs.add(sel.run)
    chosen_names = {_meta(ns)["name"] for ns in chosen}
    existing = {_meta(ns)["name"] for ns in every}
    plan.live = existing - chosen_names
    derived = set().union(*(run_namespace_names(r) for r in plan.runs)) if plan.runs else set()
    # A derived name that exists without winstor's labels is somebody else's namespace.
    plan.names = chosen_names | (derived - plan.live)

    plan.pvs = [pv for pv in api.items(PVS) if _pv_selected(pv, plan, sel, existing)]

    for sc in api.items(STORAGECLASSES, label_selector=f"{MANAGED_BY}=winstor"):
        creator = (_meta(sc).get("annotations") or {}).get(CREATED_BY)
        if not creator:
            continue  # adopted or made by hand: not winstor's to remove
        if creator in plan.runs or (not sel.run and sel.old_enough(
                _meta(sc).get("creationTimestamp"))):
            plan.classes.append(sc)
    return plan


def _pv_selected(pv: dict, plan: ClusterPlan, sel: Selector, existing: set[str]) -> bool:
    """A PV of the selected runs: its claim was in one of their namespaces, it carries
    their labels, or (by age) its claim's winstor namespace no longer exists at all."""
    claim_ns = ((pv.get("spec") or {}).get("claimRef") or {}).get("namespace") or ""
    labels = _labels(pv)
    if claim_ns in plan.names:
        return True
    if labels.get(MANAGED_BY) == "winstor" and labels.get(RUN_LABEL) in plan.runs:
        return True
    return (not sel.run and claim_ns.startswith(NAMESPACE_PREFIX) and claim_ns not in existing
            and sel.old_enough(_meta(pv).get("creationTimestamp")))


def _class_users(api: Api, name: str, ignore_namespaces: Iterable[str] = (),
                 ignore_pvs: Iterable[str] = ()) -> list[str]:
    """Claims and PVs naming class `name`, leaving out those about to go with the run."""
    ignore_namespaces, ignore_pvs = set(ignore_namespaces), set(ignore_pvs)
    users = [f"{_meta(c)['namespace']}/{_meta(c)['name']}" for c in api.items(PVCS)
             if (c.get("spec") or {}).get("storageClassName") == name
             and _meta(c).get("namespace") not in ignore_namespaces]
    users += [f"pv/{_meta(p)['name']}" for p in api.items(PVS)
              if (p.get("spec") or {}).get("storageClassName") == name
              and _meta(p)["name"] not in ignore_pvs]
    return users


def _namespace_contents(api: Api, name: str) -> str:
    counts = []
    for res, one, many in ((PODS, "pod", "pods"), (PVCS, "claim", "claims")):
        n = len(api.items(res, name))
        if n:
            counts.append(_count(n, one, many))
    return ", ".join(counts)


def _holders(api: Api, name: str) -> str:
    """What keeps a Terminating namespace: objects with finalizers, else its conditions."""
    held = []
    for res in _HOLDERS:
        try:
            items = api.items(res, name)
        except KubeError:
            continue
        for obj in items:
            fins = _meta(obj).get("finalizers") or []
            if fins:
                held.append(f"{res.plural}/{_meta(obj)['name']} (finalizers: {', '.join(fins)})")
    if held:
        return "held by " + "; ".join(held[:5]) + (" ..." if len(held) > 5 else "")
    ns = api.get_or_none(NAMESPACES, name) or {}
    conds = [c.get("message", "") for c in (ns.get("status") or {}).get("conditions") or []
             if c.get("status") == "True" and c.get("message")]
    fins = _meta(ns).get("finalizers") or []
    if fins:
        conds.append(f"namespace finalizers: {', '.join(fins)}")
    return "; ".join(conds) or "nothing reported holding it"


def _remaining(deadline: float) -> float:
    return max(0.5, deadline - time.monotonic())


def clean_cluster(plan: ClusterPlan, rep: Report, timeout: float) -> set[str]:
    """Remove what `plan` found; return the namespace names whose objects could not go
    (their EBS volumes must not be pulled from under them)."""
    api, where = plan.api, plan.where
    blocked: set[str] = set()
    chosen = {_meta(ns)["name"] for ns in plan.namespaces}
    pv_names = {_meta(pv)["name"] for pv in plan.pvs}
    if rep.dry_run:
        for ns in plan.namespaces:
            rep.gone(where, "namespace", _meta(ns)["name"], _namespace_contents(api,
                                                                              _meta(ns)["name"]))
        for pv in plan.pvs:
            rep.gone(where, "pv", _meta(pv)["name"], _pv_detail(pv))
        for sc in plan.classes:
            users = _class_users(api, _meta(sc)["name"], plan.names, pv_names)
            if users:
                rep.keep(where, "storageclass", _meta(sc)["name"],
                         f"still used by {', '.join(users[:5])}")
            else:
                rep.gone(where, "storageclass", _meta(sc)["name"])
        return blocked

    # Namespaces: delete all, then wait for all against one deadline.
    deadline = time.monotonic() + timeout
    for ns in plan.namespaces:
        name = _meta(ns)["name"]
        if not _meta(ns).get("deletionTimestamp"):
            try:
                api.delete(NAMESPACES, name)
            except KubeError as err:
                if err.status != 409:  # 409: already terminating
                    rep.fail(where, f"namespace/{name}", f"delete refused: {err}")
                    blocked.add(name)
    for ns in plan.namespaces:
        name = _meta(ns)["name"]
        if name in blocked:
            continue
        try:
            wait_gone(api, NAMESPACES, name, None, what=f"namespace {name} to be deleted",
                      timeout=_remaining(deadline))
            rep.gone(where, "namespace", name)
        except WaitFailed:
            blocked.add(name)
            rep.fail(where, f"namespace/{name}",
                     f"still Terminating after {timeout:.0f}s; {_holders(api, name)}")

    # PVs: those the namespaces' claims did not take with them.
    deadline = time.monotonic() + timeout
    waiting: list[dict] = []
    for pv in plan.pvs:
        name = _meta(pv)["name"]
        current = api.get_or_none(PVS, name)
        if current is None:
            rep.gone(where, "pv", name, "with its claim")
            continue
        ref = (current.get("spec") or {}).get("claimRef") or {}
        claim = api.get_or_none(PVCS, ref["name"], ref["namespace"]) \
            if ref.get("name") and ref.get("namespace") else None
        if claim is not None and ref.get("uid") in (None, _meta(claim).get("uid")):
            blocked.add(ref["namespace"])
            rep.fail(where, f"pv/{name}",
                     f"still bound to claim {ref['namespace']}/{ref['name']}")
            continue
        if not _meta(current).get("deletionTimestamp"):
            try:
                api.delete(PVS, name)
            except KubeError as err:
                blocked.add(ref.get("namespace") or "")
                rep.fail(where, f"pv/{name}", f"delete refused: {err}")
                continue
        waiting.append(current)
    for pv in waiting:
        name = _meta(pv)["name"]
        try:
            wait_gone(api, PVS, name, None, what=f"persistent volume {name} to be deleted",
                      timeout=_remaining(deadline))
            rep.gone(where, "pv", name, _pv_detail(pv))
        except WaitFailed:
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            blocked.add(ref.get("namespace") or "")
            left = api.get_or_none(PVS, name) or pv
            fins = _meta(left).get("finalizers") or []
            rep.fail(where, f"pv/{name}", f"still there after {timeout:.0f}s"
                     + (f" (finalizers: {', '.join(fins)})" if fins else ""))

    # Classes last, once the claims and PVs that used them are gone.
    for sc in plan.classes:
        name = _meta(sc)["name"]
        users = _class_users(api, name)
        if users:
            stuck = [u for u in users if u.split("/", 1)[0] in chosen]
            why = f"still used by {', '.join(users[:5])}"
            if stuck:
                rep.fail(where, f"storageclass/{name}", why)
            else:
                rep.keep(where, "storageclass", name, why)
            continue
        current = api.get_or_none(STORAGECLASSES, name)
        if current is None:
            rep.gone(where, "storageclass", name, "already gone")
        elif _meta(current).get("uid") != _meta(sc).get("uid"):
            rep.keep(where, "storageclass", name, "replaced by a newer class meanwhile")
        else:
            try:
                api.delete(STORAGECLASSES, name)
            except KubeError as err:
                rep.fail(where, f"storageclass/{name}", f"delete refused: {err}")
                continue
            rep.gone(where, "storageclass", name)
    return blocked


def _pv_detail(pv: dict) -> str:
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    phase = (pv.get("status") or {}).get("phase", "")
    claim = f"claim {ref.get('namespace')}/{ref.get('name')}" if ref else "no claim"
    policy = spec.get("persistentVolumeReclaimPolicy", "?")
    return f"{phase or 'unknown phase'}, {claim}, reclaim {policy}"


# -- AWS -------------------------------------------------------------------------------
_GONE_CODES = ("InvalidVolume.NotFound",)
_DETACHED_CODES = ("IncorrectState", "InvalidAttachment.NotFound", "InvalidInstanceID.NotFound",
                   "InvalidVolume.NotFound")


def _aws_call(fn: Callable[..., T], **kwargs: Any) -> T:
    """One EC2 call with awsfacts' retry policy for throttling, 5xx and dropped connections.
    Detach and delete are safe to repeat: their second attempt finds the work done."""
    from . import awsfacts  # boto3: loaded only when AWS is used

    retrying = Retrying(retry=retry_if_exception(awsfacts.is_transient),
                        stop=stop_after_attempt(awsfacts.RETRY_ATTEMPTS),
                        wait=awsfacts.RETRY_WAIT, reraise=True,
                        before_sleep=before_sleep_log(log, logging.WARNING))
    return retrying(fn, **kwargs)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def make_aws(region: str | None, profile: str | None) -> tuple[Any, str]:
    """An EC2 client and where it points, or (None, why AWS is skipped).

    A named profile that does not exist is bad input (UsageError); no region or no
    credentials at all just means this janitor run has no AWS side.
    """
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    from . import awsfacts
    try:
        session = awsfacts.make_session(region, profile)
    except ProfileNotFound:
        raise UsageError(f"--aws-profile {profile}: no such AWS profile") from None
    except ValueError:
        return None, ("AWS skipped: no region configured (pass --aws-region, set AWS_REGION "
                      "or use a profile with a region)")
    try:
        creds = session.get_credentials()
    except BotoCoreError as err:
        return None, f"AWS skipped: credentials cannot be loaded ({err})"
    if creds is None:
        return None, "AWS skipped: no credentials configured"
    client = session.client("ec2", config=Config(retries={"total_max_attempts": 1},
                                                   connect_timeout=10, read_timeout=60))
    return client, f"aws:{session.region_name}"


def _tags(vol: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in vol.get("Tags") or []}


def _describe(ec2: Any, filters: list[dict]) -> list[dict]:
    out: list[dict] = []
    token: str | None = None
    while True:
        page = _aws_call(ec2.describe_volumes, Filters=filters,
                         **({"NextToken": token} if token else {}))
        out.extend(page.get("Volumes") or [])
        token = page.get("NextToken")
        if not token:
            return out


def scan_volumes(ec2: Any, sel: Selector, names: set[str], runs: set[str], live: set[str],
                 orphans_ok: bool) -> list[dict]:
    """EBS volumes of the selected runs: by the claim-namespace tag, or a `winstor.io/run` tag.

    `names`: namespaces of the selected runs; `live`: namespaces that exist in a scanned
    cluster and are not selected. With an age selector a volume whose winstor namespace
    exists nowhere scanned counts too (`orphans_ok`: every cluster could be scanned).
    """
    found: dict[str, dict] = {}
    for vol in _describe(ec2, [{"Name": "tag-key", "Values": [PVC_NAMESPACE_TAG]}]):
        ns = _tags(vol).get(PVC_NAMESPACE_TAG, "")
        if ns in live:
            continue  # a namespace that exists and is not selected: a live run, or not ours
        orphan = orphans_ok and not sel.run and ns.startswith(NAMESPACE_PREFIX) and \
            sel.old_enough(vol.get("CreateTime"))
        if ns in names or orphan:
            found[vol["VolumeId"]] = vol
    for vol in _describe(ec2, [{"Name": "tag-key", "Values": [RUN_LABEL]}]):
        run = _tags(vol).get(RUN_LABEL, "")
        if run and (run in runs or (not sel.run and sel.old_enough(vol.get("CreateTime")))):
            found[vol["VolumeId"]] = vol
    return [v for v in found.values() if v.get("State") not in ("deleting", "deleted")]


def _volume_detail(vol: dict) -> str:
    tags = _tags(vol)
    parts = []
    if PVC_NAMESPACE_TAG in tags:
        parts.append(f"claim {tags[PVC_NAMESPACE_TAG]}/"
                     f"{tags.get('kubernetes.io/created-for/pvc/name', '?')}")
    if RUN_LABEL in tags:
        parts.append(f"run {tags[RUN_LABEL]}")
    parts.append(f"{vol.get('State')}")
    return ", ".join(parts)


def _fresh(ec2: Any, volume_id: str) -> dict | None:
    try:
        vols = _aws_call(ec2.describe_volumes, VolumeIds=[volume_id]).get("Volumes") or []
    except Exception as err:
        if _code(err) in _GONE_CODES:
            return None
        raise
    vol = vols[0] if vols else None
    return None if vol is None or vol.get("State") in ("deleting", "deleted") else vol


def remove_volume(ec2: Any, vol: dict, timeout: float) -> str:
    """Detach (forced: the instance may be gone) and delete; return what was done.
    Raises RuntimeError with a one-line reason when the volume stays."""
    volume_id = vol["VolumeId"]
    current = _fresh(ec2, volume_id)
    if current is None:
        return "deleted with its PV"
    done = []
    for att in current.get("Attachments") or []:
        if att.get("State") not in ("attaching", "attached", "busy"):
            continue
        try:
            _aws_call(ec2.detach_volume, VolumeId=volume_id, InstanceId=att["InstanceId"],
                      Force=True)
        except Exception as err:
            if _code(err) not in _DETACHED_CODES:
                raise RuntimeError(f"detach from {att['InstanceId']} failed: "
                                   f"{_one_line(err)}") from None
        done.append(f"detached from {att['InstanceId']}")
    deadline = time.monotonic() + timeout
    pause = 0.1
    while current is not None and current.get("State") not in ("available", "error"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"still {current.get('State')} after {timeout:.0f}s")
        time.sleep(pause)
        pause = min(pause * 2, 3.0)
        current = _fresh(ec2, volume_id)
    if current is None:
        return ", ".join([*done, "deleted meanwhile"])
    try:
        _aws_call(ec2.delete_volume, VolumeId=volume_id)
    except Exception as err:
        if _code(err) not in _GONE_CODES:
            raise RuntimeError(f"delete failed: {_one_line(err)}") from None
    return ", ".join([*done, "deleted"])


def _one_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


# -- the command -----------------------------------------------------------------------
def _kube_contexts(kubeconfig: str | None) -> tuple[list[str], str | None]:
    """The kubeconfig's context names and its current context; UsageError if unreadable."""
    from kubernetes import config as k8s_config

    where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if kubeconfig and not os.path.isfile(kubeconfig):
        raise UsageError(f"kubeconfig {kubeconfig}: no such file")
    try:
        contexts, current = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
    except OSError as err:
        raise UsageError(f"cannot read kubeconfig {where}: {err.strerror or err}") from None
    except Exception as err:  # yaml errors, ConfigException: the file is not a kubeconfig
        raise UsageError(f"kubeconfig {where} is not usable: "
                         f"{_one_line(err)}") from None
    names = [c.get("name", "") for c in contexts or []]
    return names, (current or {}).get("name")


def validate(args: argparse.Namespace) -> tuple[Selector, list[str]]:
    """Everything checkable before any cluster or AWS is contacted."""
    chosen = [opt for opt, value in (("--run", args.run), ("--older-than", args.older_than),
                                     ("--all", args.all)) if value]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} cannot be combined: pick one")
    if not chosen:
        raise UsageError("say whose leftovers to remove: --run ID, --older-than DURATION "
                         "or --all")
    if args.run is not None and not _LABEL_VALUE.fullmatch(args.run):
        raise UsageError(f"--run {args.run!r}: not a run id (a label value: letters, digits, "
                         "'-', '_', '.', at most 63)")
    try:
        older = parse_duration(args.older_than) if args.older_than else None
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout:g}: must be a positive number of seconds")
    names, current = _kube_contexts(args.kubeconfig)
    contexts = list(dict.fromkeys(args.context))
    for ctx in contexts:
        if ctx not in names:
            raise UsageError(f"unknown context {ctx!r} (the kubeconfig has: "
                             f"{', '.join(names) or 'none'})")
    if not contexts:
        if not current:
            raise UsageError("the kubeconfig has no current context: pass --context NAME")
        contexts = [current]
    return Selector(run=args.run, older_than=older, everything=bool(args.all)), contexts


def run(args: argparse.Namespace) -> int:
    sel, contexts = validate(args)
    ec2, aws_where = make_aws(args.aws_region, args.aws_profile)
    rep = Report(dry_run=args.dry_run)
    endpoint = f" (endpoint {os.environ['AWS_ENDPOINT_URL']})" \
        if ec2 is not None and os.environ.get("AWS_ENDPOINT_URL") else ""
    print(f"janitor: {sel.describe()} in {', '.join(contexts)}"
          f"{' and ' + aws_where if ec2 is not None else ''}{endpoint}"
          f"{' (dry run)' if args.dry_run else ''}", flush=True)

    plans: list[ClusterPlan] = []
    all_scanned = True
    for ctx in contexts:
        cluster = Cluster(ClusterTarget(name=ctx, context=ctx, kubeconfig=args.kubeconfig),
                          run_id="janitor", timeouts=Timeouts(), profile="eks",
                          kubeconfig=args.kubeconfig)
        try:
            plans.append(scan_cluster(cluster.api, ctx, sel))
        except (ConnectError, KubeError, ConnectionError, urllib3.exceptions.HTTPError) as err:
            all_scanned = False
            rep.fail(ctx, "cluster", f"cannot be scanned: {_one_line(err)}")

    # AWS candidates are listed before the clusters are cleaned: deleting a namespace
    # usually makes its cluster delete the volumes, and they are reported all the same.
    volumes: list[dict] | None = None
    if ec2 is not None:
        volumes = _scan_aws(ec2, aws_where, sel, plans, all_scanned, rep)

    blocked: set[str] = set()
    for plan in plans:
        try:
            blocked |= clean_cluster(plan, rep, args.timeout)
        except (KubeError, ConnectionError, urllib3.exceptions.HTTPError) as err:
            blocked |= plan.names
            rep.fail(plan.where, "cluster", f"cleanup stopped: {_one_line(err)}")

    if ec2 is None:
        rep.note("aws", aws_where)
    elif volumes is not None:
        _clean_aws(ec2, aws_where, volumes, blocked, rep, args.timeout)

    print(rep.summary(), flush=True)
    if rep.failed:
        print(f"winstor janitor: {len(rep.failed)} could not be removed: "
              f"{'; '.join(rep.failed[:3])}{' ...' if len(rep.failed) > 3 else ''}",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _scan_aws(ec2: Any, where: str, sel: Selector, plans: list[ClusterPlan],
              all_scanned: bool, rep: Report) -> list[dict] | None:
    names: set[str] = set().union(*(p.names for p in plans)) if plans else set()
    runs: set[str] = set().union(*(p.runs for p in plans)) if plans else set()
    live: set[str] = set().union(*(p.live for p in plans)) if plans else set()
    if sel.run:
        runs.add(sel.run)
        names |= run_namespace_names(sel.run) - live
    try:
        return scan_volumes(ec2, sel, names, runs, live, orphans_ok=all_scanned)
    except Exception as err:  # botocore errors of every kind: one line, never a traceback
        rep.fail(where, "ebs", f"volumes cannot be listed: {_one_line(err)}")
        return None


def _clean_aws(ec2: Any, where: str, volumes: list[dict], blocked: set[str], rep: Report,
               timeout: float) -> None:
    for vol in volumes:
        volume_id = vol["VolumeId"]
        if rep.dry_run:
            rep.gone(where, "ebs", volume_id, _volume_detail(vol))
            continue
        ns = _tags(vol).get(PVC_NAMESPACE_TAG, "")
        if ns and ns in blocked:
            rep.fail(where, f"ebs/{volume_id}", f"left attached to its claim: namespace {ns} "
                     "could not be removed")
            continue
        try:
            done = remove_volume(ec2, vol, timeout)
        except RuntimeError as err:
            rep.fail(where, f"ebs/{volume_id}", str(err))
            continue
        except Exception as err:
            rep.fail(where, f"ebs/{volume_id}", _one_line(err))
            continue
        rep.gone(where, "ebs", volume_id, f"{_volume_detail(vol)}; {done}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "janitor", help="remove leftovers of interrupted runs (clusters and EBS volumes)",
        description="Find and remove what winstor runs left behind: namespaces labelled "
                    "app.kubernetes.io/managed-by=winstor, StorageClasses a run created (kept "
                    "while any claim or PV uses them), PVs of those namespaces' claims, and EBS "
                    "volumes whose kubernetes.io/created-for/pvc/namespace tag names such a "
                    "namespace (or that carry a winstor.io/run tag). Nothing without winstor's "
                    "labels or tags is touched. Exit status: 0 clean, 1 something could not be "
                    "removed, 2 bad input.")
    p.add_argument("--run", metavar="ID", help="the leftovers of this run id")
    p.add_argument("--older-than", metavar="DURATION",
                   help="the leftovers of every run older than this (e.g. 30m, 2h, 1d)")
    p.add_argument("--all", action="store_true",
                   help="the leftovers of every run, whatever its age (a live run's too)")
    p.add_argument("--context", action="append", default=[], metavar="NAME",
                   help="kubeconfig context to clean; repeatable (default: the current one)")
    p.add_argument("--kubeconfig", metavar="PATH",
                   help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--aws-region", metavar="REGION",
                   help="AWS region of the EBS volumes (default: AWS_REGION / the profile's)")
    p.add_argument("--aws-profile", metavar="PROFILE", help="AWS profile to use")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS",
                   help="longest wait for each stage (namespaces, PVs, a volume's detach); "
                        "default 300")
    p.add_argument("--dry-run", action="store_true",
                   help="list what would be removed, change nothing")
    p.set_defaults(func=run)
