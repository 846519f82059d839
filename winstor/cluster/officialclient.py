"""The official client's kubeconfig loader and REST layer, without its package imports.

winstor uses five modules of the official client: the kubeconfig loader
(`kubernetes.config`), `Configuration`, `ApiClient` (for its auth settings and REST
client), `rest` and `exceptions`. But `import kubernetes` runs the package's
`__init__`, which imports every API and model class (about 1,500 modules), the
dynamic client and, through it, `kubernetes_validate` and `jsonschema` when they are
installed: about half a second of CPU in every pytest process. A fleet run starts
one xdist worker per cluster, so a 16-cluster run pays it 16 times over on a machine
whose cores the embedded clusters also need (`python -m bench --parts fleet`).

`load()` therefore puts `kubernetes`, `kubernetes.client` and
`kubernetes.client.models` in `sys.modules` as *deferred packages* when nothing has
imported them yet: real `__path__`, `__spec__` and `__file__`, so that their
submodules import as usual, and a module `__getattr__` that runs the package's own
`__init__` the first time something asks for a name it does not have. Whatever else
in the process uses the client (`from kubernetes import client; client.CoreV1Api`)
still gets all of it; the light path is only what winstor asks for. `ApiClient`
imports `kubernetes.client.models` but only reads it to deserialize typed objects,
which winstor (plain dicts) never does.

If the client's layout changes so that the light path asks for something else, the
fallback is the whole client: slower, never wrong. `tests/test_officialclient.py`
says which, and checks that the rest of the client still works after `load()`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

# name in the deferred package -> the submodule that defines it, served without
# running the package's __init__
_LIGHT = {
    "kubernetes.client": {
        "ApiClient": "kubernetes.client.api_client",
        "Configuration": "kubernetes.client.configuration",
        "ApiException": "kubernetes.client.exceptions",
        "ApiValueError": "kubernetes.client.exceptions",
    },
}
# names the package's __init__ defines that a caller may ask for
_INIT_DUNDERS = {"__all__", "__version__", "__project__"}
_DEFERRED = ("kubernetes", "kubernetes.client", "kubernetes.client.models")
_lock = threading.RLock()


class DeferredPackage(types.ModuleType):
    """A package whose `__init__` runs on the first name it lacks."""

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") and attr.endswith("__") and attr not in _INIT_DUNDERS:
            raise AttributeError(attr)  # the import system's and inspect's probes
        name = self.__name__
        source = _LIGHT.get(name, {}).get(attr)
        if source is not None:
            value = getattr(importlib.import_module(source), attr)
            setattr(self, attr, value)
            return value
        spec = self.__spec__
        if spec is not None and spec.submodule_search_locations is not None and \
                importlib.util.find_spec(f"{name}.{attr}") is not None:
            # A submodule: import it (this is also what `from pkg import sub` asks).
            return importlib.import_module(f"{name}.{attr}")
        complete(self)
        try:
            return self.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}") from None


def complete(module: types.ModuleType) -> None:
    """Run a deferred package's own `__init__` in it (once)."""
    with _lock:
        if module.__dict__.get("_winstor_completed"):
            return
        module.__dict__["_winstor_completed"] = True  # its own imports may ask for names
        spec = module.__spec__
        assert spec is not None and spec.loader is not None
        try:
            code = spec.loader.get_code(module.__name__)  # type: ignore[attr-defined]
            exec(code, module.__dict__)
        except BaseException:
            module.__dict__["_winstor_completed"] = False  # the next asker meets the error
            raise


def load() -> None:
    """Make `kubernetes`, `kubernetes.client` and `kubernetes.client.models` deferred
    packages, unless something already imported them."""
    with _lock:
        for name in _DEFERRED:
            if name in sys.modules:
                continue
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
                return  # not the layout this expects: import it whole when asked
            module = DeferredPackage(name)
            module.__spec__ = spec
            module.__loader__ = spec.loader
            module.__file__ = spec.origin
            module.__path__ = list(spec.submodule_search_locations or [])
            module.__package__ = name
            sys.modules[name] = module
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, module)
