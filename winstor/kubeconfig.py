"""Kubeconfig files as winstor reads them: parsed once per process and version of the
file, with libyaml when PyYAML has it.

A run reads the same kubeconfig in several places: the options (its contexts), each
cluster's opt-in extension, the redaction of its credentials, the effective
configuration in bundles. A fleet's kubeconfig carries a certificate and a key per
cluster, and pure-Python YAML takes tens of milliseconds per read of a 16-cluster
file; every xdist worker read it about twenty times (the head start asks every
cluster for its opt-ins), which made YAML a tenth of a 16-cluster run's worker CPU.

The parsed document is shared: callers read it and never change it. A file that
changed on disk (another mtime or size) is parsed again.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import yaml

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_cache: dict[str, tuple[tuple[int, int], Any]] = {}
_lock = threading.Lock()


def chosen(path: str | None) -> str:
    """The file winstor reads for `path`: it, else the first of $KUBECONFIG, else
    ~/.kube/config."""
    return path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or \
        os.path.join(os.path.expanduser("~"), ".kube", "config")


def load(path: str | os.PathLike[str]) -> Any:
    """The YAML document in `path` (read-only: shared with every other reader).
    Raises what reading and parsing raise: OSError, UnicodeDecodeError, yaml.YAMLError."""
    key = os.path.realpath(path)
    st = os.stat(key)
    version = (st.st_mtime_ns, st.st_size)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
    with open(key, encoding="utf-8") as fh:
        text = fh.read()
    data = yaml.load(text, Loader=_Loader)
    with _lock:
        _cache[key] = (version, data)
    return data
