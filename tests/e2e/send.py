#!/usr/bin/env python3
"""A real SMTP client (Python smtplib) for smtpy's end-to-end tests.

send.py PORT FROM TO[,TO...] SUBJECT [starttls]
With "starttls", upgrades the connection first (the certificate is not
verified: the test server uses a generated self-signed one). Prints one line per step: "rcpt <addr> <code>", then "data <code>", or
"refused" when every recipient was refused. Exit 0 unless the connection failed.
"""
import smtplib
import ssl
import sys


def main():
    port, sender, rcpts, subject = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4]
    body = (
        f"From: Sender <{sender or 'mailer-daemon@outside.example'}>\r\n"
        f"To: {rcpts[0]}\r\n"
        f"Subject: {subject}\r\n"
        "Message-ID: <e2e-" + subject.replace(" ", "-") + "@outside.example>\r\n"
        "\r\n"
        "Hello through smtpy.\r\n"
        ".leading dot line\r\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.outside.example")
        if len(sys.argv) > 5 and sys.argv[5] == "starttls":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            code, _ = s.starttls(context=ctx)
            print(f"starttls {code}")
            s.ehlo("client.outside.example")
            print(f"ehlo-after-tls starttls-offered={s.has_extn('starttls')}")
        code, _ = s.mail(sender)
        print(f"mail {code}")
        accepted = 0
        for r in rcpts:
            code, msg = s.rcpt(r)
            print(f"rcpt {r} {code} {msg.decode(errors='replace')}")
            accepted += code == 250
        if accepted == 0:
            print("refused")
            s.rset()
            return
        code, msg = s.data(body.encode())
        print(f"data {code} {msg.decode(errors='replace')}")


if __name__ == "__main__":
    main()
