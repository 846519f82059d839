"""The node side of the cluster: node models, volumes and containers.

A container is a `ContainerView` over its node's model and its mounts, so a
file written through one pod is found by the next pod that mounts the same
volume or share - on any node - because it is the same object, exactly as
with a real EBS volume or SMB share. On the kind flavour the nodes are Linux
(`winstor.sim.nodes.linux`) and a container is a `LinuxContainerView`; the worker
that stands in for the Windows node sees the cluster's one share at
`/winstor/share` and its mapping record beside it.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Any

from ..api.errors import ApiError
from ..api.kinds import kind_of
from ..api.store import Store
from ..topology import KIND_HOST_KERNEL, NodePlan
from . import linux, powershell, shell, smb, windows

PODS = kind_of("v1", "Pod")
PVCS = kind_of("v1", "PersistentVolumeClaim")
PVS = kind_of("v1", "PersistentVolume")

IMAGE_BUILDS = {"ltsc2019": "10.0.17763", "1809": "10.0.17763", "ltsc2022": "10.0.20348",
                "ltsc2025": "10.0.26100"}


def image_build(image: str) -> str | None:
    """The Windows build a servercore/nanoserver tag targets, or None (multi-OS image)."""
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    for key, build in IMAGE_BUILDS.items():
        if key in tag:
            return build
    return None


def is_host_process(pod: dict, container: dict | None = None) -> bool:
    spec = pod.get("spec") or {}
    pod_level = ((spec.get("securityContext") or {}).get("windowsOptions") or {}).get(
        "hostProcess")
    if container is not None:
        c_level = ((container.get("securityContext") or {}).get("windowsOptions") or {}).get(
            "hostProcess")
        if c_level is not None:
            return bool(c_level)
    return bool(pod_level)


@dataclass
class ExecTarget:
    pod: dict
    container: str
    view: Any  # windows.ContainerView, or None for Linux containers


class Workloads:
    """The node models of one cluster and the containers running on them.

    Built by the cluster from its store, flavour and scenarios only: the node side
    reads claims and pods from the store and never reaches back into the cluster,
    so the controllers (which drive it) and the cluster (which owns it) both sit
    above it in the import graph.
    """

    def __init__(self, store: Store, flavour: str, scenarios: Set[str]) -> None:
        self.store = store
        self.flavour = flavour
        self.scenarios = scenarios
        self.nodes: dict[str, windows.WindowsNode] = {}
        self.volumes: dict[str, windows.Volume] = {}
        self.shares: dict[str, windows.SmbShare] = {}
        self.views: dict[tuple[str, str], Any] = {}  # (pod uid, container) -> view
        self.images: dict[str, set[str]] = {}  # node -> pulled images
        self.linux_nodes: dict[str, linux.LinuxNode] = {}
        self.linux_share = linux.PosixFilesystem()  # kind: /winstor/share on every stand-in
        self.empty_dirs: dict[tuple[str, str], linux.PosixFilesystem] = {}  # (pod uid, volume)
        self.smb = smb.SmbNetwork()  # the file servers the nodes reach, and their names
        # What a CSI node plugin published for a pod's volume (NodePublishVolume): the
        # filesystem and path inside it that the container sees, (pod uid, volume) keyed.
        self.published: dict[tuple[str, str], tuple[windows.Filesystem, str]] = {}

    # -- node models -------------------------------------------------------------
    def add_windows_node(self, plan: NodePlan, csi_proxy: str | None) -> None:
        node = windows.WindowsNode(name=plan.name, build=plan.windows_build or "10.0.17763",
                                   hostname=plan.name.split(".")[0].upper()[:15])
        if csi_proxy:
            node.install_csi_proxy(csi_proxy)
        self.nodes[plan.name] = node

    def map_share_on_windows_nodes(self, remote_path: str, directory: str) -> None:
        """Each Windows node maps G: to the FSx share `remote_path` (with `directory`).

        `share-not-shared`: each node maps a share of its own on the same file
        server instead (`<remote_path>-<hostname>`, a per-node name from a templated
        bootstrap), each with `directory`: every mapping is OK and on the FSx, but
        no two nodes see the same files. `share-read-only`: the share's permissions
        grant the nodes Read only, so writes through G: are denied.
        """
        scenarios = self.scenarios
        for node in self.nodes.values():
            path = remote_path
            if "share-not-shared" in scenarios:
                path = f"{remote_path}-{node.hostname.lower()}"
            share = self.shares.get(path)
            if share is None:
                share = windows.SmbShare(remote_path=path,
                                         read_only="share-read-only" in scenarios)
                share.fs.mkdir(directory, parents=True)
                self.shares[path] = share
            node.map_smb("G:", share)

    def add_linux_node(self, plan: NodePlan) -> None:
        """A kind node; a stand-in gets the node directory with the shared share in it."""
        node = linux.LinuxNode(name=plan.name, kernel_release=KIND_HOST_KERNEL,
                               stand_in=plan.stand_in)
        if plan.stand_in:
            node.mount(linux.SHARE_DIR, self.linux_share)
        self.linux_nodes[plan.name] = node

    def set_up_stand_ins(self, remote_path: str | None, directory: str) -> None:
        """The share's folders, and on every stand-in node the record of its "mapping"
        (`G:` to `remote_path`, the FSx share); no record when `remote_path` is None."""
        self.linux_share.mkdir(directory, parents=True)
        records = None if remote_path is None else [
            {"LocalPath": "G:", "RemotePath": remote_path, "Status": 0}]
        for node in self.linux_nodes.values():
            if node.stand_in:
                node.write_mappings(records)

    def volume(self, volume_id: str, size_gib: int) -> windows.Volume:
        vol = self.volumes.get(volume_id)
        if vol is None:
            vol = windows.Volume(volume_id=volume_id, size_gib=size_gib)
            if self.flavour == "kind":
                # A local-path volume is a directory on a Linux node's ext4.
                vol.fs = linux.PosixFilesystem()  # type: ignore[assignment]
            self.volumes[volume_id] = vol
        return vol

    def drop_volume(self, volume_id: str) -> None:
        """The volume is deleted; a local-path one also leaves its node directory."""
        vol = self.volumes.pop(volume_id, None)
        if vol is None:
            return
        for node in self.linux_nodes.values():
            for point in [p for p, fs in node.mounts.items() if fs is vol.fs]:
                del node.mounts[point]
                node.fs.remove(point.lstrip("/"), recursive=True)

    # -- containers --------------------------------------------------------------
    def build_view(self, pod: dict, container: dict) -> Any:
        """Assemble what a container sees: its layer, its node, its mounts."""
        linux_node = self.linux_nodes.get(pod["spec"].get("nodeName", ""))
        if linux_node is not None:
            return self.build_linux_view(pod, container, linux_node)
        node = self.nodes.get(pod["spec"].get("nodeName", ""))
        if node is None:
            return None
        host_process = is_host_process(pod, container)
        mounts = []
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", []) or []}
        for vm in container.get("volumeMounts", []) or []:
            source = volumes.get(vm["name"])
            if source is None:
                continue
            read_only = bool(vm.get("readOnly"))
            mount_path = vm["mountPath"].replace("/", "\\")
            published = self.published.get((pod["metadata"]["uid"], vm["name"]))
            if published is not None:
                # A volume a CSI node plugin published (SMB): the container sees its
                # target; a read-only claim (`readOnly` on the pod's volume) mounts so.
                claim_ro = bool((source.get("persistentVolumeClaim") or {}).get("readOnly"))
                mounts.append(windows.Mount(mount_path, published[0], published[1],
                                            read_only or claim_ro))
            elif "persistentVolumeClaim" in source:
                vol = self.volume_for_claim(pod["metadata"]["namespace"],
                                            source["persistentVolumeClaim"]["claimName"])
                if vol is not None and "claim-not-mounted" not in self.scenarios:
                    # claim-not-mounted: the node plugin reports the mount done without
                    # mounting, so the container has nothing at mount_path.
                    mounts.append(windows.Mount(mount_path, vol.fs, "", read_only))
            elif "hostPath" in source:
                try:
                    fs, rel = node.resolve_host_path(source["hostPath"]["path"])
                except windows.WinError:
                    continue  # the kubelet refused to start such a pod already
                mounts.append(windows.Mount(mount_path, fs, rel, read_only))
        image = container.get("image", "")
        return windows.ContainerView(
            hostname=pod["metadata"]["name"], node=node,
            build=node.build if host_process else (image_build(image) or node.build),
            host_process=host_process, mounts=mounts)

    def build_linux_view(self, pod: dict, container: dict,
                         node: linux.LinuxNode) -> linux.LinuxContainerView:
        """A Linux container: claims by their volume's filesystem, hostPaths on the node
        (resolved at each access), emptyDirs fresh; hostNetwork pods share the node's name."""
        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", []) or []}
        mounts: list[linux.LinuxMount] = []
        for vm in container.get("volumeMounts", []) or []:
            source = volumes.get(vm["name"])
            if source is None:
                continue
            read_only = bool(vm.get("readOnly"))
            sub_path = vm.get("subPath", "") or ""
            if "persistentVolumeClaim" in source:
                claim = source["persistentVolumeClaim"]["claimName"]
                vol = self.volume_for_claim(pod["metadata"]["namespace"], claim)
                if vol is not None:
                    fs: Any = vol.fs
                    mounts.append(linux.LinuxMount(vm["mountPath"], fs=fs, sub_path=sub_path,
                                                   read_only=read_only))
                    # local-path: the volume is a directory on this node, seen there too.
                    host_dir = self._local_path_dir(pod["metadata"]["namespace"], claim)
                    if host_dir and host_dir not in node.mounts:
                        node.mount(host_dir, fs)
            elif "hostPath" in source:
                mounts.append(linux.LinuxMount(vm["mountPath"], sub_path=sub_path,
                                               read_only=read_only, node=node,
                                               host_path=source["hostPath"]["path"]))
            elif "emptyDir" in source:  # one per pod, shared by its containers
                empty = self.empty_dirs.setdefault((pod["metadata"]["uid"], vm["name"]),
                                                   linux.PosixFilesystem())
                mounts.append(linux.LinuxMount(vm["mountPath"], fs=empty, sub_path=sub_path,
                                               read_only=read_only))
        hostname = node.hostname if spec.get("hostNetwork") else (
            spec.get("hostname") or pod["metadata"]["name"])
        return linux.LinuxContainerView(node=node, hostname=hostname,
                                        image=container.get("image", ""), mounts=mounts)

    def volume_for_claim(self, namespace: str, claim: str) -> windows.Volume | None:
        pvc = self.store.peek(PVCS, namespace, claim)
        if not pvc or not pvc["spec"].get("volumeName"):
            return None
        pv = self.store.peek(PVS, None, pvc["spec"]["volumeName"])
        if not pv:
            return None
        vid = volume_id_of(pv)
        return self.volumes.get(vid) if vid else None

    def _local_path_dir(self, namespace: str, claim: str) -> str | None:
        """The node directory of a claim's local-path volume, if it has one."""
        pvc = self.store.peek(PVCS, namespace, claim)
        pv = self.store.peek(PVS, None, pvc["spec"].get("volumeName") or "") \
            if pvc else None
        return ((pv or {}).get("spec", {}).get("hostPath") or {}).get("path")

    def start_container(self, pod: dict, container: dict) -> None:
        self.views[(pod["metadata"]["uid"], container["name"])] = self.build_view(pod, container)

    def forget_pod(self, uid: str) -> None:
        for key in [k for k in self.views if k[0] == uid]:
            del self.views[key]
        for key in [k for k in self.empty_dirs if k[0] == uid]:
            del self.empty_dirs[key]
        for key in [k for k in self.published if k[0] == uid]:
            del self.published[key]

    def exec_target(self, namespace: str, name: str, container: str | None) -> ExecTarget:
        pod = self.store.peek(PODS, namespace, name)
        if pod is None:
            raise ApiError.not_found("pods", name)
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        if container is None:
            if len(containers) != 1:
                raise ApiError.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(containers)}]")
            container = containers[0]
        if container not in containers:
            raise ApiError.bad_request(f"container {container} is not valid for pod {name}")
        if (pod.get("status") or {}).get("phase") != "Running":
            raise ApiError.bad_request(
                "unable to upgrade connection: container not found "
                f'("{container}")')
        key = (pod["metadata"]["uid"], container)
        if key not in self.views:
            raise ApiError.bad_request(
                f'unable to upgrade connection: container not found ("{container}")')
        return ExecTarget(pod, container, self.views[key])

    def run_exec(self, target: ExecTarget, argv: list[str], *, tty: bool = False,
                 stdin: bytes = b"") -> Any:
        if target.view is None:
            return powershell.ExecResult(*_unmodelled_exec(target, argv, stdin))
        return powershell.run(argv, target.view, tty=tty, stdin=stdin)

    def logs(self, namespace: str, name: str, container: str | None) -> str:
        """A container's log, refused as the API server and kubelet refuse it: no pod
        (404), a container the pod does not have or an ambiguous one, a container
        that has not started (400, with their words)."""
        pod = self.store.peek(PODS, namespace, name)
        if pod is None:
            raise ApiError.not_found("pods", name)
        specs = {c["name"]: c for c in pod["spec"].get("containers") or []}
        if container is None:
            if len(specs) != 1:
                raise ApiError.bad_request(
                    f"a container name must be specified for pod {name}, choose one of: "
                    f"[{' '.join(specs)}]")
            container = next(iter(specs))
        if container not in specs:
            raise ApiError.bad_request(f"container {container} is not valid for pod {name}")
        if (pod["metadata"]["uid"], container) not in self.views:
            reason = next((((cs.get("state") or {}).get("waiting") or {}).get("reason")
                           for cs in (pod.get("status") or {}).get("containerStatuses") or []
                           if cs.get("name") == container), None) or "ContainerCreating"
            raise ApiError.bad_request(f'container "{container}" in pod "{name}" is waiting '
                                       f"to start: {reason}")
        return self.log_text(pod, container)

    def log_text(self, pod: dict, container: str) -> str:
        """What a running container has printed: a `sh -c` command's output up to its
        first `sleep`; nothing for the PowerShell loops and pause images."""
        spec = next((c for c in pod["spec"].get("containers") or []
                     if c["name"] == container), None)
        if spec is None:
            return ""
        command = [str(a) for a in (spec.get("command") or []) + (spec.get("args") or [])]
        view = self.views.get((pod["metadata"]["uid"], container))
        natives = None
        if isinstance(view, linux.LinuxContainerView):
            def natives(words: list[str]) -> tuple[bytes, bytes, int] | None:
                tool = linux.find_program(view, words[0])
                if tool is None or tool == "pwsh":
                    return None
                return linux.run_native([tool, *words[1:]], view)
        elif view is not None:
            return ""  # a Windows container: the modelled ones print nothing
        return shell.container_log(command, _hostname(pod), spec.get("image", ""), natives)

    def bind_from_api(self, namespace: str | None, name: str, body: Any) -> dict:
        target = ((body or {}).get("target") or {}).get("name")
        if not target:
            raise ApiError.bad_request("binding target is required")

        def bind(p: dict) -> None:
            if p["spec"].get("nodeName"):
                raise ApiError.conflict("pods", name, f"pod {name} is already assigned to node "
                                        f"\"{p['spec']['nodeName']}\"")
            p["spec"]["nodeName"] = target
        self.store.mutate(PODS, namespace, name, bind)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}


def _hostname(pod: dict) -> str:
    """The container's hostname: the pod's (spec.hostname, else its name), or the
    node's with hostNetwork."""
    spec = pod.get("spec") or {}
    if spec.get("hostNetwork"):
        return spec.get("nodeName") or pod["metadata"]["name"]
    return spec.get("hostname") or pod["metadata"]["name"]


def _unmodelled_exec(target: ExecTarget, argv: list[str],
                     stdin: bytes) -> tuple[bytes, bytes, int]:
    """An exec in a Linux container on a node without a model (EKS's Linux nodes): its
    image's shell runs (`sh -c ...`, the shell's builtins); any other executable is
    not in the model, and fails as runc fails on one missing from the image."""
    spec = next((c for c in target.pod["spec"].get("containers") or []
                 if c["name"] == target.container), {})
    image = spec.get("image", "")
    if argv and shell.is_shell(argv[0], image):
        return shell.run(argv, hostname=_hostname(target.pod), image=image, stdin=stdin)
    return linux.exec_not_found(argv[0] if argv else "")


def volume_id_of(pv: dict) -> str | None:
    spec = pv.get("spec") or {}
    if "awsElasticBlockStore" in spec:
        return spec["awsElasticBlockStore"]["volumeID"].rsplit("/", 1)[-1]
    if "csi" in spec:
        return spec["csi"].get("volumeHandle")
    if "local" in spec or "hostPath" in spec:
        return pv["metadata"]["name"]
    return None
