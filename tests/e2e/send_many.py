#!/usr/bin/env python3
"""Sends many small messages over one SMTP connection (Python smtplib).

send_many.py PORT FROM TO MARKER-PREFIX FIRST COUNT
Message i (FIRST <= i < FIRST+COUNT) carries the marker "<prefix>-<i>" in its
Subject and Message-ID. Prints one line per message: "sent <marker> <code>".
Exit 0 unless the connection failed.
"""
import smtplib
import sys


def main():
    port, sender, rcpt, prefix = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    first, count = int(sys.argv[5]), int(sys.argv[6])
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo("client.outside.example")
        for i in range(first, first + count):
            marker = f"{prefix}-{i}"
            body = (
                f"From: Sender <{sender}>\r\n"
                f"To: {rcpt}\r\n"
                f"Subject: {marker}\r\n"
                f"Message-ID: <{marker}@outside.example>\r\n"
                "\r\n"
                f"Scale-out test message {marker}.\r\n"
            )
            try:
                s.sendmail(sender, [rcpt], body.encode())
                code = 250
            except smtplib.SMTPResponseException as e:
                code = e.smtp_code
            except smtplib.SMTPRecipientsRefused as e:
                code = list(e.recipients.values())[0][0]
            print(f"sent {marker} {code}", flush=True)


if __name__ == "__main__":
    main()
