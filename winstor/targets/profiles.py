"""What a profile changes about a cluster under test, and nothing else.

The checks, fixtures and probe files are the same on every profile. A profile
only says which nodes play the Windows nodes, how the seed's Windows pods are
rendered for them, which shell runs the probes (and which stand-in cmdlets it
needs), where the seed's Windows paths live, and which capabilities the
cluster cannot have - so that those checks skip with a stated reason instead
of failing for the wrong one.

- `eks`: the real thing. Windows nodes (`kubernetes.io/os=windows`),
  servercore pods, Windows PowerShell 5.1, paths as the seed writes them.
- `kind`: a laptop. The node labelled `winstor.io/windows-stand-in=true`
  plays the Windows node; a Linux pod with PowerShell 7 plays the Windows pod
  and runs the same probes with `pwsh`; the node directory `/winstor` (a kind
  `extraMounts` host directory) holds the share that stands in for the SMB
  Global Mapping (`G:` is `/winstor/share`) and the record of that mapping
  (read by the `stand-in` probe library); `C:\\` is the container's `/`.
- `controlplane`: EKS-like clusters whose Kubernetes is real (kube-apiserver,
  kube-controller-manager, kube-scheduler, etcd and the EBS CSI controller path,
  built from source: `winstor.targets.controlplane`) and whose nodes and AWS are
  emulated (winstor's node agent answers `pods/exec` with the embedded cluster's
  Windows models, moto plays EC2). The rendering is EKS's; what differs is where a
  verdict was reached, which reports say (`Profile.where`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CONTROLPLANE", "EKS", "KIND", "PROFILES", "Profile", "get"]

STAND_IN_LABEL = "winstor.io/windows-stand-in"
STAND_IN_IMAGE = "mcr.microsoft.com/powershell:lts-7.4-ubuntu-22.04"
NODE_DIR = "/winstor"
SHARE_DIR = f"{NODE_DIR}/share"
MAPPINGS_FILE = f"{NODE_DIR}/smb-global-mappings.json"
KEEP_ALIVE = "while ($true) { Start-Sleep -Seconds 3600 }"

_WINDOWS_PATH = re.compile(r"^[A-Za-z]:\\")
# The seed's Windows-only scheduling labels, replaced by the stand-in label on kind.
_WINDOWS_SELECTORS = ("kubernetes.io/os", "node.kubernetes.io/windows-build")


@dataclass(frozen=True)
class Profile:
    name: str
    shell: str  # the executable probes run with
    probe_libs: tuple[str, ...]  # extra `manifests/probes/lib/*.ps1` sent before each probe
    windows_selector: dict[str, str]  # labels of the nodes that play Windows nodes
    drives: dict[str, str] = field(default_factory=dict)  # "G:" -> where it lives here
    lacks: dict[str, str] = field(default_factory=dict)  # capability marker -> why absent
    stand_in_image: str | None = None
    # Where this profile's verdicts are reached, for reports; empty: on the cluster itself.
    where: str = ""

    @property
    def windows_nodes_hint(self) -> str:
        """How a person makes a node count as a Windows node on this profile."""
        labels = ",".join(f"{k}={v}" for k, v in self.windows_selector.items())
        return f"no node labelled {labels}"

    def is_windows_node(self, node: dict) -> bool:
        labels = (node.get("metadata") or {}).get("labels") or {}
        return all(labels.get(k) == v for k, v in self.windows_selector.items())

    def path(self, windows_path: str) -> str:
        """A seed path (`C:\\data`, `G:\\Directory\\app-state`) where it lives on this profile."""
        if not self.drives or not _WINDOWS_PATH.match(windows_path):
            return windows_path
        drive, rest = windows_path[:2].upper(), windows_path[3:]
        base = self.drives.get(drive)
        if base is None:
            return windows_path
        parts = [p for p in rest.split("\\") if p]
        return "/".join([base.rstrip("/"), *parts]) if parts else (base.rstrip("/") or "/")

    def probe_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Probe parameters with every Windows path mapped (the probes' callers
        keep writing the seed's paths)."""
        return {k: self.path(v) if isinstance(v, str) else v for k, v in params.items()}

    def render_pod_spec(self, spec: dict, image: str) -> dict:
        """A seed pod spec (Deployment template or Pod) for this profile's nodes."""
        spec = copy.deepcopy(spec)
        for c in spec.get("containers") or []:
            c["image"] = image
        if self.stand_in_image is None:
            return spec
        selector = spec.setdefault("nodeSelector", {})
        for key in _WINDOWS_SELECTORS:
            selector.pop(key, None)
        selector.update(self.windows_selector)
        for c in spec.get("containers") or []:
            if c.get("command") and str(c["command"][0]).lower().startswith("powershell"):
                c["command"] = [self.shell, "-NoLogo", "-NoProfile", "-Command", KEEP_ALIVE]
            for mount in c.get("volumeMounts") or []:
                mount["mountPath"] = self.path(mount["mountPath"])
        for volume in spec.get("volumes") or []:
            if "hostPath" in volume:
                volume["hostPath"]["path"] = self.path(volume["hostPath"]["path"])
        return spec


EKS = Profile(
    name="eks", shell="powershell.exe", probe_libs=(),
    windows_selector={"kubernetes.io/os": "windows"})

KIND = Profile(
    name="kind", shell="pwsh", probe_libs=("stand-in",),
    windows_selector={STAND_IN_LABEL: "true"},
    drives={"C:": "/", "G:": SHARE_DIR},
    stand_in_image=STAND_IN_IMAGE,
    lacks={
        "nodes": "the kind profile's nodes are Linux stand-ins: no Windows builds or AMIs "
                 "to check",
        "csi_proxy": "csi-proxy is a Windows node component; the kind profile's Linux "
                     "stand-ins have none",
        "ebs": "kind has no EBS: its storage is the local-path `standard` class",
        "storageclass": "the storage-class checks judge EBS classes (gp2, gp2-windows); "
                        "kind has only local-path `standard`",
        "smb_csi": "the SMB CSI checks judge the driver's Windows node plugin (csi-proxy, "
                   "New-SmbGlobalMapping); the kind profile's stand-ins are Linux",
    })

CONTROLPLANE = Profile(
    name="controlplane", shell="powershell.exe", probe_libs=(),
    windows_selector={"kubernetes.io/os": "windows"},
    where="control-plane profile: real kube-apiserver, kube-controller-manager, "
          "kube-scheduler and etcd, real EBS CSI controller, external-provisioner, "
          "-attacher and -resizer; emulated nodes (winstor's node agent, the embedded "
          "cluster's Windows models) and AWS (moto) - not EKS",
    lacks={
        "smb_csi": "the SMB CSI driver (smb.csi.k8s.io) does not run on the control-plane "
                   "profile: none is built beside the EBS CSI controller, and the node agent "
                   "does not model its node plugin",
        "shares": "the SMB CSI driver's shares (FSx for ONTAP, File Gateway) are not seeded "
                  "on the control-plane profile, which runs no SMB CSI driver",
    })

PROFILES: dict[str, Profile] = {p.name: p for p in (EKS, KIND, CONTROLPLANE)}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None
