#!/usr/bin/env python3
"""Verify every DKIM-Signature of a message with dkimpy, without network.

Usage:
    dkim_verify.py RECORDS < message.eml

RECORDS is a JSON object mapping DNS names to TXT values, e.g.
    {"sel._domainkey.alias.example": "v=DKIM1; k=ed25519; p=..."}
given either inline (an argument starting with "{") or as the path of a
file holding it. Names are matched case-insensitively, with or without a
final dot; a name not in the map does not exist.

Prints one line per signature:
    PASS d=alias.example s=sel a=ed25519-sha256
    FAIL d=alias.example s=sel a=rsa-sha256: <reason>
and exits 0 only if the message has at least one signature and all pass.

Exit codes: 0 all pass, 1 a signature fails (or none present),
2 usage error, 3 dkimpy or PyNaCl is not importable.

Needs the PyPI packages dkimpy and PyNaCl (for Ed25519):
    pip install dkimpy PyNaCl
"""

import json
import sys


def load_records(arg):
    text = arg if arg.lstrip().startswith("{") else open(arg, encoding="utf-8").read()
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("RECORDS must be a JSON object")
    return {name.lower().rstrip("."): value for name, value in raw.items()}


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import dkim
        import nacl.signing  # noqa: F401  (dkimpy needs it for ed25519-sha256)
    except ImportError as error:
        print(f"dkimpy or PyNaCl missing: {error}", file=sys.stderr)
        return 3
    try:
        records = load_records(argv[1])
    except (OSError, ValueError) as error:
        print(f"bad RECORDS: {error}", file=sys.stderr)
        return 2

    def dnsfunc(name, timeout=5):
        key = name.decode("ascii", "replace").lower().rstrip(".")
        value = records.get(key)
        return None if value is None else value.encode("ascii")

    message = sys.stdin.buffer.read()
    headers, _body = dkim.rfc822_parse(message)
    count = sum(1 for name, _ in headers if name.lower() == b"dkim-signature")
    if count == 0:
        print("FAIL no DKIM-Signature field")
        return 1

    all_pass = True
    for idx in range(count):
        verifier = dkim.DKIM(message)
        try:
            ok = verifier.verify(idx=idx, dnsfunc=dnsfunc)
            reason = "" if ok else ": signature does not verify"
        except dkim.DKIMException as error:
            ok, reason = False, f": {error}"
        fields = getattr(verifier, "signature_fields", None) or {}

        def tag(name):
            return fields.get(name, b"?").decode("ascii", "replace")

        verdict = "PASS" if ok else "FAIL"
        print(f"{verdict} d={tag(b'd')} s={tag(b's')} a={tag(b'a')}{reason}")
        all_pass = all_pass and ok
    return 0 if all_pass else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
