"""`winstor report` and `winstor verify-bundle`: reports after the run.

Both read files people pass around, so bad input (a missing file, not JSON,
another schema version, a damaged or modified bundle) is one line on stderr
and exit status 2 - never a traceback.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from winstor.errors import UsageError


def _report(args: argparse.Namespace) -> int:
    from winstor.reports import html as htmlreport
    from winstor.reports import results

    if args.schema:
        print(json.dumps(results.SCHEMA, indent=2))
        return 0
    if not args.results:
        raise UsageError("give the results.json to render (or --schema)")
    path = Path(args.results)
    if path.is_dir():
        path = path / "results.json"
    try:
        doc = results.load(path)
    except results.ResultsError as err:
        raise UsageError(str(err)) from None
    run_dir = path.parent.resolve()

    def read(rel: str) -> str | None:
        p = (run_dir / rel).resolve()
        if run_dir not in p.parents or not p.is_file():
            return None
        return p.read_text(encoding="utf-8", errors="replace")

    out = Path(args.output) if args.output else run_dir / "report.html"
    try:
        out.write_text(htmlreport.render(doc, read), encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror or err}") from None
    s = doc["summary"]
    print(f"wrote {out} (run {doc['run']['id']}: {s['passed']} passed, {s['failed']} failed, "
          f"{s['error']} errors, {s['skipped']} skipped)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from winstor.reports import bundle

    if args.signature and not args.verify_key:
        raise UsageError("--signature needs --verify-key (the public key to check it with)")
    try:
        verdict = bundle.verify(args.bundle)
        signed = bundle.check_signature(args.bundle, args.verify_key, args.signature) \
            if args.verify_key else None
    except bundle.BundleError as err:
        raise UsageError(str(err)) from None
    print(verdict.line())
    print(signed or f"{args.bundle}: {bundle.PROVES}")
    return 0 if verdict.verdict == "passed" else 1


def _sign(args: argparse.Namespace) -> int:
    from winstor.reports import bundle

    try:
        out = bundle.sign(args.bundle, args.key, args.signature)
    except bundle.BundleError as err:
        raise UsageError(str(err)) from None
    print(f"wrote {out}: an Ed25519 signature of {args.bundle} (check it with `winstor "
          "verify-bundle --verify-key PUBLIC.pem`)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser(
        "report", help="re-render report.html from a run's results.json",
        description="Render report.html from reports/<run-id>/results.json (diagnostics are "
                    "read from the same directory). Exit status: 0 written, 2 bad input.")
    rep.add_argument("results", nargs="?", metavar="RESULTS.json",
                     help="a run's results.json (or its directory)")
    rep.add_argument("-o", "--output", metavar="PATH",
                     help="where to write the HTML (default: report.html beside the results)")
    rep.add_argument("--schema", action="store_true",
                     help="print the results.json JSON Schema (version "
                          "1) and exit")
    rep.set_defaults(func=_report)
    ver = sub.add_parser(
        "verify-bundle", help="check a certification bundle and print its verdict",
        description="Check a winstor-cert-*.tar.gz: its bytes are exactly those the run "
                    "wrote (the whole-file SHA-256 in its gzip header, gzip's CRC and length, "
                    "nothing appended), every file matches SHA256SUMS and nothing is added or "
                    "missing, results.json follows its schema, JUnit, results and verdict "
                    "agree. That proves integrity, not authorship: anyone can build a bundle "
                    "that passes. Exit status: 0 intact and certified, 1 intact but not "
                    "certified, 2 rejected (unreadable, damaged or modified).")
    ver.add_argument("bundle", metavar="FILE", help="the bundle (.tar.gz)")
    ver.add_argument("--verify-key", metavar="PUBLIC_KEY",
                     help="also check the bundle's detached signature with this Ed25519 "
                          "public key (PEM or OpenSSH); a missing or wrong signature is "
                          "exit 2. That says who vouched for the bundle, which the checks "
                          "above cannot")
    ver.add_argument("--signature", metavar="SIG",
                     help="the signature file (default: FILE.sig, as sign-bundle writes it)")
    ver.set_defaults(func=_verify)
    sig = sub.add_parser(
        "sign-bundle", help="sign a certification bundle (detached Ed25519 signature)",
        description="Verify a winstor-cert-*.tar.gz and write FILE.sig, an Ed25519 signature "
                    "of its bytes made with your private key (unencrypted PEM or OpenSSH; "
                    "e.g. `openssl genpkey -algorithm ed25519 -out key.pem`, public part: "
                    "`openssl pkey -in key.pem -pubout -out key.pub`). Whoever trusts the "
                    "public key checks it with `winstor verify-bundle --verify-key`. Exit "
                    "status: 0 signed, 2 bad bundle or key.")
    sig.add_argument("bundle", metavar="FILE", help="the bundle (.tar.gz)")
    sig.add_argument("--key", required=True, metavar="PRIVATE_KEY",
                     help="your Ed25519 private key")
    sig.add_argument("--signature", metavar="SIG",
                     help="where to write the signature (default: FILE.sig)")
    sig.set_defaults(func=_sign)
