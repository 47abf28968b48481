#!/usr/bin/env python3
"""A scriptable downstream SMTP server for smtpy's end-to-end tests (aiosmtpd).

Listens on 127.0.0.1:PORT and writes every accepted message to DIR as
<n>.json: {"mail_from", "rcpt_tos", "data"}. The recipient's local part
chooses the behaviour:

  tempfail-*   451 4.7.1 the first time that recipient is seen, 250 after
  reject-*     550 5.1.1 (quoting the address, as real servers do)
  spam-*       550 5.7.1 rejected as spam (a policy rejection)
  anything     250

Stops by itself after --lifetime seconds (bounded tests). With
--data-delay SECONDS it waits that long after the message's data arrived
before storing it and answering 250 (slow delivery: a sender killed during
the wait never sees the 250, and the message is not stored but noted as
<n>.aborted).
"""
import argparse
import asyncio
import json
import os
import signal

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, out_dir, data_delay=0.0):
        self.out_dir = out_dir
        self.data_delay = data_delay
        self.seen = set()
        self.count = 0
        self.aborted = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject-"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("spam-"):
            return "550 5.7.1 Message rejected as spam by content filter"
        if local.startswith("tempfail-") and address.lower() not in self.seen:
            self.seen.add(address.lower())
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_delay > 0:
            try:
                await asyncio.sleep(self.data_delay)
            except asyncio.CancelledError:
                # The sender went away during the wait (killed): note which
                # message, as <n>.aborted, and store nothing.
                self.aborted += 1
                path = os.path.join(self.out_dir, f"{self.aborted:06d}.aborted")
                with open(path, "w") as f:
                    json.dump({"rcpt_tos": envelope.rcpt_tos,
                               "data": envelope.original_content.decode("utf-8", "replace")}, f)
                raise
        self.count += 1
        path = os.path.join(self.out_dir, f"{self.count:06d}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": envelope.original_content.decode("utf-8", "replace"),
                },
                f,
            )
        os.replace(tmp, path)
        return "250 2.0.0 Stored"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--lifetime", type=float, default=300)
    p.add_argument("--data-delay", type=float, default=0.0)
    a = p.parse_args()
    controller = Controller(
        Handler(a.dir, a.data_delay),
        hostname="127.0.0.1",
        port=a.port,
        server_hostname="sink.e2e.test",
        enable_SMTPUTF8=True,
    )
    controller.start()
    print("ready", flush=True)
    loop = asyncio.new_event_loop()
    stop = loop.create_future()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(None))
    loop.call_later(a.lifetime, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    controller.stop()


if __name__ == "__main__":
    main()
