"""Lean XMPP clients for the benchmark's references, so that what is
measured is the XMPP server and facteur, not a Python client parsing
stanzas:

- `RawClient`: a plaintext c2s client (SASL PLAIN, resource binding,
  initial presence) that writes pre-serialised stanzas and reads incoming
  ones without an XML parser: it finds each `<message …>` start tag in the
  byte stream and keeps its `id`, `from` and `type`, with the time it
  arrived (CLOCK_MONOTONIC, the same in every process of the machine).
- `Senders`: N sender processes (`python xmppload.py send …`), each one
  such client, logged in first, then all sending at the same moment;
  `run()` returns when every one has written its stanzas.

A process per sender: one Python process writing every stanza would be
the limit of the figure again."""

import asyncio
import base64
import re
import subprocess
import sys
import time
from pathlib import Path

NS_STREAM = b"http://etherx.jabber.org/streams"
START_TAG = re.compile(rb"<message\b([^>]*)>")
ATTRIBUTE = re.compile(rb"""\s([\w:]+)=(?:'([^']*)'|"([^"]*)")""")


def stream_header(domain):
    return (f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
            f"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()


def escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")


class RawClient:
    """A logged-in c2s stream. `arrivals` maps each received message's id
    to (monotonic time, from, type)."""

    def __init__(self, port, user, domain, password, resource="bench"):
        self.port, self.user, self.domain = port, user, domain
        self.password, self.resource = password, resource
        self.jid = f"{user}@{domain}"
        self.arrivals = {}
        self.order = []
        self.reader = self.writer = self.task = None
        self.buffer = b""

    async def _until(self, marker, timeout=15.0):
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.jid}: no {marker!r} from the server; got {self.buffer[-400:]!r}")
            chunk = await asyncio.wait_for(self.reader.read(65536), left)
            if not chunk:
                raise ConnectionError(f"{self.jid}: stream closed; got {self.buffer[-400:]!r}")
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(stream_header(self.domain))
        await self._until(b"</stream:features>")
        token = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        self.writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
                          .encode())
        answer = await self._until(b">")
        if b"<success" not in answer:
            rest = await self._until(b"</failure>")
            raise PermissionError(f"{self.jid}: authentication refused: {answer + rest!r}")
        self.buffer = b""
        self.writer.write(stream_header(self.domain))
        await self._until(b"</stream:features>")
        self.writer.write(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                          f"<resource>{self.resource}</resource></bind></iq>".encode())
        await self._until(b"</iq>")
        self.writer.write(b"<presence/>")
        await self.writer.drain()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self):
        buffer = self.buffer
        self.buffer = b""
        arrivals, order = self.arrivals, self.order
        while True:
            chunk = await self.reader.read(1 << 18)
            if not chunk:
                return
            now = time.monotonic()
            buffer += chunk
            end = buffer.rfind(b">")
            if end < 0:
                continue
            for match in START_TAG.finditer(buffer, 0, end + 1):
                attributes = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
                              for m in ATTRIBUTE.finditer(match.group(1))}
                stanza_id = attributes.get(b"id", b"").decode()
                order.append(stanza_id)
                arrivals[stanza_id] = (now, attributes.get(b"from", b"").decode(),
                                       attributes.get(b"type", b"normal").decode())
            # Keep what may begin a start tag cut by the read.
            buffer = buffer[end + 1:]

    def counter(self, predicate):
        """A function that returns how many messages received from now on
        match `predicate(id, from, type)`; each call looks only at what
        arrived since the previous one (polling stays cheap)."""
        state = {"seen": len(self.order), "count": 0}

        def count():
            order, end = self.order, len(self.order)
            for stanza_id in order[state["seen"]:end]:
                _, sender, kind = self.arrivals[stanza_id]
                state["count"] += bool(predicate(stanza_id, sender, kind))
            state["seen"] = end
            return state["count"]
        return count

    async def send_many(self, to, prefix, count, body):
        # Escaped once: the sender does as little as it can per stanza.
        head = f"<message to='{escape(to)}' type='chat' id='{escape(prefix)}-".encode()
        tail = f"'><body>{escape(body)}</body></message>".encode()
        for i in range(count):
            self.writer.write(b"%s%d%s" % (head, i, tail))
            if i % 32 == 31:
                await self.writer.drain()
        await self.writer.drain()

    async def close(self):
        if self.writer is None:
            return
        try:
            self.writer.write(b"</stream:stream>")
            await self.writer.drain()
        except ConnectionError:
            pass
        if self.task is not None:
            try:
                await asyncio.wait_for(self.task, 5)
            except (asyncio.TimeoutError, ConnectionError):
                self.task.cancel()
        self.writer.close()
        self.writer = None


class Senders:
    """Sender processes, one XMPP client each, for `accounts` [(user,
    password)]: `start()` logs them all in, `run(to, prefix, count,
    size)` makes each send `count` stanzas with a body of `size` bytes
    to `to`, ids `{prefix}-{user}-{n}`, and returns when all are written;
    `stop()` closes them (by PID). `run(…, clients=n)`: the first n only."""

    def __init__(self, port, domain, accounts):
        self.port, self.domain, self.accounts = port, domain, accounts
        self.procs = []

    def start(self):
        script = str(Path(__file__).resolve())
        for user, password in self.accounts:
            self.procs.append(subprocess.Popen(
                [sys.executable, script, "send", str(self.port), user, self.domain, password],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))
        for proc in self.procs:
            line = proc.stdout.readline().strip()
            if line != "ready":
                self.stop()
                raise RuntimeError(f"a sender did not log in: {line!r}")

    def run(self, to, prefix, count, size, clients=None):
        """Makes the first `clients` (all by default) send."""
        procs = self.procs[:clients or len(self.procs)]
        for proc, (user, _) in zip(procs, self.accounts):
            proc.stdin.write(f"{to} {prefix}-{user} {count} {size}\n")
        for proc in procs:
            line = proc.stdout.readline().strip()
            if line != "sent":
                raise RuntimeError(f"a sender failed: {line!r}")

    def stop(self):
        for proc in self.procs:
            try:
                proc.stdin.close()
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs = []


async def _sender(port, user, domain, password):
    client = RawClient(port, user, domain, password, resource=f"load-{user}")
    try:
        await client.connect()
    except Exception as e:  # reported to the parent, which stops
        print(f"error {e}", flush=True)
        return
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        to, prefix, count, size = line.split()
        await client.send_many(to, prefix, int(count), "y" * int(size))
        print("sent", flush=True)
    await client.close()


if __name__ == "__main__":
    if len(sys.argv) != 6 or sys.argv[1] != "send":
        sys.exit("usage: xmppload.py send PORT USER DOMAIN PASSWORD (then lines: TO PREFIX COUNT SIZE)")
    asyncio.run(_sender(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
