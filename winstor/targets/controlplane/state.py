"""Where `winstor controlplane up` keeps what it started, and how a later run finds it.

`up` starts the supervisor in `<state dir>/run` and writes `settings.json` there: the
supervisor's pid, the kubeconfig (one context per cluster), each cluster's AWS
settings and its env file. A plain `pytest` (no `--context`, `--clusters`,
`--sim-scenario` or another `--profile`) then checks those clusters on the
`controlplane` profile instead of starting the embedded cluster; `winstor
controlplane down` stops the supervisor and removes the directory, and so ends that.

The directory is `$WINSTOR_CONTROLPLANE_STATE`, else
`$XDG_STATE_HOME/winstor/controlplane`, else `~/.local/state/winstor/controlplane`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from winstor.config import ConfigError

__all__ = ["ControlPlaneState", "load", "state_dir"]

VERSION = 1


def state_dir() -> Path:
    explicit = os.environ.get("WINSTOR_CONTROLPLANE_STATE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "winstor" / "controlplane"


@dataclass
class ControlPlaneState:
    pid: int
    workdir: str
    kubeconfig: str
    contexts: list[str]
    aws_envs: dict[str, dict[str, str]] = field(default_factory=dict)
    aws_env_file: str | None = None
    release: str | None = None
    scenarios: list[str] = field(default_factory=list)
    started: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # the supervisor's ready file
    version: int = VERSION

    @property
    def path(self) -> Path:
        return state_dir() / "settings.json"

    def save(self) -> Path:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        # Holds client keys' paths and dummy moto keys: private like a kubeconfig.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=2, sort_keys=True)
        os.replace(tmp, path)
        return path


def load() -> ControlPlaneState | None:
    """The state `winstor controlplane up` left, or None when there is none."""
    path = state_dir() / "settings.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable control-plane settings ({err}); run "
                          "`winstor controlplane down` to clear them") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ConfigError(f"{path}: not control-plane settings of version {VERSION}; run "
                          "`winstor controlplane down` and `winstor controlplane up` again")
    try:
        return ControlPlaneState(**{k: data[k] for k in data
                                    if k in ControlPlaneState.__dataclass_fields__})
    except TypeError as err:
        raise ConfigError(f"{path}: incomplete control-plane settings ({err})") from None
