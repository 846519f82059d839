"""Keep credentials out of everything a run writes.

Reports travel: nightly CI archives them, vendors mail certification bundles.
Whatever a check saw - a probe's output, a pod's environment, an error that
quotes a request - may carry a bearer token, an AWS key or SMB credentials.
Every file winstor writes goes through one `Redactor`, twice: structured data
by key (a field named like a secret loses its value), then the serialized
text by known values and by shape (bearer headers, AWS key ids, `key=value`
pairs, PEM private keys, passwords in URLs, PowerShell secure strings).

Known values come from where this run found credentials: the environment
(`AWS_SECRET_ACCESS_KEY`, ...), the embedded cluster's AWS settings and the
kubeconfig files in use; `WINSTOR_REDACT` adds more (comma-separated).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from winstor import kubeconfig as kubeconfig_file

REDACTED = "[REDACTED]"

# A name that says its value is a credential (dict keys, env var names, k=v text).
_SECRET_WORDS = (r"secret|token|passw(?:or)?d|passwd|pwd|credential|api[_-]?key|access[_-]?key"
                 r"|private[_-]?key|session[_-]?key|client[_-]?key(?:[_-]?data)?|authorization"
                 r"|auth[_-]?token|sas[_-]?key|connection[_-]?string")
SECRET_NAME = re.compile(rf"(?i)({_SECRET_WORDS})")
# Names that look like secrets but name something else: a reference to a secret, where
# one is kept (AWS_SHARED_CREDENTIALS_FILE, PGPASSFILE, a token path: paths are never
# redacted), or the shell's working directories PWD and OLDPWD - "pwd" stays a secret
# word for every other name (MYSQL_PWD, DB_PWD are passwords).
_NOT_SECRET_NAME = re.compile(r"(?i)(secret[_-]?name|secretref|secret[_-]?namespace"
                              r"|token[_-]?expir\w*|tokens?[_-]?count"
                              r"|file|path|dir|directory|home|^(?:old)?pwd)$")


def is_secret_name(name: str) -> bool:
    """Whether a variable, key or field of this name holds a credential (see above)."""
    return bool(SECRET_NAME.search(name)) and not _NOT_SECRET_NAME.search(name)


# The shortest known value replaced as a literal: shorter ones ("test", "x")
# would shred ordinary words; their shapes are still caught by the patterns.
MIN_LITERAL = 8

# How many scrubbed texts a Redactor remembers (`Redactor.text`); more starts afresh.
MEMO_LIMIT = 50_000

# name: value, name=value, "name": "value" (YAML, env files, JSON, command lines), where
# the name is a secret's (`is_secret_name`: PWD=/work/x keeps its path).
# The look-behind starts a match only where a name starts: without it every position
# inside a long word was tried, quadratic in the word's length (most of a report's cost).
_NAMED_VALUE = re.compile(
    rf"(?i)([\"']?(?<![\w.-])([\w.-]*(?:{_SECRET_WORDS})[\w.-]*)[\"']?[ \t]*[:=][ \t]*)"
    r"([\"']?)(?!\[REDACTED\])([^\s\"',;}\]<>&]{3,})")


def _named_value(m: re.Match[str]) -> str:
    if not is_secret_name(m.group(2)):
        return m.group(0)
    return f"{m.group(1)}{m.group(3)}{REDACTED}"


_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----",
                re.S), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}"), rf"\1\2{REDACTED}"),
    (re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|AGPA)[A-Z0-9]{16}\b"),
     REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"), REDACTED),
    (_NAMED_VALUE, _named_value),
    # user:password@host in URLs and SMB paths
    (re.compile(r"(://[^/\s:@]+):[^/\s@]+@"), rf"\1:{REDACTED}@"),
    # PowerShell: ConvertTo-SecureString 'x' / -String 'x'; -Password x
    (re.compile(r"(?i)(ConvertTo-SecureString\s+(?:-String\s+)?)(['\"])(.*?)\2"),
     rf"\1\2{REDACTED}\2"),
    (re.compile(r"(?i)(-(?:Password|AccountPassword)\s+)(['\"]?)[^\s'\"]+"), rf"\1\2{REDACTED}"),
    # net use \\server\share PASSWORD /user:NAME
    (re.compile(r"(?i)(\bnet\s+use\s+\S+\s+\\\\\S+\s+)(?!/)(\S+)"), rf"\1{REDACTED}"),
]


class Redactor:
    """Redacts known secret values and secret-shaped text; see the module docstring."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: set[str] = set()
        # AWS sessions whose keys were looked for: id -> why they could not be read (or None).
        self.sessions: dict[int, str | None] = {}
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        for v in values:
            if isinstance(v, str) and len(v.strip()) >= MIN_LITERAL:
                self.values.add(v.strip())
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(self.values, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self._done: dict[str, str] = {}  # what text() made of each text, with these values

    def learn_aws_session(self, session: Any) -> str | None:
        """Add an AWS session's keys (a profile's, an assumed role's: not in the environment)
        to the known values, once per session. Returns why they could not be read, if they
        could not: then only their shapes are redacted (key ids, `name=value`), and the
        caller must say so where the user sees it."""
        key = id(session)
        if key not in self.sessions:
            try:
                creds = session.get_credentials()
                frozen = creds.get_frozen_credentials() if creds is not None else None
            except Exception as err:  # botocore's credential providers raise many kinds
                self.sessions[key] = f"{type(err).__name__}: {err}"[:500]
            else:
                self.sessions[key] = None
                if frozen is not None:
                    self.add([frozen.access_key or "", frozen.secret_key or "",
                              frozen.token or ""])
        return self.sessions[key]

    # -- text ------------------------------------------------------------------------
    def text(self, text: str) -> str:
        """`text` without known values and secret-shaped parts. A run's report holds the
        same strings many times over (titles, phases, node names: 20,000 strings, 2,000
        different ones, in a 16-cluster run), so each different one is scrubbed once."""
        if not text:
            return text
        done = self._done.get(text)
        if done is None:
            if len(self._done) >= MEMO_LIMIT:
                self._done.clear()
            done = self._done[text] = self._scrub(text)
        return done

    def _scrub(self, text: str) -> str:
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    # -- structured data ---------------------------------------------------------------
    def data(self, obj: Any) -> Any:
        """A redacted copy: secret-named keys lose their values, strings are scrubbed."""
        if isinstance(obj, dict):
            out: dict[Any, Any] = {}
            # Kubernetes env entries and similar: {"name": "AWS_SECRET_ACCESS_KEY", "value": ...}
            named_secret = isinstance(obj.get("name"), str) and is_secret_name(obj["name"]) \
                and "value" in obj
            for k, v in obj.items():
                scalar = isinstance(v, (str, int, float, bytes)) and not isinstance(v, bool)
                if (named_secret and k == "value") or (
                        isinstance(k, str) and is_secret_name(k) and scalar):
                    out[k] = REDACTED
                else:
                    out[k] = self.data(v)
            return out
        if isinstance(obj, (list, tuple)):
            return [self.data(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj

    # -- where credentials are found -----------------------------------------------
    @classmethod
    def from_environment(cls, extra_env: dict[str, str] | None = None,
                         kubeconfigs: Iterable[str | None] = ()) -> Redactor:
        values: list[str] = []
        for env in (os.environ, extra_env or {}):
            for name, value in env.items():
                if is_secret_name(name):
                    values.append(value)
        values += [v.strip() for v in os.environ.get("WINSTOR_REDACT", "").split(",")]
        paths = list(kubeconfigs) + os.environ.get("KUBECONFIG", "").split(os.pathsep)
        for path in dict.fromkeys(p for p in paths if p):
            values += kubeconfig_secrets(path)
        return cls(values)


def kubeconfig_secrets(path: str) -> list[str]:
    """Every credential-like value in a kubeconfig's users (tokens, keys, passwords,
    exec environment); an unreadable file has none."""
    try:
        data = kubeconfig_file.load(path)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []
    found: list[str] = []

    def walk(obj: Any, secret: bool) -> None:
        if isinstance(obj, dict):
            named = isinstance(obj.get("name"), str) and is_secret_name(obj["name"])
            for k, v in obj.items():
                walk(v, secret or (isinstance(k, str) and is_secret_name(k))
                     or (named and k == "value"))
        elif isinstance(obj, list):
            for v in obj:
                walk(v, secret)
        elif isinstance(obj, str) and secret:
            found.append(obj)

    if isinstance(data, dict):
        for user in data.get("users") or []:
            if isinstance(user, dict):
                walk(user.get("user"), False)
    return found


def redacted_kubeconfig(path: str | None) -> dict[str, Any] | None:
    """What a kubeconfig says about clusters and contexts, with its credentials removed
    (for the effective configuration in bundles)."""
    if not path:
        return None
    try:
        data = kubeconfig_file.load(path)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {"path": path, "error": "unreadable"}
    if not isinstance(data, dict):
        return {"path": path, "error": "not a kubeconfig"}
    clusters = [{"name": c.get("name"), "server": (c.get("cluster") or {}).get("server")}
                for c in data.get("clusters") or [] if isinstance(c, dict)]
    contexts = [{"name": c.get("name"), **{k: v for k, v in (c.get("context") or {}).items()
                                          if k in ("cluster", "user", "namespace")}}
                for c in data.get("contexts") or [] if isinstance(c, dict)]
    users = [{"name": u.get("name"), "credentials": REDACTED if u.get("user") else None}
             for u in data.get("users") or [] if isinstance(u, dict)]
    return {"path": path, "current-context": data.get("current-context"),
            "clusters": clusters, "contexts": contexts, "users": users}
