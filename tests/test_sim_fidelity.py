"""Control-plane behaviour of the embedded cluster that checks rely on:
admission, immutability, namespace termination, garbage collection,
Pod Security, zonal binding and RWO multi-attach - each as a real cluster
shows it, seen through the official client."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import eventually
from inspect_cluster import api_client

SERVERCORE = "mcr.microsoft.com/windows/servercore:ltsc2019"


@pytest.fixture(scope="module")
def apis(shared_sim):
    ac = api_client(shared_sim)
    return client.CoreV1Api(ac), client.StorageV1Api(ac), client.AppsV1Api(ac)


def _ns(v1: client.CoreV1Api, name: str, level: str | None = None) -> None:
    labels = {"pod-security.kubernetes.io/enforce": level} if level else {}
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name,
                                                                        labels=labels)))


def _events(v1: client.CoreV1Api, ns: str, name: str) -> list[str]:
    return [f"{e.reason}: {e.message}" for e in v1.list_namespaced_event(ns).items
            if e.involved_object.name == name]


def test_storage_class_parameters_are_immutable(apis) -> None:
    _, storage, _ = apis
    sc = storage.read_storage_class("gp2")
    sc.parameters["fsType"] = "ntfs"
    with pytest.raises(ApiException) as exc:
        storage.replace_storage_class("gp2", sc)
    body = json.loads(exc.value.body)
    assert exc.value.status == 422 and body["reason"] == "Invalid"
    assert "parameters: Forbidden: updates to parameters are forbidden." in body["message"]


def test_default_class_fills_claims_without_one(apis) -> None:
    v1, _, _ = apis
    _ns(v1, "fid-default")
    pvc = v1.create_namespaced_persistent_volume_claim(
        "fid-default", client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="c"),
        spec=client.V1PersistentVolumeClaimSpec(access_modes=["ReadWriteOnce"],
                                                resources=client.V1ResourceRequirements(
                                                    requests={"storage": "1Gi"}))))
    assert pvc.spec.storage_class_name == "gp2"
    assert "kubernetes.io/pvc-protection" in pvc.metadata.finalizers
    explicit = v1.create_namespaced_persistent_volume_claim(
        "fid-default", client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="static"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"], storage_class_name="",
                resources=client.V1ResourceRequirements(requests={"storage": "1Gi"}))))
    assert explicit.spec.storage_class_name == ""
    v1.delete_namespace("fid-default")


def test_namespace_termination_waits_for_finalizers(apis) -> None:
    v1, _, _ = apis
    _ns(v1, "fid-term")
    v1.create_namespaced_config_map("fid-term", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="held", finalizers=["example.com/hold"])))
    v1.delete_namespace("fid-term")
    ns = eventually(lambda: (n := v1.read_namespace("fid-term")).status.conditions and n)
    assert ns.status.phase == "Terminating"
    conds = {c.type: c.message for c in ns.status.conditions}
    assert "example.com/hold in 1 resource instances" in conds["NamespaceFinalizersRemaining"]
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map("fid-term", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="late")))
    assert exc.value.status == 403 and "being terminated" in exc.value.body
    v1.patch_namespaced_config_map("held", "fid-term", {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            v1.read_namespace("fid-term")
        except ApiException as err:
            return err.status == 404
        return False
    eventually(gone)


def test_owner_references_cascade_and_orphan(apis) -> None:
    v1, _, apps = apis
    _ns(v1, "fid-gc")
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels={"app": "gc"}),
        spec=client.V1PodSpec(node_selector={"kubernetes.io/os": "linux"},
                              containers=[client.V1Container(name="c", image="busybox:1.36")]))
    for name in ("cascade", "orphan"):
        apps.create_namespaced_deployment("fid-gc", client.V1Deployment(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1DeploymentSpec(selector=client.V1LabelSelector(
                match_labels={"app": "gc"}), template=template)))
    eventually(lambda: len(apps.list_namespaced_replica_set("fid-gc").items) == 2)
    apps.delete_namespaced_deployment("cascade", "fid-gc")
    apps.delete_namespaced_deployment("orphan", "fid-gc", propagation_policy="Orphan")
    eventually(lambda: [r.metadata.name.split("-")[0] for r in
                        apps.list_namespaced_replica_set("fid-gc").items] == ["orphan"])
    left = apps.list_namespaced_replica_set("fid-gc").items[0]
    assert not left.metadata.owner_references
    v1.delete_namespace("fid-gc")


def test_pod_security_refuses_hostpath_and_hostprocess_below_privileged(apis) -> None:
    v1, _, _ = apis
    _ns(v1, "fid-psa", "baseline")
    host_path = client.V1Pod(metadata=client.V1ObjectMeta(name="hp"), spec=client.V1PodSpec(
        containers=[client.V1Container(name="c", image=SERVERCORE)],
        volumes=[client.V1Volume(name="share", host_path=client.V1HostPathVolumeSource(
            path="G:\\Directory\\app-state", type="Directory"))]))
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_pod("fid-psa", host_path)
    assert exc.value.status == 403
    assert 'violates PodSecurity "baseline:latest": hostPath volumes (volume "share")' in \
        json.loads(exc.value.body)["message"]
    host_process = client.V1Pod(metadata=client.V1ObjectMeta(name="hpc"), spec=client.V1PodSpec(
        host_network=True,
        security_context=client.V1PodSecurityContext(windows_options=client.V1WindowsSecurityContextOptions(
            host_process=True, run_as_user_name="NT AUTHORITY\\SYSTEM")),
        containers=[client.V1Container(name="c", image=SERVERCORE)]))
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_pod("fid-psa", host_process)
    message = json.loads(exc.value.body)["message"]
    assert "hostProcess" in message and "host namespaces (hostNetwork=true)" in message
    v1.delete_namespace("fid-psa")


def test_rwo_volume_multi_attach_error_across_nodes(apis) -> None:
    """Two pods on two nodes of one zone share a RWO EBS claim: the second gets
    the attach-detach controller's Multi-Attach error and never starts."""
    v1, storage, _ = apis
    _ns(v1, "fid-rwo")
    nodes = [n.metadata.name for n in v1.list_node(label_selector="kubernetes.io/os=windows").items]
    zone = v1.read_node(nodes[0]).metadata.labels["topology.kubernetes.io/zone"]
    storage.create_storage_class(client.V1StorageClass(
        metadata=client.V1ObjectMeta(name="fid-immediate"), provisioner="ebs.csi.aws.com",
        parameters={"type": "gp3", "csi.storage.k8s.io/fstype": "ntfs"},
        volume_binding_mode="Immediate",
        allowed_topologies=[client.V1TopologySelectorTerm(match_label_expressions=[
            client.V1TopologySelectorLabelRequirement(key="topology.kubernetes.io/zone",
                                                      values=[zone])])]))
    v1.create_namespaced_persistent_volume_claim("fid-rwo", client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="rwo"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name="fid-immediate",
            resources=client.V1ResourceRequirements(requests={"storage": "1Gi"}))))
    eventually(lambda: v1.read_namespaced_persistent_volume_claim(
        "rwo", "fid-rwo").status.phase == "Bound")
    # Nodes of the sim's first cluster are spread over two zones; both pods are
    # pinned to nodes by name, bypassing the volume's zone only for the second
    # node when it is in the same zone - otherwise the scheduler refuses it.
    same_zone = [n for n in nodes
                 if v1.read_node(n).metadata.labels["topology.kubernetes.io/zone"] == zone]
    for i, node in enumerate([same_zone[0], same_zone[0]]):
        v1.create_namespaced_pod("fid-rwo", client.V1Pod(
            metadata=client.V1ObjectMeta(name=f"user-{i}"),
            spec=client.V1PodSpec(node_name=node if i == 0 else None,
                                  node_selector=None if i == 0 else
                                  {"kubernetes.io/hostname": node},
                                  containers=[client.V1Container(name="c", image=SERVERCORE)],
                                  volumes=[client.V1Volume(
                                      name="d", persistent_volume_claim=client.
                                      V1PersistentVolumeClaimVolumeSource(claim_name="rwo"))])))
    eventually(lambda: v1.read_namespaced_pod("user-0", "fid-rwo").status.phase == "Running")
    # Same node: RWO allows it - the second pod starts too, next to the first.
    eventually(lambda: v1.read_namespaced_pod("user-1", "fid-rwo").status.phase == "Running")
    placed = {p: v1.read_namespaced_pod(p, "fid-rwo").spec.node_name
              for p in ("user-0", "user-1")}
    assert placed == {"user-0": same_zone[0], "user-1": same_zone[0]}
    # Now a pod pinned to a node in another zone is
    # refused by the scheduler, because the volume lives in one zone.
    other = [n for n in nodes if n not in same_zone]
    v1.create_namespaced_pod("fid-rwo", client.V1Pod(
        metadata=client.V1ObjectMeta(name="elsewhere"),
        spec=client.V1PodSpec(node_selector={"kubernetes.io/hostname": other[0]},
                              containers=[client.V1Container(name="c", image=SERVERCORE)],
                              volumes=[client.V1Volume(
                                  name="d", persistent_volume_claim=client.
                                  V1PersistentVolumeClaimVolumeSource(claim_name="rwo"))])))
    events = eventually(lambda: [e for e in _events(v1, "fid-rwo", "elsewhere")
                                 if e.startswith("FailedScheduling")])
    assert "volume node affinity conflict" in events[0]
    # Bypassing the scheduler onto the other zone's node: the attacher refuses.
    v1.create_namespaced_pod("fid-rwo", client.V1Pod(
        metadata=client.V1ObjectMeta(name="forced"),
        spec=client.V1PodSpec(node_name=other[0],
                              containers=[client.V1Container(name="c", image=SERVERCORE)],
                              volumes=[client.V1Volume(
                                  name="d", persistent_volume_claim=client.
                                  V1PersistentVolumeClaimVolumeSource(claim_name="rwo"))])))
    events = eventually(lambda: [e for e in _events(v1, "fid-rwo", "forced")
                                 if e.startswith("FailedAttachVolume")])
    assert "Multi-Attach error for volume" in events[0]
    assert "already used by pod(s) user-0" in events[0]
    v1.delete_namespace("fid-rwo")
    eventually(lambda: not v1.list_persistent_volume().items)
    storage.delete_storage_class("fid-immediate")


def test_a_claim_deleted_while_its_volume_is_made_leaves_no_disk(sim_factory) -> None:
    """The external-provisioner saves the PV of a claim deleted during CreateVolume all the
    same, so the PV controller releases it and the reclaim policy deletes the disk. The
    embedded cluster dropped that PV instead, and the EBS volume stayed, available, with
    nothing in the API to say so (a run's teardown racing its claim's provisioning)."""
    from inspect_cluster import ec2

    sim = sim_factory(1, extra_args=["--time-scale", "0.05"])  # CreateVolume: 0.3 s
    ac = api_client(sim)
    v1, storage = client.CoreV1Api(ac), client.StorageV1Api(ac)
    _ns(v1, "fid-gone")
    storage.create_storage_class(client.V1StorageClass(
        metadata=client.V1ObjectMeta(name="fid-gone"), provisioner="ebs.csi.aws.com",
        parameters={"type": "gp3"}, volume_binding_mode="Immediate"))
    claim = v1.create_namespaced_persistent_volume_claim("fid-gone", client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name="gone"),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name="fid-gone",
            resources=client.V1ResourceRequirements(requests={"storage": "1Gi"}))))
    pv_name = f"pvc-{claim.metadata.uid}"

    def volumes() -> list[str]:
        return [v["State"] for v in ec2(sim).describe_volumes(Filters=[{
            "Name": "tag:kubernetes.io/created-for/pv/name", "Values": [pv_name]}])["Volumes"]]

    # Deleted while the provisioner is at it (CreateVolume takes 0.3 s here).
    eventually(lambda: any(e.startswith("Provisioning:")
                           for e in _events(v1, "fid-gone", "gone")), every=0.01)
    v1.delete_namespaced_persistent_volume_claim("gone", "fid-gone")
    eventually(volumes)  # made all the same: the call was under way
    eventually(lambda: not volumes() and pv_name not in {
        p.metadata.name for p in v1.list_persistent_volume().items}, timeout=30)
