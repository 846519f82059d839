"""No credential reaches a report: unit rules of the redactor, and a certification run
with secrets planted where checks could meet them (probe output, a failure message, a
pod's environment, the kubeconfig's token, the AWS keys), grepped for in every file
the run wrote, inside its bundle, and in pytest's own output."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml
from test_reports import check_run_dir

from helpers import ROOT
from winstor.reports import redact
from winstor.reports.redact import REDACTED, Redactor

SMB_PASSWORD = "Planted-Smb-Passw0rd-7731"
NET_USE_PASSWORD = "Planted-NetUse-Pw-5520"
POD_ENV_SECRET = "planted-pod-env-secret-99812"
ENV_PASSWORD = "planted-winstor-env-pw-4410"

PLANT = f'''
"""Plants secrets into a run the way a careless probe or a cluster might show them."""
import os

import pytest
import yaml
from winstor.plugin import checks
from winstor.cluster.kube import PODS
from winstor.plugin.hooks import STATE
from winstor.plugin.reports import EVIDENCE


def _secrets(config):
    state = config.stash[STATE]
    with open(state.sim_kubeconfig) as fh:
        token = yaml.safe_load(fh)["users"][0]["user"]["token"]
    env = state.sim_aws_env
    return token, env["AWS_SECRET_ACCESS_KEY"], env["AWS_ACCESS_KEY_ID"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    check = checks.check_of(item)
    if check is None:
        return result
    token, aws_secret, aws_id = _secrets(item.config)
    with open(os.environ["PLANTED_OUT"], "w") as fh:
        fh.write("\\n".join([token, aws_secret, aws_id]))
    evidence = item.stash.get(EVIDENCE, None)
    if evidence is not None:
        evidence["planted"] = {{
            "probe_output": f"curl -H 'Authorization: Bearer {{token}}' https://api",
            "raw": f"saw {{token}} then {{aws_secret}}",
            "creds": {{"username": "CORP\\\\admin", "password": "{SMB_PASSWORD}"}},
            "script": "$p = ConvertTo-SecureString '{SMB_PASSWORD}' -AsPlainText -Force; "
                      "net use G: \\\\\\\\fsx\\\\share {NET_USE_PASSWORD} /user:CORP\\\\admin",
            "env_line": f"AWS_ACCESS_KEY_ID={{aws_id}}",
        }}
    if check[0] == "SC-DEFAULT-01":
        pytest.skip("planted skip: certification must count it as a failure")
    if check[0] == "SMB-PSA-01":
        cluster = item.funcargs["cluster"]
        namespace = item.funcargs["host_namespace"]
        cluster.api.create(PODS, {{
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {{"name": "planted-secrets", "namespace": namespace,
                          "labels": cluster.labels()}},
            "spec": {{"nodeSelector": {{"kubernetes.io/os": "windows"}},
                      "containers": [{{"name": "c", "image": cluster.image(), "env": [
                          {{"name": "AWS_SECRET_ACCESS_KEY", "value": "{POD_ENV_SECRET}"}},
                          {{"name": "SMB_PASSWORD", "value": "{SMB_PASSWORD}"}}]}}]}}}},
            namespace)
        print(f"captured output with {{token}} and password={SMB_PASSWORD}")
        pytest.fail(f"planted failure: token {{token}}, key {{aws_secret}}, "
                    f"password={SMB_PASSWORD}", pytrace=False)
    return result
'''


def test_text_rules() -> None:
    r = Redactor(["s3cr3t-literal-value"])
    cases = {
        "Authorization: Bearer abc.def-ghi_123": "abc.def-ghi_123",
        "key AKIAABCDEFGHIJKLMNOP used": "AKIAABCDEFGHIJKLMNOP",
        "AWS_SECRET_ACCESS_KEY=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": "wJalrXUtnFEMI",
        '"password": "hunter2hunter2"': "hunter2hunter2",
        # the secret word inside a longer name, which a match must start at
        "MY_APP.db-password=Qx7Qx7Qx7": "Qx7Qx7Qx7",
        '{"aws_session_token":"IQoJb3JpZ2luX2VjEJr"}': "IQoJb3JpZ2luX2VjEJr",
        "token: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl": "eyJzdWIiOiJ4In0",
        "smb://admin:pa55word@fsx.example/share": "pa55word",
        "ConvertTo-SecureString 'P@ss w0rd!' -AsPlainText": "P@ss w0rd!",
        "New-SmbGlobalMapping -Password Zq9xx1": "Zq9xx1",
        "net use G: \\\\fsx\\share Zq9yy2 /user:CORP\\admin": "Zq9yy2",
        "found s3cr3t-literal-value in the log": "s3cr3t-literal-value",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----": "MIIEow",
    }
    for text, secret in cases.items():
        out = r.text(text)
        assert secret not in out and REDACTED in out, (text, out)
    for harmless in ("claim ebs-windows-pv-claim is Bound", "sha256 9f86d081884c7d65",
                     "volume kube-api-access-x9z mounted", "the token may be expired"):
        assert r.text(harmless) == harmless


def test_a_name_is_matched_whole_not_from_inside() -> None:
    # The name=value rule starts a match only where a name starts; the replacement
    # keeps the whole name, so a prefix before the secret word survives intact.
    r = Redactor()
    assert r.text("x.y_client_secret: abc123") == f"x.y_client_secret: {REDACTED}"
    assert r.text('a"token": "q9q9q9"') == f'a"token": "{REDACTED}"'


def test_structured_rules() -> None:
    r = Redactor()
    pod = {"spec": {"containers": [{"env": [
        {"name": "AWS_SECRET_ACCESS_KEY", "value": "abcdefgh12345678"},
        {"name": "REGION", "value": "us-west-2"}]}],
        "volumes": [{"secret": {"secretName": "smb-creds"}}]},
        "data": {"password": "short", "username": "admin"}}
    out = r.data(pod)
    env = out["spec"]["containers"][0]["env"]
    assert env[0]["value"] == REDACTED and env[1]["value"] == "us-west-2"
    assert out["spec"]["volumes"][0]["secret"]["secretName"] == "smb-creds"
    assert out["data"] == {"password": REDACTED, "username": "admin"}


def test_kubeconfig_credentials_are_found_and_hidden(tmp_path: Path) -> None:
    kc = tmp_path / "kubeconfig"
    kc.write_text(yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "tok-1234567890", "exec": {
            "command": "aws", "env": [{"name": "AWS_SESSION_TOKEN", "value": "sess-abcdefgh"},
                                      {"name": "AWS_PROFILE", "value": "nightly"}]}}}]}))
    found = redact.kubeconfig_secrets(str(kc))
    assert {"tok-1234567890", "sess-abcdefgh"} <= set(found) and "nightly" not in found
    view = redact.redacted_kubeconfig(str(kc))
    assert view["clusters"][0]["server"] == "https://10.0.0.1"
    assert "tok-1234567890" not in str(view) and "sess-abcdefgh" not in str(view)
    r = Redactor.from_environment(kubeconfigs=[str(kc)])
    assert r.text("sent tok-1234567890") == f"sent {REDACTED}"


def _every_output(root: Path) -> dict[str, str]:
    out = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path) as tar:
                for m in tar.getmembers():
                    fh = tar.extractfile(m)
                    out[f"{path.name}:{m.name}"] = fh.read().decode("utf-8", "replace") \
                        if fh else ""
        else:
            out[str(path)] = path.read_text("utf-8", "replace")
    return out


def test_planted_secrets_appear_nowhere(tmp_path: Path) -> None:
    (tmp_path / "plant_secrets.py").write_text(PLANT)
    report_dir = tmp_path / "reports"
    seen = tmp_path / "planted.txt"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PLANTED_OUT": str(seen),
           "WINSTOR_SMB_PASSWORD": ENV_PASSWORD}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "plant_secrets", "--certify",
         "--sim-clusters", "1", "--expect-ami", "ami-00000000000000000",
         f"--report-dir={report_dir}", "--run-id=t-secrets"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    run_dir = report_dir / "t-secrets"
    doc = check_run_dir(run_dir, proc.stdout)
    by = {c["id"]: c for c in doc["checks"]}
    assert by["SMB-PSA-01"]["outcome"] == "failed" and by["SMB-PSA-01"]["diagnostics"]
    assert by["SC-DEFAULT-01"]["outcome"] == "failed"
    assert "skipped check counts as a failure" in by["SC-DEFAULT-01"]["reason"]
    cert = doc["certification"]["clusters"]["sim-1"]
    assert doc["certification"]["verdict"] == "failed"
    assert any("not ami-00000000000000000" in r for r in cert["reasons"])
    assert cert["bundle"] and (run_dir / cert["bundle"]).is_file()
    pod_yaml = next(run_dir.glob("diagnostics/sim-1/SMB-PSA-01/pod-*planted-secrets.yaml"))
    assert "AWS_SECRET_ACCESS_KEY" in pod_yaml.read_text()
    evidence = str(by["NODES-READY-01"]["evidence"]["planted"])
    assert evidence.count(REDACTED) >= 6, evidence

    token, aws_secret, aws_id = seen.read_text().splitlines()
    planted = [token, aws_secret, aws_id, SMB_PASSWORD, NET_USE_PASSWORD, POD_ENV_SECRET,
               ENV_PASSWORD]
    files = _every_output(report_dir)
    assert any(name.endswith(":report.html") for name in files), "no bundle was read"
    for secret in planted:
        leaks = [name for name, text in files.items() if secret in text]
        assert leaks == [], f"{secret[:6]}... leaked into {leaks}"
        assert secret not in output, f"{secret[:6]}... leaked into pytest's output"


def test_paths_and_names_are_not_secrets() -> None:
    """PWD contains "pwd" and AWS_SHARED_CREDENTIALS_FILE "credential", but they hold a
    directory and a path: redacting them hid the working directory in every report."""
    for name in ("PWD", "OLDPWD", "HOME", "USER", "LOGNAME", "SHELL", "PATH", "PYTHONPATH",
                 "AWS_SHARED_CREDENTIALS_FILE", "PGPASSFILE", "KUBE_TOKEN_PATH",
                 "secretName", "SECRETS_DIR"):
        assert not redact.is_secret_name(name), name
    for name in ("MYSQL_PWD", "DB_PWD", "db-password", "AWS_SECRET_ACCESS_KEY",
                 "AWS_SESSION_TOKEN", "GITHUB_TOKEN", "client-key-data", "SMB_PASSWORD"):
        assert redact.is_secret_name(name), name
    r = Redactor()
    text = "PWD=/work/main OLDPWD=/home/u HOME=/home/u"
    assert r.text(text) == text
    assert r.text('{"PWD": "/work/main", "DB_PWD": "abcdef12"}') == \
        f'{{"PWD": "/work/main", "DB_PWD": "{REDACTED}"}}'
    assert r.text("export MYSQL_PWD=s3cr3tzz") == f"export MYSQL_PWD={REDACTED}"
    assert r.data({"PWD": "/w", "HOME": "/h", "MYSQL_PWD": "x"}) == {
        "PWD": "/w", "HOME": "/h", "MYSQL_PWD": REDACTED}
    env = {"PWD": "/work/some/dir", "OLDPWD": "/work/other/dir", "MY_DB_PASSWORD": "pw-12345678"}
    learned = Redactor.from_environment(env).values
    assert "pw-12345678" in learned and not {"/work/some/dir", "/work/other/dir"} & learned


WORKDIR_PLANT = '''
"""Shows the working directory, and a secret, where a check's report carries them."""
import os

import pytest
from winstor.plugin import checks
from winstor.plugin.reports import EVIDENCE


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    check = checks.check_of(item)
    if check is None or check[0] != "NODES-READY-01":
        return result
    cwd, secret = os.getcwd(), os.environ["MY_DB_PASSWORD"]
    item.stash[EVIDENCE]["workdir"] = {
        "cwd": cwd, "env_line": "PWD=" + os.environ["PWD"],
        "shell": "OLDPWD=" + os.environ["OLDPWD"], "seen": "found " + secret}
    pytest.fail(f"planted failure in {cwd} (PWD={os.environ['PWD']}), database "
                f"password {secret}", pytrace=False)
'''


def test_a_report_keeps_the_working_directory(tmp_path: Path) -> None:
    """A catalog run started in a directory (PWD set, as shells do): results.json,
    report.html, junit.xml and pytest's output show that directory where the run met it
    (its evidence, its failure message, the report directory it chose), and a secret
    planted beside it is gone from all of them."""
    (tmp_path / "plant_workdir.py").write_text(WORKDIR_PLANT)
    work = tmp_path / "work"
    work.mkdir()
    secret = "planted-db-pw-66120"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PWD": str(work), "OLDPWD": str(ROOT),
           "MY_DB_PASSWORD": secret}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "plant_workdir", str(ROOT / "suites"),
         "--sim-clusters", "1", "-k", "NODES-READY-01", "--report-dir=reports",
         "--run-id=t-workdir"],
        cwd=work, capture_output=True, text=True, timeout=600, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    run_dir = work / "reports" / "t-workdir"
    doc = check_run_dir(run_dir, proc.stdout)
    (check,) = [c for c in doc["checks"] if c["id"] == "NODES-READY-01"]
    assert check["evidence"]["workdir"] == {
        "cwd": str(work), "env_line": f"PWD={work}", "shell": f"OLDPWD={ROOT}",
        "seen": f"found {REDACTED}"}
    assert f"planted failure in {work} (PWD={work})" in check["reason"]
    assert doc["run"]["options"]["report_dir"] == str(work / "reports")
    html = (run_dir / "report.html").read_text()
    junit = (run_dir / "junit.xml").read_text()
    for text in (html, junit, output):
        assert f"planted failure in {work} (PWD={work})" in text
    files = _every_output(work / "reports")
    assert [name for name, text in files.items() if secret in text] == []
    assert secret not in output


def test_a_value_learnt_later_is_redacted_in_text_seen_before(monkeypatch) -> None:
    """Each different text is scrubbed once and remembered; a value learnt afterwards (an
    AWS session's keys) must still come out of a text scrubbed before it was known, and
    a full memory starts afresh rather than growing without end."""
    r = Redactor(["first-secret-value"])
    line = "user ran with first-secret-value and second-secret-value"
    assert r.text(line) == f"user ran with {REDACTED} and second-secret-value"
    r.add(["second-secret-value"])
    assert r.text(line) == f"user ran with {REDACTED} and {REDACTED}"
    monkeypatch.setattr(redact, "MEMO_LIMIT", 3)
    for i in range(10):
        assert r.text(f"line {i} first-secret-value") == f"line {i} {REDACTED}"
    assert len(r._done) <= 3
