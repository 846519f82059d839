"""Named faults: each breaks a cluster the way real clusters break.

A scenario only flips switches in the cluster model; the symptoms (events,
conditions, probe output) come from the same code paths a healthy cluster
uses, so a check that detects a scenario detects the real failure.
"""

from __future__ import annotations

from dataclasses import dataclass

SCENARIOS: dict[str, str] = {
    "windows-nodes-not-ready": "The Windows nodes' kubelets stopped posting status: the nodes "
                               "are Ready Unknown and tainted unreachable, so no Windows pod "
                               "can be scheduled.",
    "two-default-classes": "A second StorageClass (gp3, ebs.csi.aws.com) is also marked "
                           "default, as when an add-on installs its own default class.",
    "pod-security-off": "The API server runs without the PodSecurity admission plugin: "
                        "namespaces' pod-security.kubernetes.io/enforce labels are ignored.",
    "no-csi-proxy": "Windows nodes lack the csiproxy service and its pipes; the EBS CSI "
                    "Windows node plugin cannot register, so NTFS volumes never mount.",
    "csi-proxy-replaced": "The Windows nodes' csiproxy service runs csi-proxy 1.1.1, not the "
                          "build their EKS-optimized AMI ships, as when a node image installs "
                          "its own over the AMI's.",
    "smb-mapping-missing": "No SMB Global Mapping on the Windows nodes: G:\\Directory\\app-state "
                           "does not exist and hostPath pods fail to mount it (kind: the "
                           "stand-in has no mapping record; its share directory stays).",
    "smb-csi-node-plugin-missing": "The SMB CSI driver is installed without its Windows node "
                                   "plugin (no csi-smb-node-win DaemonSet): Windows nodes never "
                                   "register smb.csi.k8s.io, so SMB CSI volumes cannot mount "
                                   "there.",
    "smb-share-credentials-wrong": "The directory password of the SMB shares' service account "
                                   "(CORP\\winstor-smb) was rotated; the cluster's Secrets and "
                                   "AWS Secrets Manager hold the old one: new mappings of the "
                                   "FSx for Windows and ONTAP shares fail (The user name or "
                                   "password is incorrect.).",
    "smb-share-server-unresolvable": "The FSx for ONTAP SVM's SMB name has no DNS record: "
                                     "mapping its share fails with System error 53 (The "
                                     "network path was not found.).",
    "file-gateway-not-joined": "The File Gateway's SMB share uses ActiveDirectory "
                               "authentication, but the gateway never joined a domain (and has "
                               "no guest password): every logon to the share fails.",
    "image-pull-fails": "Pulls of mcr.microsoft.com/windows/servercore (kind: of the "
                        "mcr.microsoft.com/powershell stand-in) fail (manifest unknown), "
                        "so Windows workload pods stay in ErrImagePull/ImagePullBackOff.",
    "ebs-attach-fails": "EC2 AttachVolume fails for every EBS volume: pods report "
                        "FailedAttachVolume.",
    "wrong-windows-build": "Windows nodes are labelled 10.0.17763 but run build 10.0.20348: "
                           "ltsc2019 containers fail with an OS mismatch.",
    "intree-without-csi-driver": "Kubernetes >= 1.23 with CSI migration but no EBS CSI driver: "
                                 "kubernetes.io/aws-ebs claims are never provisioned.",
    "volume-loses-data": "The EBS CSI Windows node plugin formats the disk on every mount: "
                         "a replacement pod finds its volume empty.",
    "ebs-wrong-type": "The EBS provisioner ignores the class's type parameter and creates "
                      "gp3 volumes for gp2 classes (gp2 for gp3 ones).",
    "binds-before-consumer": "The EBS provisioner ignores volumeBindingMode: "
                             "WaitForFirstConsumer and provisions and binds claims at once "
                             "(in the zone of the first Ready Windows node of the workloads' "
                             "build).",
    "ebs-fstype-ignored": "The EBS provisioner ignores the class's fsType and records ext4 on "
                          "the persistent volumes; the Windows node plugin still formats "
                          "NTFS.",
    "claim-not-mounted": "The EBS CSI Windows node plugin reports NodePublishVolume done "
                         "without mounting: the volume is attached, but the container has "
                         "nothing at its mount path (no C:\\data).",
    "flaky-api": "The API server throttles (429 + Retry-After), fails (5xx), drops watches "
                 "every few seconds and refuses some exec handshakes.",
    "share-not-shared": "Each Windows node maps G: to a share of its own on the FSx server "
                        "(\\\\<fsx>\\share-<node>), not the one share: every mapping is OK, "
                        "but a file one node writes is not seen on another.",
    "share-read-only": "The FSx share grants the nodes Read only: writes through "
                       "G:\\Directory\\app-state fail with access denied.",
    "no-windows-nodes": "The cluster has Linux nodes only (kind: no stand-in node).",
    "resize-admission-off": "The API server runs without the PersistentVolumeClaimResize "
                            "admission plugin: a claim whose StorageClass does not allow "
                            "volume expansion can still be grown.",
    "ebs-modify-refused": "The EBS CSI controller's IAM role lacks ec2:ModifyVolume: growing a "
                          "claim fails in the external resizer with UnauthorizedOperation.",
    "defragsvc-disabled": "The Windows nodes' Optimize Drives service (defragsvc) is disabled, "
                          "as some hardening baselines do: csi-proxy's ResizeVolume cannot "
                          "size the partition (Get-PartitionSupportedSize: StorageWMI 4), so a "
                          "grown EBS volume's NTFS partition keeps its old size.",
    "retain-ignored": "The EBS provisioner gives every persistent volume reclaim policy Delete, "
                      "whatever its class says: deleting a Retain claim deletes its volume.",
    "volumes-retained": "The EBS CSI controller's DeleteVolume reports success without "
                        "deleting the EC2 volume: persistent volumes go, their EBS volumes "
                        "stay behind (available).",
    "one-windows-node-per-zone": "Each zone has one Windows node of the workloads' build: a "
                                 "pod drained off its node, or a second pod of its claim, has "
                                 "no other node in its volume's zone (volume node affinity "
                                 "conflict).",
    "attach-limit-reached": "In each zone the second Windows node's instance is at its EBS "
                            "attachment limit (another workload's volume holds the one slot "
                            "the EBS CSI node plugin registered): the scheduler places no "
                            "further EBS volume there (node(s) exceed max volume count).",
}

# What only the eks flavour has to break (Windows nodes, EBS, csi-proxy, a default EBS
# class, the FSx share behind SMB Global Mappings): on the kind flavour these would
# change nothing, so `winstor sim up` refuses them.
EKS_ONLY = frozenset({
    "smb-csi-node-plugin-missing", "smb-share-credentials-wrong",
    "smb-share-server-unresolvable", "file-gateway-not-joined",
    "volume-loses-data", "ebs-wrong-type", "binds-before-consumer", "no-csi-proxy",
    "csi-proxy-replaced",
    "wrong-windows-build", "intree-without-csi-driver", "ebs-attach-fails",
    "windows-nodes-not-ready", "two-default-classes", "share-not-shared", "share-read-only",
    "ebs-fstype-ignored", "claim-not-mounted", "resize-admission-off", "ebs-modify-refused",
    "defragsvc-disabled", "retain-ignored", "one-windows-node-per-zone",
    "attach-limit-reached", "volumes-retained"})


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
