"""Render the seed's manifests for one cluster of one run.

The YAML files under `manifests/` are the contract (they are what a person
would `kubectl apply`); rendering only adds what a run must add - its
namespace, its labels, the image for the cluster's Windows build - and
never rewrites what the seed specifies.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

import winstor

ROOT = Path(winstor.__file__).resolve().parent.parent / "manifests"


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


def _container_image(pod_spec: dict, image: str) -> None:
    for c in pod_spec["containers"]:
        c["image"] = image


def deployment(namespace: str, labels: dict[str, str], image: str, build: str) -> dict:
    dep = _label(load("deployment-windows-server.yaml"), labels, namespace)
    spec = dep["spec"]["template"]["spec"]
    spec["nodeSelector"]["node.kubernetes.io/windows-build"] = build
    _container_image(spec, image)
    dep["spec"]["template"]["metadata"]["labels"].update(labels)
    return dep


def fsx_pod(namespace: str, labels: dict[str, str], image: str, host_path: str, *,
            name: str = "test-fsx", node: str | None = None, build: str | None = None) -> dict:
    pod = _label(load("pod-test-fsx.yaml"), labels, namespace)
    pod["metadata"]["name"] = name
    spec = pod["spec"]
    _container_image(spec, image)
    spec["volumes"][0]["hostPath"]["path"] = host_path
    if build:
        spec["nodeSelector"]["node.kubernetes.io/windows-build"] = build
    if node:
        spec["nodeSelector"]["kubernetes.io/hostname"] = node
    return pod


def node_probe_pod(namespace: str, labels: dict[str, str], node: str, name: str) -> dict:
    pod = _label(load("pod-hostprocess-probe.yaml"), labels, namespace)
    pod["metadata"]["name"] = name
    pod["spec"]["nodeSelector"]["kubernetes.io/hostname"] = node
    return pod
