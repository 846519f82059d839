"""Request and object counters served at `/metrics` in Prometheus text format.

The benchmarks read these to count API requests per cluster, so the names
follow the apiserver's own (`apiserver_request_total`).
"""

from __future__ import annotations

from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str, int]] = Counter()
        self.exec_sessions = 0
        self.image_pulls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()

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
        for name, value in sorted(extra.items()):
            lines.append(f"{name} {value}")
        return "\n".join(lines) + "\n"
