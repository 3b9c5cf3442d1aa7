"""Spam feedback against the real Prosody, with facteur's
deploy/prosody/mod_mail_feedback.lua loaded: a client's block-and-report
of a mail sender refuses that sender's next mail at RCPT for that user
only, a refusal caused by a block never reports to the sender, an
unblock lets mail through again, and bad feedback changes nothing."""

import asyncio
import random
import subprocess
import smtplib
import time
import xml.etree.ElementTree as ET

import pytest

from peers import ROOT, Client, Gateway, escaped, registered_client, run, wait_until
from xmpp_mail_net import Component

SPAMMER = "spammer@evil.test"
GATEWAY = "mail.example.test"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def spam_gateway(tmp_path, host_modules, component_modules="", **facteur):
    return Gateway(tmp_path, xmpp_options={
        "template": "prosody-spam.cfg.lua.in",
        "values": {"@PLUGINS@": str(ROOT / "deploy" / "prosody"),
                   "@HOST_MODULES@": host_modules, "@COMPONENT_MODULES@": component_modules},
    }, **facteur)


@pytest.fixture
def gateway(tmp_path):
    """Prosody with facteur's mod_mail_feedback."""
    gw = spam_gateway(tmp_path, '"mail_feedback"')
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def privileged_gateway(tmp_path):
    """Prosody without mod_mail_feedback, whose mod_privilege lets the
    gateway read blocklists (XEP-0356 IQ permission on urn:xmpp:blocking)."""
    gw = spam_gateway(tmp_path, '"privilege"', '"privilege"')
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


def block_and_report(address, stanza_id=None):
    """Conversations' "Block and report spam" (XEP-0191 block with a
    XEP-0377 report; XEP-0377's example, as Conversations, Cheogram and
    Snikket send it): the item is the sender's JID at the gateway."""
    sid = (f"<stanza-id xmlns='urn:xmpp:sid:0' by='alice@example.test' id='{stanza_id}'/>"
           if stanza_id else "")
    return (f"<block xmlns='urn:xmpp:blocking'><item jid='{escaped(address)}'>"
            f"<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>{sid}</report>"
            f"</item></block>")


def unblock(address):
    return f"<unblock xmlns='urn:xmpp:blocking'><item jid='{escaped(address)}'/></unblock>"


def mail(mail_from, to, message_id):
    return (f"From: {mail_from}\r\nTo: {to}\r\nSubject: Offer\r\n"
            f"Message-ID: <{message_id}>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n"
            "You won.\r\n").encode()


def reports_to(relay, address):
    return [r for r in relay.received if address in r["rcpt_tos"]]


async def no_report_to(relay, address, seconds=3.0):
    """Polls the relay standing for the internet for `seconds`: nothing
    may reach `address` (a report would go there)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert reports_to(relay, address) == [], relay.received
        await asyncio.sleep(0.1)


def error_condition(iq):
    error = iq.xml.find("{jabber:client}error")
    if error is None:
        return None
    for child in error:
        if child.tag.startswith("{%s}" % NS_STANZAS) and not child.tag.endswith("}text"):
            return child.tag.split("}")[1]
    return None


def test_a_block_and_report_refuses_the_sender_for_that_user_only_until_unblocked(gateway):
    facteur = gateway.facteur

    async def scenario():
        alice = await registered_client(gateway, "alice")
        bob = await registered_client(gateway, "bob")
        try:
            since = facteur.log_size()
            result = await alice.iq("set", None, block_and_report(SPAMMER))
            assert result["type"] == "result"
            await asyncio.to_thread(facteur.wait_log, "Sender blocked.", 10, since)

            # The same mail to alice and bob: alice refuses at RCPT, bob gets it.
            with smtplib.SMTP("127.0.0.1", facteur.smtp_port, timeout=15) as smtp:
                smtp.ehlo("mx.evil.test")
                assert smtp.mail(SPAMMER)[0] == 250
                code, text = smtp.rcpt("alice@example.test")
                assert (code, text.decode()) == (550, "5.7.1 The recipient does not accept mail from this sender")
                assert smtp.rcpt("bob@example.test")[0] == 250
                assert smtp.data(mail(SPAMMER, "alice@example.test, bob@example.test", "win-1@evil.test"))[0] == 250
            await bob.wait_for(lambda m: m["from"] == escaped(SPAMMER) and m["body"] and "You won" in m["body"])

            # Accepted before alice blocked its sender, a mail is refused by
            # her server (mod_blocklist): no report goes to the sender.
            other = "other@evil.test"
            with smtplib.SMTP("127.0.0.1", facteur.smtp_port, timeout=15) as smtp:
                smtp.ehlo("mx.evil.test")
                assert smtp.mail(other)[0] == 250
                assert smtp.rcpt("alice@example.test")[0] == 250
                since = facteur.log_size()
                assert (await alice.iq("set", None, block_and_report(other)))["type"] == "result"
                await asyncio.to_thread(facteur.wait_log, "Sender blocked.", 10, since)
                assert smtp.data(mail(other, "alice@example.test", "win-2@evil.test"))[0] == 250
            await asyncio.to_thread(
                facteur.wait_log, "Refused by the recipient's block; no report to the sender.", 15, since)
            await no_report_to(gateway.relay, other)
            await no_report_to(gateway.relay, SPAMMER, seconds=0.1)
            assert not any(m["from"].startswith(escaped(other)) for m in alice.messages if m["body"])

            # An unblock lets the sender's mail through again.
            since = facteur.log_size()
            assert (await alice.iq("set", None, unblock(SPAMMER)))["type"] == "result"
            await asyncio.to_thread(facteur.wait_log, "Sender unblocked.", 10, since)
            code, text = await asyncio.to_thread(
                send_one, facteur.smtp_port, SPAMMER, "alice@example.test", "win-3@evil.test")
            assert code == 250, text
            await alice.wait_for(lambda m: m["from"] == escaped(SPAMMER) and m["body"] and "You won" in m["body"])
        finally:
            await alice.disconnect()
            await bob.disconnect()

    run(scenario())


def send_one(port, mail_from, rcpt, message_id):
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
        smtp.ehlo("mx.evil.test")
        smtp.mail(mail_from)
        code, text = smtp.rcpt(rcpt)
        if code != 250:
            return code, text.decode()
        code, text = smtp.data(mail(mail_from, rcpt, message_id))
        return code, text.decode()


def test_a_report_naming_a_message_forwards_the_mail_from_the_archive(gateway):
    """Conversations names the reported message by the stanza-id the
    server's archive gave it; the module forwards that message, and
    facteur knows which mail was reported."""
    facteur = gateway.facteur
    sender = "lottery@evil.test"

    async def scenario():
        alice = await registered_client(gateway, "alice")
        try:
            code, text = await asyncio.to_thread(
                send_one, facteur.smtp_port, sender, "alice@example.test", "win-5@evil.test")
            assert code == 250, text
            got = await alice.wait_for(lambda m: m["from"] == escaped(sender) and m["body"])
            sid = ET.fromstring(got["xml"]).find("{urn:xmpp:sid:0}stanza-id")
            assert sid is not None and sid.get("by") == "alice@example.test", got["xml"]
            since = facteur.log_size()
            report = block_and_report(sender, sid.get("id"))
            assert (await alice.iq("set", None, report))["type"] == "result"
            await asyncio.to_thread(facteur.wait_log, "message_id=win-5@evil.test", 10, since)
            code, text = await asyncio.to_thread(
                send_one, facteur.smtp_port, sender, "alice@example.test", "win-6@evil.test")
            assert code == 550, text
        finally:
            await alice.disconnect()

    run(scenario())


COMMANDS = "http://jabber.org/protocol/commands"


def test_blocked_senders_lists_and_unblocks_at_the_gateway_without_backscatter(gateway):
    """The users' ad-hoc command lists the senders she blocked and unblocks
    one at the gateway: its mail is taken at RCPT again, and while her
    server still blocks it, its refusal is not reported to the sender."""
    facteur = gateway.facteur

    async def scenario():
        alice = await registered_client(gateway, "alice")
        try:
            since = facteur.log_size()
            assert (await alice.iq("set", None, block_and_report(SPAMMER)))["type"] == "result"
            await asyncio.to_thread(facteur.wait_log, "Sender blocked.", 10, since)

            listed = (await alice.iq("set", GATEWAY,
                                     f"<command xmlns='{COMMANDS}' node='blocked-senders' action='execute'/>"
                                     )).xml.find(f"{{{COMMANDS}}}command")
            assert listed.get("status") == "executing"
            options = [(o.get("label"), o.findtext("{jabber:x:data}value"))
                       for o in listed.iter("{jabber:x:data}option")]
            assert options == [("spammer@evil.test, reported as spam (report)", SPAMMER)]
            done = (await alice.iq("set", GATEWAY,
                                   f"<command xmlns='{COMMANDS}' node='blocked-senders' action='complete' "
                                   f"sessionid='{listed.get('sessionid')}'><x xmlns='jabber:x:data' type='submit'>"
                                   f"<field var='unblock'><value>{SPAMMER}</value></field></x></command>"
                                   )).xml.find(f"{{{COMMANDS}}}command")
            assert done.get("status") == "completed"
            assert done.findtext(f"{{{COMMANDS}}}note").startswith(f"Unblocked {SPAMMER}.")

            since = facteur.log_size()
            code, text = await asyncio.to_thread(
                send_one, facteur.smtp_port, SPAMMER, "alice@example.test", "win-7@evil.test")
            assert code == 250, text
            await asyncio.to_thread(
                facteur.wait_log, "Refused by the recipient's block; no report to the sender.", 15, since)
            await no_report_to(gateway.relay, SPAMMER)
        finally:
            await alice.disconnect()

    run(scenario())


def test_bad_feedback_gets_a_clear_error_or_is_ignored(gateway):
    facteur = gateway.facteur
    friend = "friend@good.test"

    async def scenario():
        alice = await registered_client(gateway, "alice")
        bob = Client("bob", gateway.xmpp.c2s)
        await bob.connect()
        forger = Component("forger.example.test", gateway.xmpp.component)
        await forger.connect()
        try:
            # A mail alice received takes feedback; one she never did does not.
            code, text = await asyncio.to_thread(
                send_one, facteur.smtp_port, friend, "alice@example.test", "hello@good.test")
            assert code == 250, text
            await alice.wait_for(lambda m: m["from"] == escaped(friend) and m["body"])
            ok = await alice.iq("set", GATEWAY,
                                "<feedback xmlns='urn:xmpp:mail:0' verdict='ham' message-id='hello@good.test'/>")
            assert ok["type"] == "result"
            with pytest.raises(Exception) as unknown:
                await alice.iq("set", GATEWAY,
                               "<feedback xmlns='urn:xmpp:mail:0' verdict='spam' message-id='never@evil.test'/>")
            assert error_condition(unknown.value.iq) == "item-not-found"

            # bob is not registered: his feedback is refused, and the block
            # and report his server forwards are ignored.
            with pytest.raises(Exception) as unregistered:
                await bob.iq("set", GATEWAY,
                             "<feedback xmlns='urn:xmpp:mail:0' verdict='spam' message-id='hello@good.test'/>")
            assert error_condition(unregistered.value.iq) == "registration-required"
            since = facteur.log_size()
            assert (await bob.iq("set", None, block_and_report(friend)))["type"] == "result"
            await asyncio.to_thread(
                facteur.wait_log, "Ignored spam feedback for a user who is not registered.", 10, since)

            # Another component of the same server, and a user, forge the
            # server's forwarded block: ignored, alice still gets the mail.
            forged = (f"<blocked xmlns='urn:xmpp:mail:0' by='alice@example.test' jid='{escaped(friend)}'/>"
                      f"<report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>"
                      f"<jid xmlns='urn:xmpp:jid:0'>{escaped(friend)}</jid></report>")
            since = facteur.log_size()
            forger.send_raw(f"<message xmlns='jabber:component:accept' from='forger.example.test' "
                            f"to='{GATEWAY}' id='forged-1'>{forged}</message>")
            await asyncio.to_thread(
                facteur.wait_log, "Ignored spam feedback not sent by a served domain's server.", 10, since)
            since = facteur.log_size()
            alice.xmpp.send_raw(f"<message to='{GATEWAY}' id='forged-2'>{forged}</message>")
            await asyncio.to_thread(
                facteur.wait_log, "Ignored spam feedback not sent by a served domain's server.", 10, since)
            code, text = await asyncio.to_thread(
                send_one, facteur.smtp_port, friend, "alice@example.test", "again@good.test")
            assert code == 250, text
            assert facteur.alive()
        finally:
            await alice.disconnect()
            await bob.disconnect()
            forger.xmpp.disconnect()

    run(scenario())


def test_a_blocklist_is_read_at_registration_where_the_server_grants_it(privileged_gateway):
    gateway = privileged_gateway
    facteur = gateway.facteur

    async def scenario():
        alice = Client("alice", gateway.xmpp.c2s)
        await alice.connect()
        try:
            await asyncio.to_thread(facteur.wait_log, "blocklist_reads=true", 10)
            # Blocked before she registered: no module tells the gateway.
            assert (await alice.iq("set", None, block_and_report(SPAMMER)))["type"] == "result"
            since = facteur.log_size()
            await alice.register()
            await asyncio.to_thread(facteur.wait_log, "Blocklist read.", 15, since)
            code, text = await asyncio.to_thread(
                send_one, facteur.smtp_port, SPAMMER, "alice@example.test", "win-4@evil.test")
            assert (code, text) == (550, "5.7.1 The recipient does not accept mail from this sender")
            code, text = await asyncio.to_thread(
                send_one, facteur.smtp_port, "friend@good.test", "alice@example.test", "hi@good.test")
            assert code == 250, text
        finally:
            await alice.disconnect()

    run(scenario())


# Verdicts and learning. The operator's global model is trained with the
# CLI before facteur starts: on ham alone (the Bayes probability is then
# neutral for everyone until a user's own model counts), or on ham and spam.

HAM_WORDS = ("meeting budget quarterly report thursday agenda minutes project review "
             "schedule lunch colleagues draft slides deadline invoice attached regards").split()
SPAM_WORDS = ("viagra cheap pills casino bonus jackpot winner discount pharmacy "
              "bitcoin unclaimed prize lottery guaranteed rolex replica").split()
FILLER = ("the a and to of for with this that your our".split())


def text_of(words, rng, n=40):
    return " ".join(rng.choice(words + FILLER) for _ in range(n))


def ham_mail(n, rng):
    return (f"From: colleague{n}@work.test\r\nTo: team@work.test\r\nSubject: Project {rng.choice(HAM_WORDS)}\r\n"
            f"Message-ID: <ham-{n}@work.test>\r\n\r\n{text_of(HAM_WORDS, rng)}\r\n").encode()


def spam_mail(mail_from, to, message_id, rng):
    body = text_of(SPAM_WORDS, rng) + "\r\nOrder now at https://pills.evil.test/buy\r\n"
    return (f"From: {mail_from}\r\nTo: {to}\r\nSubject: Cheap {rng.choice(SPAM_WORDS)} offer\r\n"
            f"Message-ID: <{message_id}>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n{body}").encode()


def train_global(gateway, tmp_path, spam=True):
    """facteur spam train on generated corpora, before the daemon runs."""
    rng = random.Random(7)
    dirs = {}
    for kind in ("ham", "spam") if spam else ("ham",):
        d = tmp_path / f"corpus-{kind}"
        d.mkdir()
        for n in range(30):
            raw = (ham_mail(n, rng) if kind == "ham"
                   else spam_mail(f"s{n}@junk.test", "x@work.test", f"junk-{n}@junk.test", rng))
            (d / f"{n}.eml").write_bytes(raw)
        dirs[kind] = d
    args = [gateway.facteur.binary, "spam", "train", "--config", str(gateway.facteur.config)]
    for kind, d in dirs.items():
        args += [f"--{kind}", str(d)]
    out = subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout
    assert "the global spam model: learnt" in out, out


def verdict_gateway(tmp_path, spam):
    gw = spam_gateway(tmp_path, '"mail_feedback"', extra='[spam]\ndigest_interval = "2s"\n')
    train_global(gw, tmp_path, spam=spam)
    return gw


@pytest.fixture
def ham_trained(tmp_path):
    gw = verdict_gateway(tmp_path, spam=False)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def trained(tmp_path):
    gw = verdict_gateway(tmp_path, spam=True)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()


def send_raw(port, mail_from, rcpts, raw):
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
        smtp.ehlo("mx.evil.test")
        smtp.mail(mail_from)
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            assert code == 250, (code, text)
        try:
            code, text = smtp.data(raw)
        except smtplib.SMTPDataError as e:
            return e.smtp_code, e.smtp_error.decode()
        return code, text.decode()


async def command(client, node, fields=None, session=None):
    """Runs a users' command: without fields, its first step (the form);
    with them, the submitted form. The <command/> answered."""
    if fields is None:
        payload = f"<command xmlns='{COMMANDS}' node='{node}' action='execute'/>"
    else:
        values = "".join(
            f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in vals) + "</field>"
            for var, vals in fields.items())
        payload = (f"<command xmlns='{COMMANDS}' node='{node}' action='complete' sessionid='{session}'>"
                   f"<x xmlns='jabber:x:data' type='submit'>{values}</x></command>")
    return (await client.iq("set", GATEWAY, payload)).xml.find(f"{{{COMMANDS}}}command")


def options_of(form):
    return [(o.get("label"), o.findtext("{jabber:x:data}value")) for o in form.iter("{jabber:x:data}option")]


async def set_thresholds(client, mark, quarantine, reject):
    form = await command(client, "spam-settings")
    assert form.get("status") == "executing"
    done = await command(client, "spam-settings", {"mark": [mark], "quarantine": [quarantine],
                                                   "reject": [reject]}, form.get("sessionid"))
    assert done.get("status") == "completed", ET.tostring(done)
    return done.findtext(f"{{{COMMANDS}}}note")


def test_reported_spam_teaches_the_users_model_and_the_next_one_is_marked_for_her_only(ham_trained):
    gateway = ham_trained
    facteur = gateway.facteur
    rng = random.Random(21)
    sender = "promo@evil.test"
    rcpts = ["alice@example.test", "bob@example.test"]

    async def scenario():
        alice = await registered_client(gateway, "alice")
        bob = await registered_client(gateway, "bob")
        try:
            for n in range(20):
                code, text = await asyncio.to_thread(
                    send_raw, facteur.smtp_port, sender, rcpts,
                    spam_mail(sender, "alice@example.test", f"promo-{n}@evil.test", rng))
                assert code == 250, text
            await alice.wait_for(lambda m: sum(1 for x in alice.messages
                                               if x["from"] == escaped(sender) and x["body"]) >= 20)
            # Nothing is marked before she taught her model.
            assert not any(m["body"].startswith("[Spam?]") for m in alice.messages if m["body"])
            form = await command(alice, "report-spam")
            options = options_of(form)
            assert len(options) == 20, options
            assert all(f"from {sender}: Cheap" in label for label, _ in options), options
            done = await command(alice, "report-spam", {"report": [v for _, v in options]},
                                 form.get("sessionid"))
            assert done.get("status") == "completed"
            assert done.findtext(f"{{{COMMANDS}}}note").count("Reported the mail from") == 20

            code, text = await asyncio.to_thread(
                send_raw, facteur.smtp_port, sender, rcpts,
                spam_mail(sender, "alice@example.test", "promo-21@evil.test", rng))
            assert code == 250, text
            marked = await alice.wait_for(lambda m: m["mail"] and
                                          m["mail"].get("message-id") == "promo-21@evil.test")
            assert marked["body"].startswith("[Spam?] "), marked["body"]
            spam = ET.fromstring(marked["xml"]).find("{urn:xmpp:mail:0}mail/{urn:xmpp:mail:0}spam")
            assert spam is not None, marked["xml"]
            assert float(spam.get("score")) >= 5.0 and "bayes:" in spam.get("reasons"), spam.attrib
            got = await bob.wait_for(lambda m: m["mail"] and
                                     m["mail"].get("message-id") == "promo-21@evil.test")
            assert not got["body"].startswith("[Spam?]"), got["body"]
            assert "<spam " not in got["xml"], got["xml"]
        finally:
            await alice.disconnect()
            await bob.disconnect()

    run(scenario())


def test_quarantine_digest_and_not_spam_release(trained):
    gateway = trained
    facteur = gateway.facteur
    rng = random.Random(5)
    sender = "deals@evil.test"

    async def scenario():
        alice = await registered_client(gateway, "alice")
        try:
            note = await set_thresholds(alice, "3", "5", "0")
            assert note == "Spam thresholds: mark from 3, quarantine from 5, refuse from 0 points.", note
            since = facteur.log_size()
            code, text = await asyncio.to_thread(
                send_raw, facteur.smtp_port, sender, ["alice@example.test"],
                spam_mail(sender, "alice@example.test", "deal-1@evil.test", rng))
            assert code == 250, text
            await asyncio.to_thread(facteur.wait_log, "verdict=\"quarantine\"", 10, since)
            # Held, not delivered; the digest names it.
            digest = await alice.wait_for(lambda m: m["from"] == GATEWAY and m["body"]
                                          and "held as spam" in m["body"], timeout=20)
            assert f"from {sender}: Cheap" in digest["body"], digest["body"]
            assert digest["subject"] == "Mail held as spam"
            assert not any(m["mail"] and m["mail"].get("message-id") == "deal-1@evil.test"
                           for m in alice.messages)

            form = await command(alice, "not-spam")
            options = options_of(form)
            assert len(options) == 1 and f"from {sender}: Cheap" in options[0][0], options
            done = await command(alice, "not-spam", {"release": [options[0][1]]}, form.get("sessionid"))
            assert done.findtext(f"{{{COMMANDS}}}note").startswith(f"Released the mail from {sender}: Cheap")
            got = await alice.wait_for(lambda m: m["mail"] and m["mail"].get("message-id") == "deal-1@evil.test")
            assert "pills.evil.test" in got["body"] and not got["body"].startswith("[Spam?]")
            # Released once: nothing is held any more.
            again = await command(alice, "not-spam")
            assert again.findtext(f"{{{COMMANDS}}}note") == "No mail is held for you."
        finally:
            await alice.disconnect()

    run(scenario())


def test_spam_settings_change_the_verdict_and_a_reject_is_a_550_without_report(trained):
    gateway = trained
    facteur = gateway.facteur
    rng = random.Random(9)
    sender = "bulk@evil.test"

    async def scenario():
        alice = await registered_client(gateway, "alice")
        try:
            # By default, confident Bayes alone marks.
            code, text = await asyncio.to_thread(
                send_raw, facteur.smtp_port, sender, ["alice@example.test"],
                spam_mail(sender, "alice@example.test", "bulk-1@evil.test", rng))
            assert code == 250, text
            marked = await alice.wait_for(lambda m: m["mail"] and m["mail"].get("message-id") == "bulk-1@evil.test")
            assert marked["body"].startswith("[Spam?] ")
            # A low reject threshold refuses at end of DATA, before any 250.
            await set_thresholds(alice, "0", "0", "1")
            code, text = await asyncio.to_thread(
                send_raw, facteur.smtp_port, sender, ["alice@example.test"],
                spam_mail(sender, "alice@example.test", "bulk-2@evil.test", rng))
            assert (code, text) == (550, "5.7.1 Refused as spam"), (code, text)
            await no_report_to(gateway.relay, sender)
            # Ham still goes through.
            code, text = await asyncio.to_thread(
                send_raw, facteur.smtp_port, "colleague@work.test", ["alice@example.test"],
                ham_mail(99, rng))
            assert code == 250, text
            await alice.wait_for(lambda m: m["mail"] and m["mail"].get("message-id") == "ham-99@work.test")
            # Thresholds off: the spam is delivered as it is.
            await set_thresholds(alice, "0", "0", "0")
            code, text = await asyncio.to_thread(
                send_raw, facteur.smtp_port, sender, ["alice@example.test"],
                spam_mail(sender, "alice@example.test", "bulk-3@evil.test", rng))
            assert code == 250, text
            plain = await alice.wait_for(lambda m: m["mail"] and m["mail"].get("message-id") == "bulk-3@evil.test")
            assert not plain["body"].startswith("[Spam?]")
        finally:
            await alice.disconnect()

    run(scenario())
