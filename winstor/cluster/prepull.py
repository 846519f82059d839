"""Pulling the workloads' image onto a cluster's nodes before its checks begin.

A Windows workload image is gigabytes (servercore: minutes to pull on EKS), and each
cluster's head start (`fixtures/headstart.py`) begins that pull with its first check. A
cluster's first check can come long after the run began: in a serial run across several
clusters, after every earlier cluster's checks; in a fleet, after every xdist worker has
started and collected. So one process of the run begins the pull on every cluster whose
selected checks need it as soon as it knows the selection (`winstor.plugin.prepull`), as
the Kubernetes e2e framework pre-pulls images on its Windows nodes.

The pull is begun by pods like the node probe pods (`manifests.node_probe_pod` with the
workloads' image as second container: HostProcess, so any build of the image may be
pulled), one per node of the workloads' build, in a namespace of their own labelled
with the run. The kubelet pulls an image once per node, so the checks' own pods later
find it there, or wait for the pull already under way. The namespace is deleted as
soon as every pod has the image, or when the run ends; a failed pull decides nothing
(the checks' own pods meet and report it), but it is noted on the cluster's report. The
pulling thread then waits (in the background, bounded) until the namespace is gone, so
that the end of the run need only look at the clusters where it did not see that
(`PrePull.gone`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from winstor.cluster import manifests, provision
from winstor.cluster.kube import EVENTS, NAMESPACES
from winstor.cluster.target import Cluster

log = logging.getLogger("winstor.cluster.prepull")

SUFFIX = "prepull"
POD_PREFIX = "winstor-prepull-"

# The fixtures whose pods run the workloads' image, or pull it (the node probes): a
# cluster whose selected checks use none of them needs no pull at all.
PULLING_FIXTURES = ("node_probes", "seed_workload", "fsx_pod", "fsx_reader_pod",
                    "lifecycle_workload")


def namespace(cluster: Cluster) -> str:
    return provision.namespace_name(cluster, SUFFIX)


def image_to_pull(cluster: Cluster) -> str | None:
    """The workloads' image, when it can run on the nodes (else nothing to pull)."""
    try:
        provision.check_image_runs(cluster)
    except provision.ProvisionError:
        return None
    return cluster.image()


@dataclass
class PrePull:
    """One cluster's pull, begun in a thread of its own (`begin`)."""

    cluster: Cluster
    created: bool = False  # its namespace was asked for (deleting it is then due)
    gone: bool = False  # and this thread saw it gone afterwards (nothing left to check)
    done: threading.Event = field(default_factory=threading.Event)
    # its pods are created, or it ended before: what is left is the nodes' pull
    begun: threading.Event = field(default_factory=threading.Event)
    error: str | None = None  # why the pull did not come (not set when stopped)
    # the namespace's events, read before it is deleted (the report's timeline)
    events: list[dict] = field(default_factory=list)
    _stopped: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        c = self.cluster
        name = namespace(c)
        try:
            image = image_to_pull(c)
            nodes = c.workload_nodes() if image else []
            pods = []
            for i, node in enumerate(nodes):
                body = manifests.node_probe_pod(name, c.labels(), node, f"{POD_PREFIX}{i}",
                                                c.platform, prepull=image)
                with self._lock:  # nothing is created once stop() has returned
                    if self._stopped:
                        return
                    if not self.created:
                        self.created = True
                        provision.ensure_namespace(c, name, "privileged")
                    provision.create_pod(c, body)
                # The stand-in profile pulls with the probe container itself.
                containers = [k["name"] for k in body["spec"]["containers"]]
                pods.append((body["metadata"]["name"],
                             manifests.PREPULL if manifests.PREPULL in containers
                             else manifests.NODE_PROBE))
            self.begun.set()
            for pod, container in pods:
                provision.wait_container_running(
                    c, name, pod, container, what=f"the workloads' image on pod {pod}")
        except Exception as err:  # only a head start: the checks' own pods report it too
            log.debug("%s: pre-pulling the workloads' image: %s", c.name, err)
            if not self._stopped:  # not what stopping it at the end of the session made
                self.error = f"{type(err).__name__}: {err}"[:600]
        finally:
            self.begun.set()
            if self.created:
                self._read_events(name)
                self.remove()
                self.gone = self._wait_gone(name)
            self.done.set()

    def _wait_gone(self, name: str) -> bool:
        try:
            return not provision.delete_namespace(self.cluster, name, sweep_volumes=False)
        except Exception as err:  # the end of the run looks again, and says what stays
            log.debug("%s: waiting for %s to go: %s", self.cluster.name, name, err)
            return False

    def _read_events(self, name: str) -> None:
        try:
            self.events = self.cluster.api.items(EVENTS, name)
        except Exception as err:  # the timeline lacks the pull; nothing else depends on it
            log.debug("%s: reading the events of %s: %s", self.cluster.name, name, err)

    def stop(self) -> None:
        """Create nothing more; delete the namespace if the pull is not over."""
        with self._lock:
            self._stopped = True
        if self.created and not self.done.is_set():
            self.remove()

    def remove(self) -> None:
        """Delete the namespace without waiting (`settle` waits, at the end of the run)."""
        try:
            self.cluster.api.delete(NAMESPACES, namespace(self.cluster))
        except Exception as err:  # the end of the run deletes it again and says what stays
            log.debug("%s: deleting %s: %s", self.cluster.name, namespace(self.cluster), err)


def begin(cluster: Cluster) -> PrePull:
    """Begin pulling on `cluster` in a daemon thread; returns at once."""
    pull = PrePull(cluster)
    threading.Thread(target=pull.run, name=f"prepull-{cluster.name}", daemon=True).start()
    return pull


def settle(cluster: Cluster) -> list[str]:
    """At the end of the run: the pull's namespace deleted and gone (bounded by the
    profile's namespace timeout); returns what stays, as `delete_namespace` does."""
    if cluster.api.get_or_none(NAMESPACES, namespace(cluster)) is None:
        return []
    return provision.delete_namespace(cluster, namespace(cluster), sweep_volumes=False)
