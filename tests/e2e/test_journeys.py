"""The first journeys, end to end: a real XMPP server (each journey runs
beside Prosody and beside ejabberd, with the store on SQLite, and beside
Prosody with the store on PostgreSQL), real slixmpp clients, real SMTP
on both sides, facteur as a process."""

import asyncio
import hashlib
import os
import re
import socket
import time

import pytest
import slixmpp

from peers import (GATEWAY, ROOT, Client, Gateway, dkim_record, escaped, mail_parser_malformed,
                   rcpt_reply, registered_client, run, send_mail, wait_until)

@pytest.fixture(params=[("prosody", "sqlite"), ("ejabberd", "sqlite"), ("prosody", "postgres")],
                ids=["prosody", "ejabberd", "prosody-postgres"])
def setup(request):
    """(XMPP server, store): the store does not depend on the server, so
    PostgreSQL runs beside one of them."""
    return request.param


@pytest.fixture
def xmpp_server(setup):
    return setup[0]


@pytest.fixture
def store(setup):
    return setup[1]


UTF8_MAIL = (
    "From: Bob Example <bob@example.net>\r\n"
    "To: alice@example.test\r\n"
    "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=\r\n"
    "Message-ID: <first@example.net>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Grüße, ça va? 日本語のテキスト\r\n"
).encode()


def test_email_reaches_registered_user(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], UTF8_MAIL)
        assert code == 250, text
        message = await alice.wait_for(lambda m: m["body"])
        assert message["from"] == "bob\\40example.net@" + GATEWAY
        assert message["type"] == "chat"
        assert message["subject"] == "Grüße aus Köln"
        assert message["body"] == "Grüße, ça va? 日本語のテキスト"
        # The address book: the contact's vCard carries the name from the mail.
        vcard = await alice.iq("get", message["from"], "<vCard xmlns='vcard-temp'/>")
        assert vcard.xml.find(".//{vcard-temp}FN").text == "Bob Example"
        assert vcard.xml.find(".//{vcard-temp}USERID").text == "bob@example.net"
        await alice.disconnect()
    run(scenario())


def test_reply_reaches_the_relay_as_mail(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        # Her vCard's name becomes the From display name.
        stored = await alice.iq("set", None, "<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN></vCard>")
        assert stored["type"] == "result"
        sent = alice.send(escaped("bob@example.net"), "Merci Bob, à bientôt.\nAlice", subject="Re: Grüße",
                          receipt=True)
        receipt = await alice.wait_for(lambda m: m["receipt"] == sent)
        assert receipt["from"] == escaped("bob@example.net")
        assert await wait_until(lambda: gateway.relay.received, timeout=15), gateway.facteur.log_tail()
        got = gateway.relay.received[0]
        # The return path names the queued mail, signed (VERP).
        assert re.fullmatch(r"bounce\+\d+-[0-9a-f]{24}@example\.test", got["mail_from"]), got["mail_from"]
        assert got["rcpt_tos"] == ["bob@example.net"]
        mail = got["message"]
        assert mail["From"].addresses[0].addr_spec == "alice@example.test"
        assert mail["From"].addresses[0].display_name == "Alice Liddell"
        assert mail["To"].addresses[0].addr_spec == "bob@example.net"
        assert mail["Subject"] == "Re: Grüße"
        assert mail["Message-ID"].endswith("@" + GATEWAY + ">")
        assert mail["Date"] is not None
        assert mail.get_content_type() == "text/plain"
        assert mail.get_content_charset() == "utf-8"
        assert mail.get_content().replace("\r\n", "\n").rstrip("\n") == "Merci Bob, à bientôt.\nAlice"
        await alice.disconnect()
    run(scenario())


def test_refusals(tmp_path, xmpp_server, store_url):
    gateway = Gateway(tmp_path, server=xmpp_server, store_url=store_url, max_recipients=1)

    async def scenario():
        alice = await registered_client(gateway)
        port = gateway.facteur.smtp_port
        code, text = await asyncio.to_thread(rcpt_reply, port, "bob@example.test")
        assert (code, text.split()[0]) == (550, "5.1.1"), text
        code, text = await asyncio.to_thread(rcpt_reply, port, "x@elsewhere.test")
        assert (code, text.split()[0]) == (550, "5.7.1"), text
        big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 300
        code, text = await asyncio.to_thread(send_mail, port, "bob@example.net", ["alice@example.test"], big)
        assert (code, text.split()[0]) == (552, "5.3.4"), text
        code, text = await asyncio.to_thread(
            send_mail, port, "bob@example.net", ["alice@example.test", "bob@example.test"], UTF8_MAIL)
        assert (code, text) == (452, "4.5.3 Too many recipients"), text
        # An unregistered sender gets an error and nothing is sent.
        bob = Client("bob", gateway.xmpp.c2s)
        await bob.connect()
        sent = bob.send(escaped("carol@example.net"), "hello?")
        error = await bob.wait_for(lambda m: m["type"] == "error" and m["id"] == sent)
        assert (error["error"], error["error_type"]) == ("forbidden", "auth"), error
        # The relay is up: a mail sent anyway would be there by now.
        alice.send(escaped("carol@example.net"), "from a registered user")
        assert await wait_until(lambda: gateway.relay.received, timeout=15)
        await asyncio.sleep(1)
        assert [r["rcpt_tos"] for r in gateway.relay.received] == [["carol@example.net"]], gateway.relay.received
        assert gateway.relay.received[0]["message"].get_content().strip() == "from a registered user"
        await bob.disconnect()
        await alice.disconnect()
    try:
        gateway.start()
        run(scenario())
    finally:
        gateway.stop()


def test_unregistering_stops_mail(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        sent = alice.send(escaped("bob@example.net"), "while registered", receipt=True)
        await alice.wait_for(lambda m: m["receipt"] == sent)
        result = await alice.iq("set", GATEWAY, "<query xmlns='jabber:iq:register'><remove/></query>")
        assert result["type"] == "result"
        code, text = await asyncio.to_thread(rcpt_reply, gateway.facteur.smtp_port, "alice@example.test")
        assert (code, text) == (550, "5.1.1 No such user here"), text
        sent = alice.send(escaped("bob@example.net"), "after unregistering", receipt=True)
        answer = await alice.wait_for(lambda m: m["id"] == sent or m["receipt"] == sent)
        assert (answer["type"], answer["error"], answer["error_type"]) == ("error", "forbidden", "auth"), answer
        await alice.disconnect()
    run(scenario())


def test_mail_survives_xmpp_server_outage_and_gateway_crash(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        await alice.disconnect()
        gateway.xmpp.stop()
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], UTF8_MAIL)
        assert code == 250, text
        gateway.facteur.kill()
        gateway.facteur.start()
        gateway.xmpp.start()
        await asyncio.to_thread(gateway.facteur.wait_log, "Component link up.", 20)
        # Stored offline first: a session that is still starting could
        # race the server's offline store (ejabberd stores a message for a
        # session without presence yet, after flushing the store).
        await asyncio.to_thread(gateway.facteur.wait_log, "Delivered to XMPP.", 20)
        alice = Client("alice", gateway.xmpp.c2s)
        await alice.connect()
        message = await alice.wait_for(lambda m: m["body"], timeout=20)
        assert message["body"] == "Grüße, ça va? 日本語のテキスト"
        await asyncio.sleep(3)
        assert len([m for m in alice.messages if m["body"]]) == 1, alice.messages
        await alice.disconnect()
    run(scenario())


def test_outgoing_mail_waits_for_the_relay(gateway):
    async def scenario():
        gateway.relay.stop()
        alice = await registered_client(gateway)
        alice.send(escaped("bob@example.net"), "sent while the relay is down")
        await asyncio.to_thread(gateway.facteur.wait_log, "Mail deferred.", 15)
        # Back, but refusing with 451: up and able to take the mail, it
        # sees it tried again and keeps nothing.
        gateway.relay.refusing = True
        gateway.relay.start()
        assert await wait_until(lambda: len(gateway.relay.refused) >= 2, timeout=15), gateway.facteur.log_tail()
        assert gateway.relay.received == []
        assert gateway.facteur.queue().get(("to_mail", "queued")) == 1, gateway.facteur.queue()
        gateway.relay.refusing = False
        assert await wait_until(lambda: gateway.relay.received, timeout=15), gateway.facteur.log_tail()
        await asyncio.sleep(3)
        assert len(gateway.relay.received) == 1
        assert gateway.relay.received[0]["message"].get_content().strip() == "sent while the relay is down"
        await alice.disconnect()
    run(scenario())


def test_relay_refusal_comes_back_as_a_notice(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        alice.send(escaped("nobody@example.net"), "is anyone there?")
        notice = await alice.wait_for(lambda m: m["from"] == escaped("nobody@example.net") and m["body"])
        assert "nobody@example.net" in notice["body"], notice
        assert "550" in notice["body"] and "no such mailbox" in notice["body"], notice
        assert notice["subject"] == "Undelivered mail"
        assert gateway.relay.received == []
        await alice.disconnect()
    run(scenario())


def test_malformed_mail_never_kills_the_gateway(gateway):
    samples = mail_parser_malformed()
    assert samples, "mail-parser 0.11.9 sources not found in the cargo registry"

    async def scenario():
        alice = await registered_client(gateway)
        for path in samples:
            with open(path, "rb") as f:
                raw = f.read()
            code, text = await asyncio.to_thread(
                send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], raw)
            assert code == 250 or 500 <= code < 600, f"{path}: {code} {text}"
            assert gateway.facteur.alive(), path
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], UTF8_MAIL)
        assert code == 250, text
        await alice.wait_for(lambda m: m["body"] == "Grüße, ça va? 日本語のテキスト", timeout=30)
        assert gateway.facteur.alive()
        await alice.disconnect()
    run(scenario())


def test_connection_limit(tmp_path, xmpp_server, store_url):
    gateway = Gateway(tmp_path, server=xmpp_server, store_url=store_url, max_connections=2)
    try:
        gateway.start()
        held = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", gateway.facteur.smtp_port), timeout=5)
            assert s.recv(512).startswith(b"220 ")
            held.append(s)
        extra = socket.create_connection(("127.0.0.1", gateway.facteur.smtp_port), timeout=5)
        assert extra.recv(512).startswith(b"421 4.7.0")
        extra.close()
        held.pop().close()
        # facteur sees the close when it reads: until then a new client
        # may still find the house full; poll for the greeting.
        deadline = time.monotonic() + 10
        while True:
            again = socket.create_connection(("127.0.0.1", gateway.facteur.smtp_port), timeout=5)
            greeting = again.recv(512)
            again.close()
            if greeting.startswith(b"220 ") or time.monotonic() > deadline:
                break
            assert greeting.startswith(b"421 4.7.0"), greeting
            time.sleep(0.05)
        assert greeting.startswith(b"220 "), greeting
        for s in held:
            s.close()
    finally:
        gateway.stop()


def test_copies_keep_one_identity(gateway):
    """A mail sent twice by SMTP is acknowledged twice and reaches the client
    once, with the stanza id of its Message-ID; a stanza sent twice by a
    client is mailed once."""
    async def scenario():
        alice = await registered_client(gateway)
        other = UTF8_MAIL.replace(b"<first@example.net>", b"<second@example.net>")
        for mail in (UTF8_MAIL, UTF8_MAIL, other):
            code, text = await asyncio.to_thread(
                send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], mail)
            assert code == 250, text
        # Delivered in the order accepted: once the later mail is there,
        # a second copy of the first would be too.
        second = "mail-" + hashlib.sha256(b"second@example.net\0").hexdigest()[:32]
        assert await wait_until(lambda: any(m["id"] == second for m in alice.messages))
        ids = [m["id"] for m in alice.messages if m["body"]]
        assert ids == ["mail-" + hashlib.sha256(b"first@example.net\0").hexdigest()[:32], second], ids

        stanza = alice.xmpp.make_message(mto=escaped("bob@example.net"), mbody="only once", mtype="chat")
        stanza["id"] = "resent-1"
        stanza.append(slixmpp.xmlstream.ET.fromstring("<request xmlns='urn:xmpp:receipts'/>"))
        stanza.send()
        await alice.wait_for(lambda m: m["receipt"] == "resent-1")
        stanza.send()
        assert await wait_until(lambda: gateway.relay.received, timeout=15)
        await asyncio.sleep(3)
        assert len(gateway.relay.received) == 1, [r["message"]["Message-ID"] for r in gateway.relay.received]
        await alice.disconnect()
    run(scenario())


def test_threads_both_ways(gateway):
    """A mail, the user's reply, and the correspondent's answer stay one
    thread on both sides."""
    async def scenario():
        alice = await registered_client(gateway)
        port = gateway.facteur.smtp_port
        code, text = await asyncio.to_thread(send_mail, port, "bob@example.net", ["alice@example.test"], UTF8_MAIL)
        assert code == 250, text
        first = await alice.wait_for(lambda m: m["body"])
        assert first["thread"], first
        assert first["mail"]["message-id"] == "first@example.net", first

        sent = alice.send(escaped("bob@example.net"), "My answer", reply=(first["from"], first["id"]),
                          thread=first["thread"])
        assert await wait_until(lambda: gateway.relay.received, timeout=15)
        answer = gateway.relay.received[0]["message"]
        assert answer["In-Reply-To"] == "<first@example.net>"
        assert answer["References"] == "<first@example.net>"

        followup = (
            "From: Bob Example <bob@example.net>\r\nTo: alice@example.test\r\nSubject: Re: Re\r\n"
            f"Message-ID: <third@example.net>\r\nIn-Reply-To: {answer['Message-ID']}\r\n"
            f"References: <first@example.net> {answer['Message-ID']}\r\n\r\nThird message\r\n"
        ).encode()
        code, text = await asyncio.to_thread(send_mail, port, "bob@example.net", ["alice@example.test"], followup)
        assert code == 250, text
        third = await alice.wait_for(lambda m: m["body"] == "Third message")
        assert third["thread"] == first["thread"]
        assert third["reply"] == ("alice@example.test", sent), third
        await alice.disconnect()
    run(scenario())


def test_attachments_are_links_with_the_same_bytes(gateway):
    import base64
    import urllib.request
    from email.message import EmailMessage

    pdf = b"%PDF-1.4\n% a tiny document\n" + bytes(range(256)) * 40
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    mail = EmailMessage()
    mail["From"] = "Bob Example <bob@example.net>"
    mail["To"] = "alice@example.test"
    mail["Subject"] = "Report and logo"
    mail["Message-ID"] = "<files@example.net>"
    mail.set_content("See the report.\n")
    mail.add_alternative('<p>See the <b>report</b>.</p><img src="cid:logo@example.net" alt="logo">', subtype="html")
    mail.get_payload()[1].add_related(png, "image", "png", cid="<logo@example.net>", filename="logo.png")
    mail.add_attachment(pdf, maintype="application", subtype="pdf", filename="Rapport annuel é.pdf")

    async def scenario():
        alice = await registered_client(gateway)
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], mail.as_bytes())
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["subject"] == "Report and logo")
        files = {f["name"]: f for f in got["files"]}
        assert set(files) == {"logo.png", "Rapport annuel é.pdf"}, got["files"]
        assert got["oob"] and set(got["oob"]) == {f["url"] for f in files.values()}

        def fetch(url):
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read(), response.headers
        for name, expected in (("Rapport annuel é.pdf", pdf), ("logo.png", png)):
            entry = files[name]
            data, headers = await asyncio.to_thread(fetch, entry["url"])
            assert data == expected, name
            assert entry["size"] == len(expected)
            assert base64.b64decode(entry["sha-256"]) == hashlib.sha256(expected).digest()
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            assert "filename*=UTF-8''" in headers["Content-Disposition"]
        assert files["Rapport annuel é.pdf"]["url"] in got["body"]
        # The inline image of the HTML points at its link.
        assert f'src="{files["logo.png"]["url"]}"' in got["html"], got["html"]
        # A made-up token finds nothing.
        bad = files["logo.png"]["url"].rsplit("/", 2)[0] + "/" + "0" * 32 + "/logo.png"
        try:
            await asyncio.to_thread(fetch, bad)
            raise AssertionError("a made-up link served a file")
        except urllib.error.HTTPError as e:
            assert e.code == 404
        await alice.disconnect()
    run(scenario())


def test_shared_files_are_attached_from_allowed_hosts_only(tmp_path, xmpp_server, store_url):
    import http.server
    import threading

    files = tmp_path / "upload"
    files.mkdir()
    document = b"%PDF-1.4\n" + bytes(range(256)) * 100
    (files / "notes.pdf").write_bytes(document)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(files), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    gateway = Gateway(tmp_path, server=xmpp_server, store_url=store_url, fetch_hosts=["127.0.0.1"])
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            allowed = f"http://127.0.0.1:{port}/notes.pdf"
            stanza = alice.xmpp.make_message(mto=escaped("bob@example.net"), mbody=allowed, mtype="chat")
            stanza.append(slixmpp.xmlstream.ET.fromstring(f"<x xmlns='jabber:x:oob'><url>{allowed}</url></x>"))
            stanza.send()
            assert await wait_until(lambda: gateway.relay.received, timeout=20), gateway.facteur.log_tail()
            mail = gateway.relay.received[0]["message"]
            attachments = list(mail.iter_attachments())
            assert [a.get_filename() for a in attachments] == ["notes.pdf"]
            assert attachments[0].get_content() == document
            assert mail["Jabber-ID"] == "alice@example.test"

            disallowed = f"http://localhost:{port}/notes.pdf"
            stanza = alice.xmpp.make_message(mto=escaped("bob@example.net"), mbody=disallowed, mtype="chat")
            stanza.append(slixmpp.xmlstream.ET.fromstring(f"<x xmlns='jabber:x:oob'><url>{disallowed}</url></x>"))
            stanza.send()
            assert await wait_until(lambda: len(gateway.relay.received) == 2, timeout=20)
            mail = gateway.relay.received[1]["message"]
            assert list(mail.iter_attachments()) == []
            assert disallowed in mail.get_body(("plain",)).get_content()

            alice.send(escaped("bob@example.net"), "This is *important*")
            assert await wait_until(lambda: len(gateway.relay.received) == 3, timeout=20)
            mail = gateway.relay.received[2]["message"]
            assert mail.get_content_type() == "multipart/alternative"
            assert "<strong>important</strong>" in mail.get_body(("html",)).get_content()
            plain = mail.get_body(("plain",))
            assert plain.get_param("format") == "flowed"
            assert plain.get_content().strip() == "This is *important*"
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()
        server.shutdown()


def test_per_user_options_from_the_registration_form(gateway):
    from email.message import EmailMessage

    async def scenario():
        alice = Client("alice", gateway.xmpp.c2s)
        await alice.connect()
        form = await alice.iq("get", GATEWAY, "<query xmlns='jabber:iq:register'/>")
        fields = {f.get("var") for f in form.xml.iter("{jabber:x:data}field")}
        assert {"oob_each_file", "xhtml_im"} <= fields, fields
        await alice.iq("set", GATEWAY, (
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>jabber:iq:register</value></field>"
            "<field var='oob_each_file'><value>1</value></field>"
            "<field var='xhtml_im'><value>true</value></field></x></query>"))
        mail = EmailMessage()
        mail["From"] = "bob@example.net"
        mail["To"] = "alice@example.test"
        mail["Subject"] = "Options"
        mail["Message-ID"] = "<options@example.net>"
        mail.set_content("Plain.\n")
        mail.add_alternative("<p>Rich <b>text</b></p>", subtype="html")
        mail.add_attachment(b"%PDF-1.4\n", maintype="application", subtype="pdf", filename="doc.pdf")
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], mail.as_bytes())
        assert code == 250, text
        main = await alice.wait_for(lambda m: m["subject"] == "Options")
        assert "<strong>text</strong>" in main["xml"] and "http://jabber.org/protocol/xhtml-im" in main["xml"], main["xml"]
        url = main["files"][0]["url"]
        followup = await alice.wait_for(lambda m: m["body"] == url)
        assert followup["oob"] == [url]
        await alice.disconnect()
    run(scenario())


def test_large_html_is_a_link(gateway):
    import urllib.request

    html = "<html><body>" + "<p>Paragraph with <b>bold</b> text.</p>" * 3000 + "</body></html>"
    raw = ("From: bob@example.net\r\nTo: alice@example.test\r\nSubject: Newsletter\r\n"
           "Message-ID: <big-html@example.net>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/html; charset=utf-8\r\n\r\n" + html + "\r\n").encode()

    async def scenario():
        alice = await registered_client(gateway)
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], raw)
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["subject"] == "Newsletter")
        assert got["html"] is None
        assert [f["name"] for f in got["files"]] == ["message.html"]

        def fetch(url):
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.read().decode(), response.headers
        page, headers = await asyncio.to_thread(fetch, got["files"][0]["url"])
        assert page.count("<b>bold</b>") == 3000
        assert headers["Content-Disposition"].startswith("attachment;")
        await alice.disconnect()
    run(scenario())


@pytest.mark.parametrize("algorithm", ["rsa", "ed25519"])
def test_dkim_signatures_verify_with_an_independent_verifier(tmp_path, algorithm, xmpp_server,
                                                              store_url):
    import dkim
    import subprocess as sp

    binary = os.environ.get("FACTEUR_BIN", str(ROOT / "target" / "debug" / "facteur"))
    records, extra = {}, ""
    for domain in ("example.test",):
        key = tmp_path / f"{algorithm}.pem"
        out = sp.run([binary, "dkim", "keygen", "--domain", domain, "--selector", f"s-{algorithm}",
                      "--algorithm", algorithm, "--out", str(key)], capture_output=True, text=True, check=True).stdout
        name, value = dkim_record(out)
        records[name] = value
        extra += f'[dkim."{domain}"]\nselector = "s-{algorithm}"\nkey_file = "{key}"\n'
    gateway = Gateway(tmp_path / "gw", server=xmpp_server, store_url=store_url, extra=extra,
                      dns={"txt": records})
    dns_server = gateway.dns
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            alice.send(escaped("bob@example.net"), "Signed by the gateway.", subject="DKIM")
            assert await wait_until(lambda: gateway.relay.received, timeout=15)
            raw = gateway.relay.received[0]["raw"]
            assert raw.startswith(b"DKIM-Signature:"), raw[:200]
            assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: dns_server.txt(name.decode().rstrip(".")))
            # A changed body no longer verifies.
            assert not dkim.verify(raw.replace(b"Signed by", b"Forged by"),
                                   dnsfunc=lambda name, timeout=5: dns_server.txt(name.decode().rstrip(".")))
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()
