"""Every check fails, with its cause, on the scenario that breaks it - and only there.

Each scenario runs the whole catalog against a freshly broken cluster; the
table says which checks must fail and a phrase each failure message must
carry. Afterwards nothing the run created may be left behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_suite
from inspect_cluster import leftovers

ALL = {"NODES-READY-01", "NODES-BUILD-01", "NODES-AMI-01", "SC-DEFAULT-01", "SC-WINDOWS-01",
       "SC-MIGRATION-01", "EBS-CLAIM-01", "EBS-BIND-01", "EBS-MOUNT-01", "EBS-PERSIST-01",
       "EBS-VOLUME-01", "EBS-CLEANUP-01", "SMB-MAP-01", "SMB-POD-01", "SMB-SHARED-01",
       "FSX-AWS-01", "SMB-PSA-01", "CSIPROXY-PIPES-01", "CSIPROXY-SVC-01", "CSIPROXY-VER-01",
       "SHARE-AWS-01", "SMB-CSI-01", "SMB-CSI-02", "SMB-CSI-03"}
EBS_WORKLOAD = {"EBS-BIND-01", "EBS-MOUNT-01", "EBS-PERSIST-01", "EBS-VOLUME-01",
                "EBS-CLEANUP-01"}
# The EBS lifecycle (suites/test_ebs_lifecycle.py): its own claim and Deployment, and
# EBS-RESIZE-02 on the seed's claim; a cluster that cannot run the seed's workload cannot
# run these either, and fails them with the same cause.
EBS_LIFECYCLE = {"EBS-RESIZE-01", "EBS-RESIZE-02", "EBS-RETAIN-01", "EBS-MOVE-01",
                 "EBS-MOVE-02"}
ALL |= EBS_LIFECYCLE
EBS_WORKLOAD |= EBS_LIFECYCLE
MARKER_PATH_MISSING = "Could not find a part of the path 'C:\\data\\winstor-marker.txt'"
SMB_CSI_VOLUMES = {"SMB-CSI-02", "SMB-CSI-03"}  # the checks whose pods mount SMB CSI volumes
NOT_REGISTERED = "driver name smb.csi.k8s.io not found in the list of registered CSI drivers"

# scenario -> {check: phrase its failure message must contain}
EXPECTED: dict[str, dict[str, str]] = {
    "windows-nodes-not-ready": {
        "NODES-READY-01": "no Ready, schedulable Windows node labelled",
        **dict.fromkeys(EBS_WORKLOAD | {
            "NODES-BUILD-01", "CSIPROXY-PIPES-01", "CSIPROXY-SVC-01", "CSIPROXY-VER-01",
            "SMB-MAP-01", "SMB-POD-01", "SMB-SHARED-01", "FSX-AWS-01", "SMB-CSI-01",
            *SMB_CSI_VOLUMES},
            # The wait's own verdict on FailedScheduling, not a timeout - node probe
            # waits included, which judge one container and once waited out the clock.
            "cannot happen: no node can run the pod"),
    },
    "two-default-classes": {"SC-DEFAULT-01": "has 2 default StorageClasses (gp2, gp3)"},
    "pod-security-off": {"SMB-PSA-01": "yet a hostPath pod was admitted"},
    "no-csi-proxy": {
        "CSIPROXY-PIPES-01": "csi-proxy-filesystem-v1",
        "CSIPROXY-SVC-01": "has no csiproxy service",
        "CSIPROXY-VER-01": "no csiproxy service",
        "SC-MIGRATION-01": "node plugin is not registered",
        **dict.fromkeys(EBS_WORKLOAD, "does not contain driver ebs.csi.aws.com"),
        # The SMB node plugin in csi-proxy mode exits without csi-proxy: never registered.
        "SMB-CSI-01": "is not Ready (container smb: CrashLoopBackOff)",
        **dict.fromkeys(SMB_CSI_VOLUMES, NOT_REGISTERED),
    },
    # A csi-proxy other than the AMI's: only the version check can tell.
    "csi-proxy-replaced": {"CSIPROXY-VER-01": "runs csi-proxy 1.1.1, its AMI ships 1.1.3"},
    "smb-csi-node-plugin-missing": {
        "SMB-CSI-01": "no DaemonSet of the SMB CSI driver's Windows node plugin",
        **dict.fromkeys(SMB_CSI_VOLUMES, NOT_REGISTERED),
    },
    # The controller (Linux, mount -t cifs) refuses first for the claim; the node
    # (New-SmbGlobalMapping) for the static volume. The File Gateway (guest) still maps.
    "smb-share-credentials-wrong": {
        "SMB-CSI-02": "mount error(13): Permission denied",
        "SMB-CSI-03": "New-SmbGlobalMapping : The user name or password is incorrect.",
    },
    "smb-share-server-unresolvable": {
        "SMB-CSI-02": "could not resolve address for winstorsvm1.corp.example.com",
        "SMB-CSI-03": "New-SmbGlobalMapping : The network path was not found.",
    },
    "file-gateway-not-joined": {
        "SHARE-AWS-01": "uses ActiveDirectory authentication, but gateway sgw-",
        "SMB-CSI-02": "mount error(13): Permission denied",
        "SMB-CSI-03": "New-SmbGlobalMapping : The user name or password is incorrect.",
    },
    "smb-mapping-missing": {
        "SMB-MAP-01": "has no SMB Global Mapping for G:",
        "SMB-POD-01": "is not a directory",
        "SMB-SHARED-01": "is not a directory",
        "FSX-AWS-01": "nothing names the FSx file system",
    },
    "share-not-shared": {
        "SMB-SHARED-01": "does not see C:\\dotnetapp\\app-state\\winstor-",
    },
    "share-read-only": {
        "SMB-POD-01": "reported: Access to the path 'C:\\dotnetapp\\app-state\\winstor-",
        "SMB-SHARED-01": "SMB-POD-01 wrote no file to look for",
    },
    "image-pull-fails": {
        **dict.fromkeys(EBS_WORKLOAD, "ImagePullBackOff"),
        "SMB-POD-01": "ImagePullBackOff",
        "SMB-SHARED-01": "ImagePullBackOff",
        **dict.fromkeys(SMB_CSI_VOLUMES, "ImagePullBackOff"),
    },
    "ebs-attach-fails": dict.fromkeys(EBS_WORKLOAD, "FailedAttachVolume"),
    "wrong-windows-build": {
        "NODES-BUILD-01": "but runs Windows build 10.0.20348",
        "NODES-AMI-01": "Windows Server 2022 AMI",
        **dict.fromkeys(EBS_WORKLOAD, "does not match the host operating system"),
        "SMB-POD-01": "does not match the host operating system",
        "SMB-SHARED-01": "does not match the host operating system",
        **dict.fromkeys(SMB_CSI_VOLUMES, "does not match the host operating system"),
    },
    "volume-loses-data": {"EBS-PERSIST-01": "is gone in replacement pod",
                          "EBS-MOVE-01": "the marker file written before is gone"},
    "ebs-wrong-type": {"EBS-VOLUME-01": "type gp3, not gp2"},
    "binds-before-consumer": {"EBS-CLAIM-01": "was Bound before any pod used it"},
    "ebs-fstype-ignored": {"EBS-BIND-01": "has fsType 'ext4', not ntfs"},
    # Nothing at C:\data: the marker cannot be written either, so persistence fails too.
    "claim-not-mounted": {
        "EBS-MOUNT-01": "has no 'data' entry; the claim is not mounted at C:\\data",
        "EBS-PERSIST-01": MARKER_PATH_MISSING,
        "EBS-RESIZE-01": MARKER_PATH_MISSING,
        "EBS-MOVE-01": MARKER_PATH_MISSING,
    },
    "intree-without-csi-driver": {
        "SC-MIGRATION-01": "no CSIDriver ebs.csi.aws.com is installed",
        **dict.fromkeys(EBS_WORKLOAD, "not installed (no CSIDriver ebs.csi.aws.com)"),
    },
    # The EBS lifecycle's own scenarios: each breaks one step of it.
    "resize-admission-off": {"EBS-RESIZE-02": "the API server accepted growing claim"},
    "ebs-modify-refused": {"EBS-RESIZE-01": "api error UnauthorizedOperation"},
    "defragsvc-disabled": {"EBS-RESIZE-01": "StorageWMI 4,Get-PartitionSupportedSize"},
    "retain-ignored": {"EBS-RETAIN-01": "has reclaim policy Delete, not Retain"},
    "volumes-retained": {"EBS-CLEANUP-01": "still exists (available) after its claim"},
    "one-windows-node-per-zone": {
        "EBS-MOVE-01": "had volume node affinity conflict",
        "EBS-MOVE-02": "no other Ready, schedulable Windows node of build 10.0.17763 in zone",
    },
    "attach-limit-reached": dict.fromkeys({"EBS-MOVE-01", "EBS-MOVE-02"},
                                          "node(s) exceed max volume count"),
}

WINDOWS_CHECKS = ALL - {"SC-DEFAULT-01", "SC-WINDOWS-01", "EBS-CLAIM-01", "SMB-PSA-01",
                        "SHARE-AWS-01"}


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_scenario_fails_exactly_what_it_breaks(scenario: str, sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1, [scenario])
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1",
                        "--timeouts", "sim"], tmp_path, env=sim.aws_env)
    outcomes = {k.split(":", 1)[1]: v for k, v in result.outcomes.items()}
    messages = {k.split(":", 1)[1]: v for k, v in result.messages.items()}
    assert set(outcomes) == ALL, result.output[-3000:]
    expected = EXPECTED[scenario]
    failed = {c for c, o in outcomes.items() if o == "failed"}
    assert failed == set(expected), (
        f"unexpected failures: {sorted(failed - set(expected))}; "
        f"missing failures: {sorted(set(expected) - failed)}\n{result.output[-4000:]}")
    for check, phrase in expected.items():
        assert phrase in messages[check], f"{check}: {messages[check][:1500]}"
        assert "Traceback" not in messages[check]
    assert all(o == "passed" for c, o in outcomes.items() if c not in expected)
    assert result.code == 1
    assert leftovers(sim) == []


def test_no_windows_nodes_skips_windows_checks(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1, ["no-windows-nodes"])
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1"], tmp_path,
                       env=sim.aws_env)
    outcomes = {k.split(":", 1)[1]: v for k, v in result.outcomes.items()}
    messages = {k.split(":", 1)[1]: v for k, v in result.messages.items()}
    assert {c for c, o in outcomes.items() if o == "skipped"} == WINDOWS_CHECKS
    assert all("has no Windows nodes" in messages[c] for c in WINDOWS_CHECKS)
    assert {c for c, o in outcomes.items() if o == "passed"} == ALL - WINDOWS_CHECKS
    assert result.code == 0
    assert leftovers(sim) == []


@pytest.mark.parametrize("scenario", ["image-pull-fails", "ebs-attach-fails"])
def test_terminal_events_end_waits_early(scenario: str, sim_factory, tmp_path: Path) -> None:
    """The failing wait stops at the kubelet's or attacher's verdict, not at the
    timeout (90 s for a Windows pod on the sim profile)."""
    sim = sim_factory(1, [scenario])
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1",
                        "--timeouts", "sim", "-k", "EBS-BIND-01"], tmp_path, env=sim.aws_env)
    message = result.messages["sim-1:EBS-BIND-01"]
    assert "cannot happen" in message, message
    assert result.times["sim-1:EBS-BIND-01"] < 0.2 * 90, result.times


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_failures_are_reported_when_the_cluster_shows_them(xdist: list[str],
                                                           tmp_path: Path) -> None:
    """A slow object that fails early decides its checks at once: with the
    servercore pull taking seconds (a tenth of EKS time scaled by 0.02), the
    share pod's failed mount fails SMB-POD-01 and SMB-SHARED-01 before the
    checks that wait for the healthy Deployment's pull, though they come later
    in the catalog - and every verdict is the one catalog order gives. Under
    xdist the checks run out of turn are reported as themselves by the worker."""
    from winstor.targets.embedded import SimProcess

    sim = SimProcess(1, ["smb-mapping-missing"], time_scale=0.02)
    sim.start()
    try:
        args = [f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1", "--timeouts", "sim",
                *xdist]
        result = run_suite(args, tmp_path, env=sim.aws_env)
    finally:
        sim.stop()
    outcomes = {k.split(":", 1)[1]: v for k, v in result.outcomes.items()}
    assert {c for c, o in outcomes.items() if o == "failed"} == set(
        EXPECTED["smb-mapping-missing"]) | {"SMB-POD-01", "SMB-SHARED-01"}, result.output[-3000:]
    import xml.etree.ElementTree as ET
    order = [c.get("name", "").split(":", 1)[1].split("]")[0]
             for c in ET.parse(tmp_path / "junit-0.xml").getroot().iter("testcase")]
    assert order.index("SMB-POD-01") < order.index("EBS-BIND-01"), order
    assert order.index("SMB-SHARED-01") < order.index("EBS-BIND-01"), order
    assert sorted(order) == sorted(outcomes), order  # each check reported once
    assert "INTERNALERROR" not in result.output and "crashed" not in result.output


def test_one_container_waits_end_on_the_schedulers_verdict_only() -> None:
    """A wait for one container of several must not end on kubelet events (they may be
    about a sibling), but a pod no node can run never runs any container."""
    from winstor.cluster.waits import scheduling_terminal_event
    unschedulable = {"type": "Warning", "reason": "FailedScheduling",
                     "message": "0/3 nodes are available: 2 node(s) had untolerated taint "
                                "{node.kubernetes.io/unreachable: }. preemption: ..."}
    booting = {**unschedulable, "message": "0/3 nodes are available: 3 node(s) had "
                                           "untolerated taint {node.kubernetes.io/not-ready: }"}
    sibling_pull = {"type": "Warning", "reason": "Failed",
                    "message": 'Error: ImagePullBackOff (container "prepull")'}
    assert scheduling_terminal_event(unschedulable) == "no node can run the pod"
    assert scheduling_terminal_event(booting) is None  # a node still joining may come
    assert scheduling_terminal_event(sibling_pull) is None
