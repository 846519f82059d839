"""Named faults: each breaks a cluster the way real clusters break.

A scenario only flips switches in the cluster model; the symptoms (events,
conditions, probe output) come from the same code paths a healthy cluster
uses, so a check that detects a scenario detects the real failure.
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS: dict[str, str] = {
    "no-csi-proxy": "Windows nodes lack the csiproxy service and its pipes; the EBS CSI "
                    "Windows node plugin cannot register, so NTFS volumes never mount.",
    "smb-mapping-missing": "No SMB Global Mapping on the Windows nodes: G:\\Directory\\app-state "
                           "does not exist and hostPath pods fail to mount it (kind: the "
                           "stand-in has no mapping record; its share directory stays).",
    "image-pull-fails": "Pulls of mcr.microsoft.com/windows/servercore (kind: of the "
                        "mcr.microsoft.com/powershell stand-in) fail (manifest unknown), "
                        "so Windows workload pods stay in ErrImagePull/ImagePullBackOff.",
    "ebs-attach-fails": "EC2 AttachVolume fails for every EBS volume: pods report "
                        "FailedAttachVolume.",
    "wrong-windows-build": "Windows nodes are labelled 10.0.17763 but run build 10.0.20348: "
                           "ltsc2019 containers fail with an OS mismatch.",
    "intree-without-csi-driver": "Kubernetes >= 1.23 with CSI migration but no EBS CSI driver: "
                                 "kubernetes.io/aws-ebs claims are never provisioned.",
    "flaky-api": "The API server throttles (429 + Retry-After), fails (5xx), drops watches "
                 "every few seconds and refuses some exec handshakes.",
    "no-windows-nodes": "The cluster has Linux nodes only (kind: no stand-in node).",
}


@dataclass(frozen=True)
class ScenarioRequest:
    cluster: int | None  # None: every cluster
    name: str


def parse(spec: str, clusters: int) -> ScenarioRequest:
    """Parse ``[CLUSTER:]NAME``; CLUSTER is a 1-based index or a cluster name."""
    target, _, name = spec.rpartition(":")
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(sorted(SCENARIOS))})")
    if not target:
        return ScenarioRequest(None, name)
    index: int | None = None
    if target.isdigit():
        index = int(target)
    elif target.startswith("sim-") and target[4:].isdigit():
        index = int(target[4:])
    if index is None or not 1 <= index <= clusters:
        raise ValueError(f"scenario {spec!r}: cluster {target!r} is not one of "
                         f"1..{clusters} (or sim-1..sim-{clusters})")
    return ScenarioRequest(index, name)
