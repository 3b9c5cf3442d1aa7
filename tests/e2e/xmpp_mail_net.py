"""A network of mail domains for the XMPP-Mail tests (doc/xmpp-mail.md),
all on loopback and stopped by PID:

- two Prosody servers joined by server-to-server links (dialback): A
  serves a.test with the component mail.a.test (granted XEP-0356 message
  permission by a.test); B serves b.test and c.test with the components
  mail.b.test (granted nothing) and rogue.test (listed by no domain);
- dnsmasq, which both servers and both gateways ask: _xmpp-server._tcp
  SRV for a.test and mail.a.test pointing at A's s2s port, and for b.test,
  c.test, mail.b.test and rogue.test at B's; MX of a.test on 127.0.0.7,
  b.test on 127.0.0.6, c.test on 127.0.0.4, d.test on 127.0.0.5; d.test
  has neither SRV nor an address of its own;
- facteur-a (mail.a.test, SMTP on 127.0.0.7) and facteur-b (mail.b.test,
  SMTP on 127.0.0.6), each sending to the MX hosts directly;
- aiosmtpd sinks as the MX of c.test (127.0.0.4) and d.test (127.0.0.5).

Every SMTP server listens on the same port, the MX port facteur uses."""

import asyncio
import os
import re
import signal
import xml.etree.ElementTree as ET
from pathlib import Path

from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from peers import SECRET, Client, Dns, Ejabberd, Facteur, Prosody, Relay, free_port, stop_process
from test_trust import mx_port_free_on

NS_MAIL = "urn:xmpp:mail:0"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_PRIVILEGE = ("urn:xmpp:privilege:2", "urn:xmpp:privilege:1")

PASSWORDS = {
    ("alice", "a.test"): "alicepw",
    ("bob", "b.test"): "bobpw",
    ("bob2", "b.test"): "bob2pw",
    ("carol", "c.test"): "carolpw",
    ("scout", "c.test"): "scoutpw",
}

MX = {"a.test": "127.0.0.7", "b.test": "127.0.0.6", "c.test": "127.0.0.4", "d.test": "127.0.0.5"}

# The XMPP server of each domain and component: "a" or "b".
SERVER = {"a.test": "a", "mail.a.test": "a",
          "b.test": "b", "c.test": "b", "mail.b.test": "b", "rogue.test": "b"}

# ejabberd as server A (a.test, mail.a.test): a server-to-server listener
# and dialback without TLS, beside deploy/ejabberd-component.yml, which
# grants mail.a.test message permission.
EJABBERD_S2S = """
listen:
  -
    port: {port}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
s2s_use_starttls: false
modules:
  mod_s2s_dialback: {{}}
"""

# Short enough that a probe that gets no answer gives way to SMTP within
# a few seconds.
XMPP_MAIL = """
[xmpp_mail]
enabled = true
step_timeout = "2s"
budget = "4s"
probes_per_minute = {probes_per_minute}
"""


def stanza_error(element):
    """(type, condition) of the <error/> of a stanza's XML, or None."""
    for error in element:
        if error.tag.endswith("}error"):
            for child in error:
                if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
                    return error.get("type"), child.tag.split("}")[1]
    return None


class Component:
    """A raw XEP-0114 component (slixmpp) that records every message it
    gets: a gateway of the tests' own, to send what no gateway would."""

    def __init__(self, jid, port, gateway=False):
        self.jid = jid
        self.xmpp = ComponentXMPP(jid, SECRET, "127.0.0.1", port)
        self.messages = []
        self.arrived = asyncio.Event()
        self.xmpp.register_handler(Callback("messages", MatchXPath("{jabber:component:accept}message"),
                                            self._on_message))
        if gateway:
            self.xmpp.register_handler(Callback(
                "disco#info", MatchXPath("{jabber:component:accept}iq/{%s}query" % NS_DISCO_INFO),
                self._on_disco_info))

    def _on_disco_info(self, iq):
        """Answers as an XMPP-Mail gateway would (§4)."""
        if iq["type"] != "get":
            return
        self.xmpp.send_raw(
            f"<iq xmlns='jabber:component:accept' type='result' id='{iq['id']}' from='{self.jid}'"
            f" to='{iq['from']}'><query xmlns='{NS_DISCO_INFO}'>"
            "<identity category='gateway' type='smtp' name='Mail gateway'/>"
            f"<feature var='{NS_MAIL}'/></query></iq>")

    def _on_message(self, stanza):
        self.messages.append(stanza.xml)
        self.arrived.set()

    async def connect(self):
        self.xmpp.connect()
        await asyncio.wait_for(self.xmpp.wait_until("session_start"), 15)

    def send_raw(self, xml):
        self.xmpp.send_raw(xml)

    async def iq(self, type_, to, payload_xml, timeout=10):
        iq = self.xmpp.Iq()
        iq["type"] = type_
        iq["to"] = to
        iq["from"] = self.jid
        iq.append(ET.fromstring(payload_xml))
        return await iq.send(timeout=timeout)

    def grants(self):
        """The XEP-0356 permissions the server announced: {type: access}."""
        perms = {}
        for message in self.messages:
            for ns in NS_PRIVILEGE:
                for perm in message.iter("{%s}perm" % ns):
                    perms[perm.get("access")] = perm.get("type")
        return perms

    async def wait_for(self, predicate, timeout=10.0):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for message in self.messages:
                if predicate(message):
                    return message
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no matching message in {timeout}s; got "
                                   f"{[ET.tostring(m).decode()[:300] for m in self.messages]}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def disconnect(self):
        self.xmpp.disconnect()
        try:
            await asyncio.wait_for(self.xmpp.disconnected, 5)
        except (asyncio.TimeoutError, TypeError):
            pass


async def announced_grants(jid, port):
    """What the server grants `jid` right after the component handshake
    (XEP-0356 §4): connects as that component, makes one round trip to the
    server so that an announcement sent at the handshake has arrived, and
    leaves. Run it before the component's own gateway connects."""
    component = Component(jid, port)
    await component.connect()
    try:
        domain = jid.split(".", 1)[1]
        await component.iq("get", domain, "<ping xmlns='urn:xmpp:ping'/>")
        return component.grants()
    finally:
        await component.disconnect()


class MailNet:
    """The network of the module docstring. `servers` maps "a" and "b" to
    their Prosody (or, with `a_server="ejabberd"`, A to an ejabberd that
    serves a.test and mail.a.test with deploy/ejabberd-component.yml),
    `s2s` to its server-to-server port; `facteurs` maps a domain to its
    gateway; `sinks` maps c.test and d.test to their MX's aiosmtpd sink."""

    def __init__(self, workdir, probes_per_minute=20, a_server="prosody"):
        workdir = Path(workdir)
        self.a_server = a_server
        self.port = mx_port_free_on(*MX.values())
        self.s2s = {server: free_port() for server in ("a", "b")}
        self.dns = Dns(
            workdir / "dns",
            mx={domain: [(10, f"mx.{domain}")] for domain in MX},
            hosts={f"mx.{domain}": ip for domain, ip in MX.items()}
            | {f"xmpp-{server}.test": "127.0.0.1" for server in self.s2s},
            srv={f"_xmpp-server._tcp.{name}": [(self.s2s_target(server), self.s2s[server])]
                 for name, server in SERVER.items()},
        )
        self.servers = {}
        for server, port in self.s2s.items():
            users = {(user, domain): password for (user, domain), password in PASSWORDS.items()
                     if SERVER[domain] == server}
            if server == "a" and a_server == "ejabberd":
                self.servers[server] = Ejabberd(workdir / "xmpp-a", users=users, domain="a.test",
                                                gateway="mail.a.test", extra=EJABBERD_S2S.format(port=port),
                                                nameserver=self.dns.port)
            else:
                self.servers[server] = Prosody(
                    workdir / f"xmpp-{server}", template="prosody-xmpp-mail.cfg.lua.in", users=users,
                    values={"@SERVER@": server, "@S2S@": str(port), "@DNS@": f"127.0.0.1@{self.dns.port}"})
        self.sinks = {d: Relay(host=MX[d], port=self.port) for d in ("c.test", "d.test")}
        extra = XMPP_MAIL.format(probes_per_minute=probes_per_minute)
        self.facteurs = {
            d: Facteur(workdir / d, self.server(d), None, self.dns, extra=extra, mx_port=self.port,
                       gateway=f"mail.{d}", domain=d, smtp_host=MX[d], smtp_port=self.port,
                       hostname=f"mx.{d}")
            for d in ("a.test", "b.test")
        }
        self.grants = {}
        self.frozen = set()

    def s2s_target(self, server):
        """The host name in the SRV records of a server's domains. ejabberd
        23.01 looks up the address of a SRV target with the system's
        resolver (getaddrinfo), not with the name server its inetrc
        names: beside it, B's target is localhost, which /etc/hosts
        answers."""
        if server == "b" and self.a_server == "ejabberd":
            return "localhost"
        return f"xmpp-{server}.test"

    def server(self, name):
        """The XMPP server of a domain or component."""
        return self.servers[SERVER[name]]

    def s2s_links(self, server):
        """The server-to-server streams that server's log shows set up:
        {("Outgoing" or "Incoming", from domain, to domain)}."""
        text = (self.servers[server].dir / "prosody.log").read_text(errors="replace")
        return set(re.findall(r"(Outgoing|Incoming) s2s connection (\S+)->(\S+) complete", text))

    @property
    def a(self):
        return self.facteurs["a.test"]

    @property
    def b(self):
        return self.facteurs["b.test"]

    def start(self):
        self.dns.start()
        for server in self.servers.values():
            server.start()
        for sink in self.sinks.values():
            sink.start()
        # The grants as the server announces them, seen before the
        # gateways take their JIDs.
        for facteur in self.facteurs.values():
            self.grants[facteur.gateway] = asyncio.run(announced_grants(
                facteur.gateway, self.server(facteur.gateway).component))
        for facteur in self.facteurs.values():
            facteur.start()
        for facteur in self.facteurs.values():
            facteur.wait_log("Component link up.")
        self.a.register("alice@a.test")
        self.b.register("bob@b.test")
        self.b.register("bob2@b.test")

    def freeze(self, facteur):
        """Stops a gateway's process dead (SIGSTOP): its sockets stay open
        and answer nothing."""
        os.kill(facteur.proc.pid, signal.SIGSTOP)
        self.frozen.add(facteur)

    def thaw(self, facteur):
        os.kill(facteur.proc.pid, signal.SIGCONT)
        self.frozen.discard(facteur)

    def stop(self):
        try:
            for facteur in list(self.frozen):
                try:
                    self.thaw(facteur)
                except ProcessLookupError:
                    pass
            for facteur in self.facteurs.values():
                facteur.stop()
        finally:
            for sink in self.sinks.values():
                sink.stop()
            for server in self.servers.values():
                server.cleanup()
            stop_process(self.dns.proc)

    async def client(self, user, domain):
        """A connected client of user@domain, with initial presence."""
        client = Client(user, self.server(domain).c2s, domain=domain, password=PASSWORDS[(user, domain)])
        await client.connect()
        return client

    async def component(self, jid, gateway=False):
        """A connected raw component; `gateway` makes it answer disco#info
        as an XMPP-Mail gateway."""
        component = Component(jid, self.server(jid).component, gateway=gateway)
        await component.connect()
        return component
