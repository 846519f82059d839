"""The nodes as their kubelets keep them in the API: registration, Lease, status, CSINode.

What a kubelet (and the EBS CSI node plugin through it) does for its Node that the real
control plane relies on:

- registers the Node (`POST /api/v1/nodes`) with the labels EKS's kubelet and cloud
  provider set, `spec.providerID` naming the node's EC2 instance, the
  `volumes.kubernetes.io/controller-managed-attach-detach` annotation (without it the
  attach-detach controller leaves the node's volumes alone), capacity, nodeInfo and a
  Ready condition; `InternalIP` is 127.0.0.1 and the kubelet port is the stream
  server's, which is where the API server sends `pods/exec` and `pods/log`;
- renews its Lease in `kube-node-lease` every 10 s: the node lifecycle controller marks
  a node whose Lease and status both go stale NotReady (`Unknown`) after 50 s;
- posts its status again when something in it changes and at least every minute (a
  kubelet's `nodeStatusReportFrequency` is 5 min; the Lease is the heartbeat);
- keeps `status.volumesInUse`: a volume is listed from the moment the kubelet starts
  to mount it until it is unmounted, and the attach-detach controller does not detach
  a listed volume (it waits up to 6 min), so a pod's volume is detached only after
  that pod let go of it;
- creates the node's CSINode (owned by the Node) with the `migrated-plugins` annotation,
  and the EBS CSI node plugin's registration: driver `ebs.csi.aws.com`, nodeID = the
  instance, its topology keys and allocatable volume count, plus the Node's
  `csi.volume.kubernetes.io/nodeid` annotation and the driver's topology label.

Scenarios: `windows-nodes-not-ready` registers the Windows nodes as the node lifecycle
controller leaves silent kubelets and never renews them; `no-csi-proxy` and
`intree-without-csi-driver` leave the EBS driver out of the Windows (or every) CSINode.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import uuid
from collections.abc import Set
from datetime import datetime, timezone
from typing import Any

from ..api.kinds import kind_of
from ..api.store import now_iso
from ..bootstrap import _node_object
from ..topology import ClusterPlan, NodePlan
from .store import RemoteStore

log = logging.getLogger("winstor.sim.agent.nodes")

NODES = kind_of("v1", "Node")
LEASES = kind_of("coordination.k8s.io/v1", "Lease")
CSINODES = kind_of("storage.k8s.io/v1", "CSINode")
EBS_DRIVER = "ebs.csi.aws.com"
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
RENEW_EVERY = 10.0
STATUS_EVERY = 60.0
MIGRATED_PLUGINS = ("kubernetes.io/aws-ebs,kubernetes.io/azure-disk,kubernetes.io/azure-file,"
                    "kubernetes.io/cinder,kubernetes.io/gce-pd,kubernetes.io/portworx-volume,"
                    "kubernetes.io/vsphere-volume")
# NodeGetInfo of aws-ebs-csi-driver v1.44 (pkg/driver/node.go): these three segments; the
# kubelet lists the keys sorted.
EBS_TOPOLOGY_KEYS = ("kubernetes.io/os", "topology.ebs.csi.aws.com/zone",
                     "topology.kubernetes.io/zone")
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


def micro_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plugin_registered(node: NodePlan, scenarios: Set[str]) -> bool:
    """Whether the EBS CSI node plugin runs (and so registers) on this node."""
    if "intree-without-csi-driver" in scenarios:
        return False
    return node.os == "linux" or "no-csi-proxy" not in scenarios


class NodeAgent:
    """The kubelets' side of the nodes' API objects, for every node of one cluster."""

    def __init__(self, store: RemoteStore, plan: ClusterPlan, scenarios: Set[str],
                 instances: dict[str, str], node_facts: dict[str, Any], stream_port: int,
                 kubelet_version: str) -> None:
        self.store = store
        self.plan = plan
        self.scenarios = scenarios
        self.instances = instances
        self.facts = node_facts
        self.stream_port = stream_port
        self.kubelet_version = kubelet_version
        # node -> pod uid -> the unique names of the volumes that pod is mounting or has
        # mounted (`kubernetes.io/csi/<driver>^<handle>`), the kubelet's volumesInUse.
        self.in_use: dict[str, dict[str, set[str]]] = {n.name: {} for n in plan.nodes}
        self._status_due: set[str] = set()

    # -- registration -------------------------------------------------------------------
    def silent(self, node: NodePlan) -> bool:
        """A kubelet that never posts (windows-nodes-not-ready)."""
        return node.os == "windows" and "windows-nodes-not-ready" in self.scenarios

    def node_object(self, node: NodePlan) -> dict:
        obj = _node_object(self.plan, self.scenarios, node, self.facts.get(node.name))
        meta, status = obj["metadata"], obj["status"]
        registered = plugin_registered(node, self.scenarios)
        if not registered:  # the driver's topology label comes with its registration
            meta["labels"].pop("topology.ebs.csi.aws.com/zone", None)
        else:
            meta["annotations"]["csi.volume.kubernetes.io/nodeid"] = json.dumps(
                {EBS_DRIVER: self.instances.get(node.name, node.name)}, separators=(",", ":"))
        meta["labels"].pop("k8s.io/cloud-provider-aws", None)
        status["addresses"] = [{"type": "InternalIP", "address": "127.0.0.1"},
                               {"type": "Hostname", "address": node.name},
                               {"type": "InternalDNS", "address": node.name}]
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.stream_port}}
        status["nodeInfo"].update(kubeletVersion=self.kubelet_version, kubeProxyVersion="",
                                  containerRuntimeVersion="containerd://1.7.27",
                                  bootID=str(uuid.uuid4()))
        now = now_iso()
        for cond in status["conditions"]:
            if not self.silent(node):
                cond["lastHeartbeatTime"] = cond["lastTransitionTime"] = now
        return obj

    def register(self) -> None:
        """Register every node, its Lease and its CSINode (what kubelets do at start)."""
        for node in self.plan.nodes:
            obj = self.node_object(node)
            status = copy.deepcopy(obj["status"])
            created = self.store.create(NODES, obj)
            # The status a kubelet registers with; kept on create, but set again in case.
            self.store.mutate(NODES, None, node.name, lambda o, s=status: o.__setitem__(
                "status", {**(o.get("status") or {}), **s}), subresource="status")
            owner = [{"apiVersion": "v1", "kind": "Node", "name": node.name,
                      "uid": created["metadata"]["uid"]}]
            self.store.create(LEASES, {
                "metadata": {"name": node.name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": owner},
                "spec": {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_SECONDS,
                         "renewTime": micro_now()}})
            self.store.create(CSINODES, {
                "metadata": {"name": node.name, "ownerReferences": owner,
                             "annotations": {"storage.alpha.kubernetes.io/migrated-plugins":
                                             MIGRATED_PLUGINS}},
                "spec": {"drivers": self.drivers(node)}})

    def drivers(self, node: NodePlan) -> list[dict]:
        if not plugin_registered(node, self.scenarios):
            return []
        return [{"name": EBS_DRIVER, "nodeID": self.instances.get(node.name, node.name),
                 "topologyKeys": list(EBS_TOPOLOGY_KEYS),
                 "allocatable": {"count": 25 if node.os == "windows" else 26}}]

    def ready(self) -> bool:
        """Every heartbeating node Ready in the API and without the not-ready taint (the
        node lifecycle controller lifts the one admission put on at registration)."""
        for node in self.plan.nodes:
            if self.silent(node):
                continue
            obj = self.store.peek(NODES, None, node.name)
            if obj is None:
                return False
            conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
            taints = {t.get("key") for t in obj.get("spec", {}).get("taints") or []}
            if conds.get("Ready") != "True" or NOT_READY_TAINT in taints:
                return False
        return True

    # -- heartbeats -----------------------------------------------------------------------
    async def run(self) -> None:
        """Renew the Leases every 10 s, post status when due; forever."""
        since_status = 0.0
        while True:
            for node in self.plan.nodes:
                if self.silent(node):
                    continue
                try:
                    self.store.mutate(LEASES, LEASE_NAMESPACE, node.name, _renew(node.name))
                except Exception as err:  # a missed renewal is retried in 10 s, as kubelets do
                    log.warning("renewing the lease of %s: %s", node.name, err)
            since_status += RENEW_EVERY
            if since_status >= STATUS_EVERY:
                since_status = 0.0
                self._status_due.update(n.name for n in self.plan.nodes if not self.silent(n))
            self.post_due()
            await asyncio.sleep(RENEW_EVERY)

    def post_due(self) -> None:
        for name in sorted(self._status_due):
            self._status_due.discard(name)
            try:
                self.post_status(name)
            except Exception as err:
                log.warning("posting the status of %s: %s", name, err)
                self._status_due.add(name)

    def post_status(self, name: str) -> None:
        in_use = sorted(set().union(*self.in_use.get(name, {}).values()))
        now = now_iso()

        def fn(o: dict) -> None:
            status = o.setdefault("status", {})
            for cond in status.get("conditions") or []:
                if cond.get("type") in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
                    cond["lastHeartbeatTime"] = now
            if in_use:
                status["volumesInUse"] = in_use
            else:
                status.pop("volumesInUse", None)
        self.store.mutate(NODES, None, name, fn, subresource="status")

    # -- volumesInUse -----------------------------------------------------------------------
    def use_volume(self, node: str, pod_uid: str, unique_name: str) -> None:
        """The kubelet starts mounting `unique_name` for a pod: list it before it waits for
        the attach (as the volume manager reports volumes in use first)."""
        pods = self.in_use.setdefault(node, {})
        before = set().union(*pods.values()) if pods else set()
        pods.setdefault(pod_uid, set()).add(unique_name)
        if unique_name not in before or not self._listed(node, unique_name):
            self.post_status(node)

    def release_pod(self, pod: dict) -> None:
        """A pod's volumes are unmounted: drop what no other pod on its node still uses."""
        node = (pod.get("spec") or {}).get("nodeName") or ""
        pods = self.in_use.get(node)
        if not pods or pod["metadata"]["uid"] not in pods:
            return
        before = set().union(*pods.values())
        del pods[pod["metadata"]["uid"]]
        after = set().union(*pods.values()) if pods else set()
        if after != before:
            self.post_status(node)

    def _listed(self, node: str, unique_name: str) -> bool:
        obj = self.store.peek(NODES, None, node) or {}
        return unique_name in ((obj.get("status") or {}).get("volumesInUse") or [])


def _renew(holder: str) -> Any:
    def fn(o: dict) -> None:
        spec = o.setdefault("spec", {})
        spec["holderIdentity"] = holder
        spec["leaseDurationSeconds"] = LEASE_SECONDS
        spec["renewTime"] = micro_now()
    return fn
