"""The embedded cluster's side of the EBS lifecycle, seen through clients no check uses:
the resize admission's refusal (as kube-apiserver words and codes it), online expansion
as the external resizer and the kubelet report it (claim, PV, events, EC2), the eviction
subresource (as the API server answers it, and as a real `kubectl drain` uses it), and
the node model's partition growing only through csi-proxy's ResizeVolume."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import eventually
from inspect_cluster import api_client, ec2
from winstor.sim.nodes.windows import MIB, ResizeError, Volume, WindowsNode

SERVERCORE = "mcr.microsoft.com/windows/servercore:ltsc2019"
REFUSAL = ('persistentvolumeclaims "c" is forbidden: only dynamically provisioned pvc can be '
           "resized and the storageclass that provisions the pvc must support resize")
KUBECTL = shutil.which("kubectl")


@pytest.fixture(scope="module")
def apis(shared_sim):
    ac = api_client(shared_sim)
    return client.CoreV1Api(ac), client.StorageV1Api(ac), client.AppsV1Api(ac)


def _claim(v1: client.CoreV1Api, ns: str, name: str, sc: str) -> None:
    v1.create_namespaced_persistent_volume_claim(ns, client.V1PersistentVolumeClaim(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"], storage_class_name=sc,
            resources=client.V1ResourceRequirements(requests={"storage": "1Gi"}))))


def _class(storage: client.StorageV1Api, name: str, expandable: bool | None) -> None:
    storage.create_storage_class(client.V1StorageClass(
        metadata=client.V1ObjectMeta(name=name), provisioner="kubernetes.io/aws-ebs",
        parameters={"type": "gp2", "fsType": "ntfs"}, volume_binding_mode="Immediate",
        allow_volume_expansion=expandable))


def _grow(v1: client.CoreV1Api, ns: str, name: str, size: str) -> None:
    v1.patch_namespaced_persistent_volume_claim(
        name, ns, {"spec": {"resources": {"requests": {"storage": size}}}})


def _refused(fn) -> dict:
    with pytest.raises(ApiException) as caught:
        fn()
    return {**json.loads(caught.value.body), "status": caught.value.status}


def test_resize_admission_refuses_like_kube_apiserver(apis) -> None:
    v1, storage, _ = apis
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="rs-adm")))
    _class(storage, "rs-fixed", None)
    _claim(v1, "rs-adm", "c", "rs-fixed")
    # Unbound: the spec, requests included, is immutable (validation, before admission).
    _claim(v1, "rs-adm", "waiting", "gp2")
    unbound = _refused(lambda: _grow(v1, "rs-adm", "waiting", "2Gi"))
    assert (unbound["status"], unbound["reason"]) == (422, "Invalid")
    assert "spec: Forbidden: spec is immutable after creation except resources.requests and " \
           "volumeAttributesClassName for bound claims" in unbound["message"]
    eventually(lambda: v1.read_namespaced_persistent_volume_claim(
        "c", "rs-adm").status.phase == "Bound")
    refused = _refused(lambda: _grow(v1, "rs-adm", "c", "2Gi"))
    assert (refused["status"], refused["reason"], refused["message"]) == (
        403, "Forbidden", REFUSAL)
    assert refused["details"] == {"name": "c", "kind": "persistentvolumeclaims"}
    # Shrinking is no growth: admission lets it through, and 1024Mi is 1Gi.
    _grow(v1, "rs-adm", "c", "1024Mi")
    assert v1.read_namespaced_persistent_volume_claim(
        "c", "rs-adm").status.capacity["storage"] == "1Gi"


def test_online_expansion_reports_like_the_resizer_and_kubelet(apis, shared_sim) -> None:
    v1, storage, _ = apis
    ns = "rs-grow"
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    _class(storage, "rs-grows", True)
    _claim(v1, ns, "c", "rs-grows")
    v1.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name="user"),
        spec=client.V1PodSpec(node_selector={"kubernetes.io/os": "windows"},
                              containers=[client.V1Container(name="c", image=SERVERCORE)],
                              volumes=[client.V1Volume(
                                  name="d", persistent_volume_claim=client.
                                  V1PersistentVolumeClaimVolumeSource(claim_name="c"))])))
    eventually(lambda: v1.read_namespaced_pod("user", ns).status.phase == "Running")
    pvc = v1.read_namespaced_persistent_volume_claim("c", ns)
    pv_name = pvc.spec.volume_name
    volume_id = v1.read_persistent_volume(pv_name).spec.aws_elastic_block_store.volume_id \
        .rsplit("/", 1)[-1]
    conditions_seen: list[str] = []
    statuses_seen: list[str] = []

    def grown() -> client.V1PersistentVolumeClaim | None:
        c = v1.read_namespaced_persistent_volume_claim("c", ns)
        for cond in c.status.conditions or []:
            if cond.type not in conditions_seen:
                conditions_seen.append(cond.type)
        status = (c.status.allocated_resource_statuses or {}).get("storage")
        if status and status not in statuses_seen:
            statuses_seen.append(status)
        return c if c.status.capacity == {"storage": "2Gi"} else None
    _grow(v1, ns, "c", "2Gi")
    done = eventually(grown, every=0.002)
    assert not done.status.conditions and not done.status.allocated_resource_statuses
    assert done.metadata.annotations["volume.kubernetes.io/storage-resizer"] == "ebs.csi.aws.com"
    # What was seen on the way is a subsequence of the resizer's and the kubelet's steps.
    order = ["ControllerResizeInProgress", "NodeResizePending", "NodeResizeInProgress"]
    assert statuses_seen == [s for s in order if s in statuses_seen]
    assert set(conditions_seen) <= {"Resizing", "FileSystemResizePending"}
    pv = v1.read_persistent_volume(pv_name)
    assert pv.spec.capacity == {"storage": "2Gi"}
    assert ec2(shared_sim).describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["Size"] == 2
    mods = ec2(shared_sim).describe_volumes_modifications(VolumeIds=[volume_id])
    assert [(m["OriginalSize"], m["TargetSize"]) for m in mods["VolumesModifications"]] == \
        [(1, 2)]
    events = {(e.involved_object.kind, e.reason, e.source.component)
              for e in v1.list_namespaced_event(ns).items}
    assert {("PersistentVolumeClaim", "ExternalExpanding", "volume_expand"),
            ("PersistentVolumeClaim", "Resizing", "external-resizer ebs.csi.aws.com"),
            ("PersistentVolumeClaim", "FileSystemResizeRequired",
             "external-resizer ebs.csi.aws.com"),
            ("PersistentVolumeClaim", "FileSystemResizeSuccessful", "kubelet"),
            ("Pod", "FileSystemResizeSuccessful", "kubelet")} <= events
    # The expand controller drops the PV's pre-resize annotation once the node is done.
    eventually(lambda: "volume.alpha.kubernetes.io/pre-resize-capacity" not in (
        v1.read_persistent_volume(pv_name).metadata.annotations or {}))


def test_a_claim_grown_while_unused_waits_for_a_pod(apis, shared_sim) -> None:
    """No pod mounts it: the controller side finishes, the node side waits for one."""
    v1, storage, _ = apis
    ns = "rs-offline"
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    _class(storage, "rs-grows-offline", True)
    _claim(v1, ns, "c", "rs-grows-offline")
    pvc = eventually(lambda: (c := v1.read_namespaced_persistent_volume_claim(
        "c", ns)).status.phase == "Bound" and c)
    _grow(v1, ns, "c", "2Gi")
    pending = eventually(lambda: (c := v1.read_namespaced_persistent_volume_claim(
        "c", ns)).status.allocated_resource_statuses == {"storage": "NodeResizePending"} and c)
    assert pending.status.allocated_resources == {"storage": "2Gi"}
    assert pending.status.capacity == {"storage": "1Gi"}
    conditions = {c.type: c for c in pending.status.conditions}
    assert conditions["FileSystemResizePending"].message == (
        "Waiting for user to (re-)start a pod to finish file system resize of volume on node.")
    pv = v1.read_persistent_volume(pvc.spec.volume_name)
    assert pv.spec.capacity == {"storage": "2Gi"}
    assert pv.metadata.annotations["volume.alpha.kubernetes.io/pre-resize-capacity"] == "1Gi"


def test_eviction_subresource_answers_like_the_apiserver(apis) -> None:
    v1, _, _ = apis
    ns = "ev-api"
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    v1.create_namespaced_pod(ns, client.V1Pod(
        metadata=client.V1ObjectMeta(name="p"),
        spec=client.V1PodSpec(node_selector={"kubernetes.io/os": "windows"},
                              containers=[client.V1Container(name="c", image=SERVERCORE)])))
    eventually(lambda: v1.read_namespaced_pod("p", ns).status.phase == "Running")
    wrong = _refused(lambda: v1.create_namespaced_pod_eviction("p", ns, client.V1Eviction(
        metadata=client.V1ObjectMeta(name="q", namespace=ns))))
    assert (wrong["status"], wrong["message"]) == (
        400, "name in URL does not match name in Eviction object")
    missing = _refused(lambda: v1.create_namespaced_pod_eviction("nope", ns, client.V1Eviction(
        metadata=client.V1ObjectMeta(name="nope", namespace=ns))))
    assert (missing["status"], missing["message"]) == (404, 'pods "nope" not found')
    ac = v1.api_client
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    ac.update_params_for_auth(headers, [], ["BearerToken"])
    done = ac.rest_client.request(
        "POST", f"{ac.configuration.host}/api/v1/namespaces/{ns}/pods/p/eviction",
        headers=headers, body={"apiVersion": "policy/v1", "kind": "Eviction",
                               "metadata": {"name": "p", "namespace": ns}})
    assert done.status == 201
    assert json.loads(done.data) == {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                     "status": "Success", "code": 201}

    def gone() -> bool:
        try:
            v1.read_namespaced_pod("p", ns)
        except ApiException as err:
            return err.status == 404
        return False
    eventually(gone)
    resources = {r.name: r for r in v1.get_api_resources().resources}
    eviction = resources["pods/eviction"]
    assert (eviction.kind, eviction.group, eviction.version, eviction.verbs) == (
        "Eviction", "policy", "v1", ["create"])


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_drain_evicts_and_uncordon_restores(apis, shared_sim) -> None:
    """A real `kubectl drain` (discovery of pods/eviction, the Eviction API, waiting for
    the pods to go) moves a Deployment's pod to another node; uncordon undoes it."""
    v1, _, apps = apis
    ns = "ev-drain"
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    apps.create_namespaced_deployment(ns, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="d"),
        spec=client.V1DeploymentSpec(
            replicas=1, selector=client.V1LabelSelector(match_labels={"app": "d"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "d"}),
                spec=client.V1PodSpec(node_selector={"kubernetes.io/os": "windows"},
                                      containers=[client.V1Container(
                                          name="c", image=SERVERCORE)])))))
    first = eventually(lambda: [p for p in v1.list_namespaced_pod(ns).items
                                if p.status.phase == "Running"])[0]
    node = first.spec.node_name
    kc = ["--kubeconfig", str(shared_sim.kubeconfig)]
    proc = subprocess.run([KUBECTL, *kc, "drain", node, "--ignore-daemonsets", "--force",
                           "--delete-emptydir-data", "--timeout=60s"],
                          capture_output=True, text=True, timeout=90)
    try:
        assert proc.returncode == 0, proc.stderr
        assert f"pod/{first.metadata.name} evicted" in proc.stdout, proc.stdout
        assert v1.read_node(node).spec.unschedulable is True
        moved = eventually(lambda: [p for p in v1.list_namespaced_pod(ns).items
                                    if p.status.phase == "Running"
                                    and p.metadata.name != first.metadata.name])[0]
        assert moved.spec.node_name != node
    finally:
        subprocess.run([KUBECTL, *kc, "uncordon", node], capture_output=True, timeout=60)
    assert not v1.read_node(node).spec.unschedulable


def test_partition_grows_only_through_csi_proxy() -> None:
    """The node side of EBS-RESIZE-01 and its scenario: a grown disk leaves NTFS as it was
    until csi-proxy's ResizeVolume; without defragsvc that fails as Windows does, and
    csi-proxy before 1.2.0 asks Windows for a resize under 1 MB (csi-proxy issue 195)."""
    node = WindowsNode("n")
    node.install_csi_proxy("1.1.3")
    volume = Volume("vol-1", 1)
    volume.format()
    formatted = volume.partition_bytes
    assert formatted == (volume.size_max() // MIB) * MIB
    with pytest.raises(ResizeError, match="The size of the extent is less than the minimum"):
        node.resize_volume(volume)  # nothing grew: SizeMax is under 1 MB away
    newer = WindowsNode("m")
    newer.install_csi_proxy("1.2.1")
    newer.resize_volume(volume)  # v1.2.0+ skips a resize under 100 MB
    assert volume.partition_bytes == formatted
    volume.size_gib = 2
    node.resize_volume(volume)
    assert volume.partition_bytes == volume.size_max() and volume.volume_bytes > 1.98 * (1 << 30)
    hardened = WindowsNode("h")
    hardened.install_csi_proxy("1.2.1")
    hardened.services["defragsvc"].start_type = "Disabled"
    bigger = Volume("vol-2", 1)
    bigger.format()
    bigger.size_gib = 3
    with pytest.raises(ResizeError, match="StorageWMI 4,Get-PartitionSupportedSize"):
        hardened.resize_volume(bigger)
    assert bigger.volume_bytes < 1 << 30


def test_janitor_uncordons_what_a_killed_run_left_cordoned(sim_factory) -> None:
    """EBS-MOVE-01 uncordons in a `finally`; a run killed inside it cannot, so the
    janitor does, by the run's annotation - and leaves other cordons alone."""
    from test_janitor import janitor

    sim = sim_factory(1)
    v1 = client.CoreV1Api(api_client(sim))
    nodes = [n.metadata.name for n in
             v1.list_node(label_selector="kubernetes.io/os=windows").items][:2]
    for node, run in zip(nodes, ("r-killed", "someone-else"), strict=True):
        v1.patch_node(node, {"spec": {"unschedulable": True}, "metadata": {
            "annotations": {"winstor.io/cordoned-by-run": run}}})
    dry = janitor(sim, "--run", "r-killed", "--context", "sim-1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"cordon/{nodes[0]}" in dry.stdout and v1.read_node(nodes[0]).spec.unschedulable
    done = janitor(sim, "--run", "r-killed", "--context", "sim-1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cordon/{nodes[0]}" in done.stdout and nodes[1] not in done.stdout
    first, second = (v1.read_node(n) for n in nodes)
    assert not first.spec.unschedulable
    assert "winstor.io/cordoned-by-run" not in (first.metadata.annotations or {})
    assert second.spec.unschedulable  # another run's cordon is that run's business


def test_drain_runs_only_where_a_cluster_declares_it(sim_factory, tmp_path) -> None:
    """EBS-MOVE-01 is off for a cluster whose kubeconfig context does not declare `drain`
    (as on any real cluster by default) and says how to turn it on; `--opt-in drain` or the
    clusters file's `opt_in` turn it on; the embedded cluster's own contexts declare it."""
    import yaml

    from bench.simmetrics import costs, scrape
    from helpers import run_suite
    from inspect_cluster import leftovers
    from winstor.cluster.kube import Api

    sim = sim_factory(1)
    plain = yaml.safe_load(sim.kubeconfig.read_text())
    assert plain["contexts"][0]["context"]["extensions"] == [
        {"name": "winstor.io/opt-in", "extension": {"markers": ["drain"]}}]
    for ctx in plain["contexts"]:
        ctx["context"].pop("extensions")
    kc = tmp_path / "plain.kubeconfig"
    kc.write_text(yaml.safe_dump(plain))
    args = [f"--kubeconfig={kc}", "--context", "sim-1", "-k", "EBS-MOVE-01"]
    metrics = Api.from_kubeconfig(str(sim.kubeconfig), "sim-1")
    before = scrape(metrics)
    off = run_suite(args, tmp_path, env=sim.aws_env)
    assert off.outcomes == {"sim-1:EBS-MOVE-01": "skipped"}, off.output[-2000:]
    reason = off.messages["sim-1:EBS-MOVE-01"]
    assert "sim-1 does not opt in to `drain` checks" in reason and "--opt-in drain" in reason
    # The head start began nothing for a check that skips: no claim, volume or workload.
    made = {k: n for k, n in costs("sim-1", before, scrape(metrics)).objects_created.items()
            if n}
    assert not {"PersistentVolumeClaim", "PersistentVolume", "Deployment"} & set(made), made
    assert leftovers(sim) == []
    on = run_suite([*args, "--opt-in", "drain"], tmp_path, env=sim.aws_env)
    assert on.outcomes == {"sim-1:EBS-MOVE-01": "passed"}, on.output[-2000:]
    clusters = tmp_path / "clusters.yaml"
    clusters.write_text(f"clusters:\n  - context: sim-1\n    kubeconfig: {kc}\n"
                        "    opt_in: [drain]\n")
    filed = run_suite([f"--clusters={clusters}", "-k", "EBS-MOVE-01"], tmp_path,
                      env=sim.aws_env)
    assert filed.outcomes == {"sim-1:EBS-MOVE-01": "passed"}, filed.output[-2000:]
    assert leftovers(sim) == []
    nodes = client.CoreV1Api(api_client(sim)).list_node().items
    assert not any(n.spec.unschedulable for n in nodes)
