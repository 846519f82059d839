"""The official client without its package imports (winstor/cluster/officialclient.py).

Each case runs in a fresh interpreter: what matters is which modules a process has
loaded, and the deferred packages live in `sys.modules`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]
users: [{name: u, user: {token: secret-token}}]
contexts: [{name: real, context: {cluster: c, user: u}}]
current-context: real
"""


def _python(code: str, tmp_path: Path) -> str:
    (tmp_path / "kc").write_text(KUBECONFIG)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "KC": str(tmp_path / "kc")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_winstor_loads_a_handful_of_the_clients_modules(tmp_path: Path) -> None:
    """What a worker does before its first request: the kubeconfig, auth settings and the
    REST client, and none of the API or model classes (nor kubernetes_validate, which
    the client's dynamic module imports when installed)."""
    out = _python("""
        import os, sys
        from winstor.cluster.kube import Api
        api = Api.from_kubeconfig(os.environ["KC"], "real")
        headers, params = {}, []
        api.client.update_params_for_auth(headers, params, ["BearerToken"])
        assert headers == {"authorization": "Bearer secret-token"}, headers
        assert api.server == "https://127.0.0.1:9", api.server
        assert api.client.rest_client is not None
        loaded = sorted(m for m in sys.modules if m.startswith("kubernetes"))
        print(len(loaded), " ".join(loaded))
    """, tmp_path)
    count, names = out.split(" ", 1)
    assert int(count) < 40, names
    assert "kubernetes.client.models.v1_pod" not in names
    assert "kubernetes.client.api.core_v1_api" not in names
    assert "kubernetes_validate" not in names and "kubernetes.dynamic" not in names


def test_the_rest_of_the_client_is_still_there(tmp_path: Path) -> None:
    """After winstor's light load, code in the same process that uses the client as
    documented (typed APIs, models, deserialization, the package's metadata) gets it."""
    out = _python("""
        import os
        from winstor.cluster.kube import load_official_client
        load_official_client()
        import kubernetes
        from kubernetes import client, config, watch
        config.load_kube_config(config_file=os.environ["KC"], context="real")
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name="p"))
        api = client.ApiClient()
        assert api.sanitize_for_serialization(pod) == {"metadata": {"name": "p"}}
        back = api._ApiClient__deserialize({"metadata": {"name": "q"}}, "V1Pod")
        assert isinstance(back, client.V1Pod) and back.metadata.name == "q"
        assert client.CoreV1Api(api).api_client is api
        assert kubernetes.client.models.V1Namespace is client.V1Namespace
        from kubernetes.client import *  # noqa: F403
        print(kubernetes.__version__, watch.Watch.__name__)
    """, tmp_path)
    version, name = out.split()
    assert version[0].isdigit() and name == "Watch"


def test_a_client_imported_whole_first_is_left_alone(tmp_path: Path) -> None:
    out = _python("""
        import sys, types
        import kubernetes
        from winstor.cluster import officialclient
        from winstor.cluster.kube import load_official_client
        load_official_client()
        print(type(sys.modules["kubernetes"]) is types.ModuleType,
              not isinstance(sys.modules["kubernetes.client"], officialclient.DeferredPackage))
    """, tmp_path)
    assert out.split() == ["True", "True"]
