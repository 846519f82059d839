"""Independent views of an embedded cluster for self-tests: the official
Python client's typed API and plain boto3 against moto."""

from __future__ import annotations

from typing import Any

import boto3
from kubernetes import client, config

from winstor.targets.embedded import SimProcess

MANAGED = "app.kubernetes.io/managed-by=winstor"


def core(sim: SimProcess, context: str = "sim-1") -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(str(sim.kubeconfig), context=context))


def api_client(sim: SimProcess, context: str = "sim-1") -> client.ApiClient:
    return config.new_client_from_config(str(sim.kubeconfig), context=context)


def ec2(sim: SimProcess) -> Any:
    env = sim.aws_env
    return boto3.client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"],
                        region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def leftovers(sim: SimProcess, context: str = "sim-1") -> list[str]:
    """Everything winstor-labelled still in the cluster, and tagged volumes in moto."""
    ac = api_client(sim, context)
    v1 = client.CoreV1Api(ac)
    storage = client.StorageV1Api(ac)
    out = [f"namespace/{n.metadata.name}" for n in
           v1.list_namespace(label_selector=MANAGED).items]
    out += [f"pod/{p.metadata.namespace}/{p.metadata.name}" for p in
            v1.list_pod_for_all_namespaces(label_selector=MANAGED).items]
    out += [f"pvc/{p.metadata.namespace}/{p.metadata.name}" for p in
            v1.list_persistent_volume_claim_for_all_namespaces().items
            if (p.metadata.namespace or "").startswith("winstor-")]
    # Every PV a run's claim had (any claim in a winstor- namespace, and PVs bound to
    # nothing), not the cluster's own (a scenario's pre-existing workload in kube-system).
    out += [f"pv/{p.metadata.name}" for p in v1.list_persistent_volume().items
            if p.spec.claim_ref is None
            or (p.spec.claim_ref.namespace or "").startswith("winstor-")]
    out += [f"storageclass/{c.metadata.name}" for c in
            storage.list_storage_class(label_selector=MANAGED).items]
    if sim.aws_env:
        vols = ec2(sim).describe_volumes()["Volumes"]
        for v in vols:
            tags = {t["Key"]: t["Value"] for t in v.get("Tags", [])}
            if tags.get("kubernetes.io/created-for/pvc/namespace", "").startswith("winstor-"):
                out.append(f"ebs/{v['VolumeId']} ({v['State']})")
    return out
