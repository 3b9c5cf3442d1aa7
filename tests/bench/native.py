"""The peers of the benchmark's native journey (doc/xmpp-mail.md): one
Prosody serving a.test and b.test, facteur-a (mail.a.test, granted XEP-0356
message permission by a.test) and facteur-b (mail.b.test, every user of
b.test has mail), a dnsmasq giving both domains their _xmpp-server._tcp
records, an aiosmtpd relay for whatever leaves by SMTP, and clients that
count what they receive. Each on a free loopback port, stopped by PID."""

import asyncio
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from peers import SECRET, Dns, Facteur, Relay, free_port, stop_process, wait_port

A, B = "a.test", "b.test"

# Answers of b.test: any number of probes from a.test, every user has mail.
XMPP_MAIL = """
[xmpp_mail]
enabled = true
probes_per_minute = 1000000
"""

LOG_TIME = re.compile(r"^(\S+Z)\s")
ROUTE = re.compile(r'route="?(\w+)')


def escaped(address, gateway):
    """The JID of a mail address at a gateway (XEP-0106)."""
    return address.replace("\\", "\\5c").replace("@", "\\40") + "@" + gateway


def add_account(prosody_dir, user, domain, password):
    """Writes an account the way Prosody's internal_plain storage keeps it:
    faster than prosodyctl for the many recipients of the cold probes."""
    folder = Path(prosody_dir) / "data" / domain.replace(".", "%2e") / "accounts"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{user}.dat").write_text(f'return {{\n\t["password"] = "{password}";\n}};\n')


class Counter:
    """An XMPP client that keeps (arrival time, from, body) of every
    message with a body; light, so that counting costs the same whatever
    route the message took."""

    def __init__(self, jid, password, port):
        self.jid = jid
        self.xmpp = slixmpp.ClientXMPP(jid, password,
                                       plugin_config={"feature_mechanisms": {"unencrypted_scram": True}})
        self.xmpp.enable_direct_tls = False
        self.xmpp.enable_starttls = False
        self.xmpp.enable_plaintext = True
        self.port = port
        self.arrivals = []
        self.xmpp.register_handler(Callback("count", MatchXPath("{jabber:client}message"), self._on_message))

    def _on_message(self, stanza):
        if stanza["type"] != "error" and stanza["body"]:
            self.arrivals.append((time.monotonic(), str(stanza["from"].bare), stanza["body"]))

    def count(self, predicate):
        return sum(1 for _, sender, body in self.arrivals if predicate(sender, body))

    async def connect(self):
        self.xmpp.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self.xmpp.wait_until("session_start"), 15)
        self.xmpp.send_presence()

    def send(self, to, body):
        self.xmpp.send_message(mto=to, mbody=body, mtype="chat")

    async def disconnect(self):
        self.xmpp.disconnect()
        try:
            await asyncio.wait_for(self.xmpp.disconnected, 5)
        except (asyncio.TimeoutError, TypeError):
            pass


def gateway(workdir, prosody_component, relay, dns, domain, mail=""):
    """facteur serving `domain` as mail.<domain>, with the tests'
    configuration and XMPP-Mail on."""
    prosody = SimpleNamespace(component=prosody_component)
    return Facteur(Path(workdir) / domain, prosody, relay, dns, mail=mail, extra=XMPP_MAIL,
                   gateway=f"mail.{domain}", domain=domain)


class Network:
    """Prosody for a.test and b.test, the DNS, the relay and both gateways.
    `recipients` are extra users of b.test (name → password)."""

    def __init__(self, workdir, recipients=()):
        self.dir = Path(workdir)
        self.prosody_dir = self.dir / "prosody"
        (self.prosody_dir / "certs").mkdir(parents=True, exist_ok=True)
        self.c2s, self.component = free_port(), free_port()
        template = (Path(__file__).parent / "prosody-native.cfg.lua.in").read_text()
        for key, value in {"@DIR@": str(self.prosody_dir), "@C2S@": str(self.c2s),
                           "@COMPONENT@": str(self.component), "@SECRET@": SECRET}.items():
            template = template.replace(key, value)
        self.prosody_config = self.prosody_dir / "prosody.cfg.lua"
        self.prosody_config.write_text(template)
        add_account(self.prosody_dir, "alice", A, "alicepw")
        add_account(self.prosody_dir, "bob", B, "bobpw")
        for user in recipients:
            add_account(self.prosody_dir, user, B, "pw")
        self.dns = Dns(self.dir / "dns", hosts={"xmpp.test": "127.0.0.1"},
                       srv={f"_xmpp-server._tcp.{domain}": [("xmpp.test", 5269)] for domain in (A, B)})
        self.relay = Relay()
        self.a = gateway(self.dir, self.component, self.relay, self.dns, A)
        self.b = gateway(self.dir, self.component, self.relay, self.dns, B, mail='users = "all"')
        self.prosody = None

    def start(self):
        self.log = open(self.prosody_dir / "stdout.log", "ab")
        self.prosody = subprocess.Popen(["prosody", "-F", "--config", str(self.prosody_config)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.c2s, proc=self.prosody)
        wait_port(self.component, proc=self.prosody)
        self.dns.start()
        self.relay.start()
        self.a.register(f"alice@{A}")
        for facteur in (self.a, self.b):
            facteur.start()
            facteur.wait_log("Component link up.")

    def stop(self):
        for facteur in (self.a, self.b):
            facteur.stop()
        self.relay.stop()
        stop_process(self.prosody)
        self.dns.stop()

    def client(self, user, domain, password):
        return Counter(f"{user}@{domain}", password, self.c2s)


def log_time(line):
    """The Unix time of a facteur log line."""
    match = LOG_TIME.match(line)
    return datetime.fromisoformat(match.group(1).replace("Z", "+00:00")).timestamp() if match else None


async def logged(facteur, since, *needles, timeout=30.0):
    """The first line of facteur's log after offset `since` holding every
    needle, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(facteur.logfile, "rb") as f:
            f.seek(since)
            for line in f.read().decode(errors="replace").splitlines():
                if all(needle in line for needle in needles):
                    return line
        await asyncio.sleep(0.005)
    return None


def route_of(line):
    """The route= field of a `Route chosen.` line."""
    match = ROUTE.search(line)
    return match.group(1) if match else "?"


def count_log(facteur, needle, since=0):
    with open(facteur.logfile, "rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace").count(needle)
