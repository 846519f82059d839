"""The embedded cluster speaks Kubernetes to the official Python client over HTTPS:
CRUD with Status errors, list/watch from a resourceVersion (410 when compacted,
bookmarks), and websocket exec with exit codes."""

from __future__ import annotations

import json

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from inspect_cluster import api_client, core


def test_crud_and_status_errors(shared_sim) -> None:
    v1 = core(shared_sim)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="crud", namespace="default"),
                              data={"a": "1"})
    created = v1.create_namespaced_config_map("default", body)
    assert created.metadata.uid and created.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        v1.create_namespaced_config_map("default", body)
    assert exc.value.status == 409
    assert json.loads(exc.value.body)["reason"] == "AlreadyExists"
    got = v1.read_namespaced_config_map("crud", "default")
    got.data["b"] = "2"
    replaced = v1.replace_namespaced_config_map("crud", "default", got)
    assert int(replaced.metadata.resource_version) > int(created.metadata.resource_version)
    stale = got
    stale.metadata.resource_version = created.metadata.resource_version
    with pytest.raises(ApiException) as exc:
        v1.replace_namespaced_config_map("crud", "default", stale)
    assert exc.value.status == 409 and "has been modified" in exc.value.body
    patched = v1.patch_namespaced_config_map("crud", "default", {"data": {"c": "3"}})
    assert patched.data == {"a": "1", "b": "2", "c": "3"}
    v1.delete_namespaced_config_map("crud", "default")
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_config_map("crud", "default")
    assert exc.value.status == 404
    assert json.loads(exc.value.body)["message"] == 'configmaps "crud" not found'


def test_strict_field_validation(shared_sim) -> None:
    ac = api_client(shared_sim)
    body = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "strict", "namespace": "default"}, "data": {}, "bogus": 1}
    with pytest.raises(ApiException) as exc:
        ac.call_api("/api/v1/namespaces/default/configmaps", "POST",
                    query_params=[("fieldValidation", "Strict")], body=body,
                    header_params={"Content-Type": "application/json"},
                    auth_settings=["BearerToken"], _preload_content=False)
    status = json.loads(exc.value.body)
    assert exc.value.status == 400
    assert 'strict decoding error: unknown field "bogus"' in status["message"]
    resp = ac.call_api("/api/v1/namespaces/default/configmaps", "POST", body=body,
                       header_params={"Content-Type": "application/json"},
                       auth_settings=["BearerToken"], _preload_content=False)
    # RFC 7234 warning: the text is a quoted-string, inner quotes escaped.
    assert resp.headers.get("Warning") == '299 - "unknown field \\"bogus\\""'
    core(shared_sim).delete_namespaced_config_map("strict", "default")


def test_list_then_watch_from_resource_version(shared_sim) -> None:
    v1 = core(shared_sim)
    listed = v1.list_namespaced_config_map("default")
    rv = listed.metadata.resource_version
    for i in range(3):
        v1.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"w{i}", labels={"t": "watch"})))
    seen = []
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "default", resource_version=rv,
                       label_selector="t=watch", timeout_seconds=2):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 3:
            w.stop()
    assert seen == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2")]
    for i in range(3):
        v1.delete_namespaced_config_map(f"w{i}", "default")


def test_watch_too_old_is_410_and_relist_recovers(sim_factory) -> None:
    """With a short watch history, an old resourceVersion gets an ERROR event
    carrying a 410 Status; the client relists and watches on from the new one."""
    sim = sim_factory(1, [], extra_args=["--watch-history", "50"])
    v1 = core(sim)
    start = v1.list_namespaced_config_map("default").metadata.resource_version
    for i in range(40):
        v1.create_namespaced_config_map("default", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=f"churn{i}")))
        v1.delete_namespaced_config_map(f"churn{i}", "default")
    ac = api_client(sim)
    resp = ac.call_api("/api/v1/namespaces/default/configmaps", "GET",
                       query_params=[("watch", "true"), ("resourceVersion", "1"),
                                     ("timeoutSeconds", "2")],
                       auth_settings=["BearerToken"], _preload_content=False)
    first = json.loads(resp.data.decode().splitlines()[0])
    assert first["type"] == "ERROR" and first["object"]["code"] == 410
    assert "too old resource version" in first["object"]["message"]
    fresh = v1.list_namespaced_config_map("default").metadata.resource_version
    assert int(fresh) > int(start)
    v1.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="after")))
    events = list(watch.Watch().stream(v1.list_namespaced_config_map, "default",
                                       resource_version=fresh, timeout_seconds=1))
    assert [e["object"].metadata.name for e in events] == ["after"]


def _bookmarks(shared_sim, rv: str, timeout: int) -> list[dict]:
    resp = api_client(shared_sim).call_api(
        "/api/v1/namespaces/default/configmaps", "GET",
        query_params=[("watch", "true"), ("allowWatchBookmarks", "true"),
                      ("resourceVersion", rv), ("timeoutSeconds", str(timeout)),
                      ("labelSelector", "selects=nothing")],
        auth_settings=["BearerToken"], _preload_content=False)
    lines = [json.loads(x) for x in resp.data.decode().splitlines() if x]
    return [e for e in lines if e["type"] == "BOOKMARK"]


def test_bookmarks_carry_only_resource_version(shared_sim) -> None:
    """As the watch cache: a bookmark 2 s before the deadline (or once a minute),
    only when the kind has moved past the watch's version, with nothing but the
    newest resourceVersion of the kind; a watch of 2 s or less gets none."""
    v1 = core(shared_sim)
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    made = v1.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="bookmarked")))
    marks = _bookmarks(shared_sim, rv, 3)
    assert len(marks) == 1 and set(marks[0]["object"]["metadata"]) == {"resourceVersion"}
    assert int(marks[0]["object"]["metadata"]["resourceVersion"]) >= int(
        made.metadata.resource_version)
    assert _bookmarks(shared_sim, rv, 2) == []
    v1.delete_namespaced_config_map("bookmarked", "default")


def _exec(v1: client.CoreV1Api, ns: str, pod: str, command: list[str]) -> tuple[str, int]:
    ws = stream(v1.connect_get_namespaced_pod_exec, pod, ns, command=command, stderr=True,
                stdin=False, stdout=True, tty=False, _preload_content=False)
    ws.run_forever(timeout=30)
    out = ws.read_stdout() + ws.read_stderr()
    code = ws.returncode
    ws.close()
    return out, code


def test_exec_exit_codes(shared_sim) -> None:
    v1 = core(shared_sim)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="exec-target"),
        spec=client.V1PodSpec(node_selector={"kubernetes.io/os": "windows"}, containers=[
            client.V1Container(name="c", image="mcr.microsoft.com/windows/servercore:ltsc2019",
                               command=["ping", "-t", "localhost"])]))
    v1.create_namespaced_pod("default", pod)
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default",
                       field_selector="metadata.name=exec-target", timeout_seconds=60):
        if ev["object"].status.phase == "Running":
            w.stop()
    out, code = _exec(v1, "default", "exec-target", ["powershell", "-Command", "hostname"])
    assert (out.strip(), code) == ("exec-target", 0)
    out, code = _exec(v1, "default", "exec-target",
                      ["powershell", "-Command", "Get-Content C:\\nope.txt"])
    assert code == 1 and "Cannot find path 'C:\\nope.txt'" in out
    v1.delete_namespaced_pod("exec-target", "default")


def test_a_linux_pods_shell_reads_stdin_and_logs_its_output(shared_sim) -> None:
    """The embedded cluster's EKS Linux nodes have no model, yet their images' shell
    runs: a script on stdin (closed by the client), and the container's log is what
    its own `sh -c` printed before it slept."""
    v1 = core(shared_sim)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="shell-target"),
        spec=client.V1PodSpec(node_selector={"kubernetes.io/os": "linux"}, containers=[
            client.V1Container(name="c", image="public.ecr.aws/docker/library/busybox:1.36",
                               command=["sh", "-c", "echo up; sleep 3600"])]))
    v1.create_namespaced_pod("default", pod)
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_pod, "default",
                       field_selector="metadata.name=shell-target", timeout_seconds=60):
        if ev["object"].status.phase == "Running":
            w.stop()
    ws = stream(v1.connect_get_namespaced_pod_exec, "shell-target", "default", command=["sh"],
                stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
    ws.write_stdin("echo hi; exit 5\n")
    ws.close_channel(0)
    ws.run_forever(timeout=30)
    assert (ws.read_stdout(), ws.returncode) == ("hi\n", 5)
    ws.close()
    log = v1.read_namespaced_pod_log("shell-target", "default", _preload_content=False)
    assert log.data == b"up\n"
    with pytest.raises(ApiException) as exc:
        v1.read_namespaced_pod_log("shell-target", "default", container="nope")
    assert exc.value.status == 400 and "container nope is not valid" in exc.value.body
    v1.delete_namespaced_pod("shell-target", "default")


def test_wrong_token_is_401(shared_sim, tmp_path) -> None:
    data = yaml.safe_load(shared_sim.kubeconfig.read_text())
    data["users"][0]["user"]["token"] = "wrong"
    bad = tmp_path / "kubeconfig"
    bad.write_text(yaml.safe_dump(data))
    ac = config.new_client_from_config(str(bad), context="sim-1")
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(ac).list_namespace()
    assert exc.value.status == 401
