"""What to keep about a failed check, read while the cluster still holds it.

A nightly run fails at 03:00; by the time someone looks, the namespace is
gone. So when a check fails, the process that ran it (it holds the cluster
connection) reads what a person would have run `kubectl describe`, `get -o
yaml` and `logs` for: the events of the run's namespaces - the event that
ended a wait first - the run's pods and claims, their volumes and nodes, and
the containers' logs. Everything is redacted and bounded (per file, per
check, and in time), because diagnostics must never be the reason a report
is huge or a run hangs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import yaml
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from winstor.cluster.kube import (
    EVENTS,
    NAMESPACES,
    NODES,
    PODS,
    PVCS,
    PVS,
    Api,
    KubeError,
    Resource,
    is_transient,
    log_retry,
)
from winstor.cluster.waits import WaitFailed, describe_event
from winstor.reports.redact import Redactor

FILE_LIMIT = 64 * 1024
CHECK_LIMIT = 512 * 1024
TIME_BUDGET = 20.0
MAX_PODS = 12
MAX_NODES = 6
LOG_TAIL_LINES = 300
READ_TIMEOUT = 10
READ_ATTEMPTS = 4


def wait_failures(exc: BaseException | None, funcargs: dict[str, Any]) -> list[WaitFailed]:
    """The waits behind a failure: in the exception's chain (a check that caught a
    WaitFailed and failed), or held by the check's fixtures (`Deferred` outcomes
    whose provisioning wait failed)."""
    found: list[WaitFailed] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WaitFailed):
            found.append(exc)
        exc = exc.__cause__ or exc.__context__

    def scan(value: Any, depth: int = 0) -> None:
        if depth > 2:
            return
        inner = getattr(value, "exception", None)
        if isinstance(inner, WaitFailed) and inner not in found:
            found.append(inner)
        if isinstance(value, dict):
            for v in value.values():
                scan(v, depth + 1)

    for value in funcargs.values():
        scan(value)
    return found


def _clip(text: str, limit: int = FILE_LIMIT) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    cut = data[:limit].decode("utf-8", "ignore")
    return cut + f"\n... [truncated: {len(data) - limit} more bytes]\n"


def _yaml(obj: dict, redactor: Redactor) -> str:
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    clean = redactor.data({**obj, "metadata": meta})
    return redactor.text(yaml.safe_dump(clean, sort_keys=False, default_flow_style=False))


def _stamp(ev: dict) -> str:
    return str(ev.get("lastTimestamp") or ev.get("eventTime") or ev.get("firstTimestamp") or "")


def _order(ev: dict) -> tuple[str, int]:
    """By time, then by resourceVersion: timestamps have one-second resolution."""
    rv = str((ev.get("metadata") or {}).get("resourceVersion") or "")
    return _stamp(ev), int(rv) if rv.isdigit() else 0


def event_line(ev: dict) -> str:
    return f"{_stamp(ev) or '-':<20}  {describe_event(ev)}"


class Collector:
    """Reads one cluster's state for one failed check, within the budgets."""

    def __init__(self, api: Api, run_selector: str, redactor: Redactor,
                 budget: float = TIME_BUDGET) -> None:
        self.api = api
        self.selector = run_selector
        self.redactor = redactor
        self.deadline = time.monotonic() + budget
        self.errors: list[str] = []

    def _get(self, path: str, query: dict[str, Any] | None = None, *,
             stream: bool = False) -> Any:
        """One read, tried again on a transient error (429, 5xx, a dropped connection)
        while the time budget lasts: a flaky API server should not cost the diagnostics
        of the very failure it may have caused."""
        for attempt in Retrying(retry=retry_if_exception(is_transient), reraise=True,
                                stop=stop_after_attempt(READ_ATTEMPTS),
                                wait=wait_exponential(multiplier=0.1, max=1),
                                before_sleep=log_retry):
            with attempt:
                if time.monotonic() > self.deadline:
                    raise TimeoutError("diagnostics time budget spent")
                return self.api.raw("GET", path, query=query, stream=stream,
                                    timeout=READ_TIMEOUT)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _items(self, res: Resource, namespace: str | None = None,
               label_selector: str | None = None) -> list[dict]:
        try:
            data = self._get(res.path(namespace), {"labelSelector": label_selector})
        except (KubeError, ConnectionError, TimeoutError, OSError) as err:
            self.errors.append(f"list {res.plural} in {namespace or 'cluster'}: {err}")
            return []
        return (data or {}).get("items") or []

    def _one(self, res: Resource, name: str, namespace: str | None = None) -> dict | None:
        try:
            obj = self._get(res.path(namespace, name))
        except KubeError as err:
            if err.status != 404:
                self.errors.append(f"get {res.plural}/{name}: {err}")
            return None
        except (ConnectionError, TimeoutError, OSError) as err:
            self.errors.append(f"get {res.plural}/{name}: {err}")
            return None
        return obj

    def collect(self, check_id: str, cluster: str, reason: str | None,
                waits: Iterable[WaitFailed], markers: Iterable[str] = ()) -> dict[str, str]:
        """File name -> text, most useful first, within CHECK_LIMIT."""
        waits = list(waits)
        files: dict[str, str] = {}
        namespaces = [n["metadata"]["name"] for n in self._items(NAMESPACES, None,
                                                                 self.selector)]
        pods: list[dict] = []
        claims: list[dict] = []
        events: dict[str, dict] = {}
        for ns in namespaces:
            pods += self._items(PODS, ns)
            claims += self._items(PVCS, ns)
            for ev in self._items(EVENTS, ns):
                events[ev["metadata"].get("uid") or ev["metadata"]["name"]] = ev
        for w in waits:
            for ev in [*(w.events or []), *([w.event] if w.event else [])]:
                events.setdefault((ev.get("metadata") or {}).get("uid")
                                  or (ev.get("metadata") or {}).get("name", str(id(ev))), ev)
        node_names: list[str] = []
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if node and node not in node_names:
                node_names.append(node)
        for ev in events.values():
            inv = ev.get("involvedObject") or {}
            if inv.get("kind") == "Node" and inv.get("name") not in node_names:
                node_names.append(inv["name"])
        if {"nodes", "csi_proxy", "smb"} & set(markers) or not node_names:
            for node in self._items(NODES, None, "kubernetes.io/os=windows"):
                if node["metadata"]["name"] not in node_names:
                    node_names.append(node["metadata"]["name"])
        pv_names = [c["spec"]["volumeName"] for c in claims
                    if (c.get("spec") or {}).get("volumeName")]
        # Events about the run's cluster-scoped objects land in "default".
        scoped = set(pv_names) | set(node_names)
        for ev in self._items(EVENTS, "default"):
            if (ev.get("involvedObject") or {}).get("name") in scoped:
                events[ev["metadata"].get("uid") or ev["metadata"]["name"]] = ev

        files["summary.txt"] = self._summary(check_id, cluster, reason, waits, namespaces)
        files["events.txt"] = self._events(events.values(), waits)
        for pod in pods[:MAX_PODS]:
            files[f"pod-{pod['metadata']['namespace']}-{pod['metadata']['name']}.yaml"] = \
                _yaml({"apiVersion": "v1", "kind": "Pod", **pod}, self.redactor)
        for claim in claims:
            files[f"pvc-{claim['metadata']['namespace']}-{claim['metadata']['name']}.yaml"] = \
                _yaml({"apiVersion": "v1", "kind": "PersistentVolumeClaim", **claim},
                      self.redactor)
        for name in pv_names:
            pv = self._one(PVS, name)
            if pv is not None:
                files[f"pv-{name}.yaml"] = _yaml(pv, self.redactor)
        for name in node_names[:MAX_NODES]:
            node = self._one(NODES, name)
            if node is not None:
                files[f"node-{name}.yaml"] = _yaml(node, self.redactor)
        for pod in pods[:MAX_PODS]:
            for c in (pod.get("spec") or {}).get("containers") or []:
                files[f"logs/{pod['metadata']['namespace']}-{pod['metadata']['name']}-"
                      f"{c['name']}.log"] = self._log(pod, c["name"])
        if self.errors:
            files["collection-errors.txt"] = "\n".join(self.errors) + "\n"
        return self._bounded(files)

    def _summary(self, check_id: str, cluster: str, reason: str | None,
                 waits: list[WaitFailed], namespaces: list[str]) -> str:
        lines = [f"check: {check_id}", f"cluster: {cluster}",
                 f"run namespaces: {', '.join(namespaces) or '(none left)'}", "",
                 "reason:", (reason or "(none given)").rstrip(), ""]
        for w in waits:
            lines.append(f"wait: {str(w).splitlines()[0] if str(w) else '(no message)'}")
            if w.event:
                lines.append(f"  ended by event: {describe_event(w.event)}")
            else:
                lines.append(f"  ended by: deadline after {w.elapsed:.1f}s of "
                             f"{w.timeout:.0f}s" if w.timeout and w.elapsed >= w.timeout
                             else "  ended by: the watched object's state")
            lines.append(f"  waited {w.elapsed:.1f}s (timeout {w.timeout:.0f}s)")
        return self.redactor.text("\n".join(lines) + "\n")

    def _events(self, events: Iterable[dict], waits: list[WaitFailed]) -> str:
        ordered = sorted(events, key=_order)
        lines: list[str] = []
        for w in waits:
            if w.event:
                lines.append(f"THE WAIT ENDED ON: {event_line(w.event)}")
        if lines:
            lines.append("")
        lines += [event_line(e) for e in ordered[-400:]] or ["(no events)"]
        return self.redactor.text("\n".join(lines) + "\n")

    def _log(self, pod: dict, container: str) -> str:
        meta = pod["metadata"]
        if time.monotonic() > self.deadline:
            return "(no log: diagnostics time budget spent)\n"
        try:
            # Streamed: the body is plain text, which the JSON path would refuse.
            resp = self._get(PODS.path(meta["namespace"], meta["name"], "log"),
                             {"container": container, "tailLines": LOG_TAIL_LINES,
                              "limitBytes": FILE_LIMIT}, stream=True)
            try:
                raw = resp.read(FILE_LIMIT + 1)
            finally:
                resp.close()
        except (KubeError, ConnectionError, TimeoutError, OSError) as err:
            return f"(no log: {str(err)[:300]})\n"
        except Exception as err:  # urllib3 read errors: a missing log must not fail the run
            return f"(no log: {type(err).__name__}: {str(err)[:300]})\n"
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        return self.redactor.text(text) or "(empty log)\n"

    def _bounded(self, files: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        total = 0
        dropped = []
        for name, text in files.items():
            text = _clip(text)
            size = len(text.encode("utf-8", "replace"))
            if total + size > CHECK_LIMIT:
                dropped.append(name)
                continue
            out[name] = text
            total += size
        if dropped:
            out["summary.txt"] = out.get("summary.txt", "") + (
                f"\n[size limit: left out {', '.join(dropped)}]\n")
        return out
