"""Links both ways, as the operator configured them: shared files on
private addresses are not fetched with the default `fetch_private =
false`, and attachment links stop being served once `http.retention` has
passed."""

import asyncio
import http.server
import threading
import time
import urllib.error
import urllib.request
from email.message import EmailMessage

import slixmpp

from peers import Gateway, escaped, registered_client, run, send_mail, wait_until


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
