"""The certificates and keys of one control-plane cluster, made fresh for each start.

Every cluster gets its own CA, so a kubeconfig of `cp-1` is refused by `cp-2` exactly
as one EKS cluster's credentials are refused by another. What is made, and why each
piece exists (the flags that use them are in `controlplane/README.md`):

- `ca.crt`/`ca.key`: the cluster CA. It signs every certificate below, is the API
  server's `--client-ca-file` and the stream server's, and the controller-manager
  signs with it (`--cluster-signing-*`, for CSRs) and hands it to pods
  (`--root-ca-file`).
- `apiserver.crt`: the API server's serving certificate, for the names a client in
  or outside the cluster uses (`127.0.0.1`, `localhost`, the `kubernetes` Service's
  ClusterIP and DNS names).
- `sa.key`/`sa.pub`: RSA, the service-account token signing pair (the API server
  signs and verifies, the controller-manager signs the tokens of its controllers).
- client certificates: `admin` (`system:masters`, the kubeconfig people and the
  suite use), `controller-manager` and `scheduler` (the identities the default RBAC
  grants their rights to), `kubelet-client` (the API server's identity towards the
  kubelet's `/exec` and `/containerLogs`, `system:masters` as kubeadm makes it),
  `node-agent` and `csi-controller` (admins too, but named, so the API server's audit
  and logs say who did what).
- `stream.crt`: the serving certificate of the kubelet stand-in
  (`winstor-kubelet-stream`) on `127.0.0.1`.

TLS keys are ECDSA P-256 (fast to make: a cluster's PKI takes tens of milliseconds,
most of it the RSA key); the service-account key is RSA 2048, as kubeadm makes it.
Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["API_SERVER_SANS", "CLIENTS", "SERVICE_IP", "CertPair", "ClusterPki", "Identity",
           "generate"]

SERVICE_IP = "10.96.0.1"
"""The `kubernetes` Service's ClusterIP: the first address of `--service-cluster-ip-range`."""

API_SERVER_SANS: tuple[str, ...] = (
    "127.0.0.1", SERVICE_IP, "localhost", "kubernetes", "kubernetes.default",
    "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")
"""The names the API server answers to: loopback (where it listens) and the in-cluster
names of the `kubernetes` Service."""

STREAM_SANS: tuple[str, ...] = ("127.0.0.1", "localhost")

VALID_DAYS = 365
"""Long enough for a `winstor controlplane up` left running; the PKI dies with the cluster."""


@dataclass(frozen=True)
class Identity:
    """Who a client certificate says its holder is: CN is the user, O the groups."""

    file: str
    common_name: str
    groups: tuple[str, ...] = ()


CLIENTS: tuple[Identity, ...] = (
    Identity("admin", "kubernetes-admin", ("system:masters",)),
    Identity("controller-manager", "system:kube-controller-manager"),
    Identity("scheduler", "system:kube-scheduler"),
    Identity("kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
    Identity("node-agent", "winstor:node-agent", ("system:masters",)),
    Identity("csi-controller", "winstor:ebs-csi-controller", ("system:masters",)),
)


@dataclass(frozen=True)
class CertPair:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path

    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()

    def key_pem(self) -> bytes:
        return self.key.read_bytes()


@dataclass(frozen=True)
class ClusterPki:
    """The files of one cluster's PKI (see the module docstring for what each is for)."""

    directory: Path
    ca: CertPair
    apiserver: CertPair
    stream: CertPair
    sa_key: Path
    sa_pub: Path
    clients: dict[str, CertPair]

    def client(self, name: str) -> CertPair:
        """The client certificate of `CLIENTS` entry `name` (admin, scheduler, ...)."""
        return self.clients[name]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, groups: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, key_cert_sign=cert_sign, crl_sign=cert_sign,
                         content_commitment=False, key_encipherment=key_encipherment,
                         data_encipherment=False, key_agreement=False, encipher_only=False,
                         decipher_only=False)


def _sans(names: Iterable[str]) -> x509.SubjectAlternativeName:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(general)


def _leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, subject: x509.Name,
          usage: x509.ObjectIdentifier, sans: Iterable[str] | None = None
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               # kubeadm's usages: key encipherment too, which RSA-keyed clients may expect.
               .add_extension(_key_usage(key_encipherment=True), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_cert.public_key()), critical=False))  # type: ignore[arg-type]
    if sans is not None:
        builder = builder.add_extension(_sans(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write_pair(directory: Path, name: str, cert: x509.Certificate,
                key: ec.EllipticCurvePrivateKey) -> CertPair:
    pair = CertPair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(_cert_pem(cert))
    _write_private(pair.key, _key_pem(key))
    return pair


def generate(directory: Path, cluster: str) -> ClusterPki:
    """Make the PKI of cluster `cluster` in `directory` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = _now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"winstor-{cluster}-ca")
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(hours=1))
               .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_key_usage(cert_sign=True), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                              critical=False)
               .sign(ca_key, hashes.SHA256()))
    ca = _write_pair(directory, "ca", ca_cert, ca_key)
    server = ExtendedKeyUsageOID.SERVER_AUTH
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    apiserver = _write_pair(directory, "apiserver", *_leaf(
        ca_cert, ca_key, _name("kube-apiserver"), server, API_SERVER_SANS))
    stream = _write_pair(directory, "stream", *_leaf(
        ca_cert, ca_key, _name("winstor-kubelet-stream"), server, STREAM_SANS))
    clients = {c.file: _write_pair(directory, c.file, *_leaf(
        ca_cert, ca_key, _name(c.common_name, c.groups), client)) for c in CLIENTS}
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key, sa_pub = directory / "sa.key", directory / "sa.pub"
    _write_private(sa_key, _key_pem(sa))
    sa_pub.write_bytes(sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return ClusterPki(directory=directory, ca=ca, apiserver=apiserver, stream=stream,
                      sa_key=sa_key, sa_pub=sa_pub, clients=clients)
