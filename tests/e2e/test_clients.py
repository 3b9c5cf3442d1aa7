"""What XMPP clients really send to a mail contact: each stanza in the
shape of the client's published source or of the XEP's example, kept in
fixtures/clients/ (the file's first line names the client), sent by a real
slixmpp client through a real Prosody; the relay shows what was mailed.
Each test runs with the store on SQLite and on PostgreSQL."""

import asyncio
import subprocess

import pytest

from peers import (GATEWAY, ROOT, Gateway, escaped, registered_client, run, send_mail,
                   wait_until)

CLIENTS = ROOT / "fixtures" / "clients"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request):
    return request.param


def client_stanza(name):
    """The stanza of fixtures/clients/NAME.xml, without its comment, and
    its id."""
    text = (CLIENTS / f"{name}.xml").read_text()
    xml = text[text.index("<message"):].strip()
    stanza_id = xml.split(" id='", 1)[1].split("'", 1)[0]
    return xml, stanza_id


def queue_list(gateway):
    """`facteur queue list`, one line per queued item."""
    out = subprocess.run([gateway.facteur.binary, "queue", "--config", str(gateway.facteur.config),
                          "list"], check=True, capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()


def mailed(gateway):
    """The text of each mail the relay received, in order."""
    return [r["message"].get_content().strip() for r in gateway.relay.received]


def error_text(message):
    start = message["xml"].find(f"<text xmlns=\"{STANZAS}\"")
    if start < 0:
        return ""
    return message["xml"][message["xml"].index(">", start) + 1:message["xml"].index("</text>", start)]


def test_end_to_end_encrypted_messages_are_not_mailed(gateway):
    """Conversations' and Gajim's OMEMO 0.3, OMEMO 2 (XEP-0384's example),
    OpenPGP for XMPP (XEP-0374's example) and Conversations' legacy
    OpenPGP (XEP-0027): none is mailed, each gets a not-acceptable error
    that names its scheme; Conversations' OMEMO key transport gets nothing."""
    cases = [
        ("conversations-omemo", "OMEMO"),
        ("gajim-omemo", "OMEMO"),
        ("xep0384-omemo2", "OMEMO 2"),
        ("xep0374-openpgp", "OpenPGP for XMPP"),
        ("conversations-pgp", "Legacy OpenPGP"),
    ]

    async def scenario():
        alice = await registered_client(gateway)
        transport, transport_id = client_stanza("conversations-omemo-key-transport")
        alice.xmpp.send_raw(transport)
        for name, scheme in cases:
            xml, stanza_id = client_stanza(name)
            alice.xmpp.send_raw(xml)
            error = await alice.wait_for(lambda m: m["id"] == stanza_id and m["type"] == "error")
            assert (error["error"], error["error_type"]) == ("not-acceptable", "cancel"), (name, error)
            assert error["from"] == escaped("bob@example.net"), (name, error)
            text = error_text(error)
            assert f"cannot read end-to-end encrypted messages ({scheme})" in text, (name, text)
            assert "turn encryption off for this chat" in text, (name, text)
            # Never the receipt that would say it was taken.
            assert not any(m["receipt"] == stanza_id for m in alice.messages), (name, alice.messages)
        # A plain message after them all: once it is sent, the queue and the
        # relay hold that one mail and no other (each error above came once
        # facteur had decided on its stanza).
        sent = alice.send(escaped("bob@example.net"), "in clear, after all", receipt=True)
        await alice.wait_for(lambda m: m["receipt"] == sent)
        assert await wait_until(lambda: gateway.relay.received, timeout=15), gateway.facteur.log_tail()
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_mail", "sent")) == 1)
        outgoing = {k: n for k, n in gateway.facteur.queue().items() if k[0] == "to_mail" and n}
        assert outgoing == {("to_mail", "sent"): 1}, outgoing
        bodies = [r["message"].get_content().strip() for r in gateway.relay.received]
        assert bodies == ["in clear, after all"], bodies
        assert not any(m["id"] == transport_id for m in alice.messages), alice.messages
        await alice.disconnect()
    run(scenario())


ORIGINAL = "Meet me at the old mill at nine."


def test_retraction_of_a_mail_that_left(gateway):
    """Conversations retracts its message after the mail has left: the
    retraction and its fallback text are not mailed, and alice is told, in
    her conversation with bob, that mail cannot be unsent."""
    async def scenario():
        alice = await registered_client(gateway)
        original, original_id = client_stanza("conversations-chat")
        alice.xmpp.send_raw(original)
        await alice.wait_for(lambda m: m["receipt"] == original_id)
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_mail", "sent")) == 1)
        assert mailed(gateway) == [ORIGINAL]
        retraction, _ = client_stanza("conversations-retract")
        alice.xmpp.send_raw(retraction)
        notice = await alice.wait_for(lambda m: "unsent" in (m["body"] or ""))
        assert notice["from"] == escaped("bob@example.net"), notice
        assert notice["body"] == (
            "Your retracted message to bob@example.net had already left as mail, and mail "
            "cannot be unsent: bob@example.net keeps it."), notice
        # A plain message after the retraction is the second and last mail.
        sent = alice.send(escaped("bob@example.net"), "one more", receipt=True)
        await alice.wait_for(lambda m: m["receipt"] == sent)
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_mail", "sent")) == 2)
        outgoing = {k: n for k, n in gateway.facteur.queue().items() if k[0] == "to_mail" and n}
        assert outgoing == {("to_mail", "sent"): 2}, outgoing
        assert mailed(gateway) == [ORIGINAL, "one more"]
        assert not any("/me retracted" in (m["body"] or "") for m in alice.messages), alice.messages
        await alice.disconnect()
    run(scenario())


def test_retraction_of_a_mail_still_queued(tmp_path, store_url):
    """Conversations retracts its message while the relay refuses it for
    now (451, next attempt in an hour): the mail is withdrawn, alice is
    told it was not sent, and it never leaves."""
    gateway = Gateway(tmp_path, retry={"retry_initial": '"1h"', "retry_max": '"2h"'},
                      store_url=store_url)

    async def scenario():
        alice = await registered_client(gateway)
        gateway.relay.refusing = True
        original, original_id = client_stanza("conversations-chat")
        alice.xmpp.send_raw(original)
        # The refusal is recorded: the mail waits for its next attempt.
        assert await wait_until(lambda: any(" attempts=1 " in line for line in queue_list(gateway)))
        retraction, _ = client_stanza("conversations-retract")
        alice.xmpp.send_raw(retraction)
        notice = await alice.wait_for(lambda m: "withdrawn" in (m["body"] or ""))
        assert notice["from"] == escaped("bob@example.net"), notice
        assert notice["body"] == (
            "Your retracted message to bob@example.net was still waiting to leave: it was "
            "withdrawn and not sent."), notice
        assert queue_list(gateway) == []
        # The relay takes mail again: only the message sent after the
        # retraction leaves; the withdrawn one is failed, never due again.
        gateway.relay.refusing = False
        sent = alice.send(escaped("bob@example.net"), "one more", receipt=True)
        await alice.wait_for(lambda m: m["receipt"] == sent)
        assert await wait_until(lambda: gateway.relay.received)
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_mail", "sent")) == 1)
        outgoing = {k: n for k, n in gateway.facteur.queue().items() if k[0] == "to_mail" and n}
        assert outgoing == {("to_mail", "sent"): 1, ("to_mail", "failed"): 1}, outgoing
        assert mailed(gateway) == ["one more"]
        assert [r["rcpt"] for r in gateway.relay.refused] == ["bob@example.net"]
        # The withdrawn mail was never delivered: no receipt for it.
        assert not any(m["receipt"] == original_id for m in alice.messages), alice.messages
        await alice.disconnect()
    try:
        gateway.start()
        run(scenario())
    finally:
        gateway.stop()


CORRECTED = "Meet me at the old mill at ten."


def original_with_subject():
    """Conversations' plain message, with a Subject as Gajim's subject
    field sends one."""
    xml, stanza_id = client_stanza("conversations-chat")
    return xml.replace("<body>", "<subject>Dinner</subject><body>", 1), stanza_id


def test_correction_of_a_mail_that_left(gateway):
    """Conversations corrects its last message after the mail has left:
    the correction goes as a reply to it, under the same Subject, opening
    with a line that says what it is."""
    async def scenario():
        alice = await registered_client(gateway)
        original, original_id = original_with_subject()
        alice.xmpp.send_raw(original)
        await alice.wait_for(lambda m: m["receipt"] == original_id)
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_mail", "sent")) == 1)
        correction, correction_id = client_stanza("conversations-correction")
        alice.xmpp.send_raw(correction)
        await alice.wait_for(lambda m: m["receipt"] == correction_id)
        assert await wait_until(lambda: len(gateway.relay.received) == 2), gateway.facteur.log_tail()
        first, second = (r["message"] for r in gateway.relay.received)
        assert first["Subject"] == "Dinner"
        assert first.get_content().strip() == ORIGINAL
        assert second["Subject"] == "Dinner"
        assert second["In-Reply-To"] == first["Message-ID"], (second["In-Reply-To"], first["Message-ID"])
        assert second["References"].split()[-1] == first["Message-ID"], second["References"]
        assert second["Message-ID"] != first["Message-ID"]
        text = second.get_content().replace("\r\n", "\n").rstrip("\n")
        assert text == "Correction of my previous message:\n\n" + CORRECTED, text
        outgoing = {k: n for k, n in gateway.facteur.queue().items() if k[0] == "to_mail" and n}
        assert outgoing == {("to_mail", "sent"): 2}, outgoing
        await alice.disconnect()
    run(scenario())


def test_correction_of_a_mail_still_queued(tmp_path, store_url):
    """Conversations corrects its last message while the relay refuses it
    for now (451, next attempt in an hour): the corrected text takes the
    queued mail's place, and only the corrected mail leaves, as the
    original (its Message-ID, its Subject, no correction line)."""
    gateway = Gateway(tmp_path, retry={"retry_initial": '"1h"', "retry_max": '"2h"'},
                      store_url=store_url)

    def cli(*args):
        return subprocess.run([gateway.facteur.binary, "queue", "--config", str(gateway.facteur.config),
                               *args], check=True, capture_output=True, text=True, timeout=30).stdout

    async def scenario():
        alice = await registered_client(gateway)
        gateway.relay.refusing = True
        original, original_id = original_with_subject()
        alice.xmpp.send_raw(original)
        assert await wait_until(lambda: any(" attempts=1 " in line for line in queue_list(gateway)))
        [line] = queue_list(gateway)
        item = line.split()[0]
        shown = cli("show", item)
        [message_id] = [l.split(":", 1)[1].strip() for l in shown.splitlines() if l.startswith("Message-ID:")]
        correction, correction_id = client_stanza("conversations-correction")
        alice.xmpp.send_raw(correction)
        await asyncio.to_thread(gateway.facteur.wait_log, "Queued mail corrected.", 15)
        # Still one mail waiting: the same; nothing delivered, no receipt.
        assert not any(m["receipt"] for m in alice.messages), alice.messages
        assert [l.split()[0] for l in queue_list(gateway)] == [item]
        gateway.relay.refusing = False
        cli("retry", item)
        assert await wait_until(lambda: gateway.relay.received), gateway.facteur.log_tail()
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_mail", "sent")) == 1)
        outgoing = {k: n for k, n in gateway.facteur.queue().items() if k[0] == "to_mail" and n}
        assert outgoing == {("to_mail", "sent"): 1}, outgoing
        [mail] = [r["message"] for r in gateway.relay.received]
        assert mail["Message-ID"].strip("<>") == message_id.strip("<>"), (mail["Message-ID"], message_id)
        assert mail["Subject"] == "Dinner"
        assert mail["In-Reply-To"] is None
        assert mail.get_content().strip() == CORRECTED
        # Delivered: the receipts of the original and of its correction.
        await alice.wait_for(lambda m: m["receipt"] == original_id)
        await alice.wait_for(lambda m: m["receipt"] == correction_id)
        await alice.disconnect()
    try:
        gateway.start()
        run(scenario())
    finally:
        gateway.stop()


CAKE_MAIL = (
    "From: Bob <bob@example.net>\r\n"
    "To: alice@example.test\r\n"
    "Subject: Cake\r\n"
    "Message-ID: <cake@example.net>\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Shall we bake a cake?\r\n"
).encode()


def test_reply_with_a_fallback_quote(gateway):
    """A reply in the shape of XEP-0461's example (Conversations', Gajim's,
    Dino's): the quote its fallback marks is one `> ` block in text/plain
    and one blockquote in HTML, and the quoted text appears nowhere else."""
    async def scenario():
        alice = await registered_client(gateway)
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], CAKE_MAIL)
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["body"] == "Shall we bake a cake?")
        xml, stanza_id = client_stanza("xep0461-reply")
        alice.xmpp.send_raw(xml.replace("REPLIED-ID", got["id"]))
        assert await wait_until(lambda: gateway.relay.received), gateway.facteur.log_tail()
        mail = gateway.relay.received[0]["message"]
        assert mail["In-Reply-To"] == "<cake@example.net>"
        plain = mail.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n")
        assert plain == "> Bob wrote:\n> Shall we bake a cake?\nGreat idea!", plain
        html = mail.get_body(("html",)).get_content()
        assert html.count("<blockquote>") == 1, html
        assert html.count("Shall we bake a cake?") == 1, html
        quote_end = html.index("</blockquote>")
        assert html.index("Shall we bake a cake?") < quote_end < html.index("Great idea!"), html
        await alice.disconnect()
    run(scenario())


REACTIONS = "urn:xmpp:reactions:0"


def test_reactions_to_a_mail_go_as_rfc_9078_mails(gateway):
    """Conversations' reaction, and a reaction with a fallback body, to
    bob's mail: each is a mail with Content-Disposition: reaction,
    In-Reply-To bob's mail, the emoji as its text; no fallback is mailed
    as a message of its own."""
    async def scenario():
        alice = await registered_client(gateway)
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], CAKE_MAIL)
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["body"] == "Shall we bake a cake?")
        for name in ["conversations-reaction", "xep0444-reaction-with-fallback"]:
            xml, _ = client_stanza(name)
            alice.xmpp.send_raw(xml.replace("REACTED-ID", got["id"]))
        assert await wait_until(lambda: len(gateway.relay.received) == 2), gateway.facteur.log_tail()
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_mail", "sent")) == 2)
        by_text = {r["message"].get_content().strip(): r["message"] for r in gateway.relay.received}
        assert set(by_text) == {"👍", "❤️🐢"}, set(by_text)
        for mail in by_text.values():
            assert mail["Content-Disposition"] == "reaction", mail
            assert mail.get_content_type() == "text/plain"
            assert mail["In-Reply-To"] == "<cake@example.net>"
            assert mail["References"].split()[-1] == "<cake@example.net>"
            assert mail["From"].addresses[0].addr_spec == "alice@example.test"
        await alice.disconnect()
    run(scenario())


def test_delta_chat_reaction_reaches_the_client_as_a_reaction(gateway):
    """Delta Chat reacts (RFC 9078) to alice's mail: alice's client gets a
    XEP-0444 reaction on her own message, by the id her client gave it, and
    no chat message."""
    async def scenario():
        alice = await registered_client(gateway)
        original, original_id = client_stanza("conversations-chat")
        alice.xmpp.send_raw(original)
        assert await wait_until(lambda: gateway.relay.received), gateway.facteur.log_tail()
        message_id = gateway.relay.received[0]["message"]["Message-ID"]
        # The XEP-0184 receipt the stanza asked for is a delivery too.
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_xmpp", "pending"), 0) == 0)
        before = gateway.facteur.queue().get(("to_xmpp", "delivered"), 0)
        raw = (ROOT / "fixtures" / "reaction" / "deltachat-thumbs-up.eml").read_bytes()
        raw = raw.replace(b"<alice-original@mail.example.test>", message_id.encode())
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], raw)
        assert code == 250, text
        got = await alice.wait_for(lambda m: REACTIONS in m["xml"])
        assert got["from"] == escaped("bob@example.net"), got
        assert not got["body"], got
        assert f"id=\"{original_id}\"" in got["xml"], got["xml"]
        assert ">👍</reaction>" in got["xml"], got["xml"]
        # Once the server has confirmed that one delivery, nothing else came:
        # no chat message.
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_xmpp", "delivered")) == before + 1)
        assert [m for m in alice.messages if m["body"]] == [], alice.messages
        await alice.disconnect()
    run(scenario())


MARKERS = "urn:xmpp:chat-markers:0"


def test_thunderbird_return_receipt_becomes_a_displayed_marker(gateway):
    """Bob's Thunderbird sends an RFC 8098 return receipt (displayed) for
    alice's mail: her client gets the XEP-0333 displayed marker on her
    message, no chat message. A receipt for a mail the gateway never sent
    arrives as the readable mail it is."""
    async def scenario():
        alice = await registered_client(gateway)
        original, original_id = client_stanza("conversations-chat")
        alice.xmpp.send_raw(original)
        assert await wait_until(lambda: gateway.relay.received), gateway.facteur.log_tail()
        message_id = gateway.relay.received[0]["message"]["Message-ID"]
        # The XEP-0184 receipt the stanza asked for is a delivery too.
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_xmpp", "pending"), 0) == 0)
        before = gateway.facteur.queue().get(("to_xmpp", "delivered"), 0)
        raw = (ROOT / "fixtures" / "mdn" / "thunderbird-displayed.eml").read_bytes()
        mdn = raw.replace(b"<alice-original@mail.example.test>", message_id.encode())
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], mdn)
        assert code == 250, text
        marker = await alice.wait_for(lambda m: MARKERS in m["xml"] and "displayed" in m["xml"])
        assert marker["from"] == escaped("bob@example.net"), marker
        assert f"id=\"{original_id}\"" in marker["xml"], marker["xml"]
        assert not marker["body"], marker
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_xmpp", "delivered")) == before + 1)
        assert [m for m in alice.messages if m["body"]] == [], alice.messages
        # About a mail facteur never sent: the mail itself, readable.
        other = raw.replace(b"<5c1e2f9a-", b"<other-")
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], other)
        assert code == 250, text
        readable = await alice.wait_for(lambda m: "Return Receipt" in (m["body"] or ""))
        assert MARKERS not in readable["xml"], readable["xml"]
        await alice.disconnect()
    run(scenario())


def asking_mail(n):
    """Bob's mail n to alice, asking for a read notification at his
    address for receipts."""
    return (f"From: Bob <bob@example.net>\r\nTo: alice@example.test\r\n"
            f"Subject: Read me {n}\r\nMessage-ID: <read-me-{n}@example.net>\r\n"
            f"Disposition-Notification-To: Bob <bob+receipts@example.net>\r\n\r\n"
            f"Tell me when you have read this ({n}).\r\n").encode()


def set_read_receipts(alice, on):
    return alice.iq("set", GATEWAY, (
        "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>jabber:iq:register</value></field>"
        f"<field var='send_mdn'><value>{int(on)}</value></field></x></query>"))


def test_conversations_displayed_marker_sends_the_read_notification_once(gateway):
    """Bob's mails ask for a read notification (Disposition-Notification-To).
    Alice's option is off at first: her client's displayed marker sends
    nothing. With "Send read receipts when my client marks a mail read"
    on, the mail reaches her client markable, and Conversations' displayed
    marker on it mails the RFC 8098 MDN From alice to the address the mail
    named, once: the same marker again sends nothing."""
    marker, _ = client_stanza("conversations-displayed")

    async def receive(alice, n):
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"],
            asking_mail(n))
        assert code == 250, text
        return await alice.wait_for(lambda m: m["subject"] == f"Read me {n}")

    async def barrier(alice, count):
        """A plain message after the markers: once it is mailed, every
        marker before it has been handled; the relay then holds `count`
        mails in all."""
        sent = alice.send(escaped("bob@example.net"), f"barrier {count}", receipt=True)
        await alice.wait_for(lambda m: m["receipt"] == sent)
        subjects = lambda: [r["message"]["Subject"] for r in gateway.relay.received]
        assert await wait_until(lambda: len(gateway.relay.received) >= count), subjects()
        last = gateway.relay.received[-1]["message"]
        assert last.get_content_type() == "text/plain", subjects()
        assert last.get_content().strip() == f"barrier {count}", subjects()
        assert len(gateway.relay.received) == count, subjects()

    async def scenario():
        alice = await registered_client(gateway)
        # Off (the default): nothing is mailed for the marker.
        first = await receive(alice, 1)
        assert f"<markable xmlns=\"{MARKERS}\"" not in first["xml"], first["xml"]
        alice.xmpp.send_raw(marker.replace("TARGET", first["id"]))
        await barrier(alice, 1)

        result = await set_read_receipts(alice, True)
        assert result["type"] == "result", result
        second = await receive(alice, 2)
        assert f"<markable xmlns=\"{MARKERS}\"" in second["xml"], second["xml"]
        displayed = marker.replace("TARGET", second["id"])
        alice.xmpp.send_raw(displayed)
        assert await wait_until(lambda: len(gateway.relay.received) == 2), gateway.facteur.log_tail()
        alice.xmpp.send_raw(displayed)
        await barrier(alice, 3)
        await alice.disconnect()
    run(scenario())

    mdn = gateway.relay.received[1]
    assert mdn["rcpt_tos"] == ["bob+receipts@example.net"], mdn
    message = mdn["message"]
    assert message["From"] == "alice@example.test"
    assert message["To"] == "bob+receipts@example.net"
    assert message["Subject"] == "Return Receipt (displayed) - Read me 2"
    assert message["In-Reply-To"] == "<read-me-2@example.net>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "disposition-notification"
    raw = mdn["raw"].decode()
    assert "Final-Recipient: rfc822;alice@example.test\r\n" in raw, raw
    assert "Original-Message-ID: <read-me-2@example.net>\r\n" in raw, raw
    assert "Disposition: manual-action/MDN-sent-manually; displayed\r\n" in raw, raw
