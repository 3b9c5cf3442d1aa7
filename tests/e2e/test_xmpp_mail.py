"""XMPP-Mail between domains (doc/xmpp-mail.md) through real peers: mail
between two facteur gateways as XMPP, as the author's own message or
handed from gateway to gateway; mail to domains without a gateway by
SMTP; a gateway that does not answer; forged handoffs, address
harvesting and hostile probes. One network for the whole module
(xmpp_mail_net.py): the scenarios run in file order, each probing
recipients no earlier one asked about, except where it says it builds on
what an earlier one left (a cached answer, a conversation)."""

import asyncio
import re
import time
import xml.etree.ElementTree as ET

import dns.resolver
import pytest
from slixmpp.exceptions import IqError

from peers import escaped, run, wait_until
from xmpp_mail_net import NS_MAIL, SERVER, MailNet, stanza_error

PROBE = "{urn:xmpp:mail:0}probe"


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = MailNet(tmp_path_factory.mktemp("xmpp-mail"))
    try:
        network.start()
        yield network
    finally:
        network.stop()


def log_lines(facteur, message, since=0):
    """The lines of a facteur's log, written after `since`, that carry
    `message`."""
    with open(facteur.logfile, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if message in line]


async def probe(client, to, rcpts=(), body=None):
    """Sends a probe IQ; returns the answer's XML, result or error."""
    payload = body if body is not None else (
        f"<probe xmlns='{NS_MAIL}'>" + "".join(f"<rcpt jid='{r}'/>" for r in rcpts) + "</probe>")
    try:
        return (await client.iq("get", to, payload)).xml
    except IqError as e:
        return e.iq.xml


def test_the_network_is_up(net):
    """Both gateways are linked, only mail.a.test is granted message
    permission, and the DNS answers what discovery needs."""
    for facteur in net.facteurs.values():
        assert "Component link up." in facteur.log_since_start()
        assert facteur.alive()
        # Each domain lists its gateway: no warning that others cannot find it.
        assert "does not list the gateway" not in facteur.log_since_start()
    assert net.grants["mail.a.test"].get("message") == "outgoing", net.grants
    assert "message" not in net.grants["mail.b.test"], net.grants
    # facteur-a took the grant as its server announced it; facteur-b got none.
    net.a.wait_log("Privileges announced.", timeout=5)
    assert [line for line in log_lines(net.a, "Privileges announced.") if "outgoing_messages=Some" in line]
    assert not [line for line in log_lines(net.b, "Privileges announced.") if "outgoing_messages=Some" in line]

    for name, server in SERVER.items():
        srv = net.dns.resolve(f"_xmpp-server._tcp.{name}", "SRV")
        assert [(r.target.to_text(), r.port) for r in srv] == [(f"xmpp-{server}.test.", net.s2s[server])]
    for domain, ip in {"a.test": "127.0.0.7", "b.test": "127.0.0.6",
                       "c.test": "127.0.0.4", "d.test": "127.0.0.5"}.items():
        mx = net.dns.resolve(domain, "MX")
        assert [r.exchange.to_text() for r in mx] == [f"mx.{domain}."]
        assert [r.address for r in net.dns.resolve(f"mx.{domain}", "A")] == [ip]
    with pytest.raises((dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)):
        net.dns.resolve("_xmpp-server._tcp.d.test", "SRV")
    for rdtype in ("A", "AAAA"):
        with pytest.raises((dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)):
            net.dns.resolve("d.test", rdtype)


def test_mail_to_a_user_of_a_privileged_gateways_peer_arrives_as_the_authors_own_message(net):
    """alice@a.test writes to bob@b.test through her mail contact: the
    probe says accept, and bob gets one chat message from alice's own JID,
    nothing by SMTP. A second mail asks b.test nothing (cache), and alice is
    told once that she can write to bob directly."""
    async def scenario():
        alice = await net.client("alice", "a.test")
        bob = await net.client("bob", "b.test")
        since_b = net.b.log_size()
        contact = escaped("bob@b.test", "mail.a.test")
        alice.send(contact, "Shall we meet at noon?", subject="Lunch")
        got = await bob.wait_for(lambda m: m["body"] == "Shall we meet at noon?", timeout=20)
        assert got["from"] == "alice@a.test", got["xml"]
        assert got["subject"] == "Lunch" and got["thread"], got["xml"]
        assert got["mail"] is not None and got["mail"].get("message-id"), got["xml"]
        assert got["auth"] is None, "checks of an SMTP hop: " + got["xml"]

        notice = await alice.wait_for(lambda m: m["from"] == contact and "reads mail over XMPP" in (m["body"] or ""))
        assert notice["body"] == ("bob@b.test reads mail over XMPP: you can write to bob@b.test directly."), notice

        alice.send(contact, "Or at one?", subject="Lunch, later")
        await bob.wait_for(lambda m: m["body"] == "Or at one?", timeout=20)
        await asyncio.sleep(1.5)
        assert [m["from"] for m in bob.messages if m["body"] in ("Shall we meet at noon?", "Or at one?")] == \
            ["alice@a.test", "alice@a.test"], bob.messages
        assert len([m for m in alice.messages if "reads mail over XMPP" in (m["body"] or "")]) == 1, alice.messages
        assert len(log_lines(net.b, "Probe answered.", since_b)) == 1, log_lines(net.b, "Probe", since_b)
        assert not log_lines(net.b, "Accepted mail.", since_b), "facteur-b's SMTP got a mail"
        assert not any(sink.received for sink in net.sinks.values())
        # The probe, its answer and alice's own message each crossed a
        # server-to-server link, set up by the sending server.
        for sender, receiver, link in (("a", "b", ("mail.a.test", "mail.b.test")),
                                       ("b", "a", ("mail.b.test", "mail.a.test")),
                                       ("a", "b", ("a.test", "b.test"))):
            assert ("Outgoing", *link) in net.s2s_links(sender), net.s2s_links(sender)
            assert ("Incoming", *link) in net.s2s_links(receiver), net.s2s_links(receiver)
        await alice.disconnect()
        await bob.disconnect()
    run(scenario())


def test_mail_from_an_unprivileged_gateway_is_handed_off_and_answered_the_same_way(net):
    """bob@b.test writes to alice@a.test; b.test grants its gateway
    nothing, so mail.b.test hands the mail to mail.a.test, which delivers it
    from bob's mail contact. alice's answer to that contact goes back by
    handoff and reaches bob from alice's contact, in the same thread. Mail
    that crossed no SMTP carries no <auth/> (§9.3), and neither gateway's
    SMTP server takes anything."""
    async def scenario():
        alice = await net.client("alice", "a.test")
        bob = await net.client("bob", "b.test")
        since_a, since_b = net.a.log_size(), net.b.log_size()
        bob.send(escaped("alice@a.test", "mail.b.test"), "Noon suits me.", subject="Re: Lunch")
        got = await alice.wait_for(lambda m: m["body"] == "Noon suits me.", timeout=20)
        assert got["from"] == escaped("bob@b.test", "mail.a.test"), got["xml"]
        assert got["subject"] == "Re: Lunch" and got["thread"], got["xml"]
        assert got["mail"] is not None and got["auth"] is None, got["xml"]

        alice.send(got["from"], "See you there.", subject="Re: Lunch", thread=got["thread"])
        answer = await bob.wait_for(lambda m: m["body"] == "See you there.", timeout=20)
        assert answer["from"] == escaped("alice@a.test", "mail.b.test"), answer["xml"]
        assert answer["thread"] == got["thread"], answer["xml"]
        assert answer["mail"] is not None and answer["auth"] is None, answer["xml"]
        await asyncio.sleep(1.5)
        assert len([m for m in alice.messages if m["body"] == "Noon suits me."]) == 1
        assert len([m for m in bob.messages if m["body"] == "See you there."]) == 1
        assert not log_lines(net.a, "Accepted mail.", since_a), "facteur-a's SMTP got a mail"
        assert not log_lines(net.b, "Accepted mail.", since_b), "facteur-b's SMTP got a mail"
        assert not any(sink.received for sink in net.sinks.values())
        await alice.disconnect()
        await bob.disconnect()
    run(scenario())


def test_mail_to_a_domain_without_a_gateway_goes_by_smtp(net):
    """c.test runs XMPP but lists no mail gateway: alice's mail to
    carol@c.test is stored by c.test's MX, and carol gets nothing by
    XMPP."""
    async def scenario():
        alice = await net.client("alice", "a.test")
        carol = await net.client("carol", "c.test")
        alice.send(escaped("carol@c.test", "mail.a.test"), "By the usual road.", subject="Hello Carol")
        sink = net.sinks["c.test"]
        assert await wait_until(lambda: sink.received, timeout=20), net.a.log_tail()
        mail = sink.received[0]
        assert mail["rcpt_tos"] == ["carol@c.test"]
        assert mail["message"]["From"].addresses[0].addr_spec == "alice@a.test"
        assert mail["message"]["Subject"] == "Hello Carol"
        await asyncio.sleep(1.5)
        assert len(sink.received) == 1 and not net.sinks["d.test"].received
        assert not [m for m in carol.messages if m["body"]], carol.messages
        await alice.disconnect()
        await carol.disconnect()
    run(scenario())


def test_mail_to_a_domain_without_xmpp_asks_no_xmpp_question(net):
    """d.test has neither SRV nor address records: its mail goes by SMTP
    at once, without a single XMPP query."""
    async def scenario():
        alice = await net.client("alice", "a.test")
        since_a = net.a.log_size()
        alice.send(escaped("dave@d.test", "mail.a.test"), "Only by SMTP.", subject="Hello Dave")
        sink = net.sinks["d.test"]
        assert await wait_until(lambda: sink.received, timeout=20), net.a.log_tail()
        assert sink.received[0]["rcpt_tos"] == ["dave@d.test"]
        assert sink.received[0]["message"]["From"].addresses[0].addr_spec == "alice@a.test"
        assert [line for line in log_lines(net.a, "XMPP-Mail query sent.", since_a) if "d.test" in line] == []
        await asyncio.sleep(1)
        assert len(sink.received) == 1
        await alice.disconnect()
    run(scenario())


def test_mail_to_an_unknown_user_of_a_gateway_domain_bounces_once(net):
    """nobody@b.test is not a user of mail.b.test: the probe says reject,
    the mail goes by SMTP to b.test's MX (facteur-b), which refuses it, and
    alice gets exactly one notice."""
    async def scenario():
        alice = await net.client("alice", "a.test")
        since_b = net.b.log_size()
        contact = escaped("nobody@b.test", "mail.a.test")
        alice.send(contact, "Anyone there?", subject="Hello?")
        notice = await alice.wait_for(lambda m: m["subject"] == "Undelivered mail", timeout=30)
        assert notice["from"] == contact and "nobody@b.test" in notice["body"], notice
        assert len(log_lines(net.b, "Probe answered.", since_b)) == 1, net.b.log_tail()
        await asyncio.sleep(2)
        assert len([m for m in alice.messages if m["subject"] == "Undelivered mail"]) == 1, alice.messages
        await alice.disconnect()
    run(scenario())


def test_a_gateway_that_does_not_answer_gets_its_mail_by_smtp_once(net):
    """facteur-b stops dead (SIGSTOP) before alice writes to bob2@b.test,
    whom nobody asked about yet: within the budget the mail leaves by SMTP
    for b.test's MX, and once facteur-b runs again bob2 gets it exactly
    once, from alice's mail contact."""
    async def scenario():
        alice = await net.client("alice", "a.test")
        bob2 = await net.client("bob2", "b.test")
        since_a, since_b = net.a.log_size(), net.b.log_size()
        net.freeze(net.b)
        try:
            started = time.monotonic()
            alice.send(escaped("bob2@b.test", "mail.a.test"), "Are you awake?", subject="Knock knock")

            def routed_by_smtp():
                return [line for line in log_lines(net.a, "Route chosen.", since_a)
                        if "rcpt=bob2@b.test" in line and re.search(r'route="?smtp\b', line)]
            assert await wait_until(routed_by_smtp, timeout=10), net.a.log_tail()
            # The budget is 4s; the step timeouts end within it.
            assert time.monotonic() - started < 6, routed_by_smtp()
        finally:
            net.thaw(net.b)
        got = await bob2.wait_for(lambda m: m["body"] == "Are you awake?", timeout=30)
        assert got["from"] == escaped("alice@a.test", "mail.b.test"), got["xml"]
        # facteur-b's SMTP took it, and wrote what its checks found.
        assert log_lines(net.b, "Accepted mail.", since_b), "not by facteur-b's SMTP"
        assert got["auth"] is not None, got["xml"]
        await asyncio.sleep(3)
        assert len([m for m in bob2.messages if m["body"] == "Are you awake?"]) == 1, bob2.messages
        assert not [m for m in alice.messages if m["subject"] == "Undelivered mail"], alice.messages
        assert not [line for line in log_lines(net.a, "Sent as XMPP-Mail.", since_a) if "bob2@b.test" in line]
        await alice.disconnect()
        await bob2.disconnect()
    run(scenario())


def handoff(sender, ofrom, to, body, id_, mail_attrs="message-id='m1@a.test' date='1764547200'"):
    return (f"<message xmlns='jabber:component:accept' type='normal' from='{sender}' to='mail.b.test'"
            f" id='{id_}'><subject>Handed</subject><body>{body}</body>"
            "<addresses xmlns='http://jabber.org/protocol/address'>"
            f"<address type='ofrom' jid='{ofrom}'/><address type='to' jid='{to}'/></addresses>"
            f"<mail xmlns='{NS_MAIL}' {mail_attrs}/></message>")


def test_a_handoff_from_a_gateway_no_domain_lists_is_forbidden(net):
    """rogue.test claims a mail from eve@a.test; a.test does not list
    rogue.test, so mail.b.test answers <forbidden/> and bob gets nothing."""
    async def scenario():
        bob = await net.client("bob", "b.test")
        rogue = await net.component("rogue.test")
        rogue.send_raw(handoff("rogue.test", "eve@a.test", "bob@b.test", "Trust me.", "forged-1"))
        error = await rogue.wait_for(lambda m: m.get("id") == "forged-1" and m.get("type") == "error")
        assert stanza_error(error) == ("auth", "forbidden"), ET.tostring(error).decode()
        assert not await wait_until(lambda: [m for m in bob.messages if m["body"] == "Trust me."], timeout=3)
        await rogue.disconnect()
        await bob.disconnect()
    run(scenario())


def test_hostile_probes_and_handoffs_get_their_errors_and_the_gateway_lives_on(net):
    """Malformed probes and handoffs get the stanza errors of §8, a probe
    from b.test itself is not answered, and facteur-b keeps running. The
    hostile handoffs come from mail.a.test itself (a stand-in holds its JID
    while facteur-a is stopped), so that only their <mail/> is wrong."""
    async def probes():
        scout = await net.client("scout", "c.test")
        bob = await net.client("bob", "b.test")
        cases = {
            "no rcpt": (f"<probe xmlns='{NS_MAIL}'/>", ("modify", "bad-request")),
            "rcpt without jid": (f"<probe xmlns='{NS_MAIL}'><rcpt/></probe>", ("modify", "bad-request")),
            "malformed jid": (f"<probe xmlns='{NS_MAIL}'><rcpt jid='bob@@b.test'/></probe>",
                              ("modify", "bad-request")),
            "51 rcpt": (f"<probe xmlns='{NS_MAIL}'>" + "<rcpt jid='bob@b.test'/>" * 51 + "</probe>",
                        ("modify", "not-acceptable")),
            "500 rcpt": (f"<probe xmlns='{NS_MAIL}'>"
                         + "".join(f"<rcpt jid='u{i}@b.test'/>" for i in range(500)) + "</probe>",
                         ("modify", "not-acceptable")),
        }
        for name, (body, expected) in cases.items():
            answer = await probe(scout, "mail.b.test", body=body)
            assert answer.get("type") == "error" and stanza_error(answer) == expected, \
                (name, ET.tostring(answer).decode())
        answer = await probe(bob, "mail.b.test", ["alice@a.test"])
        assert stanza_error(answer) == ("cancel", "not-allowed"), ET.tostring(answer).decode()
        await scout.disconnect()
        await bob.disconnect()

    async def handoffs():
        bob = await net.client("bob", "b.test")
        stand_in = await net.component("mail.a.test", gateway=True)
        try:
            hostile = {
                "bad-date": "message-id='h1@a.test' date='x'",
                "bracketed-id": "message-id='&lt;h2@a.test&gt;' date='1764547200'",
                "spaced-id": "message-id='h3 @a.test' date='1764547200'",
            }
            for id_, attrs in hostile.items():
                stand_in.send_raw(handoff("mail.a.test", "alice@a.test", "bob@b.test", f"Hostile {id_}", id_,
                                          attrs))
            for id_ in hostile:
                error = await stand_in.wait_for(lambda m: m.get("id") == id_ and m.get("type") == "error")
                assert stanza_error(error) == ("modify", "bad-request"), ET.tostring(error).decode()
            assert not await wait_until(
                lambda: [m for m in bob.messages if (m["body"] or "").startswith("Hostile")], timeout=2), bob.messages
        finally:
            # facteur-a takes its JID back only once the stand-in has left.
            await stand_in.disconnect()
            await bob.disconnect()

    async def alive():
        scout = await net.client("scout", "c.test")
        pong = await scout.iq("get", "mail.b.test", "<ping xmlns='urn:xmpp:ping'/>")
        assert pong["type"] == "result"
        await scout.disconnect()

    try:
        run(probes())
        net.a.stop()
        try:
            run(handoffs())
        finally:
            net.a.start()
            net.a.wait_log("Component link up.")
    finally:
        assert net.b.alive(), net.b.log_tail()
        run(alive())


def test_probes_past_the_rate_limit_tell_nothing(net):
    """carol@c.test asks about bob@b.test 200 times: the first probes are
    answered accept, and past probes_per_minute (20 here) every answer is
    unknown, in the same shape."""
    limit = 20

    async def scenario():
        carol = await net.client("carol", "c.test")
        started = time.monotonic()
        answers = []
        for _ in range(200):
            answer = await probe(carol, "mail.b.test", ["bob@b.test"])
            rcpt = answer.find(f"{PROBE}/{{{NS_MAIL}}}rcpt")
            assert rcpt is not None and {"jid", "status", "ttl", "max-size"} <= set(rcpt.attrib), \
                ET.tostring(answer).decode()
            answers.append(rcpt.get("status"))
        elapsed = time.monotonic() - started
        # The limit refills one probe per 60/limit seconds while they run.
        allowed = limit + 1 + int(elapsed * limit / 60)
        assert answers[0] == "accept", answers
        assert set(answers) == {"accept", "unknown"}, answers
        assert answers.count("accept") <= allowed, (answers, elapsed)
        assert set(answers[allowed:]) == {"unknown"}, (answers, elapsed)
        await carol.disconnect()
    run(scenario())


def test_the_key_iq_of_bobs_gateway_serves_his_key_and_alices_mail_is_encrypted_to_it(net, tmp_path):
    """bob@b.test's key, imported on facteur-b, is what mail.b.test's key
    IQ answers alice@a.test; with `encrypt` opportunistic, her mail to bob
    is encrypted to that key, which facteur-a found by the same IQ (its
    queued mail, as it would leave by SMTP, is what gpg decrypts)."""
    import base64
    import sqlite3
    import subprocess
    from email import policy
    from email.parser import BytesParser

    from test_keys import FORMS, GnuPG

    bob_keys = GnuPG(tmp_path / "bob-gpg")
    try:
        fingerprint = bob_keys.new_key("Bob <bob@b.test>")
        asc = tmp_path / "bob.asc"
        asc.write_text(bob_keys.export(fingerprint))
        subprocess.run([net.b.binary, "keys", "import", "--config", str(net.b.config),
                        "--jid", "bob@b.test", str(asc)], check=True, capture_output=True, timeout=30)
        since = net.a.log_size()

        async def scenario():
            alice = await net.client("alice", "a.test")
            try:
                answer = (await alice.iq("get", "mail.b.test",
                                         f"<keys xmlns='{NS_MAIL}' jid='bob@b.test'/>")).xml
                key = answer.find(f"{{{NS_MAIL}}}keys/{{{NS_MAIL}}}key")
                form = (f"<x xmlns='{FORMS}' type='submit'>"
                        "<field var='FORM_TYPE'><value>jabber:iq:register</value></field>"
                        "<field var='encrypt'><value>opportunistic</value></field></x>")
                registered = await alice.iq("set", "mail.a.test",
                                            f"<query xmlns='jabber:iq:register'>{form}</query>")
                assert registered["type"] == "result"
                alice.send(escaped("bob@b.test", "mail.a.test"), "Sealed for bob.", subject="Sealed")
                assert await wait_until(lambda: log_lines(net.a, "Key lookup done.", since), timeout=20), \
                    net.a.log_tail()
                return key
            finally:
                await alice.disconnect()

        key = run(scenario())
        assert key is not None and key.get("fingerprint") == fingerprint
        served = GnuPG(tmp_path / "check-gpg")
        try:
            served("--import", input=base64.b64decode(key.text))
            assert served.listing("--list-keys")["fpr"][:1] == [fingerprint]
        finally:
            served.stop()
        [done] = log_lines(net.a, "Key lookup done.", since)
        assert "bob@b.test" in done and "iq" in done.split("source=")[1], done

        def queued():
            with sqlite3.connect(net.a.dir / "facteur.db") as db:
                return db.execute("SELECT raw FROM to_mail WHERE rcpt = 'bob@b.test' "
                                  "ORDER BY id DESC LIMIT 1").fetchone()
        assert run(wait_until(lambda: queued() is not None))
        message = BytesParser(policy=policy.default).parsebytes(queued()[0])
        assert message.get_content_type() == "multipart/encrypted", message
        armored = list(message.iter_parts())[1].get_payload(decode=True)
        inner = BytesParser(policy=policy.default).parsebytes(bob_keys("--decrypt", input=armored).stdout)
        assert inner.get_content().strip() == "Sealed for bob."
    finally:
        bob_keys.stop()
