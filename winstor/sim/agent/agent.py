"""One cluster's node agent, assembled: AWS, node models, nodes, add-ons, kubelets, exec.

The order of `Agent.start` is the order in which an EKS cluster comes to be: the AWS
account (VPC, subnets, AMIs, an instance per node, the FSx file system) in moto; the
Windows node models (csi-proxy, the SMB Global Mapping of the FSx share); the kubelets
registering their nodes, Leases and CSINodes; the add-ons' objects; then the kubelets
run the pods the real scheduler binds to them. The ready file is written once the nodes
are Ready as the node lifecycle controller sees them.

The kubelets are the embedded cluster's (`AgentKubelet`), run by a level-triggered loop
as the sim's `Controllers` runs its members: every change the informers see marks the
loop dirty. They see the cluster through `AgentParts`, which satisfies the sim's
`ClusterParts` protocol with a `RemoteStore` in place of the sim's store.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import tempfile
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import bootstrap_ebs, topology
from ..api.events import Recorder
from ..api.kinds import kind_of
from ..aws import AwsBackend, ClusterAws
from ..bootstrap import SHARE_DIR, node_csi_proxy
from ..cloud import SimCloud
from ..controllers.base import Controller, WorkQueue
from ..metrics import Metrics
from ..nodes.workloads import Workloads
from ..scenarios import SCENARIOS
from ..timing import Clock
from . import addons
from .backend import Backend
from .kube import Kube
from .kubelet import AgentKubelet, AgentRecorder, NodeExpansion
from .nodes import NodeAgent
from .store import RemoteStore

log = logging.getLogger("winstor.sim.agent")

WATCHED = (kind_of("v1", "Namespace"), kind_of("v1", "Node"), kind_of("v1", "Pod"),
           kind_of("v1", "PersistentVolumeClaim"), kind_of("v1", "PersistentVolume"),
           kind_of("storage.k8s.io/v1", "VolumeAttachment"),
           kind_of("storage.k8s.io/v1", "CSINode"))
REGION = "us-west-2"
READY_TIMEOUT = 120.0
KUBELET_HASH = "5c8a1e2"  # the -eks-<commit> suffix EKS kubelets carry

# Scenarios whose switch is not in this agent's hands on a real control plane: the API
# server's own behaviour, or a component that really runs here (the external-provisioner
# and the EBS CSI controller are the real ones), or the SMB CSI driver, not modelled here.
UNPLAYABLE: dict[str, str] = {
    "flaky-api": "the API server's faults: the real kube-apiserver does not inject them",
    "pod-security-off": "an admission plugin of the real kube-apiserver (its flags)",
    "resize-admission-off": "an admission plugin of the real kube-apiserver (its flags)",
    "binds-before-consumer": "the real external-provisioner decides when to provision",
    "ebs-wrong-type": "the real EBS CSI controller decides the volume type",
    "ebs-fstype-ignored": "the real external-provisioner writes the PV's fsType",
    "retain-ignored": "the real external-provisioner writes the PV's reclaim policy",
    "smb-csi-node-plugin-missing": "the SMB CSI driver is not modelled on this target",
    "smb-share-credentials-wrong": "the SMB CSI driver is not modelled on this target",
    "smb-share-server-unresolvable": "the SMB CSI driver is not modelled on this target",
    "file-gateway-not-joined": "the SMB CSI driver is not modelled on this target",
}


class ScenarioError(ValueError):
    """A scenario this agent does not know or cannot play."""


def check_scenarios(names: Set[str]) -> None:
    for name in sorted(names):
        if name not in SCENARIOS:
            raise ScenarioError(f"unknown scenario {name!r} (known: "
                                f"{', '.join(sorted(SCENARIOS))})")
        if name in UNPLAYABLE:
            raise ScenarioError(f"scenario {name!r} cannot be played by the node agent: "
                                f"{UNPLAYABLE[name]}")


@dataclass
class AgentParts:
    """The sim's `ClusterParts` for controllers that run against the real API server."""

    store: RemoteStore
    events: Recorder
    clock: Clock
    workloads: Workloads
    aws: SimCloud
    metrics: Metrics
    plan: topology.ClusterPlan
    scenarios: frozenset[str]
    flavour: str = "eks"
    pod_security_admission: bool = True


@dataclass
class Options:
    kubeconfig: Path
    cluster: str
    index: int
    stream_port: int
    ready_file: Path
    backend_port: int = 0
    aws_port: int = 0
    scenarios: frozenset[str] = frozenset()
    time_scale: float = 0.002
    exit_with: int | None = None
    component_logs: Path | None = None
    region: str = REGION


@dataclass
class Agent:
    options: Options
    kube: Kube | None = None
    cloud: SimCloud | None = None
    aws_cluster: ClusterAws | None = None
    store: RemoteStore | None = None
    backend: Backend | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    queue: WorkQueue | None = None

    # -- start ------------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        """Bring the cluster's nodes up; returns what the ready file says."""
        opts = self.options
        loop = asyncio.get_running_loop()
        check_scenarios(opts.scenarios)
        self.kube = kube = Kube(opts.kubeconfig)
        await loop.run_in_executor(None, kube.wait_ready)
        version = await loop.run_in_executor(None, kube.request, "GET", "/version")
        git_version = str(version.get("gitVersion") or "v1.35.0")
        minor = ".".join(git_version.lstrip("v").split(".")[:2])
        plan = dataclasses.replace(topology.plan(opts.index, "eks", set(opts.scenarios),
                                                 opts.region),
                                   name=opts.cluster, kube_version=minor)

        self.cloud = cloud = SimCloud(opts.region)
        cloud.backend = AwsBackend(region=opts.region, port=opts.aws_port)
        await loop.run_in_executor(None, cloud.start)
        self.aws_cluster = aws_cluster = await loop.run_in_executor(None, cloud.seed_for_plan,
                                                                    plan)
        play_aws_scenarios(cloud.backend, opts.scenarios)
        instances = {name: facts.instance_id for name, facts in aws_cluster.nodes.items()}

        self.store = store = RemoteStore(kube, WATCHED)
        await store.start()
        workloads = Workloads(store, "eks", opts.scenarios)
        for node in plan.nodes:
            if node.os != "windows":
                continue
            facts = aws_cluster.nodes.get(node.name)
            workloads.add_windows_node(node, csi_proxy=node_csi_proxy(facts, opts.scenarios))
            # The kubelet's own directories: the node plugin's registration socket lives here.
            system = workloads.nodes[node.name].drives["C:"]
            for sub in ("var\\lib\\kubelet\\plugins_registry",
                        "var\\lib\\kubelet\\plugins\\ebs.csi.aws.com"):
                system.mkdir(sub, parents=True)
        if aws_cluster.fsx is not None and "smb-mapping-missing" not in opts.scenarios:
            workloads.map_share_on_windows_nodes(aws_cluster.fsx.share_remote_path, SHARE_DIR)

        nodes = NodeAgent(store, plan, opts.scenarios, instances, aws_cluster.nodes,
                          opts.stream_port, f"{git_version}-eks-{KUBELET_HASH}")
        nodes.register()
        made = addons.install(store, opts.region, opts.scenarios)
        log.info("add-ons: %s", ", ".join(made))
        await bootstrap_ebs.seed(plan, opts.scenarios, store, workloads, cloud, aws_cluster)

        parts = AgentParts(store=store, events=AgentRecorder(store),
                           clock=Clock(scale=opts.time_scale), workloads=workloads, aws=cloud,
                           metrics=Metrics(), plan=plan, scenarios=frozenset(opts.scenarios))
        self.queue = queue = WorkQueue()
        silent = {n.name for n in plan.nodes if nodes.silent(n)}
        kubelet = AgentKubelet(parts, queue, nodes=nodes, instances=instances,
                               describe_volume=cloud.backend.volume_state, silent_nodes=silent)
        store.add_listener(lambda *_: queue.changed())
        store.before_pod_removed.append(nodes.release_pod)
        expansion = NodeExpansion(parts, queue, describe_volume=cloud.backend.volume_state)
        self.tasks.append(loop.create_task(self._reconcile([kubelet, expansion], queue)))
        self.tasks.append(loop.create_task(nodes.run()))

        component_logs = opts.component_logs
        if component_logs is None and (opts.kubeconfig.parent / "logs").is_dir():
            component_logs = opts.kubeconfig.parent / "logs"
        self.backend = Backend(store, workloads, component_logs)
        backend_port = await self.backend.start(opts.backend_port)

        deadline = loop.time() + READY_TIMEOUT
        while not nodes.ready():
            if loop.time() > deadline:
                raise TimeoutError(f"the nodes of {opts.cluster} were not Ready (as the node "
                                   f"lifecycle controller sees them) within "
                                   f"{READY_TIMEOUT:.0f} s")
            await asyncio.sleep(0.2)
        env = cloud.env()
        return {"backend": f"http://127.0.0.1:{backend_port}",
                "aws_endpoint": env["AWS_ENDPOINT_URL"], "region": opts.region,
                "aws_env": env, "instances": instances,
                "nodes": [n.name for n in plan.nodes],
                "csi_controller": "intree-without-csi-driver" not in opts.scenarios,
                "scenarios": sorted(opts.scenarios), "kubernetes": git_version,
                "pid": os.getpid()}

    async def _reconcile(self, members: list[Controller], queue: WorkQueue) -> None:
        """The sim's controller loop, with the kubelet's parts as its members."""
        queue.dirty.set()
        while True:
            await queue.dirty.wait()
            queue.dirty.clear()
            for member in members:
                try:
                    member.reconcile()
                except Exception:
                    log.exception("%s reconcile failed", type(member).__name__)
            await asyncio.sleep(0.005)  # let a burst of watch events land as one pass

    # -- stop -------------------------------------------------------------------------
    async def stop(self) -> None:
        tasks = list(self.tasks)
        if self.queue is not None:
            tasks += list(self.queue.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.backend is not None:
            await self.backend.stop()
        if self.store is not None:
            self.store.stop()
        loop = asyncio.get_running_loop()
        if self.cloud is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(loop.run_in_executor(None, self.cloud.stop), 10)
        if self.kube is not None:
            self.kube.close()


def play_aws_scenarios(backend: AwsBackend, scenarios: Set[str]) -> None:
    """Faults in EC2 itself, for the real EBS CSI controller to meet over the wire.

    `ebs-attach-fails`: every AttachVolume is refused; `ebs-modify-refused`: every
    ModifyVolume. Both with the error EC2 gives a role whose policy lacks the action
    (`UnauthorizedOperation`, HTTP 403), which the driver reports at once rather than
    retrying; the external-attacher (or -resizer) puts it on the VolumeAttachment (or
    the claim), and the attach-detach controller reports FailedAttachVolume.
    """
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models import ec2_backends

    ec2 = ec2_backends[backend.account_id][backend.region]

    def refuse(action: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise EC2ClientError(
                "UnauthorizedOperation",
                "You are not authorized to perform this operation. User: "
                f"arn:aws:sts::{backend.account_id}:assumed-role/"
                f"AmazonEKS_EBS_CSI_DriverRole/1700000000000000000 is not authorized to "
                f"perform: ec2:{action} because no identity-based policy allows the "
                f"ec2:{action} action")
        return call
    if "ebs-attach-fails" in scenarios:
        ec2.attach_volume = refuse("AttachVolume")
    if "ebs-modify-refused" in scenarios:
        ec2.modify_volume = refuse("ModifyVolume")


def write_ready(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader sees no file or the whole of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.chmod(tmp, 0o600)  # it holds the moto account's keys
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def _watch_pid(pid: int, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("process %d is gone; stopping", pid)
            stop.set()
            return
        except PermissionError:
            pass
        await asyncio.sleep(1.0)


async def serve(options: Options) -> int:
    """Start, write the ready file, run until told to stop; the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(_watch_pid(options.exit_with, stop)) \
        if options.exit_with else None
    agent = Agent(options)
    try:
        starting = loop.create_task(agent.start())
        stopping = loop.create_task(stop.wait())
        done, _ = await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting not in done:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
            return 0
        stopping.cancel()
        ready = starting.result()
        write_ready(options.ready_file, ready)
        log.info("%s: %d node(s) ready, backend %s, AWS %s", options.cluster,
                 len(ready["nodes"]), ready["backend"], ready["aws_endpoint"])
        await stop.wait()
        return 0
    finally:
        if watcher is not None:
            watcher.cancel()
        await agent.stop()
        log.info("%s: stopped", options.cluster)
