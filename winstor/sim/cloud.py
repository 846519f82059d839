"""The sim's view of AWS: one moto backend shared by every emulated cluster.

Translates a cluster plan into the seed the AWS backend understands and
keeps the controllers' EBS calls in one place.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from .aws import AwsBackend, AwsError, ClusterAws, ClusterSeed, NodeSeed
from .shares import SharesSeed, seed_shares
from .topology import ClusterPlan

# Release dates of the EKS-optimized AMIs the clusters run: cluster 1 an
# autumn-2024 AMI (csi-proxy 1.1.3), cluster 2 a 2025 one (csi-proxy 1.2.1).
AMI_RELEASES = {1: "2024.11.12", 0: "2025.11.14"}

log = logging.getLogger(__name__)


class SimCloud:
    def __init__(self, region: str) -> None:
        self.backend = AwsBackend(region=region)

    def start(self) -> None:
        self.backend.start(wait=True)

    def warm(self) -> None:
        """Make the EBS clients once the sim is ready: ~0.4 s the start need not wait for.

        A failure here only means the first EBS call makes them instead.
        """
        try:
            self.backend.warm_clients()
        except Exception as exc:
            log.debug("warming the AWS clients failed: %s", exc)

    def stop(self) -> None:
        self.backend.stop()

    def write_env_file(self, path: Path) -> None:
        self.backend.write_env_file(path)

    def env(self) -> dict[str, str]:
        return self.backend.env()

    def seed_for_plan(self, plan: ClusterPlan) -> ClusterAws:
        nodes = tuple(NodeSeed(name=n.name, os=n.os,  # type: ignore[arg-type]
                               windows_build=n.windows_build if n.os == "windows" else None,
                               zone=n.zone, instance_type=n.instance_type,
                               nodegroup=n.nodegroup) for n in plan.nodes
                      if plan.flavour == "eks")  # kind nodes are containers, not EC2 instances
        return self.backend.seed_cluster(ClusterSeed(
            name=plan.name, k8s_version=plan.kube_version, nodes=nodes,
            ami_release=AMI_RELEASES[plan.index % 2]))

    def seed_shares(self, plan: ClusterPlan, cluster: ClusterAws,
                    scenarios: set[str] | frozenset[str]) -> SharesSeed:
        """The cluster's SMB shares of each kind in AWS (`winstor.sim.shares`)."""
        return seed_shares(self.backend, cluster, plan.index, scenarios)

    def create_volume(self, zone: str, size_gib: int, volume_type: str,
                      tags: dict[str, str]) -> str:
        return self.backend.create_volume(zone, size_gib, volume_type, tags)

    def attach_volume(self, volume_id: str, instance_id: str) -> str:
        return self.backend.attach_volume(volume_id, instance_id)

    def detach_volume(self, volume_id: str, instance_id: str) -> None:
        self.backend.detach_volume(volume_id, instance_id)

    def modify_volume(self, volume_id: str, size_gib: int, denied: bool = False) -> str:
        """ModifyVolume as the EBS CSI controller's role calls it; `denied`: the role's
        policy lacks ec2:ModifyVolume (IAM refuses before EC2 looks at the volume)."""
        if denied:
            b = self.backend
            raise AwsError(
                "UnauthorizedOperation",
                "You are not authorized to perform this operation. User: "
                f"arn:aws:sts::{b.account_id}:assumed-role/AmazonEKS_EBS_CSI_DriverRole/"
                f"{uuid.uuid4().int % 10**19:019d} is not authorized to perform: "
                f"ec2:ModifyVolume on resource: arn:aws:ec2:{b.region}:{b.account_id}:volume/"
                f"{volume_id} because no identity-based policy allows the ec2:ModifyVolume "
                f"action. Encoded authorization failure message: {uuid.uuid4().hex}",
                "modify_volume")
        return self.backend.modify_volume(volume_id, size_gib)

    def delete_volume(self, volume_id: str) -> None:
        self.backend.delete_volume(volume_id)
