"""Request and object counters served at `/metrics` in Prometheus text format.

The benchmarks read these to count API requests per cluster, so the names
follow the apiserver's own (`apiserver_request_total`). Pod starts are
counted here, from the store, rather than in the kubelet: a pod counts once,
when it first reaches Running, split by node OS and by whether it is a
HostProcess pod - the benchmarks set workload pods apart from node probes.
The modelled-time families come from the cluster's `Clock` (timing.py).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from .api.kinds import Kind, kind_of
from .nodes.workloads import is_host_process

if TYPE_CHECKING:
    from .api.store import Store

NODES = kind_of("v1", "Node")

HELP: dict[str, tuple[str, str]] = {
    "winstor_sim_modelled_critical_seconds_total": (
        "counter", "Modelled EKS critical path, unscaled seconds: the union of the nominal "
                   "spans of all modelled operations (overlaps count once; time with no "
                   "modelled operation in progress is not counted)."),
    "winstor_sim_modelled_in_progress": ("gauge", "Modelled operations in progress now."),
    "winstor_sim_time_scale": ("gauge", "Real seconds per modelled EKS second."),
    "winstor_sim_modelled_seconds_total": (
        "counter", "Modelled EKS seconds by operation, summed (overlaps count each time)."),
    "winstor_sim_modelled_operations_total": ("counter", "Modelled operations started."),
    "winstor_sim_modelled_union_seconds_total": (
        "counter", "Union of the spans of one kind of operation, unscaled seconds."),
    "winstor_sim_modelled_busy_start_seconds": (
        "gauge", "Start (epoch seconds) of one of the latest runs of time in which a modelled "
                 "operation was in progress (the critical path's pieces)."),
    "winstor_sim_modelled_busy_end_seconds": (
        "gauge", "Nominal end (epoch seconds) of that run."),
    "winstor_sim_modelled_waves_total": (
        "counter", "Runs of overlapping operations of one kind (parallel pulls on several "
                   "nodes are one wave)."),
}


class Metrics:
    def __init__(self, store: Store | None = None) -> None:
        self.requests: Counter[tuple[str, str, str, int]] = Counter()
        self.exec_sessions = 0
        self.controller_passes = 0  # passes of the controller loop (controllers/__init__.py)
        self.image_pulls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.pod_starts: Counter[tuple[str, str]] = Counter()  # (os, workload|hostprocess)
        self._started: set[str] = set()
        self._store = store
        if store is not None:
            store.add_listener(self._on_change)

    def _on_change(self, kind: Kind, type_: str, obj: dict) -> None:
        if kind.kind != "Pod":
            return
        uid = obj["metadata"].get("uid", "")
        if type_ == "DELETED":
            self._started.discard(uid)
            return
        if uid in self._started or (obj.get("status") or {}).get("phase") != "Running":
            return
        if obj["metadata"].get("namespace") == "kube-system":
            return  # the cluster's own add-on pods (SMB CSI node plugins), not the run's
        self._started.add(uid)
        node = self._store.peek(NODES, None, obj["spec"].get("nodeName") or "") \
            if self._store is not None else None
        os_ = ((node or {}).get("metadata", {}).get("labels") or {}).get("kubernetes.io/os",
                                                                          "linux")
        self.pod_starts[(os_, "hostprocess" if is_host_process(obj) else "workload")] += 1

    def record(self, verb: str, group: str, resource: str, code: int) -> None:
        self.requests[(verb, group, resource, code)] += 1

    def render(self, objects_created: dict[str, int], extra: dict[str, float]) -> str:
        lines = [
            "# HELP apiserver_request_total Requests by verb, group, resource and code.",
            "# TYPE apiserver_request_total counter",
        ]
        for (verb, group, resource, code), n in sorted(self.requests.items()):
            lines.append(
                f'apiserver_request_total{{verb="{verb}",group="{group}",'
                f'resource="{resource}",code="{code}"}} {n}')
        lines += ["# HELP winstor_sim_objects_created_total Objects created, by kind.",
                  "# TYPE winstor_sim_objects_created_total counter"]
        for kind, n in sorted(objects_created.items()):
            lines.append(f'winstor_sim_objects_created_total{{kind="{kind}"}} {n}')
        lines += ["# HELP winstor_sim_image_pulls_total Image pulls by image.",
                  "# TYPE winstor_sim_image_pulls_total counter"]
        for image, n in sorted(self.image_pulls.items()):
            lines.append(f'winstor_sim_image_pulls_total{{image="{image}"}} {n}')
        lines += ["# TYPE winstor_sim_faults_injected_total counter"]
        for fault, n in sorted(self.faults.items()):
            lines.append(f'winstor_sim_faults_injected_total{{fault="{fault}"}} {n}')
        lines.append(f"winstor_sim_exec_sessions_total {self.exec_sessions}")
        lines += ["# HELP winstor_sim_controller_passes_total Passes of the controller loop "
                  "(each lets every controller look at the whole cluster).",
                  "# TYPE winstor_sim_controller_passes_total counter",
                  f"winstor_sim_controller_passes_total {self.controller_passes}"]
        lines += ["# HELP winstor_sim_pod_starts_total Pods that reached Running, by node OS "
                  "and kind (hostprocess: HostProcess pods; workload: the rest).",
                  "# TYPE winstor_sim_pod_starts_total counter"]
        for (os_, what), n in sorted(self.pod_starts.items()):
            lines.append(f'winstor_sim_pod_starts_total{{os="{os_}",kind="{what}"}} {n}')
        said: set[str] = set()
        for name, value in sorted(extra.items()):
            family = name.split("{", 1)[0]
            if family in HELP and family not in said:
                said.add(family)
                lines += [f"# HELP {family} {HELP[family][1]}",
                          f"# TYPE {family} {HELP[family][0]}"]
            lines.append(f"{name} {value}")
        return "\n".join(lines) + "\n"
