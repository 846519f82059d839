"""Windows builds: a cluster of one build runs that build's servercore, and a cluster with
both builds runs each workload on a node of its image's build - the pairing a Windows
kubelet enforces (an ltsc2022 container on a 2019 host fails with "The container operating
system does not match the host operating system.")."""

from __future__ import annotations

import pytest

from winstor.cluster import ebs_lifecycle, manifests
from winstor.cluster.provision import IMAGE_TAG_BUILDS
from winstor.cluster.target import BUILD_LABEL, Cluster
from winstor.config import ClusterTarget, Timeouts


def _cluster(builds: list[str]) -> Cluster:
    c = Cluster(target=ClusterTarget(name="c", context=None), run_id="r", timeouts=Timeouts(),
                profile="eks")
    c.facts["nodes"] = [{"metadata": {"name": f"n{i}", "labels": {
        "kubernetes.io/os": "windows", BUILD_LABEL: b}}, "spec": {}}
        for i, b in enumerate(builds)]
    return c


def _build_of(image: str) -> str:
    return next(b for tag, b in IMAGE_TAG_BUILDS.items() if image.endswith(f":{tag}"))


def _workloads(c: Cluster) -> list[dict]:
    """The pod specs of every workload winstor starts on Windows nodes."""
    return [manifests.deployment("ns", c.labels(), c.image(), c.windows_build)
            ["spec"]["template"]["spec"],
            ebs_lifecycle.deployment_body(c, "ns")["spec"]["template"]["spec"],
            manifests.fsx_pod("ns", c.labels(), c.image(), "G:\\x", node=c.workload_nodes()[0],
                              build=c.windows_build)["spec"]]


@pytest.mark.parametrize(("build", "tag"), [("10.0.17763", "ltsc2019"),
                                             ("10.0.20348", "ltsc2022")])
def test_a_cluster_of_one_build_runs_its_servercore(build: str, tag: str) -> None:
    c = _cluster([build] * 4)
    assert c.windows_build == build and c.image().endswith(f":{tag}")
    assert c.workload_nodes() == ["n0", "n1", "n2", "n3"]
    for spec in _workloads(c):
        assert spec["nodeSelector"][BUILD_LABEL] == build
        assert {_build_of(ct["image"]) for ct in spec["containers"]} == {build}


def test_a_cluster_of_both_builds_runs_each_workload_on_its_images_build() -> None:
    c = _cluster(["10.0.20348"] * 4 + ["10.0.17763"])
    build = c.windows_build  # the seed's ltsc2019 where such nodes exist
    assert build == "10.0.17763" and c.workload_nodes() == ["n4"]
    for spec in _workloads(c):
        assert spec["nodeSelector"][BUILD_LABEL] == build
        assert {_build_of(ct["image"]) for ct in spec["containers"]} == {build}
    # Configured, the other build: image and node label move together.
    other = Cluster(target=ClusterTarget(name="c", context=None, windows_build="10.0.20348"),
                    run_id="r", timeouts=Timeouts(), profile="eks")
    other.facts["nodes"] = c.facts["nodes"]
    assert other.workload_nodes() == ["n0", "n1", "n2", "n3"]
    for spec in _workloads(other):
        assert spec["nodeSelector"][BUILD_LABEL] == "10.0.20348"
        assert {_build_of(ct["image"]) for ct in spec["containers"]} == {"10.0.20348"}
