"""Per-process state of a run: settings, the clusters, the clusters the run starts.

With no context, the run starts its clusters: the embedded cluster, or on the
`controlplane` profile the real control plane (`winstor.targets.controlplane`).
Under pytest-xdist the controller starts them (once) and hands the kubeconfig and
AWS settings to the workers; in a serial run the first check that needs a cluster
starts them. Either way nothing is started or contacted for `--collect-only`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from winstor.cluster.target import Cluster
from winstor.plugin.settings import Settings
from winstor.targets.controlplane.process import ControlPlaneProcess
from winstor.targets.embedded import LaunchError, SimProcess
from winstor.targets.profiles import get as get_profile


@dataclass
class RunState:
    settings: Settings
    sim: SimProcess | ControlPlaneProcess | None = None
    sim_kubeconfig: str | None = None
    sim_aws_env: dict[str, str] = field(default_factory=dict)
    # cluster -> its own AWS settings, where they differ (each control-plane cluster
    # has its own moto); the others use sim_aws_env
    cluster_aws_envs: dict[str, dict[str, str]] = field(default_factory=dict)
    # where progress of a long start goes (the control plane's first build): the terminal
    progress: Callable[[str], None] | None = None
    clusters: dict[str, Cluster] = field(default_factory=dict)
    launch_error: str | None = None
    remote_notes: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    crashed_workers: list[str] = field(default_factory=list)
    interrupted: bool = False  # a first Ctrl-C arrived: the run's objects are swept at the end
    # cluster -> (opt-in markers, fixtures) of each selected check that is not skipped
    # before it starts (for fixtures.headstart: a check's fixtures are needed where its
    # cluster declares every opt-in marker it carries)
    needed_fixtures: dict[str, list[tuple[frozenset[str], set[str]]]] = field(
        default_factory=dict)
    # cluster -> fixture name -> the slow objects head start began (Deferreds)
    slow_objects: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    ran_early: set[str] = field(default_factory=set)  # node ids reported ahead of order
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ensure_sim(self) -> None:
        """Start the run's clusters (embedded, or the control plane) if this run uses them
        and nobody has yet."""
        s = self.settings
        if not s.use_sim or self.sim_kubeconfig or self.launch_error:
            return
        if s.profile == "controlplane":
            self._start_controlplane()
            return
        sim = SimProcess(s.sim_clusters, s.sim_scenarios,
                         flavour="kind" if s.profile == "kind" else "eks")
        try:
            sim.start()
        except LaunchError as err:
            self.launch_error = str(err)
            return
        self.sim = sim
        self.sim_kubeconfig = str(sim.kubeconfig)
        self.sim_aws_env = dict(sim.aws_env)

    def _start_controlplane(self) -> None:
        s = self.settings
        cp = ControlPlaneProcess(clusters=s.sim_clusters, scenarios=list(s.sim_scenarios))
        try:
            cp.start(progress=self.progress)
        except LaunchError as err:
            self.launch_error = f"the control plane could not be started: {err}"
            return
        self.sim = cp
        self.sim_kubeconfig = str(cp.kubeconfig)
        self.sim_aws_env = dict(cp.aws_env)
        self.cluster_aws_envs = cp.aws_envs

    def cluster(self, name: str) -> Cluster:
        with self._lock:
            if name in self.clusters:
                return self.clusters[name]
            self.ensure_sim()
            if self.launch_error:
                raise LaunchError(self.launch_error)
            c = self._new_cluster(name)
            self.clusters[name] = c
            return c

    def detached_cluster(self, name: str) -> Cluster:
        """A connection to one of the run's clusters that is not this process's record of
        it: what it learns (facts, notes) goes nowhere. For work done on clusters whose
        checks run elsewhere (`winstor.plugin.prepull`): the report takes each cluster's
        facts from the process that ran its checks, and a second record would replace
        them. Starts the run's clusters first, as `cluster` does (a serial run starts
        them on first use)."""
        with self._lock:
            self.ensure_sim()
            if self.launch_error:
                raise LaunchError(self.launch_error)
            return self._new_cluster(name)

    def _new_cluster(self, name: str) -> Cluster:
        target = next(t for t in self.settings.targets if t.name == name)
        c = Cluster(target=target, run_id=self.settings.run_id,
                    timeouts=self.settings.timeouts, profile=self.settings.profile,
                    kubeconfig=self.sim_kubeconfig or self.settings.kubeconfig,
                    aws_env=dict(self.cluster_aws_envs.get(name, self.sim_aws_env)),
                    keep_on_failure=self.settings.keep_on_failure)
        c.facts["where"] = self.where(target.context or name)
        return c

    def where(self, context: str) -> str:
        """Where this run's verdicts on a cluster are reached, for every report: an
        emulated result must never read as a result on EKS."""
        s = self.settings
        profile = get_profile(s.profile)
        if profile.where:
            return profile.where
        if s.use_sim:
            flavour = "kind flavour" if s.profile == "kind" else "EKS flavour"
            return (f"embedded cluster ({flavour}, started by the run): winstor's emulated API "
                    "server, controllers, nodes and Windows models, AWS in moto - not EKS")
        if s.profile == "kind":
            return (f"kind cluster, context {context}: Linux stand-ins for the Windows nodes "
                    "(PowerShell 7), FSx in moto - not EKS")
        return f"kubeconfig context {context}: the cluster itself"

    def stop(self) -> None:
        if self.sim is not None:
            self.sim.stop()
            self.sim = None

    def worker_input(self) -> dict[str, Any]:
        return {"winstor_run_id": self.settings.run_id,
                "winstor_sim_kubeconfig": self.sim_kubeconfig,
                "winstor_sim_aws_env": self.sim_aws_env,
                "winstor_cluster_aws_envs": self.cluster_aws_envs,
                "winstor_launch_error": self.launch_error}

    def adopt_worker_input(self, data: dict[str, Any]) -> None:
        self.sim_kubeconfig = data.get("winstor_sim_kubeconfig")
        self.sim_aws_env = dict(data.get("winstor_sim_aws_env") or {})
        self.cluster_aws_envs = dict(data.get("winstor_cluster_aws_envs") or {})
        self.launch_error = data.get("winstor_launch_error")
