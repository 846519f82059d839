"""Render the seed's manifests for one cluster of one run.

The YAML files under `manifests/` are the contract (they are what a person
would `kubectl apply`); rendering only adds what a run must add - its
namespace, its labels, the image for the cluster's Windows build - and
never rewrites what the seed specifies.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import yaml

from winstor.resources import data_dir
from winstor.targets.profiles import EKS, Profile

ROOT = data_dir("manifests")


@cache
def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def load(name: str) -> dict[str, Any]:
    return copy.deepcopy(_load(name))


def _label(obj: dict, labels: dict[str, str], namespace: str | None = None) -> dict:
    meta = obj.setdefault("metadata", {})
    meta.setdefault("labels", {}).update(labels)
    if namespace:
        meta["namespace"] = namespace
    return obj


def storage_class(labels: dict[str, str]) -> dict:
    return _label(load("storageclass-gp2-windows.yaml"), labels)


def claim(namespace: str, labels: dict[str, str]) -> dict:
    return _label(load("pvc-ebs-windows.yaml"), labels, namespace)


def deployment(namespace: str, labels: dict[str, str], image: str, build: str,
               profile: Profile = EKS) -> dict:
    dep = _label(load("deployment-windows-server.yaml"), labels, namespace)
    template = dep["spec"]["template"]
    template["spec"]["nodeSelector"]["node.kubernetes.io/windows-build"] = build
    template["spec"] = profile.render_pod_spec(template["spec"], image)
    template["metadata"]["labels"].update(labels)
    return dep


def fsx_pod(namespace: str, labels: dict[str, str], image: str, host_path: str, *,
            name: str = "test-fsx", node: str | None = None, build: str | None = None,
            profile: Profile = EKS) -> dict:
    pod = _label(load("pod-test-fsx.yaml"), labels, namespace)
    pod["metadata"]["name"] = name
    spec = pod["spec"]
    spec["volumes"][0]["hostPath"]["path"] = host_path
    if build:
        spec["nodeSelector"]["node.kubernetes.io/windows-build"] = build
    if node:
        spec["nodeSelector"]["kubernetes.io/hostname"] = node
    pod["spec"] = profile.render_pod_spec(spec, image)
    return pod


NODE_PROBE = "probe"  # the container of a node probe pod that probes run in
PREPULL = "prepull"


def node_probe_pod(namespace: str, labels: dict[str, str], node: str, name: str,
                   profile: Profile = EKS, prepull: str | None = None) -> dict:
    """The pod that runs node-level probes on `node`: HostProcess on Windows nodes,
    the stand-in with the node directory on kind.

    With `prepull` (the workloads' image), a second container pulls that image
    onto the node while the probe container is already running: the kubelet
    starts a pod's containers in order, so the probes never wait for it, while
    every later workload pod on the node finds the image there. HostProcess
    containers need not match the host build, so any workload image may be
    pulled this way; Kubernetes recommends HostProcess images be the
    workloads' base image for exactly this reason (no second image to store).
    """
    seed = "pod-hostprocess-probe.yaml" if profile.stand_in_image is None \
        else "pod-stand-in-node-probe.yaml"
    pod = _label(load(seed), labels, namespace)
    pod["metadata"]["name"] = name
    pod["spec"]["nodeSelector"]["kubernetes.io/hostname"] = node
    probe = pod["spec"]["containers"][0]
    if prepull and profile.stand_in_image is not None:
        probe["image"] = prepull  # the stand-in probes with the workloads' own pwsh image
    elif prepull and prepull != probe["image"]:
        pod["spec"]["containers"].append({
            "name": PREPULL, "image": prepull, "imagePullPolicy": "IfNotPresent",
            "command": list(probe["command"])})
    return pod
