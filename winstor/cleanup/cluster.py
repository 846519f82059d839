"""`winstor janitor` in one cluster: find the selected runs' namespaces, PVs and
StorageClasses, then remove them in order with every wait bounded.

Scanning comes apart from cleaning (`scan_cluster` returns a `ClusterPlan`, which
`clean_cluster` carries out) because the command lists the EBS candidates between
the two: the namespaces' removal usually makes the cluster delete the volumes
itself. `clean_cluster` answers with the namespaces whose objects stayed, whose
volumes must then be left alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from winstor.cleanup.report import Report, counted
from winstor.cleanup.select import NAMESPACE_PREFIX, Selector, run_namespace_names
from winstor.cluster.ebs_lifecycle import CORDONED_BY
from winstor.cluster.kube import (
    DAEMONSETS,
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    PODS,
    PVCS,
    PVS,
    REPLICASETS,
    STORAGECLASSES,
    Api,
    KubeError,
    Resource,
)
from winstor.cluster.provision import CREATED_BY
from winstor.cluster.target import MANAGED_BY, RUN_LABEL
from winstor.cluster.waits import WaitFailed, wait_gone

#: Kinds whose finalizers typically hold a namespace in Terminating.
_HOLDERS = (PODS, PVCS, DEPLOYMENTS, REPLICASETS, DAEMONSETS, Resource("v1", "configmaps"),
            Resource("v1", "services"))


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _labels(obj: dict) -> dict[str, str]:
    return _meta(obj).get("labels") or {}


@dataclass
class ClusterPlan:
    """What one cluster holds of the selected runs, found before anything is removed."""

    where: str
    api: Api
    namespaces: list[dict] = field(default_factory=list)
    pvs: list[dict] = field(default_factory=list)
    classes: list[dict] = field(default_factory=list)
    runs: set[str] = field(default_factory=set)
    #: names whose claims/volumes belong to the selected runs
    names: set[str] = field(default_factory=set)
    #: namespaces that exist here and are not selected (live runs, or not winstor's)
    live: set[str] = field(default_factory=set)
    #: nodes a selected run cordoned (EBS-MOVE-01) and did not uncordon: it was killed
    cordoned: list[str] = field(default_factory=list)


def scan_cluster(api: Api, where: str, sel: Selector) -> ClusterPlan:
    plan = ClusterPlan(where, api)
    every = api.items(NAMESPACES)
    labelled = [ns for ns in every if _labels(ns).get(MANAGED_BY) == "winstor"]
    if sel.run:
        chosen = [ns for ns in labelled if _labels(ns).get(RUN_LABEL) == sel.run]
    else:
        # A run is old when any of its namespaces is: take all of that run's namespaces.
        old_runs = {_labels(ns).get(RUN_LABEL) for ns in labelled
                    if sel.old_enough(_meta(ns).get("creationTimestamp"))} - {None, ""}
        chosen = [ns for ns in labelled
                  if sel.old_enough(_meta(ns).get("creationTimestamp"))
                  or _labels(ns).get(RUN_LABEL) in old_runs]
    plan.namespaces = chosen
    plan.runs = {r for r in (_labels(ns).get(RUN_LABEL) for ns in chosen) if r}
    if sel.run:
        plan.runs.add(sel.run)
    chosen_names = {_meta(ns)["name"] for ns in chosen}
    existing = {_meta(ns)["name"] for ns in every}
    plan.live = existing - chosen_names
    derived = set().union(*(run_namespace_names(r) for r in plan.runs)) if plan.runs else set()
    # A derived name that exists without winstor's labels is somebody else's namespace.
    plan.names = chosen_names | (derived - plan.live)

    plan.pvs = [pv for pv in api.items(PVS) if _pv_selected(pv, plan, sel, existing)]
    plan.cordoned = [_meta(n)["name"] for n in api.items(NODES)
                     if (_meta(n).get("annotations") or {}).get(CORDONED_BY) in plan.runs]

    for sc in api.items(STORAGECLASSES, label_selector=f"{MANAGED_BY}=winstor"):
        creator = (_meta(sc).get("annotations") or {}).get(CREATED_BY)
        if not creator:
            continue  # adopted or made by hand: not winstor's to remove
        if creator in plan.runs or (not sel.run and sel.old_enough(
                _meta(sc).get("creationTimestamp"))):
            plan.classes.append(sc)
    return plan


def _pv_selected(pv: dict, plan: ClusterPlan, sel: Selector, existing: set[str]) -> bool:
    """A PV of the selected runs: its claim was in one of their namespaces, it carries
    their labels, or (by age) its claim's winstor namespace no longer exists at all."""
    claim_ns = ((pv.get("spec") or {}).get("claimRef") or {}).get("namespace") or ""
    labels = _labels(pv)
    if claim_ns in plan.names:
        return True
    if labels.get(MANAGED_BY) == "winstor" and labels.get(RUN_LABEL) in plan.runs:
        return True
    return (not sel.run and claim_ns.startswith(NAMESPACE_PREFIX) and claim_ns not in existing
            and sel.old_enough(_meta(pv).get("creationTimestamp")))


def _class_users(api: Api, name: str, ignore_namespaces: Iterable[str] = (),
                 ignore_pvs: Iterable[str] = ()) -> list[str]:
    """Claims and PVs naming class `name`, leaving out those about to go with the run."""
    ignore_namespaces, ignore_pvs = set(ignore_namespaces), set(ignore_pvs)
    users = [f"{_meta(c)['namespace']}/{_meta(c)['name']}" for c in api.items(PVCS)
             if (c.get("spec") or {}).get("storageClassName") == name
             and _meta(c).get("namespace") not in ignore_namespaces]
    users += [f"pv/{_meta(p)['name']}" for p in api.items(PVS)
              if (p.get("spec") or {}).get("storageClassName") == name
              and _meta(p)["name"] not in ignore_pvs]
    return users


def _namespace_contents(api: Api, name: str) -> str:
    counts = []
    for res, one, many in ((PODS, "pod", "pods"), (PVCS, "claim", "claims")):
        n = len(api.items(res, name))
        if n:
            counts.append(counted(n, one, many))
    return ", ".join(counts)


def _holders(api: Api, name: str) -> str:
    """What keeps a Terminating namespace: objects with finalizers, else its conditions."""
    held = []
    for res in _HOLDERS:
        try:
            items = api.items(res, name)
        except KubeError:
            continue
        for obj in items:
            fins = _meta(obj).get("finalizers") or []
            if fins:
                held.append(f"{res.plural}/{_meta(obj)['name']} (finalizers: {', '.join(fins)})")
    if held:
        return "held by " + "; ".join(held[:5]) + (" ..." if len(held) > 5 else "")
    ns = api.get_or_none(NAMESPACES, name) or {}
    conds = [c.get("message", "") for c in (ns.get("status") or {}).get("conditions") or []
             if c.get("status") == "True" and c.get("message")]
    fins = _meta(ns).get("finalizers") or []
    if fins:
        conds.append(f"namespace finalizers: {', '.join(fins)}")
    return "; ".join(conds) or "nothing reported holding it"


def _remaining(deadline: float) -> float:
    return max(0.5, deadline - time.monotonic())


def clean_cluster(plan: ClusterPlan, rep: Report, timeout: float) -> set[str]:
    """Remove what `plan` found; return the namespace names whose objects could not go
    (their EBS volumes must not be pulled from under them)."""
    api, where = plan.api, plan.where
    blocked: set[str] = set()
    chosen = {_meta(ns)["name"] for ns in plan.namespaces}
    pv_names = {_meta(pv)["name"] for pv in plan.pvs}
    if rep.dry_run:
        for node in plan.cordoned:
            rep.gone(where, "cordon", node, "the node would be uncordoned")
        for ns in plan.namespaces:
            rep.gone(where, "namespace", _meta(ns)["name"], _namespace_contents(api,
                                                                              _meta(ns)["name"]))
        for pv in plan.pvs:
            rep.gone(where, "pv", _meta(pv)["name"], _pv_detail(pv))
        for sc in plan.classes:
            users = _class_users(api, _meta(sc)["name"], plan.names, pv_names)
            if users:
                rep.keep(where, "storageclass", _meta(sc)["name"],
                         f"still used by {', '.join(users[:5])}")
            else:
                rep.gone(where, "storageclass", _meta(sc)["name"])
        return blocked

    # Cordons first: a node a killed run left cordoned takes no pods until then.
    for node in plan.cordoned:
        try:
            api.patch(NODES, node, {"spec": {"unschedulable": None},
                                    "metadata": {"annotations": {CORDONED_BY: None}}})
            rep.gone(where, "cordon", node, "node uncordoned")
        except KubeError as err:
            rep.fail(where, f"cordon/{node}", f"uncordon refused: {err}")

    # Namespaces: delete all, then wait for all against one deadline.
    deadline = time.monotonic() + timeout
    for ns in plan.namespaces:
        name = _meta(ns)["name"]
        if not _meta(ns).get("deletionTimestamp"):
            try:
                api.delete(NAMESPACES, name)
            except KubeError as err:
                if err.status != 409:  # 409: already terminating
                    rep.fail(where, f"namespace/{name}", f"delete refused: {err}")
                    blocked.add(name)
    for ns in plan.namespaces:
        name = _meta(ns)["name"]
        if name in blocked:
            continue
        try:
            wait_gone(api, NAMESPACES, name, None, what=f"namespace {name} to be deleted",
                      timeout=_remaining(deadline))
            rep.gone(where, "namespace", name)
        except WaitFailed:
            blocked.add(name)
            rep.fail(where, f"namespace/{name}",
                     f"still Terminating after {timeout:.0f}s; {_holders(api, name)}")

    # PVs: those the namespaces' claims did not take with them.
    deadline = time.monotonic() + timeout
    waiting: list[dict] = []
    for pv in plan.pvs:
        name = _meta(pv)["name"]
        current = api.get_or_none(PVS, name)
        if current is None:
            rep.gone(where, "pv", name, "with its claim")
            continue
        ref = (current.get("spec") or {}).get("claimRef") or {}
        claim = api.get_or_none(PVCS, ref["name"], ref["namespace"]) \
            if ref.get("name") and ref.get("namespace") else None
        if claim is not None and ref.get("uid") in (None, _meta(claim).get("uid")):
            blocked.add(ref["namespace"])
            rep.fail(where, f"pv/{name}",
                     f"still bound to claim {ref['namespace']}/{ref['name']}")
            continue
        if not _meta(current).get("deletionTimestamp"):
            try:
                api.delete(PVS, name)
            except KubeError as err:
                blocked.add(ref.get("namespace") or "")
                rep.fail(where, f"pv/{name}", f"delete refused: {err}")
                continue
        waiting.append(current)
    for pv in waiting:
        name = _meta(pv)["name"]
        try:
            wait_gone(api, PVS, name, None, what=f"persistent volume {name} to be deleted",
                      timeout=_remaining(deadline))
            rep.gone(where, "pv", name, _pv_detail(pv))
        except WaitFailed:
            ref = (pv.get("spec") or {}).get("claimRef") or {}
            blocked.add(ref.get("namespace") or "")
            left = api.get_or_none(PVS, name) or pv
            fins = _meta(left).get("finalizers") or []
            rep.fail(where, f"pv/{name}", f"still there after {timeout:.0f}s"
                     + (f" (finalizers: {', '.join(fins)})" if fins else ""))

    # Classes last, once the claims and PVs that used them are gone.
    for sc in plan.classes:
        name = _meta(sc)["name"]
        users = _class_users(api, name)
        if users:
            stuck = [u for u in users if u.split("/", 1)[0] in chosen]
            why = f"still used by {', '.join(users[:5])}"
            if stuck:
                rep.fail(where, f"storageclass/{name}", why)
            else:
                rep.keep(where, "storageclass", name, why)
            continue
        current = api.get_or_none(STORAGECLASSES, name)
        if current is None:
            rep.gone(where, "storageclass", name, "already gone")
        elif _meta(current).get("uid") != _meta(sc).get("uid"):
            rep.keep(where, "storageclass", name, "replaced by a newer class meanwhile")
        else:
            try:
                api.delete(STORAGECLASSES, name)
            except KubeError as err:
                rep.fail(where, f"storageclass/{name}", f"delete refused: {err}")
                continue
            rep.gone(where, "storageclass", name)
    return blocked


def _pv_detail(pv: dict) -> str:
    spec = pv.get("spec") or {}
    ref = spec.get("claimRef") or {}
    phase = (pv.get("status") or {}).get("phase", "")
    claim = f"claim {ref.get('namespace')}/{ref.get('name')}" if ref else "no claim"
    policy = spec.get("persistentVolumeReclaimPolicy", "?")
    return f"{phase or 'unknown phase'}, {claim}, reclaim {policy}"
