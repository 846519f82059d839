"""Deployment and ReplicaSet controllers (the parts the seed's Deployment uses)."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from typing import Any

from ..api import admission, defaults
from ..api.errors import ApiError
from .base import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    Controller,
    owned_by,
    owner_ref,
    set_condition,
    terminating,
)


def _template_hash(template: dict) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(digest[i:i + 2], 16) % len(alphabet)] for i in range(0, 20, 2))


def _pod_template(dep: dict) -> dict:
    """A copy of a Deployment's pod template as it is hashed and stamped on its ReplicaSet."""
    template = copy.deepcopy(dep["spec"]["template"])
    template.get("metadata", {}).pop("creationTimestamp", None)
    return template


def _pod_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions", []))


class Apps(Controller):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # Deployment uid -> (generation, pod-template-hash) (see _hash)
        self._hashes: dict[str, tuple[int, str]] = {}

    def reconcile(self) -> None:
        live = set()
        for dep in list(self.store.iter(DEPLOYMENTS)):
            live.add(dep["metadata"].get("uid"))
            if not terminating(dep):
                self._deployment(dep)
        for uid in self._hashes.keys() - live:  # Deployments gone: their hashes too
            del self._hashes[uid]
        for rs in list(self.store.iter(REPLICASETS)):
            if not terminating(rs):
                self._replicaset(rs)

    def _hash(self, dep: dict) -> str:
        """The Deployment's pod-template-hash, kept per generation (the template is spec,
        and a spec change bumps the generation): the controller asks on every pass, and
        copying and hashing the template each time was a good share of the embedded
        cluster's CPU while objects settle."""
        meta = dep["metadata"]
        uid, generation = meta.get("uid"), meta.get("generation")
        kept = self._hashes.get(uid) if uid else None
        if kept is not None and kept[0] == generation:
            return kept[1]
        h = _template_hash(_pod_template(dep))
        if uid and generation is not None:
            self._hashes[uid] = (generation, h)
        return h

    def _deployment(self, dep: dict) -> None:
        ns = dep["metadata"]["namespace"]
        h = self._hash(dep)
        owned = [rs for rs in self.store.iter(REPLICASETS, ns) if owned_by(rs, dep)]
        current = next((rs for rs in owned
                        if rs["metadata"].get("labels", {}).get("pod-template-hash") == h), None)
        replicas = dep["spec"].get("replicas", 1)
        if current is None:
            tmpl = _pod_template(dep)
            labels = {**tmpl.get("metadata", {}).get("labels", {}), "pod-template-hash": h}
            tmpl.setdefault("metadata", {})["labels"] = labels
            selector = copy.deepcopy(dep["spec"]["selector"])
            selector.setdefault("matchLabels", {})["pod-template-hash"] = h
            current = self.store.create(REPLICASETS, {
                "metadata": {"name": f"{dep['metadata']['name']}-{h}", "namespace": ns,
                             "labels": labels, "ownerReferences": [owner_ref(dep)],
                             "annotations": {"deployment.kubernetes.io/revision":
                                             str(len(owned) + 1)}},
                "spec": {"replicas": replicas, "selector": selector, "template": tmpl},
                "status": {"replicas": 0}})
            self.events.record(dep, "Normal", "ScalingReplicaSet",
                               f"Scaled up replica set {current['metadata']['name']} from 0 "
                               f"to {replicas}", "deployment-controller")
        elif current["spec"].get("replicas") != replicas:
            self.store.mutate(REPLICASETS, ns, current["metadata"]["name"],
                              lambda o: o["spec"].__setitem__("replicas", replicas))
        for rs in owned:
            if rs is not current and rs["spec"].get("replicas", 0) != 0:
                self.store.mutate(REPLICASETS, ns, rs["metadata"]["name"],
                                  lambda o: o["spec"].__setitem__("replicas", 0))
        st = current.get("status") or {}
        ready = st.get("readyReplicas", 0)

        def status(o: dict) -> None:
            s = o.setdefault("status", {})
            s.update(observedGeneration=o["metadata"].get("generation", 1),
                     replicas=st.get("replicas", 0), updatedReplicas=st.get("replicas", 0),
                     readyReplicas=ready, availableReplicas=ready)
            if ready < replicas:
                s["unavailableReplicas"] = replicas - ready
            else:
                s.pop("unavailableReplicas", None)
            for key in ("readyReplicas", "availableReplicas"):
                if not s[key]:
                    s.pop(key)
            conds = s.setdefault("conditions", [])
            set_condition(conds, "Available", "True" if ready >= replicas else "False",
                          "MinimumReplicasAvailable" if ready >= replicas
                          else "MinimumReplicasUnavailable",
                          "Deployment has minimum availability." if ready >= replicas
                          else "Deployment does not have minimum availability.")
            set_condition(conds, "Progressing", "True", "NewReplicaSetAvailable"
                          if ready >= replicas else "ReplicaSetUpdated",
                          f'ReplicaSet "{current["metadata"]["name"]}" has successfully '
                          "progressed." if ready >= replicas else
                          f'ReplicaSet "{current["metadata"]["name"]}" is progressing.')
        self.store.mutate(DEPLOYMENTS, ns, dep["metadata"]["name"], status,
                          subresource="status")

    def _replicaset(self, rs: dict) -> None:
        ns = rs["metadata"]["namespace"]
        pods = [p for p in self.store.iter(PODS, ns) if owned_by(p, rs)]
        live = [p for p in pods if not terminating(p)
                and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        want = rs["spec"].get("replicas", 1)
        for _ in range(want - len(live)):
            tmpl = copy.deepcopy(rs["spec"]["template"])
            meta = tmpl.get("metadata", {})
            meta.pop("creationTimestamp", None)
            name = f"{rs['metadata']['name']}-{secrets.token_hex(3)[:5]}"
            pod = {"metadata": {**meta, "name": name, "namespace": ns,
                                "ownerReferences": [owner_ref(rs)]},
                   "spec": tmpl.get("spec", {}), "status": {"phase": "Pending"}}
            defaults.apply("Pod", pod)
            try:
                # Controllers create pods through admission, like any client.
                admission.namespace_lifecycle(self.store, PODS, ns)
                if self.cluster.pod_security_admission:
                    admission.pod_security(self.store, pod)
            except ApiError as err:
                self.events.record(rs, "Warning", "FailedCreate",
                                   f"Error creating: {err.message}", "replicaset-controller")
                self.manager.later(1.0)
                break
            self.store.create(PODS, pod)
            self.events.record(rs, "Normal", "SuccessfulCreate", f"Created pod: {name}",
                               "replicaset-controller")
        if len(live) > want:
            for p in sorted(live, key=lambda p: p["metadata"]["creationTimestamp"])[want:]:
                self.store.delete(PODS, ns, p["metadata"]["name"],
                                  graceful=bool(p["spec"].get("nodeName")))
                self.events.record(rs, "Normal", "SuccessfulDelete",
                                   f"Deleted pod: {p['metadata']['name']}",
                                   "replicaset-controller")
        ready = sum(1 for p in live if _pod_ready(p))

        def status(o: dict) -> None:
            s = o.setdefault("status", {})
            s.update(replicas=len(live), fullyLabeledReplicas=len(live),
                     observedGeneration=o["metadata"].get("generation", 1))
            if ready:
                s["readyReplicas"] = ready
                s["availableReplicas"] = ready
            else:
                s.pop("readyReplicas", None)
                s.pop("availableReplicas", None)
        self.store.mutate(REPLICASETS, ns, rs["metadata"]["name"], status,
                          subresource="status")
