"""`winstor janitor` in AWS: find the selected runs' EBS volumes, then detach and
delete them.

Every EC2 call goes through `_aws_call`, awsfacts' retry policy for throttling,
5xx and dropped connections. boto3 (through awsfacts and botocore) is imported only
inside the functions that talk to AWS, so `winstor --help` and a janitor run with
no AWS side never load it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, before_sleep_log, retry_if_exception, stop_after_attempt

from winstor.cleanup.report import Report, one_line
from winstor.cleanup.select import NAMESPACE_PREFIX, Selector
from winstor.cluster.target import RUN_LABEL
from winstor.errors import UsageError

#: The command's logger: retries are logged under `winstor janitor`'s name.
log = logging.getLogger("winstor.cli.janitor")
T = TypeVar("T")

#: The tag the EBS CSI driver (and the in-tree provisioner) puts on a volume it creates
#: for a claim: the claim's namespace, which for winstor's claims names the run.
PVC_NAMESPACE_TAG = "kubernetes.io/created-for/pvc/namespace"

_GONE_CODES = ("InvalidVolume.NotFound",)
_DETACHED_CODES = ("IncorrectState", "InvalidAttachment.NotFound", "InvalidInstanceID.NotFound",
                   "InvalidVolume.NotFound")


def _aws_call(fn: Callable[..., T], **kwargs: Any) -> T:
    """One EC2 call with awsfacts' retry policy for throttling, 5xx and dropped connections.
    Detach and delete are safe to repeat: their second attempt finds the work done."""
    from winstor.aws import facts as awsfacts  # boto3: loaded only when AWS is used

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

    from winstor.aws import facts as awsfacts
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
                                   f"{one_line(err)}") from None
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
            raise RuntimeError(f"delete failed: {one_line(err)}") from None
    return ", ".join([*done, "deleted"])


def clean_volumes(ec2: Any, where: str, volumes: list[dict], blocked: set[str], rep: Report,
                  timeout: float) -> None:
    """Remove `volumes` (`scan_volumes`' finding), reporting each; a volume whose claim's
    namespace is in `blocked` (it could not be removed from its cluster) is left alone."""
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
            rep.fail(where, f"ebs/{volume_id}", one_line(err))
            continue
        rep.gone(where, "ebs", volume_id, f"{_volume_detail(vol)}; {done}")
