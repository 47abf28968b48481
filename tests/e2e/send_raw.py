#!/usr/bin/env python3
"""Sends a prepared message file with Python smtplib, for smtpy's end-to-end tests.

send_raw.py PORT FROM TO[,TO...] FILE [HELO]
FROM may be empty for the null sender. Prints "mail <code>", one
"rcpt <addr> <code> <text>" line per recipient, then "data <code> <text>" or
"refused" when every recipient was refused. Exit 0 unless the connection failed.
"""
import smtplib
import sys


def main():
    port, sender, rcpts, path = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(","), sys.argv[4]
    helo = sys.argv[5] if len(sys.argv) > 5 else "client.outside.example"
    with open(path, "rb") as f:
        body = f.read()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo(helo)
        code, msg = s.mail(sender)
        print(f"mail {code} {msg.decode(errors='replace')}")
        if code != 250:
            return
        accepted = 0
        for r in rcpts:
            code, msg = s.rcpt(r)
            print(f"rcpt {r} {code} {msg.decode(errors='replace')}")
            accepted += code == 250
        if accepted == 0:
            print("refused")
            s.rset()
            return
        try:
            code, msg = s.data(body)
        except smtplib.SMTPDataError as e:
            code, msg = e.smtp_code, e.smtp_error
        print(f"data {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}")


if __name__ == "__main__":
    main()
