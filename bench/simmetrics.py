"""Read one cluster's `/metrics` and turn two readings into what a run cost.

Every figure the benchmarks print about a cluster comes from here, i.e. from
the embedded cluster's own counters (`winstor/sim/metrics.py`, `timing.py`),
read before and after the run and subtracted - never from what the suite
believes it did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from winstor.cluster.kube import Api

SAMPLE = re.compile(r'^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')

Key = tuple[str, tuple[tuple[str, str], ...]]


def parse(text: str) -> dict[Key, float]:
    """Prometheus text format -> {(name, sorted labels): value}; comments skipped."""
    out: dict[Key, float] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line.strip())
        if not m or line.startswith("#"):
            continue
        labels = tuple(sorted(LABEL.findall(m.group("labels") or "")))
        out[(m.group("name"), labels)] = float(m.group("value"))
    return out


def scrape(api: Api) -> dict[Key, float]:
    return parse(api.raw("GET", "/metrics", stream=True).data.decode())


@dataclass
class Costs:
    """What one cluster did between two readings (all from the sim's counters)."""

    cluster: str
    requests: int = 0
    requests_by: dict[str, int] = field(default_factory=dict)  # "VERB resource" -> n
    objects_created: dict[str, int] = field(default_factory=dict)
    pod_starts: dict[str, int] = field(default_factory=dict)  # "os/kind" -> n
    operations: dict[str, int] = field(default_factory=dict)  # modelled op -> n
    modelled_seconds: dict[str, float] = field(default_factory=dict)
    union_seconds: dict[str, float] = field(default_factory=dict)
    waves: dict[str, int] = field(default_factory=dict)
    critical_seconds: float = 0.0
    in_progress_before: int = 0
    in_progress_after: int = 0
    time_scale: float = 0.0
    # Runs of time (epoch seconds) with a modelled operation in progress, as of the
    # second reading; for how much modelled time passed between two moments.
    busy: list[tuple[float, float]] = field(default_factory=list)

    def modelled_between(self, start: float, end: float) -> tuple[float, float]:
        """(real seconds with modelled work in progress, those seconds unscaled)
        within [start, end]."""
        real = sum(max(0.0, min(e, end) - max(s, start)) for s, e in self.busy)
        return real, real / self.time_scale if self.time_scale else 0.0

    @property
    def windows_workload_starts(self) -> int:
        return self.pod_starts.get("windows/workload", 0)

    @property
    def windows_hostprocess_starts(self) -> int:
        return self.pod_starts.get("windows/hostprocess", 0)

    @property
    def windows_pod_starts(self) -> int:
        return self.windows_workload_starts + self.windows_hostprocess_starts

    @property
    def volumes_provisioned(self) -> int:
        return self.objects_created.get("PersistentVolume", 0)

    @property
    def ebs_creates(self) -> int:
        return self.operations.get("ebs_create", 0)

    @property
    def servercore_pulls(self) -> int:
        return self.operations.get("image_pull:servercore", 0)

    @property
    def servercore_pull_waves(self) -> int:
        """Image pulls on the critical path: every servercore pull in the sim is made
        by the kubelet for a pod that waits on it; pulls that overlap (several nodes
        at once) delayed the run once, so they count once."""
        return self.waves.get("image_pull:servercore", 0)


def costs(cluster: str, before: dict[Key, float], after: dict[Key, float],
          own_scrapes: int = 1) -> Costs:
    """The difference of two readings, folded per family.

    The reading `before` was itself a request (`GET /metrics`, counted once it
    was answered); `own_scrapes` takes such requests of the benchmark's own
    back out, so the count is the run's alone.
    """
    out = Costs(cluster)

    def delta(key: Key) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    for key in after:
        name, labels = key
        lab = dict(labels)
        d = delta(key)
        if name == "apiserver_request_total":
            what = f"{lab.get('verb', '?')} {lab.get('resource', '?') or '(other)'}"
            out.requests += int(d)
            out.requests_by[what] = out.requests_by.get(what, 0) + int(d)
        elif name == "winstor_sim_objects_created_total":
            out.objects_created[lab.get("kind", "?")] = int(d)
        elif name == "winstor_sim_pod_starts_total":
            out.pod_starts[f"{lab.get('os')}/{lab.get('kind')}"] = int(d)
        elif name == "winstor_sim_modelled_operations_total":
            out.operations[lab["what"]] = int(d)
        elif name == "winstor_sim_modelled_seconds_total":
            out.modelled_seconds[lab["what"]] = round(d, 3)
        elif name == "winstor_sim_modelled_union_seconds_total":
            out.union_seconds[lab["what"]] = round(d, 3)
        elif name == "winstor_sim_modelled_waves_total":
            out.waves[lab["what"]] = int(d)
        elif name == "winstor_sim_modelled_critical_seconds_total":
            out.critical_seconds = round(d, 3)
        elif name == "winstor_sim_time_scale":
            out.time_scale = after[key]
        elif name == "winstor_sim_modelled_busy_start_seconds":
            end = after.get(("winstor_sim_modelled_busy_end_seconds", labels))
            if end is not None:
                out.busy.append((after[key], end))
        elif name == "winstor_sim_modelled_in_progress":
            out.in_progress_before = int(before.get(key, 0.0))
            out.in_progress_after = int(after[key])
    if own_scrapes and out.requests_by.get("GET (other)", 0) >= own_scrapes:
        out.requests_by["GET (other)"] -= own_scrapes
        out.requests -= own_scrapes
    out.requests_by = {k: v for k, v in sorted(out.requests_by.items()) if v}
    out.busy.sort()
    return out
