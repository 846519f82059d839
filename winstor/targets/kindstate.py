"""Where `winstor kind up` keeps what it made, and how a later run finds it.

`winstor kind up` writes `settings.json` in its state directory: the kind
cluster's kubeconfig and context, the profile, and the AWS settings of the
moto server it started. A plain `pytest` (no `--context`, `--clusters` or
`--profile eks`) then checks that cluster instead of starting the embedded
one; `winstor kind down` removes the directory and so ends that.

The directory is `$WINSTOR_KIND_STATE`, else `$XDG_STATE_HOME/winstor/kind`,
else `~/.local/state/winstor/kind`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from winstor.config import ConfigError

__all__ = ["KindState", "load", "state_dir"]

VERSION = 1


def state_dir() -> Path:
    explicit = os.environ.get("WINSTOR_KIND_STATE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "winstor" / "kind"


@dataclass
class KindState:
    cluster_name: str
    kubeconfig: str
    context: str
    node_dir: str
    aws_env: dict[str, str] = field(default_factory=dict)
    moto_pid: int | None = None
    fsx: dict[str, str] = field(default_factory=dict)
    version: int = VERSION

    @property
    def path(self) -> Path:
        return state_dir() / "settings.json"

    def save(self) -> Path:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        # Holds dummy moto keys only, but keep it private like a kubeconfig.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=2, sort_keys=True)
        os.replace(tmp, path)
        return path


def load() -> KindState | None:
    """The state `winstor kind up` left, or None when there is none."""
    path = state_dir() / "settings.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable kind settings ({err}); run `winstor kind down` "
                          "to clear them") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ConfigError(f"{path}: not kind settings of version {VERSION}; run "
                          "`winstor kind down` and `winstor kind up` again")
    try:
        return KindState(**{k: data[k] for k in data if k in KindState.__dataclass_fields__})
    except TypeError as err:
        raise ConfigError(f"{path}: incomplete kind settings ({err})") from None
