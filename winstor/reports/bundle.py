"""Certification: the verdict per cluster, and one bundle per cluster, verifiable on its own.

A vendor certifying an AMI sends the bundle to someone who was not there.
It holds that cluster's results.json, junit.xml and report.html, the
diagnostics of its failed checks, the effective configuration (redacted),
and a `SHA256SUMS` manifest in `sha256sum` format, so `sha256sum -c` works
on the unpacked files as well as `winstor verify-bundle`.

The bundle is an ordinary .tar.gz whose gzip header carries one extra
subfield (`WS`, which gzip, tar and zlib skip as RFC 1952 tells readers
to): the SHA-256 of the whole file as written, taken with those 32 bytes
zeroed. gzip's own CRC covers only the uncompressed data and is not read
at all by tar once it has seen the end of the archive, so without the seal
a bundle with bytes cut off its end, bytes appended, or a flipped byte in
the gzip header (its time stamp, its padding bits) still unpacked cleanly.

Verification rejects a bundle whose bytes differ from what the run wrote
(the seal, gzip's CRC and length, nothing after the gzip stream, nothing
but zeros after the tar's end-of-archive), whose files do not match the
manifest, that holds files the manifest does not list (or lacks listed
ones), holds links, absolute or parent paths, or whose results do not
follow the schema - and, because the seal and the manifest can be
recomputed by whoever edits a file, one whose results, JUnit and verdict
disagree with each other. All of that is integrity, not authorship: a
bundle rebuilt from scratch by anyone passes. Only a signature made with a
key the reader trusts says who wrote it: `sign` writes a detached Ed25519
signature of the file's bytes (`<bundle>.sig`, `winstor sign-bundle`), and
`check_signature` checks it against a public key the reader supplies
(`winstor verify-bundle --verify-key`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import struct
import tarfile
import time
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winstor.reports import results

MANIFEST = "SHA256SUMS"
REQUIRED = ("results.json", "junit.xml", "report.html", "config.json")
MAX_BUNDLE_BYTES = 512 * 1024 * 1024
_LINE = re.compile(r"^([0-9a-f]{64})  (\S.*)$")

# The gzip header winstor writes: magic, deflate, FLG=FEXTRA, MTIME, XFL, OS, then XLEN and
# one extra subfield `WS` holding the whole file's SHA-256 (see the module docstring).
_FEXTRA = 0x04
SEAL_ID = b"WS"
_SEAL_LEN = 32
_SEAL_AT = 16  # 10 bytes of fixed header, XLEN (2), SI1 SI2 (2), LEN (2)
_HEADER_LEN = _SEAL_AT + _SEAL_LEN
_EXTRA = struct.pack("<H", 4 + _SEAL_LEN) + SEAL_ID + struct.pack("<H", _SEAL_LEN)
_TAR_BLOCK = 512

#: What a verification proves, and what it does not; printed by `winstor verify-bundle`.
PROVES = ("integrity only: the bytes are those the run wrote and its parts agree; anyone can "
          "build a bundle that passes, so this says nothing about who wrote it (a signature "
          "checked with --verify-key and a key you trust does)")


class BundleError(Exception):
    """The bundle is unreadable or was modified; the message says what, in one line."""


@dataclass
class Verdict:
    path: str
    cluster: str
    run_id: str
    verdict: str
    reasons: list[str]
    counts: dict[str, int]
    files: list[str] = field(default_factory=list)

    def line(self) -> str:
        c = self.counts
        return (f"{self.path}: intact (its bytes match the whole-file SHA-256 and gzip CRC it "
                f"was written with, {len(self.files)} files match {MANIFEST}; results "
                f"schema v{results.SCHEMA_VERSION}); cluster {self.cluster}, run "
                f"{self.run_id}: certification {self.verdict.upper()} ({c['passed']}/"
                f"{c['total']} checks passed)"
                + (f": {'; '.join(self.reasons)}" if self.reasons else ""))


def bundle_name(cluster: str, when: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when or time.time()))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", cluster).strip("-") or "cluster"
    return f"winstor-cert-{safe}-{stamp}.tar.gz"


def junit_for_cluster(xml_text: str, cluster: str) -> str:
    """The JUnit document with only this cluster's test cases, counts recomputed."""
    root = ET.fromstring(xml_text)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        for case in list(suite.findall("testcase")):
            if f"[{cluster}:" not in case.get("name", ""):
                suite.remove(case)
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
        suite.set("errors", str(sum(len(c.findall("error")) for c in cases)))
        suite.set("skipped", str(sum(1 for c in cases if c.find("skipped") is not None)))
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")


def write(out_dir: Path, name: str, files: dict[str, bytes]) -> Path:
    """Write `files` (archive path -> bytes) plus their manifest as `out_dir/name`."""
    manifest = "".join(f"{hashlib.sha256(data).hexdigest()}  {path}\n"
                       for path, data in sorted(files.items()))
    members = {**files, MANIFEST: manifest.encode()}
    now = int(time.time())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:") as tar:
        for path in [MANIFEST, *sorted(files)]:
            data = members[path]
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / name
    tmp = out_dir / f".{name}.partial"
    tmp.write_bytes(seal(raw.getvalue(), now))
    tmp.replace(target)
    return target


def seal(tar_bytes: bytes, mtime: int) -> bytes:
    """`tar_bytes` as a gzip file whose header carries its own SHA-256.

    Written by hand rather than with `gzip`, which has no way to add an extra field; the
    digest is taken over the finished file with the digest's 32 bytes zeroed, so it
    covers every other byte, header and trailer included.
    """
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = comp.compress(tar_bytes) + comp.flush()
    head = (b"\x1f\x8b\x08" + bytes([_FEXTRA]) + struct.pack("<I", mtime & 0xFFFFFFFF)
            + b"\x02\xff" + _EXTRA)
    trailer = struct.pack("<II", zlib.crc32(tar_bytes), len(tar_bytes) & 0xFFFFFFFF)
    digest = hashlib.sha256(head + bytes(_SEAL_LEN) + body + trailer).digest()
    return head + digest + body + trailer


def _unseal(path: Path, data: bytes) -> bytes:
    """The tar inside `data`, once every byte of `data` is shown to be what `seal` wrote."""
    if data[:2] != b"\x1f\x8b":
        raise BundleError(f"bundle rejected: {path} is not a gzip-compressed tar archive")
    if len(data) < _HEADER_LEN + 8:
        raise BundleError(f"bundle rejected: {path} is truncated ({len(data)} bytes, shorter "
                          "than a gzip header and trailer)")
    if data[2] != 8 or data[3] != _FEXTRA or data[10:_SEAL_AT] != _EXTRA:
        raise BundleError(f"bundle rejected: {path} does not start with the gzip header "
                          "winstor writes (no whole-file SHA-256 seal): modified, repacked, "
                          "or written by an older winstor")
    inflate = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        raw = inflate.decompress(data[_HEADER_LEN:], MAX_BUNDLE_BYTES + 1)
    except zlib.error as err:
        raise BundleError(f"bundle rejected: {path}: the compressed data is damaged "
                          f"({err})") from None
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle rejected: larger than {MAX_BUNDLE_BYTES >> 20} MiB "
                          "unpacked")
    if not inflate.eof:
        raise BundleError(f"bundle rejected: {path} is truncated (the compressed data stops "
                          "before its end)")
    rest = inflate.unused_data
    if len(rest) < 8:
        raise BundleError(f"bundle rejected: {path} is truncated (the gzip trailer has "
                          f"{len(rest)} of its 8 bytes)")
    if len(rest) > 8:
        raise BundleError(f"bundle rejected: {len(rest) - 8} bytes follow the end of the gzip "
                          f"stream in {path} (appended after the run wrote it)")
    crc, size = struct.unpack("<II", rest)
    if crc != zlib.crc32(raw) or size != len(raw) & 0xFFFFFFFF:
        raise BundleError(f"bundle rejected: {path}: the gzip trailer's CRC or length does "
                          "not match the data (damaged)")
    blank = data[:_SEAL_AT] + bytes(_SEAL_LEN) + data[_HEADER_LEN:]
    if hashlib.sha256(blank).digest() != data[_SEAL_AT:_HEADER_LEN]:
        raise BundleError(f"bundle rejected: {path}: its bytes differ from those the run "
                          "wrote (the whole-file SHA-256 in its header does not match)")
    return raw


def _read_members(path: Path) -> dict[str, bytes]:
    if not path.exists():
        raise BundleError(f"{path}: no such file")
    if not path.is_file():
        raise BundleError(f"{path} is not a file")
    try:
        if path.stat().st_size > MAX_BUNDLE_BYTES:
            raise BundleError(f"bundle rejected: {path} is larger than "
                              f"{MAX_BUNDLE_BYTES >> 20} MiB")
        data = path.read_bytes()
    except OSError as err:
        raise BundleError(f"{path}: cannot read it ({err.strerror or err})") from None
    return members_of(path, data)


def members_of(path: Path, data: bytes) -> dict[str, bytes]:
    """The files of the bundle whose bytes are `data` (read from `path`), or `BundleError`."""
    raw = _unseal(path, data)
    try:
        tar = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")  # noqa: SIM115 - closed below
    except (tarfile.TarError, EOFError) as err:
        raise BundleError(f"bundle rejected: {path} holds no tar archive ({err})") from None
    out: dict[str, bytes] = {}
    total = 0
    with tar:
        try:
            for m in tar:
                name = m.name
                if name.startswith(("/", "\\")) or ".." in Path(name).parts or not name:
                    raise BundleError(f"bundle rejected: unsafe member path {name!r}")
                if m.isdir():
                    continue
                if not m.isreg():
                    raise BundleError(f"bundle rejected: {name} is not a regular file")
                if name in out:
                    raise BundleError(f"bundle rejected: {name} appears twice")
                total += m.size
                if total > MAX_BUNDLE_BYTES:
                    raise BundleError("bundle rejected: larger than "
                                      f"{MAX_BUNDLE_BYTES >> 20} MiB unpacked")
                fh = tar.extractfile(m)
                out[name] = fh.read() if fh else b""
        except (tarfile.TarError, EOFError) as err:
            raise BundleError(f"bundle rejected: {path}: damaged tar archive ({err})") from None
        end = tar.offset
    # tarfile stops quietly at a header it cannot read, taking it for the end: what
    # follows the last member must be the end-of-archive marker (two zero blocks) and
    # the zero padding of the record, nothing else.
    tail = raw[end:]
    if len(tail) < 2 * _TAR_BLOCK or len(raw) % _TAR_BLOCK or tail.count(0) != len(tail):
        raise BundleError(f"bundle rejected: {path}: the tar archive does not end in its "
                          f"end-of-archive marker at byte {end} (damaged or appended to)")
    return out


def _junit_outcomes(xml_text: str) -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for case in ET.fromstring(xml_text).iter("testcase"):
        name = case.get("name", "")
        if "[" not in name or ":" not in name:
            continue
        param = name[name.index("[") + 1:name.rindex("]")]
        cluster, _, check = param.rpartition(":")
        outcome = "passed"
        tags = {child.tag for child in case}
        if "error" in tags:
            outcome = "error"
        if "failure" in tags:
            outcome = "failed"
        elif "skipped" in tags:
            outcome = "skipped"
        out[(cluster, check)] = outcome
    return out


def verify(path: str | Path) -> Verdict:
    """Check the bundle; raise `BundleError` saying why it is rejected."""
    p = Path(path)
    members = _read_members(p)
    if MANIFEST not in members:
        raise BundleError(f"bundle rejected: no {MANIFEST} manifest")
    listed: dict[str, str] = {}
    for i, line in enumerate(members[MANIFEST].decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        if m is None:
            raise BundleError(f"bundle rejected: {MANIFEST} line {i} is not '<sha256>  <path>'")
        listed[m.group(2)] = m.group(1)
    for name, digest in sorted(listed.items()):
        if name not in members:
            raise BundleError(f"bundle rejected: {name} is listed in {MANIFEST} but missing")
        if hashlib.sha256(members[name]).hexdigest() != digest:
            raise BundleError(f"bundle rejected: {name} does not match its {MANIFEST} entry "
                              "(modified after the run)")
    extra = sorted(set(members) - set(listed) - {MANIFEST})
    if extra:
        raise BundleError(f"bundle rejected: {', '.join(extra[:5])} not listed in {MANIFEST}")
    for name in REQUIRED:
        if name not in members:
            raise BundleError(f"bundle rejected: it holds no {name}")
    try:
        doc = results.loads(members["results.json"].decode("utf-8"), "results.json")
    except (results.ResultsError, UnicodeDecodeError) as err:
        raise BundleError(f"bundle rejected: {err}") from None
    junit = members["junit.xml"].decode("utf-8", "replace")
    problems = results.xunit2_problems(junit)
    if problems:
        raise BundleError(f"bundle rejected: junit.xml is not valid xunit2: {problems[0]}")
    return _consistent(str(p), doc, junit, sorted(listed))


def _consistent(path: str, doc: dict[str, Any], junit: str, files: list[str]) -> Verdict:
    cert = doc.get("certification")
    if not cert:
        raise BundleError("bundle rejected: results.json holds no certification")
    if len(doc["clusters"]) != 1 or set(cert["clusters"]) != {doc["clusters"][0]["name"]}:
        raise BundleError("bundle rejected: a bundle must hold exactly one cluster")
    cluster = doc["clusters"][0]["name"]
    mine = cert["clusters"][cluster]
    counts = results.counts(c["outcome"] for c in doc["checks"])
    if counts != doc["summary"]:
        raise BundleError("bundle rejected: results.json summary disagrees with its checks")
    in_junit = _junit_outcomes(junit)
    for c in doc["checks"]:
        seen = in_junit.get((c["cluster"], c["id"]))
        if seen is None:
            raise BundleError(f"bundle rejected: {c['id']} on {c['cluster']} is in results.json "
                              "but not in junit.xml")
        if seen != c["outcome"] and not (c["outcome"] == "error" and seen == "failed"):
            raise BundleError(f"bundle rejected: {c['id']} is {c['outcome']} in results.json "
                              f"but {seen} in junit.xml")
    all_passed = bool(doc["checks"]) and counts["passed"] == counts["total"]
    if mine["verdict"] == "passed" and (not all_passed or mine["reasons"]):
        raise BundleError("bundle rejected: the verdict says passed but checks did not all "
                          "pass")
    if cert["verdict"] != mine["verdict"]:
        raise BundleError("bundle rejected: the overall verdict disagrees with the cluster's")
    return Verdict(path, cluster, doc["run"]["id"], mine["verdict"], list(mine["reasons"]),
                   counts, files)


def verdict(doc: dict[str, Any], expect_amis: list[str]) -> dict[str, Any]:
    """The verdict per cluster: every check of the catalog passed there, AWS facts are
    complete, and every Windows node runs an expected AMI (when any are given)."""
    catalog = list(dict.fromkeys(c["id"] for c in doc["checks"]))
    verdicts: dict[str, Any] = {}
    for cluster in doc["clusters"]:
        name = cluster["name"]
        mine = {c["id"]: c for c in doc["checks"] if c["cluster"] == name}
        reasons: list[str] = []
        missing = [cid for cid in catalog if cid not in mine]
        if missing:
            reasons.append(f"not run: {', '.join(missing)}")
        bad = [c for c in mine.values() if c["outcome"] != "passed"]
        for c in bad[:8]:
            first = (c.get("reason") or "").strip().splitlines()[:1]
            reasons.append(f"{c['id']} {c['outcome']}" + (f": {first[0][:200]}" if first
                                                           else ""))
        if len(bad) > 8:
            reasons.append(f"and {len(bad) - 8} more checks did not pass")
        if not cluster["reachable"]:
            reasons.append(f"cluster not reachable: {cluster.get('error')}")
        if not cluster["aws"].get("available"):
            reasons.append("AWS facts are required and could not be read"
                           + (f" ({cluster['aws']['error']})" if cluster["aws"].get("error")
                              else " (no AWS region/credentials for this cluster)"))
        if cluster["reachable"] and not cluster["windows_nodes"]:
            reasons.append("no Windows nodes to certify")
        for node in cluster["windows_nodes"]:
            if cluster["aws"].get("available") and not node.get("ami_id"):
                where = (f"instance {node['instance_id']}" if node.get("instance_id") else
                         f"its providerID {node.get('provider_id')!r} names no EC2 instance")
                reasons.append(f"node {node['name']}: its AMI could not be determined "
                               f"({where})")
            elif expect_amis and node.get("ami_id") and node["ami_id"] not in expect_amis:
                reasons.append(f"node {node['name']} runs AMI {node['ami_id']} "
                               f"({node.get('ami_name') or 'unnamed'}), not "
                               f"{' or '.join(expect_amis)}")
        verdicts[name] = {"verdict": "failed" if reasons else "passed", "reasons": reasons,
                          "bundle": None}
    overall = "passed" if verdicts and all(v["verdict"] == "passed"
                                           for v in verdicts.values()) else "failed"
    return {"verdict": overall, "expect_amis": list(expect_amis), "clusters": verdicts}


def dumps(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


# -- detached signatures ---------------------------------------------------------------------

SIGNATURE_SUFFIX = ".sig"
_SIGNATURE_HEADER = "winstor-bundle-signature 1 ed25519"


def _key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise BundleError(f"{what} {path}: cannot read it ({err.strerror or err})") from None


def _private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = _key_file(path, "signing key")
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise BundleError(f"signing key {path}: not an unencrypted PEM or OpenSSH private key "
                          f"({err})") from None
    except Exception as err:  # cryptography's UnsupportedAlgorithm and kin: said, one line
        raise BundleError(f"signing key {path}: {type(err).__name__}: {err}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BundleError(f"signing key {path}: an Ed25519 key is needed, not "
                          f"{type(key).__name__.removesuffix('PrivateKey') or 'this kind'}")
    return key


def _public_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    data = _key_file(path, "verification key")
    try:
        if data.lstrip().startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data.strip())
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise BundleError(f"verification key {path}: not a PEM or OpenSSH public key "
                          f"({err})") from None
    except Exception as err:  # cryptography's UnsupportedAlgorithm and kin: said, one line
        raise BundleError(f"verification key {path}: {type(err).__name__}: {err}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise BundleError(f"verification key {path}: an Ed25519 public key is needed, not "
                          f"{type(key).__name__.removesuffix('PublicKey') or 'this kind'}")
    return key


def fingerprint(public_key: Any) -> str:
    """`sha256:<hex>` of the raw public key, to name a key in one line."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()[:32]


def sign(path: str | Path, key_path: str | Path, out: str | Path | None = None) -> Path:
    """Sign the bundle's bytes with an Ed25519 private key; returns the signature file
    (`<bundle>.sig` unless `out`). The bundle is verified first: a signature vouches for
    a bundle that passes `verify`, never for a damaged one."""
    p = Path(path)
    verify(p)
    key = _private_key(Path(key_path))
    signature = key.sign(p.read_bytes())
    target = Path(out) if out else p.with_name(p.name + SIGNATURE_SUFFIX)
    target.write_text(f"{_SIGNATURE_HEADER}\nkey {fingerprint(key.public_key())}\n"
                      f"signature {base64.b64encode(signature).decode()}\n", encoding="utf-8")
    return target


def check_signature(path: str | Path, public_key_path: str | Path,
                    signature_path: str | Path | None = None) -> str:
    """One line saying whose key signed the bundle's bytes; `BundleError` when the
    signature is missing, malformed, or not made by that key over these bytes."""
    from cryptography.exceptions import InvalidSignature

    p = Path(path)
    key = _public_key(Path(public_key_path))
    sig_path = Path(signature_path) if signature_path else p.with_name(p.name + SIGNATURE_SUFFIX)
    try:
        lines = sig_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise BundleError(f"bundle rejected: no signature {sig_path} (sign it with "
                          "`winstor sign-bundle`, or give --signature)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BundleError(f"bundle rejected: signature {sig_path} cannot be read ({err})") \
            from None
    fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
    try:
        if not lines or lines[0] != _SIGNATURE_HEADER:
            raise ValueError("not a winstor bundle signature")
        signature = base64.b64decode(fields["signature"], validate=True)
    except (ValueError, KeyError, binascii.Error) as err:
        raise BundleError(f"bundle rejected: signature {sig_path} is malformed ({err})") \
            from None
    mine = fingerprint(key)
    try:
        key.verify(signature, p.read_bytes())
    except InvalidSignature:
        named = fields.get("key", "?")
        raise BundleError(
            f"bundle rejected: its signature does not match key {mine} ({public_key_path}): "
            + ("the bundle's bytes are not those that were signed" if named == mine
               else f"it was made with key {named}")) from None
    return (f"{p}: signed: the signature {sig_path.name} matches key {mine} "
            f"({public_key_path}): whoever holds its private key vouched for these bytes")
