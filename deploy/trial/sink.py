#!/usr/bin/env python3
"""The internet, for the local trial: an SMTP server (aiosmtpd) that keeps
each mail it receives as DIR/NNNNN.eml. usage: sink.py DIR PORT"""
import asyncio
import os
import signal
import sys

from aiosmtpd.controller import Controller


class Keep:
    def __init__(self, folder):
        self.folder, self.count = folder, len(os.listdir(folder))

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        path = os.path.join(self.folder, f"{self.count:05d}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(path + ".tmp", path)
        print(f"sink: mail from {envelope.mail_from} to {', '.join(envelope.rcpt_tos)} -> {path}", flush=True)
        return "250 2.0.0 Kept"


async def main(folder, port):
    os.makedirs(folder, exist_ok=True)
    controller = Controller(Keep(folder), hostname="127.0.0.1", port=int(port), enable_SMTPUTF8=True)
    controller.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    controller.stop()


asyncio.run(main(*sys.argv[1:]))
