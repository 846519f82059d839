"""kube-scheduler's filters that storage workloads run into.

nodeSelector and required node affinity, taints and tolerations, readiness,
and volume topology: a bound EBS volume pins the pod to its zone, and an
unbound `WaitForFirstConsumer` claim is handed the chosen node through
`volume.kubernetes.io/selected-node` before the pod is bound. A pod that fits
nowhere gets `FailedScheduling` with the scheduler's per-reason counts.
"""

from __future__ import annotations

from collections import Counter

from .base import (
    CSINODES,
    NODES,
    PODS,
    PVCS,
    PVS,
    STORAGECLASSES,
    Controller,
    set_condition,
    terminating,
)

SELECTED_NODE = "volume.kubernetes.io/selected-node"
EBS_DRIVER = "ebs.csi.aws.com"
EBS_PROVISIONERS = (EBS_DRIVER, "kubernetes.io/aws-ebs")  # in-tree counts as migrated


def _match_expr(labels: dict, expr: dict) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def node_affinity_matches(labels: dict, affinity: dict | None) -> bool:
    terms = (((affinity or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
    if not terms:
        return True
    return any(all(_match_expr(labels, e) for e in t.get("matchExpressions", []))
               for t in terms)


def _tolerated(taint: dict, tolerations: list[dict]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in node.get("status", {}).get("conditions", []))


def _not_ready_taint(node: dict) -> str:
    """The taint the node lifecycle controller puts on a node that is not Ready:
    `unreachable` when its kubelet stopped reporting (Ready Unknown), else `not-ready`."""
    unknown = any(c["type"] == "Ready" and c["status"] == "Unknown"
                  for c in node.get("status", {}).get("conditions", []))
    return "node.kubernetes.io/unreachable" if unknown else "node.kubernetes.io/not-ready"


class Scheduler(Controller):
    def reconcile(self) -> None:
        nodes = list(self.store.iter(NODES))
        for pod in list(self.store.iter(PODS)):
            if pod["spec"].get("nodeName") or terminating(pod):
                continue
            if pod["spec"].get("schedulerName", "default-scheduler") != "default-scheduler":
                continue
            self._schedule(pod, nodes)

    def _claims(self, pod: dict) -> list[tuple[str, dict | None]]:
        ns = pod["metadata"]["namespace"]
        out = []
        for v in pod["spec"].get("volumes") or []:
            if "persistentVolumeClaim" in v:
                name = v["persistentVolumeClaim"]["claimName"]
                out.append((name, self.store.peek(PVCS, ns, name)))
        return out

    def _schedule(self, pod: dict, nodes: list[dict]) -> None:
        spec = pod["spec"]
        claims = self._claims(pod)
        for name, pvc in claims:
            if pvc is None:
                return self._unschedulable(
                    pod, f'0/{len(nodes)} nodes are available: persistentvolumeclaim "{name}" '
                         "not found. preemption: 0/{n} nodes are available: {n} Preemption is "
                         "not helpful for scheduling.".replace("{n}", str(len(nodes))))
            if terminating(pvc):
                return self._unschedulable(
                    pod, f'0/{len(nodes)} nodes are available: persistentvolumeclaim "{name}" '
                         "is being deleted.")
        reasons: Counter[str] = Counter()
        fits = []
        for node in nodes:
            labels = node["metadata"].get("labels") or {}
            if not _ready(node) or node["spec"].get("unschedulable"):
                reasons["node(s) were unschedulable" if node["spec"].get("unschedulable")
                        else f"node(s) had untolerated taint {{{_not_ready_taint(node)}: }}"] += 1
                continue
            selector = spec.get("nodeSelector") or {}
            if any(labels.get(k) != v for k, v in selector.items()) or not \
                    node_affinity_matches(labels, spec.get("affinity")):
                reasons["node(s) didn't match Pod's node affinity/selector"] += 1
                continue
            bad = [t for t in node["spec"].get("taints") or []
                   if t.get("effect") in ("NoSchedule", "NoExecute")
                   and not _tolerated(t, spec.get("tolerations") or [])]
            if bad:
                t = bad[0]
                reasons[f"node(s) had untolerated taint {{{t['key']}: {t.get('value', '')}}}"] += 1
                continue
            conflict = self._volume_conflict(node, claims)
            if conflict:
                reasons[conflict] += 1
                continue
            if self._exceeds_volume_limit(node, claims):
                reasons["node(s) exceed max volume count"] += 1
                continue
            fits.append(node)
        if not fits:
            detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
            n = len(nodes)
            return self._unschedulable(
                pod, f"0/{n} nodes are available: {detail}. preemption: 0/{n} nodes are "
                     f"available: {n} Preemption is not helpful for scheduling.")
        load = Counter(p["spec"].get("nodeName") for p in self.store.iter(PODS))
        node = min(fits, key=lambda nd: (load[nd["metadata"]["name"]], nd["metadata"]["name"]))
        node_name = node["metadata"]["name"]
        waiting = False
        for name, pvc in claims:
            assert pvc is not None
            if pvc["spec"].get("volumeName"):
                continue
            waiting = True
            if (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE) != node_name and \
                    not (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE):
                def select(o: dict, node_name: str = node_name) -> None:
                    o["metadata"].setdefault("annotations", {})[SELECTED_NODE] = node_name
                self.store.mutate(PVCS, pvc["metadata"]["namespace"], name, select)
        if waiting:
            return  # bound once every claim is (the binder wakes us)
        def bind(o: dict) -> None:
            o["spec"]["nodeName"] = node_name
            set_condition(o.setdefault("status", {}).setdefault("conditions", []),
                          "PodScheduled", "True")
        self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], bind)
        self.events.record(pod, "Normal", "Scheduled",
                           f"Successfully assigned {pod['metadata']['namespace']}/"
                           f"{pod['metadata']['name']} to {node_name}", "default-scheduler")

    def _volume_conflict(self, node: dict, claims: list[tuple[str, dict | None]]) -> str | None:
        labels = node["metadata"].get("labels") or {}
        for _, pvc in claims:
            assert pvc is not None
            vname = pvc["spec"].get("volumeName")
            if vname:
                pv = self.store.peek(PVS, None, vname)
                if pv and not node_affinity_matches(
                        labels, {"nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution":
                                ((pv["spec"].get("nodeAffinity") or {}).get("required"))}}):
                    return "node(s) had volume node affinity conflict"
                continue
            sc = self.store.peek(STORAGECLASSES, None, pvc["spec"].get("storageClassName") or "")
            if sc is None or sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                return "pod has unbound immediate PersistentVolumeClaims"
            allowed = sc.get("allowedTopologies")
            if allowed and not any(
                    all(labels.get(e["key"]) in e.get("values", [])
                        for e in term.get("matchLabelExpressions", []))
                    for term in allowed):
                return "node(s) didn't find available persistent volumes to bind"
        return None

    def _ebs_volume(self, namespace: str, pvc: dict | None) -> str | None:
        """The EBS volume a claim stands for (its PV, or the claim itself while unbound
        on an EBS class), as NodeVolumeLimits counts it; None for other storage."""
        if pvc is None:
            return None
        pv = self.store.peek(PVS, None, pvc["spec"].get("volumeName") or "")
        if pv is not None:
            spec = pv["spec"]
            ebs = "awsElasticBlockStore" in spec or (spec.get("csi") or {}).get(
                "driver") == EBS_DRIVER
            return pv["metadata"]["name"] if ebs else None
        sc = self.store.peek(STORAGECLASSES, None, pvc["spec"].get("storageClassName") or "")
        if sc is not None and sc.get("provisioner") in EBS_PROVISIONERS:
            return f"{namespace}/{pvc['metadata']['name']}"
        return None

    def _exceeds_volume_limit(self, node: dict, claims: list[tuple[str, dict | None]]) -> bool:
        """NodeVolumeLimits for the EBS CSI driver: the EBS volumes of the pods on the node
        plus the pod's new ones may not exceed the count the node plugin registered in
        CSINode (its instance's attachment slots left)."""
        name = node["metadata"]["name"]
        csinode = self.store.peek(CSINODES, None, name) or {}
        limit = next((((d.get("allocatable") or {}).get("count"))
                      for d in (csinode.get("spec") or {}).get("drivers") or []
                      if d.get("name") == EBS_DRIVER), None)
        if not limit:
            return False
        in_use: set[str] = set()
        for pod in self.store.iter(PODS):
            if pod["spec"].get("nodeName") != name or terminating(pod) or (
                    pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            ns = pod["metadata"]["namespace"]
            for v in pod["spec"].get("volumes") or []:
                claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
                vol = self._ebs_volume(ns, self.store.peek(PVCS, ns, claim)) if claim else None
                if vol:
                    in_use.add(vol)
        wanted = {vol for _, pvc in claims
                  if (vol := self._ebs_volume(pvc["metadata"]["namespace"], pvc)
                      if pvc else None)} - in_use
        return bool(wanted) and len(in_use) + len(wanted) > int(limit)

    def _unschedulable(self, pod: dict, message: str) -> None:
        conds = (pod.get("status") or {}).get("conditions") or []
        if any(c["type"] == "PodScheduled" and c.get("message") == message for c in conds):
            return

        def mark(o: dict) -> None:
            set_condition(o.setdefault("status", {}).setdefault("conditions", []),
                          "PodScheduled", "False", "Unschedulable", message)
        self.store.mutate(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], mark,
                          subresource="status")
        self.events.record(pod, "Warning", "FailedScheduling", message, "default-scheduler")
