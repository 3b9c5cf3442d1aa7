"""What the README and SUPPORTED.md promise, through the daemon: SMTPUTF8
both ways, STARTTLS, ARC-sealed forwarding, a wrong component secret,
`users = "all"`, mail accepted while the DNS server is down, shared files
on private addresses left as links with the default `fetch_private =
false`, and attachment links gone once `http.retention` has passed."""

import asyncio
import http.server
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage

import pytest
import slixmpp

from peers import (GATEWAY, Client, Gateway, dkim_record, escaped, registered_client, run,
                   send_mail, wait_until)
from test_trust import BINARY, mail


def test_smtputf8_addresses_round_trip(gateway):
    import smtplib

    sender = "jöran@exämple.net"
    jid = "jöran\\40exämple.net@" + GATEWAY
    raw = (f"From: Jöran <{sender}>\r\nTo: alice@example.test\r\nSubject: Hej\r\n"
           "Message-ID: <utf8@xn--exmple-cua.net>\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\nHej Alice!\r\n").encode()

    def deliver():
        with smtplib.SMTP("127.0.0.1", gateway.facteur.smtp_port, timeout=15) as smtp:
            smtp.ehlo("client.example.net")
            assert smtp.has_extn("smtputf8")
            return smtp.sendmail(sender, ["alice@example.test"], raw, mail_options=["SMTPUTF8"])

    async def scenario():
        alice = await registered_client(gateway)
        assert await asyncio.to_thread(deliver) == {}
        got = await alice.wait_for(lambda m: m["subject"] == "Hej")
        assert got["from"] == jid, got["xml"]
        assert got["body"] == "Hej Alice!"
        alice.send(jid, "Hej Jöran!", subject="Re: Hej")
        assert await wait_until(lambda: gateway.relay.received, timeout=15), gateway.facteur.log_tail()
        out = gateway.relay.received[0]
        assert out["rcpt_tos"] == [sender], out["rcpt_tos"]
        assert "SMTPUTF8" in out["mail_options"], out["mail_options"]
        # RFC 6532: the header holds the address as UTF-8.
        head = out["raw"].split(b"\r\n\r\n", 1)[0].decode("utf-8")
        assert f"\r\nTo: {sender}\r\n" in head or f"\r\nTo: <{sender}>\r\n" in head, head
        await alice.disconnect()
    run(scenario())


def test_starttls_end_to_end(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=mx.example.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    gateway = Gateway(tmp_path, tls_cert=f'"{cert}"', tls_key=f'"{key}"')
    try:
        gateway.start()
        gateway.facteur.register("alice@example.test")
        swaks = subprocess.run(
            ["swaks", "--server", f"127.0.0.1:{gateway.facteur.smtp_port}", "--tls",
             "--from", "bob@example.net", "--to", "alice@example.test", "--helo", "client.example.net",
             "--header", "Subject: Over TLS", "--body", "Sealed."],
            capture_output=True, text=True, timeout=60)
        assert swaks.returncode == 0, swaks.stdout + swaks.stderr
        assert "TLS started" in swaks.stdout, swaks.stdout
        with sqlite3.connect(gateway.facteur.dir / "facteur.db") as db:
            stored = db.execute("SELECT raw FROM inbound_mail").fetchall()
        assert len(stored) == 1
        head = stored[0][0].split(b"\r\n\r\n", 1)[0].decode()
        assert "by mx.example.test (facteur) with ESMTPS" in head, head

        async def scenario():
            alice = await registered_client(gateway)
            got = await alice.wait_for(lambda m: m["subject"] == "Over TLS")
            assert got["body"] == "Sealed."
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()


# The original author's domain refuses what fails DMARC; the list may send
# from loopback and seals what it forwards.
ARC_RECORDS = {
    "origin.test": "v=spf1 -all",
    "_dmarc.origin.test": "v=DMARC1; p=reject",
    "lists.test": "v=spf1 ip4:127.0.0.1 -all",
}


def arc_gateway(tmp_path, trusted):
    key = tmp_path / "lists.pem"
    out = subprocess.run([BINARY, "dkim", "keygen", "--domain", "lists.test", "--selector", "arc",
                          "--out", str(key)], capture_output=True, text=True, check=True).stdout
    name, value = dkim_record(out)
    records = dict(ARC_RECORDS, **{name: value})
    sealers = '["lists.test"]' if trusted else "[]"
    gateway = Gateway(tmp_path, dns={"txt": records}, auth=f"trusted_arc_sealers = {sealers}")
    return gateway, key.read_bytes()


def forwarded(key, subject):
    """A mail of origin.test as the list forwards it: the author's
    signature is gone, the list's ARC seal covers what it checked."""
    import dkim
    raw = mail("Author <author@origin.test>", subject, body="Posted to the list.").replace(
        b"To: alice@example.test", b"To: list@lists.test\r\nCc: alice@example.test")
    raw = (b"Authentication-Results: lists.test; spf=pass smtp.mailfrom=author@origin.test;"
           b" dkim=pass header.d=origin.test; dmarc=pass header.from=origin.test\r\n" + raw)
    seal = dkim.arc_sign(raw, b"arc", b"lists.test", key, b"lists.test",
                         include_headers=[b"from", b"to", b"subject", b"message-id", b"date"])
    return b"".join(seal) + raw


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_an_arc_sealed_forward_of_a_reject_domain(tmp_path, trusted):
    gateway, key = arc_gateway(tmp_path, trusted)
    try:
        gateway.start()
        gateway.facteur.register("alice@example.test")

        async def scenario():
            alice = await registered_client(gateway)
            code, text = await asyncio.to_thread(
                send_mail, gateway.facteur.smtp_port, "list-bounces@lists.test", ["alice@example.test"],
                forwarded(key, "From the list"))
            if not trusted:
                assert (code, text[:6]) == (550, "5.7.1 "), text
                assert "origin.test" in text, text
            else:
                assert code == 250, text
                got = await alice.wait_for(lambda m: m["subject"] == "From the list")
                assert got["auth"] == {"spf": "pass", "dkim": "none", "dmarc": "fail", "arc": "pass"}, \
                    got["auth"]
                assert got["body"] == ("[Unverified sender: DMARC failed for origin.test, forwarded by "
                                       "trusted lists.test (ARC)]\n\nPosted to the list."), got["body"]
            # The same mail without its seal is refused either way.
            unsealed = forwarded(key, "Unsealed").split(b"Authentication-Results:", 1)[1]
            code, text = await asyncio.to_thread(
                send_mail, gateway.facteur.smtp_port, "list-bounces@lists.test", ["alice@example.test"],
                b"Authentication-Results:" + unsealed)
            assert (code, text[:6]) == (550, "5.7.1 "), text
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()


def test_a_wrong_component_secret_is_an_error_and_retried(tmp_path):
    gateway = Gateway(tmp_path)
    config = gateway.facteur.config
    config.write_text(config.read_text().replace('secret = "e2e-component-secret"', 'secret = "wrong"'))
    try:
        gateway.prosody.start()
        gateway.dns.start()
        gateway.relay.start()
        gateway.facteur.start()
        refused = "The XMPP server refused the component; check component.jid, component.secret"

        def refusals():
            return [line for line in gateway.facteur.log_since_start().splitlines() if refused in line]
        assert run(wait_until(lambda: len(refusals()) >= 3, timeout=20)), gateway.facteur.log_tail()
        assert all(" ERROR " in line for line in refusals()), refusals()
        assert gateway.facteur.alive()
        assert "Component link up." not in gateway.facteur.log_since_start()
        # Mail still waits in the store meanwhile.
        gateway.facteur.register("alice@example.test")
        code, text = send_mail(gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"],
                               mail("bob@example.net", "While the link is down"))
        assert code == 250, text
    finally:
        gateway.stop()


def test_users_all_have_mail_without_registering(tmp_path):
    gateway = Gateway(tmp_path, mail='users = "all"')
    try:
        gateway.start()

        async def scenario():
            bob = Client("bob", gateway.prosody.c2s)
            await bob.connect()
            code, text = await asyncio.to_thread(
                send_mail, gateway.facteur.smtp_port, "carol@example.net", ["bob@example.test"],
                mail("carol@example.net", "For every user").replace(b"alice@", b"bob@"))
            assert code == 250, text
            got = await bob.wait_for(lambda m: m["subject"] == "For every user")
            assert got["from"] == "carol\\40example.net@" + GATEWAY
            bob.send(got["from"], "Thanks, Carol.", subject="Re: For every user")
            assert await wait_until(lambda: gateway.relay.received, timeout=15), gateway.facteur.log_tail()
            out = gateway.relay.received[0]
            assert out["rcpt_tos"] == ["carol@example.net"]
            assert out["message"]["From"].addresses[0].addr_spec == "bob@example.test"
            await bob.disconnect()
        run(scenario())
    finally:
        gateway.stop()


def test_dns_trouble_never_refuses_a_mail(tmp_path):
    gateway = Gateway(tmp_path, dns={"txt": {"_dmarc.example.net": "v=DMARC1; p=reject"}})
    try:
        gateway.start()
        gateway.facteur.register("alice@example.test")
        gateway.dns.stop()

        async def scenario():
            alice = await registered_client(gateway)
            code, text = await asyncio.to_thread(
                send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"],
                mail("bob@example.net", "DNS is down"), timeout=60)
            assert code == 250, text
            got = await alice.wait_for(lambda m: m["subject"] == "DNS is down", timeout=30)
            assert got["body"] == "Hello."
            assert got["auth"]["spf"] == "temperror" and got["auth"]["dmarc"] == "temperror", got["auth"]
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()


class FileServer:
    """A loopback HTTP server that records every path asked for."""

    def __init__(self, files):
        asked = self.asked = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                asked.append(self.path)
                data = files.get(self.path.lstrip("/"))
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def share(client, to, url):
    """Shares a file as clients do: the URL as body, with XEP-0066 OOB."""
    stanza = client.xmpp.make_message(mto=to, mbody=url, mtype="chat")
    stanza.append(slixmpp.xmlstream.ET.fromstring(f"<x xmlns='jabber:x:oob'><url>{url}</url></x>"))
    stanza.send()


def test_files_on_private_addresses_stay_links_by_default(tmp_path):
    document = b"%PDF-1.4\n" + bytes(range(256)) * 10
    files = FileServer({"notes.pdf": document})
    # Both names are allowed hosts: only the private-address guard stands
    # between them and the loopback server.
    gateway = Gateway(tmp_path, fetch_hosts=["127.0.0.1", "localhost"], fetch_private=False)
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            urls = [f"http://127.0.0.1:{files.port}/notes.pdf",   # an address
                    f"http://localhost:{files.port}/notes.pdf"]   # a name resolving to one
            for n, url in enumerate(urls, 1):
                share(alice, escaped("bob@example.net"), url)
                assert await wait_until(lambda: len(gateway.relay.received) == n, timeout=20), \
                    gateway.facteur.log_tail()
                mail = gateway.relay.received[n - 1]["message"]
                assert list(mail.iter_attachments()) == [], url
                assert url in mail.get_body(("plain",)).get_content()
            assert files.asked == [], files.asked
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()
        files.stop()


def mail_with_attachment():
    mail = EmailMessage()
    mail["From"] = "bob@example.net"
    mail["To"] = "alice@example.test"
    mail["Subject"] = "Short-lived"
    mail["Message-ID"] = "<short-lived@example.net>"
    mail.set_content("See the file.\n")
    mail.add_attachment(b"kept for a few seconds", maintype="application", subtype="octet-stream",
                        filename="brief.bin")
    return mail.as_bytes()


def status_of(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_an_expired_link_is_no_longer_served(tmp_path):
    retention = 8
    gateway = Gateway(tmp_path, http=f'retention = "{retention}s"')
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            code, text = await asyncio.to_thread(
                send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"],
                mail_with_attachment())
            assert code == 250, text
            accepted = time.monotonic()
            got = await alice.wait_for(lambda m: m["subject"] == "Short-lived")
            url = got["files"][0]["url"]
            assert await asyncio.to_thread(status_of, url) == (200, b"kept for a few seconds")
            assert time.monotonic() - accepted < retention, "too slow to see the link live"

            def gone():
                return status_of(url)[0] != 200
            assert await wait_until(gone, timeout=retention + 10, interval=0.25)
            assert time.monotonic() - accepted >= retention - 0.5
            assert await asyncio.to_thread(status_of, url) == (404, b"No such file (it may have expired).\n")
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()
