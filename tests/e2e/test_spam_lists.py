"""Shared spam lists against the real Prosody: facteur consumes a
real-time blocklist that mod_pubsub serves (xmppbl.org's format), marks
mail from a listed domain and stops once the item is retracted; a user's
ham feedback lowers the list's trust weight, as the administrators'
"Spam lists" command and /metrics show; malformed items and forged events
are ignored; a second facteur consumes the first one's published list; a
DNSBL entry for 127.0.0.2 in the loopback dnsmasq marks mail from that
client address."""

import asyncio
import smtplib
import urllib.request
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from peers import GATEWAY, Client, Facteur, Gateway, escaped, registered_client, run, wait_until
from xmpp_mail_net import Component

PUBSUB = "pubsub.example.test"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
REPORT = "<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'/>"
COMMANDS = "http://jabber.org/protocol/commands"
FORMS = "jabber:x:data"
GATEWAY_B = "mail2.example.test"

# Weight 1: one listing scores 5 points, the default mark threshold.
LISTS = """
[spam]
publish_threshold = 2
dnsbl = ["dnsbl.test"]
domain_blocklists = ["dbl.invalid"]
dns_timeout = "1s"
[[spam.lists]]
name = "shared-domains"
service = "pubsub.example.test"
node = "spam_source_domains"
kind = "domains"
weight = 1.0
"""

CONSUMES_A = """
[spam]
[[spam.lists]]
name = "a-domains"
service = "mail.example.test"
node = "spam_source_domains"
kind = "domains"
[[spam.lists]]
name = "a-senders"
service = "mail.example.test"
node = "spam_source_addresses_sha256"
kind = "sha256"
[[spam.lists]]
name = "a-ips"
service = "mail.example.test"
node = "spam_source_ips"
kind = "ips"
"""


@pytest.fixture
def gw(tmp_path):
    """Prosody with mod_pubsub, dnsmasq with a DNSBL entry for 127.0.0.2,
    the relay; facteur is started by each test, once its list exists."""
    gateway = Gateway(tmp_path, component='admins = ["bob@example.test"]', extra=LISTS,
                      dns={"hosts": {"2.0.0.127.dnsbl.test": "127.0.0.2"}},
                      xmpp_options={"template": "prosody-spam-lists.cfg.lua.in"})
    try:
        gateway.xmpp.start()
        gateway.dns.start()
        gateway.relay.start()
        yield gateway
    finally:
        gateway.stop()


def start_facteur(gw):
    gw.facteur.start()
    gw.facteur.wait_log("Component link up.")


async def pubsub(client, type_, payload):
    return await client.iq(type_, PUBSUB, f"<pubsub xmlns='{NS_PUBSUB}'>{payload}</pubsub>")


async def publish(client, item_id, node="spam_source_domains"):
    await pubsub(client, "set", f"<publish node='{node}'><item id='{item_id}'>{REPORT}</item></publish>")


async def retract(client, item_id, node="spam_source_domains"):
    await pubsub(client, "set", f"<retract node='{node}' notify='true'><item id='{item_id}'/></retract>")


async def command(client, node, fields=None, to=GATEWAY):
    form = ""
    if fields is not None:
        form = f"<x xmlns='{FORMS}' type='submit'>" + "".join(
            f"<field var='{var}'><value>{value}</value></field>" for var, value in fields.items()) + "</x>"
    answer = await client.iq("set", to, f"<command xmlns='{COMMANDS}' node='{node}'>{form}</command>")
    return answer.xml.find(f"{{{COMMANDS}}}command")


async def spam_lists(client, to=GATEWAY):
    """The "Spam lists" command: {list: 'weight W, N entries, …'}."""
    answer = await command(client, "spam-lists", to=to)
    return {f.get("var"): f.findtext(f"{{{FORMS}}}value")
            for f in answer.findall(f"{{{FORMS}}}x/{{{FORMS}}}field") if f.get("var") != "FORM_TYPE"}


async def check(client, what, to=GATEWAY):
    """"Check the spam lists": {list: value}, empty when none names it."""
    answer = await command(client, "spam-check", {"check": what}, to=to)
    return {f.get("var"): f.findtext(f"{{{FORMS}}}value")
            for f in answer.findall(f"{{{FORMS}}}x/{{{FORMS}}}field") if f.get("var") != "FORM_TYPE"}


async def eventually(probe, predicate, timeout=30.0):
    """Polls the async `probe` until `predicate(answer)`; the last answer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await probe()
        if predicate(answer) or asyncio.get_running_loop().time() > deadline:
            return answer
        await asyncio.sleep(0.3)


def mail(mail_from, to, message_id):
    return (f"From: {mail_from}\r\nTo: {to}\r\nSubject: Offer\r\n"
            f"Message-ID: <{message_id}>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n"
            "You won.\r\n").encode()


def send(port, mail_from, rcpts, message_id, source=None):
    source_address = (source, 0) if source else None
    with smtplib.SMTP("127.0.0.1", port, timeout=15, source_address=source_address) as smtp:
        smtp.ehlo("mx.sender.test")
        smtp.mail(mail_from)
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            assert code == 250, text
        code, text = smtp.data(mail(mail_from, ", ".join(rcpts), message_id))
        return code, text.decode()


async def received(client, gw, mail_from, rcpts, message_id, source=None):
    """Sends a mail and waits for it at `client`; its body."""
    def bodies():
        return [m["body"] for m in client.messages if m["from"] == escaped(mail_from) and m["body"]]
    before = len(bodies())
    code, text = await asyncio.to_thread(send, gw.facteur.smtp_port, mail_from, rcpts, message_id, source)
    assert code == 250, text
    assert await wait_until(lambda: len(bodies()) > before, timeout=20), client.messages
    return bodies()[-1]


def metric(gw, name, labels):
    text = urllib.request.urlopen(f"http://127.0.0.1:{gw.facteur.http_port}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.split()[-1])
    return None


def test_a_shared_domain_list_marks_mail_until_retracted_and_ham_lowers_its_weight(gw):
    facteur = gw.facteur

    async def scenario():
        bob = Client("bob", gw.xmpp.c2s)
        await bob.connect()
        forger = Component("forger.example.test", gw.xmpp.component)
        await forger.connect()
        try:
            await pubsub(bob, "set", "<create node='spam_source_domains'/>")
            await publish(bob, "evil.test")
            # Not a domain: ignored with a log line, the rest is taken.
            await publish(bob, "not a domain!")
            await asyncio.to_thread(start_facteur, gw)
            await asyncio.to_thread(facteur.wait_log, "Shared list fetched.", 20)
            alice = await registered_client(gw, "alice")
            await bob.register()

            # Fetched at start: mail from the listed domain is marked.
            body = await received(alice, gw, "spammer@evil.test", ["alice@example.test"], "m1@evil.test")
            assert body.startswith("[Spam?]"), body
            assert "Ignored a malformed shared list item." in facteur.log_since_start()
            lists = await spam_lists(bob)
            assert lists["shared-domains"].startswith("weight 1, 1 entries"), lists

            # Retracted: no longer listed, no longer marked.
            await retract(bob, "evil.test")
            listed = await eventually(lambda: check(bob, "spammer@evil.test"), lambda a: a == {})
            assert listed == {}, listed
            body = await received(alice, gw, "spammer@evil.test", ["alice@example.test"], "m2@evil.test")
            assert not body.startswith("[Spam?]"), body

            # Published while facteur runs: the event lists it at once.
            await publish(bob, "worse.test")
            listed = await eventually(lambda: check(bob, "spammer@worse.test"), lambda a: a != {})
            assert listed == {"shared-domains": "worse.test weight 1"}, listed
            body = await received(alice, gw, "spammer@worse.test", ["alice@example.test"], "m3@worse.test")
            assert body.startswith("[Spam?]"), body

            # alice says it is ham: the list was wrong, its weight goes down
            # (0.9: 4.5 points, under the mark threshold of 5).
            ok = await alice.iq("set", GATEWAY,
                                "<feedback xmlns='urn:xmpp:mail:0' verdict='ham' message-id='m3@worse.test'/>")
            assert ok["type"] == "result"
            lists = await spam_lists(bob)
            assert lists["shared-domains"] == "weight 0.9, 1 entries, 0 confirmed, 1 contradicted", lists
            assert metric(gw, "facteur_spam_list_weight", 'list="shared-domains"') == 0.9
            assert metric(gw, "facteur_spam_list_entries", 'list="shared-domains"') == 1.0
            body = await received(alice, gw, "spammer@worse.test", ["alice@example.test"], "m4@worse.test")
            assert not body.startswith("[Spam?]"), body

            # Bad input: a malformed item published live, and an event
            # forged by another component, change nothing.
            await publish(bob, "&lt;bad&gt;.test")
            await asyncio.to_thread(facteur.wait_log, "Ignored a malformed shared list item.", 10)
            forger.send_raw(
                "<message xmlns='jabber:component:accept' from='forger.example.test' to='mail.example.test'>"
                "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='spam_source_domains'>"
                f"<item id='good.test'>{REPORT}</item></items></event></message>")
            await asyncio.to_thread(
                facteur.wait_log, "Ignored a pubsub event from a service or node that is no configured list.", 10)
            assert await check(bob, "friend@good.test") == {}
            lists = await spam_lists(bob)
            assert lists["shared-domains"].startswith("weight 0.9, 1 entries"), lists
            assert facteur.alive()
            assert "panicked" not in facteur.log_since_start()
        finally:
            await bob.disconnect()

    run(scenario())


def test_a_dnsbl_entry_marks_mail_from_that_client_address(gw):
    facteur = gw.facteur

    async def scenario():
        await asyncio.to_thread(start_facteur, gw)
        alice = await registered_client(gw, "alice")
        bob = Client("bob", gw.xmpp.c2s)
        await bob.connect()
        try:
            assert await check(bob, "127.0.0.2") == {"dns:dnsbl.test": "127.0.0.2 weight 1"}
            assert await check(bob, "127.0.0.1") == {}
            # From 127.0.0.2: listed, marked. The domain list's zone has no
            # name server (a DNS error): it refuses nothing.
            body = await received(alice, gw, "news@shop.test", ["alice@example.test"], "d1@shop.test",
                                  source="127.0.0.2")
            assert body.startswith("[Spam?]"), body
            body = await received(alice, gw, "news@shop.test", ["alice@example.test"], "d2@shop.test")
            assert not body.startswith("[Spam?]"), body
            assert facteur.alive()
        finally:
            await bob.disconnect()

    run(scenario())


def test_a_second_gateway_consumes_the_first_ones_published_list(gw, tmp_path):
    b = Facteur(Path(tmp_path) / "b", gw.xmpp, gw.relay, gw.dns, gateway=GATEWAY_B,
                component='admins = ["bob@example.test"]', extra=CONSUMES_A)

    async def scenario():
        await asyncio.to_thread(start_facteur, gw)
        await asyncio.to_thread(b.start)
        await asyncio.to_thread(b.wait_log, "Component link up.")
        await asyncio.to_thread(b.wait_log, "Shared list fetched.", 20)
        alice = await registered_client(gw, "alice")
        bob = Client("bob", gw.xmpp.c2s)
        await bob.connect()
        await bob.register()
        try:
            # The service: its nodes, and subscribing and unsubscribing.
            items = await bob.iq("get", GATEWAY, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
            nodes = {i.get("node") for i in items.xml.iter("{http://jabber.org/protocol/disco#items}item")}
            assert nodes == {"spam_source_domains", "spam_source_addresses_sha256", "spam_source_ips"}, nodes
            ok = await bob.iq("set", GATEWAY, f"<pubsub xmlns='{NS_PUBSUB}'>"
                              "<subscribe node='spam_source_domains' jid='bob@example.test'/></pubsub>")
            assert ok.xml.find(f".//{{{NS_PUBSUB}}}subscription").get("subscription") == "subscribed"
            ok = await bob.iq("set", GATEWAY, f"<pubsub xmlns='{NS_PUBSUB}'>"
                              "<unsubscribe node='spam_source_domains' jid='bob@example.test'/></pubsub>")
            assert ok["type"] == "result"
            with pytest.raises(IqError) as again:
                await bob.iq("set", GATEWAY, f"<pubsub xmlns='{NS_PUBSUB}'>"
                             "<unsubscribe node='spam_source_domains' jid='bob@example.test'/></pubsub>")
            assert again.value.iq["error"]["condition"] == "unexpected-request"
            with pytest.raises(IqError) as forged:
                await bob.iq("set", GATEWAY, f"<pubsub xmlns='{NS_PUBSUB}'>"
                             "<subscribe node='spam_source_domains' jid='alice@example.test'/></pubsub>")
            assert forged.value.iq["error"]["condition"] == "bad-request"

            # Two distinct users (the threshold here) report the same sender.
            await received(alice, gw, "spammer@evil.test", ["alice@example.test", "bob@example.test"],
                           "p1@evil.test")
            assert await wait_until(lambda: any(m["body"] for m in bob.messages
                                                if m["from"] == escaped("spammer@evil.test")), timeout=20)
            for client in (alice, bob):
                ok = await client.iq("set", GATEWAY,
                                     "<feedback xmlns='urn:xmpp:mail:0' verdict='spam' message-id='p1@evil.test'/>")
                assert ok["type"] == "result"

            # facteur-a publishes them; facteur-b hears it.
            listed = await eventually(lambda: check(bob, "spammer@evil.test", to=GATEWAY_B),
                                      lambda a: len(a) == 2)
            assert listed == {"a-domains": "evil.test weight 1",
                              "a-senders": "spammer@evil.test weight 1"}, listed
            items = await bob.iq("get", GATEWAY, f"<pubsub xmlns='{NS_PUBSUB}'>"
                                 "<items node='spam_source_domains'/></pubsub>")
            item = items.xml.find(f".//{{{NS_PUBSUB}}}item")
            assert item.get("id") == "evil.test"
            report = item.find("{urn:xmpp:reporting:1}report")
            assert report is not None and report.get("reason") == "urn:xmpp:reporting:spam"
            # The client IP of the reported mail too.
            listed = await eventually(lambda: check(bob, "127.0.0.1", to=GATEWAY_B), lambda a: a != {})
            assert listed == {"a-ips": "127.0.0.1 weight 1"}, listed
            # Not the gateway's own sender: not listed.
            assert await check(bob, "friend@good.test", to=GATEWAY_B) == {}
        finally:
            await bob.disconnect()

    try:
        run(scenario())
    finally:
        b.stop()
