"""Resolve the run's settings from options, ini keys and environment variables.

Precedence: command line, then environment (`WINSTOR_*`), then ini, then the
default. Resolution reads files (kubeconfig, clusters file) but never
contacts a cluster, so `--collect-only` works with nothing reachable.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

from winstor import kubeconfig as kubeconfig_file
from winstor.config import ClusterTarget, ConfigError, Timeouts, load_clusters_file, safe_name
from winstor.plugin.checks import OPT_IN
from winstor.targets import kindstate
from winstor.targets.controlplane import state as cpstate
from winstor.targets.profiles import PROFILES

PROFILE_NAMES = tuple(PROFILES)

OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--profile", "what the clusters are like: eks (Windows nodes, EBS, FSx), kind "
                  "(Linux stand-ins, local-path storage) or controlplane (EKS-like: real "
                  "Kubernetes components built from source, emulated nodes and AWS; with no "
                  "context the run starts and stops them); default eks",
     {"choices": PROFILE_NAMES}),
    ("--context", "kubeconfig context of a cluster to check (repeatable); with none and no "
                  "--kubeconfig or --clusters, the run starts the embedded cluster and stops "
                  "it at the end",
     {"action": "append"}),
    ("--kubeconfig", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config); named "
                     "without --context, the cluster checked is its current-context, as "
                     "kubectl reads it", {}),
    ("--clusters", "YAML file listing the clusters: context, aws region/profile, "
                   "windows_build, fsx share and host_path, windows_image, SMB shares "
                   "(kind, source, credentials, on_delete)", {}),
    ("--sim-clusters", "how many clusters the run starts: the embedded cluster's emulated "
                       "clusters, or the controlplane profile's (default 2)", {}),
    ("--sim-scenario", "break an emulated cluster: [CLUSTER:]NAME (repeatable; "
                       "`winstor sim scenarios` lists them)", {"action": "append"}),
    ("--windows-image", "Windows image for the workload pods (default: servercore matching "
                        "the nodes' Windows build)", {}),
    ("--timeouts", "timeout profile: eks, sim, or a YAML file of overrides "
                   "(default: sim for the embedded cluster, else eks)", {}),
    ("--keep-on-failure", "leave a cluster's objects in place when one of its checks fails",
     {"action": "store_true", "default": None}),
    ("--run-id", "label for this run's objects (default: generated)", {}),
    ("--opt-in", "run the checks of an opt-in marker on every cluster (repeatable): "
                 + "; ".join(f"{m}: {why}" for m, why in OPT_IN.items())
                 + ". A cluster can declare it instead: its kubeconfig context's extension "
                   "winstor.io/opt-in (the embedded cluster's contexts have it) or opt_in in "
                   "the clusters file", {"action": "append"}),
]


def env_name(option: str) -> str:
    return "WINSTOR_" + option.lstrip("-").replace("-", "_").upper()


def ini_name(option: str) -> str:
    return "winstor_" + option.lstrip("-").replace("-", "_")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


@dataclass
class Settings:
    profile: str
    targets: list[ClusterTarget]
    kubeconfig: str | None
    use_sim: bool
    sim_clusters: int
    sim_scenarios: list[str]
    windows_image: str | None
    timeouts: Timeouts
    keep_on_failure: bool
    run_id: str
    kind_settings: str | None = None  # the `winstor kind up` settings this run follows
    # the `winstor controlplane up` settings this run follows
    controlplane_settings: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _get(config: Any, option: str) -> Any:
    dest = option.lstrip("-").replace("-", "_")
    value = config.getoption(dest, None)
    if value not in (None, []):
        return value
    env = os.environ.get(env_name(option))
    if env:
        if option in ("--context", "--sim-scenario", "--opt-in"):
            return [v.strip() for v in env.split(",") if v.strip()]
        if option == "--keep-on-failure":
            return env.lower() in ("1", "true", "yes")
        return env
    ini = config.getini(ini_name(option))
    if ini not in (None, "", []):
        if option == "--keep-on-failure":
            return str(ini).lower() in ("1", "true", "yes")
        return ini
    return None


def kubeconfig_contexts(path: str | None) -> tuple[str, list[str]]:
    """The kubeconfig file used and its context names (no cluster contacted)."""
    chosen, data = _read_kubeconfig(path)
    return chosen, _context_names(data)


def current_context(path: str | None) -> str:
    """The context kubectl would use with this kubeconfig: its current-context, which must
    name one of its contexts."""
    chosen, data = _read_kubeconfig(path)
    known = _context_names(data)
    current = data.get("current-context")
    if not current:
        raise ConfigError(f"kubeconfig {chosen} has no current-context; name the cluster "
                          f"with --context (known: {', '.join(known) or 'none'})")
    if current not in known:
        raise ConfigError(f"kubeconfig {chosen}: current-context {current!r} is not one of its "
                          f"contexts (known: {', '.join(known) or 'none'})")
    return str(current)


def _context_names(data: dict[str, Any]) -> list[str]:
    names = [c.get("name") for c in data.get("contexts") or [] if isinstance(c, dict)]
    return [n for n in names if n]


def _read_kubeconfig(path: str | None) -> tuple[str, dict[str, Any]]:
    chosen = kubeconfig_file.chosen(path)
    try:
        data = kubeconfig_file.load(chosen)
    except OSError as err:
        raise ConfigError(f"cannot read kubeconfig {chosen}: {err.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"kubeconfig {chosen} is not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"kubeconfig {chosen} is not a kubeconfig (no mapping at the top)")
    return chosen, data


def resolve(config: Any, scenario_names: set[str], run_id: str | None = None) -> Settings:
    chosen_profile = _get(config, "--profile")
    profile = chosen_profile or "eks"
    if profile not in PROFILE_NAMES:
        raise ConfigError(f"--profile must be one of {', '.join(PROFILE_NAMES)}, not "
                          f"{profile!r}")
    contexts: list[str] = _get(config, "--context") or []
    clusters_file = _get(config, "--clusters")
    kubeconfig = _get(config, "--kubeconfig")
    scenarios: list[str] = _get(config, "--sim-scenario") or []
    sim_n_raw = _get(config, "--sim-clusters")
    try:
        sim_n = int(sim_n_raw) if sim_n_raw is not None else 2
    except ValueError:
        raise ConfigError(f"--sim-clusters must be a whole number, not {sim_n_raw!r}") from None
    if not 1 <= sim_n <= 16:
        raise ConfigError(f"--sim-clusters must be between 1 and 16, not {sim_n}")
    windows_image = _get(config, "--windows-image")
    targets: list[ClusterTarget]
    if clusters_file and contexts:
        raise ConfigError("use --clusters or --context, not both")
    if kubeconfig and not clusters_file and not contexts:
        # A kubeconfig named on its own means its current context, as kubectl reads it.
        contexts = [current_context(kubeconfig)]
    use_sim = not clusters_file and not contexts
    if clusters_file:
        targets = load_clusters_file(clusters_file)
        for t in targets:
            if t.context is not None:
                used, known = kubeconfig_contexts(t.kubeconfig or kubeconfig)
                if t.context not in known:
                    raise ConfigError(f"{clusters_file}: context {t.context!r} is not in "
                                      f"kubeconfig {used} (known: {', '.join(known) or 'none'})")
    elif contexts:
        used, known = kubeconfig_contexts(kubeconfig)
        for c in contexts:
            if c not in known:
                raise ConfigError(f"unknown context {c!r} in kubeconfig {used} (known: "
                                  f"{', '.join(known) or 'none'})")
        targets = [ClusterTarget(name=safe_name(c), context=c, kubeconfig=kubeconfig)
                   for c in contexts]
        if len({t.name for t in targets}) != len(targets):
            raise ConfigError("two contexts map to the same cluster name; use --clusters "
                              "with explicit names")
    else:
        # Started by the run: the embedded cluster's sim-N, or the control plane's cp-N.
        prefix = "cp" if profile == "controlplane" else "sim"
        targets = [ClusterTarget(name=f"{prefix}-{i}", context=f"{prefix}-{i}")
                   for i in range(1, sim_n + 1)]
    kind_settings = controlplane_settings = None
    if use_sim and not scenarios and chosen_profile in (None, "controlplane"):
        # After `winstor controlplane up`, a plain run checks those clusters.
        followed = _follow_controlplane(chosen_profile)
        if followed is not None:
            controlplane_settings, kubeconfig, targets = followed
            profile, use_sim = "controlplane", False
    if use_sim and not scenarios and chosen_profile not in ("eks", "controlplane"):
        # After `winstor kind up`, a plain run checks that kind cluster.
        kind = kindstate.load()
        if kind is not None:
            used, known = kubeconfig_contexts(kind.kubeconfig)
            if kind.context not in known:
                raise ConfigError(f"{kind.path}: context {kind.context!r} is not in {used}; "
                                  "run `winstor kind down` (and `winstor kind up` again)")
            profile, use_sim, kubeconfig = "kind", False, kind.kubeconfig
            kind_settings = str(kind.path)
            targets = [ClusterTarget(name=safe_name(kind.context), context=kind.context,
                                     kubeconfig=kind.kubeconfig, aws_env=dict(kind.aws_env),
                                     aws_region=kind.aws_env.get("AWS_DEFAULT_REGION"))]
    if scenarios and not use_sim:
        raise ConfigError("--sim-scenario applies to the embedded cluster only (no --context "
                          "or --clusters)")
    for spec in scenarios:
        target, _, name = spec.rpartition(":")
        if name not in scenario_names:
            raise ConfigError(f"unknown scenario {name!r} (known: "
                              f"{', '.join(sorted(scenario_names))})")
        if target and target not in {t.name for t in targets} and not (
                target.isdigit() and 1 <= int(target) <= sim_n):
            raise ConfigError(f"scenario {spec!r}: no cluster {target!r} in this run")
    if windows_image:
        targets = [_with_image(t, windows_image) for t in targets]
    opt_in = _get(config, "--opt-in") or []
    for where, names in [("--opt-in", opt_in)] + [
            (f"{clusters_file}: cluster {t.name}: opt_in", t.opt_in) for t in targets]:
        unknown = sorted(set(names) - set(OPT_IN))
        if unknown:
            raise ConfigError(f"{where}: {unknown[0]!r} is not an opt-in marker (known: "
                              f"{', '.join(OPT_IN)})")
    if opt_in:
        from dataclasses import replace
        targets = [replace(t, opt_in=tuple(sorted({*t.opt_in, *opt_in}))) for t in targets]
    # The control plane's nodes and AWS run at the embedded cluster's time scale.
    timeouts = Timeouts.profile(_get(config, "--timeouts") or (
        "sim" if use_sim or profile == "controlplane" else "eks"))
    return Settings(profile=profile, targets=targets, kubeconfig=kubeconfig, use_sim=use_sim,
                    sim_clusters=sim_n, sim_scenarios=scenarios, windows_image=windows_image,
                    timeouts=timeouts, keep_on_failure=bool(_get(config, "--keep-on-failure")),
                    run_id=run_id or _get(config, "--run-id") or new_run_id(),
                    kind_settings=kind_settings, controlplane_settings=controlplane_settings)


def _follow_controlplane(chosen_profile: str | None
                         ) -> tuple[str, str, list[ClusterTarget]] | None:
    """The clusters `winstor controlplane up` recorded, as (settings file, kubeconfig,
    targets with each cluster's AWS settings); None when nothing is recorded, or when
    `winstor kind up` is recorded too and no profile says which to follow."""
    recorded = cpstate.load()
    if recorded is None:
        return None
    if chosen_profile is None and kindstate.load() is not None:
        raise ConfigError(f"both `winstor kind up` ({kindstate.state_dir()}) and `winstor "
                          f"controlplane up` ({recorded.path}) are recorded: say which to "
                          "check with --profile kind or --profile controlplane")
    from winstor.targets.controlplane.process import is_supervisor
    if not is_supervisor(recorded.pid):
        raise ConfigError(f"{recorded.path}: the control plane `winstor controlplane up` "
                          f"started (supervisor pid {recorded.pid}) is not running; run "
                          "`winstor controlplane down` (and `winstor controlplane up` again)")
    used, known = kubeconfig_contexts(recorded.kubeconfig)
    missing = [c for c in recorded.contexts if c not in known]
    if missing:
        raise ConfigError(f"{recorded.path}: context {missing[0]!r} is not in {used}; run "
                          "`winstor controlplane down` (and `winstor controlplane up` again)")
    targets = []
    for context in recorded.contexts:
        env = dict(recorded.aws_envs.get(context) or {})
        targets.append(ClusterTarget(name=safe_name(context), context=context,
                                     kubeconfig=recorded.kubeconfig, aws_env=env,
                                     aws_region=env.get("AWS_DEFAULT_REGION")))
    return str(recorded.path), recorded.kubeconfig, targets


def _with_image(t: ClusterTarget, image: str) -> ClusterTarget:
    from dataclasses import replace
    return replace(t, windows_image=image)
