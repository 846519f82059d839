"""The SMB CSI and share-kind checks with shares from a clusters file.

The embedded cluster's own SMB StorageClasses name its three shares; here the same
shares are configured instead, as a user with a real cluster would: each with its
kind, credentials from AWS Secrets Manager or a Secret the user names, and an
`onDelete` of each kind. The run must pass, leave nothing behind, and never write a
password anywhere; a share configured as the wrong kind fails SHARE-AWS-01 naming
what serves it; the clusters file refuses what it cannot use, in one line.
"""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml
from kubernetes import client

from helpers import run_suite
from inspect_cluster import api_client, leftovers
from winstor.config import ConfigError, load_clusters_file

SMB_CHECKS = {"SHARE-AWS-01", "SMB-CSI-01", "SMB-CSI-02", "SMB-CSI-03"}


def _sim_shares(sim) -> dict[str, str]:
    """kind -> source, from the embedded cluster's own SMB classes (a client no check uses)."""
    storage = client.StorageV1Api(api_client(sim))
    return {c.metadata.name.removeprefix("smb-"): c.parameters["source"]
            for c in storage.list_storage_class().items if c.provisioner == "smb.csi.k8s.io"}


def _clusters_file(sim, tmp_path: Path, shares: list[dict]) -> Path:
    path = tmp_path / "clusters.yaml"
    path.write_text(yaml.safe_dump({"clusters": [{
        "name": "sim-1", "context": "sim-1", "kubeconfig": str(sim.kubeconfig),
        "aws": {"region": sim.aws_env["AWS_DEFAULT_REGION"]}, "shares": shares}]}))
    return path


def _secret_values(sim) -> list[str]:
    env = sim.aws_env
    sm = boto3.client("secretsmanager", endpoint_url=env["AWS_ENDPOINT_URL"],
                      region_name=env["AWS_DEFAULT_REGION"],
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    import json
    return [json.loads(sm.get_secret_value(SecretId=name)["SecretString"])["password"]
            for name in ("winstor/sim-1/smb-ad", "winstor/sim-1/smb-file-gateway")]


def test_configured_shares_pass_and_leave_no_secret_behind(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1)
    sources = _sim_shares(sim)
    assert set(sources) == {"fsx-windows", "fsx-ontap", "file-gateway"}
    config = _clusters_file(sim, tmp_path, [
        {"name": "corp-fsx", "kind": "fsx-windows", "source": sources["fsx-windows"],
         "credentials": {"secrets_manager": "winstor/sim-1/smb-ad"}, "on_delete": "retain"},
        {"name": "corp-ontap", "kind": "fsx-ontap",
         "source": "\\\\" + sources["fsx-ontap"].strip("/").replace("/", "\\"),
         "credentials": {"secret": "kube-system/smb-creds-ad"}, "on_delete": "archive"},
        {"name": "fgw", "kind": "file-gateway", "source": sources["file-gateway"],
         "credentials": {"secrets_manager": "winstor/sim-1/smb-file-gateway"}}])
    result = run_suite([f"--clusters={config}", "-m", "smb_csi or shares",
                        "--timeouts", "sim"], tmp_path, env=sim.aws_env)
    assert result.outcomes == {f"sim-1:{c}": "passed" for c in SMB_CHECKS}, result.output[-3000:]
    assert leftovers(sim) == []
    # The Secrets Manager passwords went into the run's Secrets and nowhere a person reads.
    written = result.output + "".join(
        p.read_text(errors="replace") for p in (tmp_path / "reports").rglob("*") if p.is_file())
    for password in _secret_values(sim):
        assert password not in written


def test_a_share_of_the_wrong_kind_fails_naming_what_serves_it(sim_factory,
                                                               tmp_path: Path) -> None:
    sim = sim_factory(1)
    sources = _sim_shares(sim)
    config = _clusters_file(sim, tmp_path, [
        {"kind": "fsx-ontap", "source": sources["file-gateway"],
         "credentials": {"secret": "kube-system/smb-creds-file-gateway"}}])
    result = run_suite([f"--clusters={config}", "-k", "SHARE-AWS-01"], tmp_path,
                       env=sim.aws_env)
    message = result.messages["sim-1:SHARE-AWS-01"]
    assert result.outcomes["sim-1:SHARE-AWS-01"] == "failed"
    assert "configured as fsx-ontap, but it is served by File Gateway SMB share share-" in \
        message, message


@pytest.mark.parametrize(("share", "says"), [
    ({"kind": "nfs", "source": "//s/x"}, "shares[0].kind: expected one of fsx-windows"),
    ({"kind": "fsx-ontap", "source": "//server"}, "shares[0].source: expected"),
    ({"kind": "fsx-ontap", "source": "//s/x", "credentials": {"secret": "nons"}},
     "credentials.secret: expected namespace/name"),
    ({"kind": "fsx-ontap", "source": "//s/x",
      "credentials": {"secret": "a/b", "secrets_manager": "c"}}, "give one of secret or"),
    ({"kind": "fsx-ontap", "source": "//s/x", "on_delete": "keep"},
     "on_delete: expected one of delete, retain, archive"),
    ({"kind": "fsx-ontap", "source": "//s/x", "name": "Not_OK"}, "shares[0].name: lower-case"),
    ({"kind": "fsx-ontap", "source": "//s/x", "path": "x"}, "unknown key 'path'"),
])
def test_clusters_file_refuses_a_bad_share(tmp_path: Path, share: dict, says: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"clusters": [{"context": "c", "shares": [share]}]}))
    with pytest.raises(ConfigError) as err:
        load_clusters_file(str(path))
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_clusters_file_shares_are_read_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"clusters": [{"context": "c", "shares": [
        {"kind": "fsx-ontap", "source": "\\\\svm.corp\\vol1\\",
         "credentials": {"secret": "kube-system/creds"}},
        {"kind": "fsx-ontap", "name": "second", "source": "//svm2/vol", "host_path": "H:\\"}]}]}))
    first, second = load_clusters_file(str(path))[0].shares
    assert (first.name, first.source, first.unc, first.secret, first.on_delete) == (
        "fsx-ontap", "//svm.corp/vol1", "\\\\svm.corp\\vol1", "kube-system/creds", "delete")
    assert (second.name, second.host_path, second.secret) == ("second", "H:\\", None)
    path.write_text(yaml.safe_dump({"clusters": [{"context": "c", "shares": [
        {"kind": "fsx-ontap", "source": "//a/b"}, {"kind": "fsx-ontap", "source": "//c/d"}]}]}))
    with pytest.raises(ConfigError, match="names must be unique"):
        load_clusters_file(str(path))
