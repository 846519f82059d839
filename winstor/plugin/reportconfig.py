"""The report options, and the configuration a run's reports record.

Where reports go and whether the run certifies is read once per process,
from the command line, then the environment (`WINSTOR_*`), then ini, like
the run's own settings (see `winstor.plugin.settings`), and kept in the config's
stash (`OPTS`). The record on the controller and the hooks on every process
both need it, and both need one redactor per process that learns the run's
secrets as they appear: it lives here so that neither has to import the
other. `effective_config` and `bundle_config` say what a run used, for
results.json and for a certification bundle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from winstor.plugin.settings import env_name, ini_name
from winstor.reports.redact import REDACTED, Redactor, redacted_kubeconfig

if TYPE_CHECKING:
    from winstor.plugin.runstate import RunState

OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--report-dir", "directory for run reports: <dir>/<run-id>/ and <dir>/latest "
                     "(default: reports)", {}),
    ("--certify", "certification run: the whole catalog (no -k, -m or deselection), skips "
                  "count as failures, AWS facts required; writes one "
                  "winstor-cert-<cluster>-<time>.tar.gz per cluster",
     {"action": "store_true", "default": None}),
    ("--expect-ami", "when certifying, the AMI id every Windows node must run (repeatable)",
     {"action": "append"}),
]


def add_options(parser: pytest.Parser) -> None:
    """The report options and their ini keys, in the `winstor` group."""
    group = parser.getgroup("winstor", "winstor: Windows storage conformance")
    for option, text, kwargs in OPTIONS:
        group.addoption(option, dest=option.lstrip("-").replace("-", "_"),
                        help=f"{text} [env {env_name(option)}, ini {ini_name(option)}]", **kwargs)
        kind = "linelist" if kwargs.get("action") == "append" else (
            "bool" if kwargs.get("action") == "store_true" else "string")
        parser.addini(ini_name(option), f"winstor: default for {option}", type=kind)


@dataclasses.dataclass
class Options:
    report_dir: Path
    certify: bool
    expect_amis: list[str]


def read_options(config: pytest.Config) -> Options:
    """The report options: command line, then environment, then ini, then the default."""
    def get(option: str) -> tuple[Any, str]:
        dest = option.lstrip("-").replace("-", "_")
        value = config.getoption(dest, None)
        if value not in (None, []):
            return value, "cli"
        env = os.environ.get(env_name(option))
        if env:
            return env, "env"
        ini = config.getini(ini_name(option))
        return (ini, "ini") if ini not in (None, "", []) else (None, "")

    raw_dir, where = get("--report-dir")
    base = config.rootpath if where in ("ini", "") else config.invocation_params.dir
    report_dir = Path(os.path.expanduser(str(raw_dir or "reports")))
    if not report_dir.is_absolute():
        report_dir = base / report_dir
    certify, _ = get("--certify")
    if isinstance(certify, str):
        certify = certify.strip().lower() in ("1", "true", "yes")
    amis, _ = get("--expect-ami")
    if isinstance(amis, str):
        amis = amis.split(",")
    return Options(report_dir, bool(certify), [a.strip() for a in amis or [] if a.strip()])


OPTS = pytest.StashKey[Options]()
_REDACTOR: dict[str, Any] = {}


def state_of(config: pytest.Config) -> RunState | None:
    """The run's state (`winstor.plugin.hooks`), or None when that plugin is not running."""
    from winstor.plugin.hooks import STATE
    return config.stash.get(STATE, None)


def reset_redactor() -> None:
    """Forget the redactor of an earlier session in this process."""
    _REDACTOR.clear()


def redactor_for(config: pytest.Config) -> Redactor:
    """This process's redactor: the environment, the embedded cluster's AWS settings and
    the kubeconfigs in use (built once the run knows them)."""
    state = state_of(config)
    kubeconfigs: list[str | None] = []
    extra: dict[str, str] = {}
    if state is not None:
        extra = dict(state.sim_aws_env)
        kubeconfigs = [state.sim_kubeconfig, state.settings.kubeconfig,
                       *(t.kubeconfig for t in state.settings.targets)]
    # Rebuilt when the embedded cluster appears (its token and keys are new then),
    # keeping what was learned before (credentials of AWS sessions, workers' values).
    key = (tuple(kubeconfigs), tuple(sorted(extra.items())))
    if _REDACTOR.get("key") != key:
        old: Redactor | None = _REDACTOR.get("r")
        fresh = Redactor.from_environment(extra, kubeconfigs)
        if old is not None:
            fresh.add(old.values)
            fresh.sessions.update(old.sessions)
        _REDACTOR.update(key=key, r=fresh)
    redactor: Redactor = _REDACTOR["r"]
    # The keys of AWS sessions the checks opened (a profile's, an assumed role's: not in the
    # environment), before their evidence is redacted; what cannot be read is reported with
    # the cluster's facts (`winstor.reports.facts`).
    for cluster in list(state.clusters.values()) if state is not None else []:
        session = cluster.facts.get("aws_session")
        if session is not None:
            redactor.learn_aws_session(session)
    return redactor


def effective_config(config: pytest.Config) -> dict[str, Any]:
    """The settings the run actually used (before redaction)."""
    state = state_of(config)
    opts = config.stash[OPTS]
    out: dict[str, Any] = {"report_dir": str(opts.report_dir), "certify": opts.certify,
                           "expect_amis": opts.expect_amis}
    if state is not None:
        s = state.settings
        out.update({
            "run_id": s.run_id, "profile": s.profile, "embedded_cluster": s.use_sim,
            "kubeconfig": s.kubeconfig, "sim_clusters": s.sim_clusters if s.use_sim else None,
            "sim_scenarios": s.sim_scenarios, "windows_image": s.windows_image,
            "keep_on_failure": s.keep_on_failure, "timeouts": dataclasses.asdict(s.timeouts),
            "targets": [{k: v for k, v in dataclasses.asdict(t).items() if k != "extra"}
                        for t in s.targets]})
    out["xdist"] = {"numprocesses": getattr(config.option, "numprocesses", None),
                    "dist": getattr(config.option, "dist", None)}
    out["environment"] = {k: REDACTED if k == "WINSTOR_REDACT" else v
                          for k, v in sorted(os.environ.items()) if k.startswith("WINSTOR_")}
    return out


def bundle_config(config: pytest.Config) -> dict[str, Any]:
    """The effective configuration for a bundle: settings, arguments, the kubeconfigs'
    clusters and contexts, the clusters file - all to be redacted by the caller."""
    state = state_of(config)
    out = {"settings": effective_config(config),
           "args": [str(a) for a in config.invocation_params.args],
           "python": sys.version.split()[0], "platform": platform.platform()}
    if state is not None:
        paths = dict.fromkeys(p for p in [state.sim_kubeconfig, state.settings.kubeconfig,
                                          *(t.kubeconfig for t in state.settings.targets)] if p)
        out["kubeconfigs"] = [redacted_kubeconfig(p) for p in paths]
        clusters_file = config.getoption("clusters", None) or os.environ.get(
            "WINSTOR_CLUSTERS")
        if clusters_file:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                out["clusters_file"] = {"path": clusters_file,
                                        "text": Path(clusters_file).read_text()}
    return out
