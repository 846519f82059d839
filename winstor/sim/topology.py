"""What each emulated cluster is made of: versions, node groups, zones.

The `kind` flavour is a laptop's kind cluster instead: a control plane and a
worker that stands in for the Windows node (see `winstor.sim.nodes.linux`).

Cluster 1 is the seed's picture (EKS 1.31, an ltsc2019 node group across two
zones). Cluster 2 differs the way a fleet's clusters do: a newer Kubernetes
and a Windows Server 2022 node group (its workloads run ltsc2022 images), so
that every default run covers both builds. Odd clusters repeat cluster 1, even
ones cluster 2.

Each Windows node group has two nodes in each zone: an EBS volume lives in one
zone, so a pod drained off its node can only move to another node of that zone
(`one-windows-node-per-zone` takes the second ones away).
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOWS_BUILDS = {"2019": "10.0.17763", "2022": "10.0.20348", "2025": "10.0.26100"}
OS_IMAGES = {"10.0.17763": "Windows Server 2019 Datacenter",
             "10.0.20348": "Windows Server 2022 Datacenter",
             "10.0.26100": "Windows Server 2025 Datacenter"}
KERNEL_REVISION = {"10.0.17763": "6893", "10.0.20348": "3207", "10.0.26100": "2894"}


# The kind flavour's cluster name (`kind create cluster --name winstor`): its
# nodes are `winstor-control-plane`, `winstor-worker`, `winstor-worker2`, ...
KIND_CLUSTER = "winstor"
# The kernel of the machine running kind: kind nodes are containers, so every
# node (and every pod) reports the host's kernel.
KIND_HOST_KERNEL = "6.8.0-52-generic"


def kind_node_name(cluster: str, position: int) -> str:
    """kind's name for the node at `position` (0 is the control plane)."""
    if position == 0:
        return f"{cluster}-control-plane"
    return f"{cluster}-worker" + (str(position) if position > 1 else "")


@dataclass(frozen=True)
class NodePlan:
    name: str
    os: str  # "windows" | "linux"
    windows_build: str | None  # the build the node runs
    label_build: str | None  # the build its label claims (differs under wrong-windows-build)
    zone: str
    instance_type: str
    nodegroup: str
    ip: str
    # kind flavour: the node plays a Windows node (label winstor.io/windows-stand-in,
    # the /winstor node directory, pods with PowerShell 7 answer the probes).
    stand_in: bool = False


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    index: int
    kube_version: str
    region: str
    flavour: str
    nodes: tuple[NodePlan, ...]


def plan(index: int, flavour: str, scenarios: set[str], region: str = "us-west-2") -> ClusterPlan:
    kube_version = "1.31" if index % 2 == 1 else "1.32"
    zones = [f"{region}a", f"{region}b"]
    nodes: list[NodePlan] = []
    octet = 10 * index

    def add(os_: str, build: str | None, zone: str, itype: str, group: str) -> None:
        if flavour == "eks":
            ip = f"10.{octet}.{zones.index(zone) + 1}.{len(nodes) + 11}"
            name = f"ip-{ip.replace('.', '-')}.{region}.compute.internal"
        else:
            # kind's node containers on its docker network, named as kind names them.
            ip = f"172.18.{index - 1}.{len(nodes) + 2}"
            name = kind_node_name(KIND_CLUSTER, len(nodes))
        label = build
        if build and "wrong-windows-build" in scenarios:
            # Labelled with one build, running another.
            build = WINDOWS_BUILDS["2022" if build == WINDOWS_BUILDS["2019"] else "2019"]
        nodes.append(NodePlan(name, os_, build, label, zone, itype, group, ip,
                              stand_in=flavour == "kind" and bool(nodes)
                              and "no-windows-nodes" not in scenarios))

    if flavour == "kind":
        add("linux", None, zones[0], "kind", "kind")
        add("linux", None, zones[0], "kind", "kind")
    else:
        add("linux", None, zones[0], "m5.large", "linux-ng")
        if "no-windows-nodes" not in scenarios:
            release, itype = ("2019", "m5.xlarge") if index % 2 == 1 else ("2022", "m6i.xlarge")
            per_zone = 1 if "one-windows-node-per-zone" in scenarios else 2
            for _ in range(per_zone):
                for zone in zones:
                    add("windows", WINDOWS_BUILDS[release], zone, itype,
                        f"windows-{release}-ng")
    return ClusterPlan(f"sim-{index}", index, kube_version, region, flavour, tuple(nodes))
