#!/usr/bin/env python3
"""STARTTLS probe for the reload test.

tls_probe.py PORT once   connect, STARTTLS, print "cert <sha256 of the server certificate>", quit
tls_probe.py PORT hold   the same, then wait for a line on stdin and send one
                         message on the SAME connection: prints "data <code>"
"""
import hashlib
import smtplib
import ssl
import sys


def main():
    port, mode = int(sys.argv[1]), sys.argv[2]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.outside.example")
        s.starttls(context=ctx)
        der = s.sock.getpeercert(binary_form=True)
        print(f"cert {hashlib.sha256(der).hexdigest()}", flush=True)
        if mode == "hold":
            sys.stdin.readline()
            s.ehlo("client.outside.example")
            s.mail("bob@outside.test")
            code, _ = s.rcpt("shop@alias.test")
            print(f"rcpt {code}", flush=True)
            code, _ = s.data(b"From: bob@outside.test\r\nTo: shop@alias.test\r\nSubject: held\r\n\r\nsent after the reload\r\n")
            print(f"data {code}", flush=True)


if __name__ == "__main__":
    main()
