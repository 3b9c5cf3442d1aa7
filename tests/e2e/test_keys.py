"""facteur as the OpenPGP key directory of its users, checked with GnuPG:
alice publishes a key made by gpg through the ad-hoc command "OpenPGP
key" (XEP-0050, from a real client through Prosody); gpg-wks-client names
the WKD URL of her address; what facteur's HTTP listener serves there
imports into a scratch GnuPG home with her fingerprint and her address
alone; her revocation is served as such; bad keys are refused with the
command's note."""

import asyncio
import base64
import html
import subprocess
import time
import urllib.error
import urllib.request
from email import policy
from email.parser import BytesParser
from email.utils import formatdate
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import pytest
import slixmpp

from peers import (GATEWAY, Client, Gateway, escaped, registered_client, run, send_mail,
                   wait_until)

COMMANDS = "http://jabber.org/protocol/commands"
FORMS = "jabber:x:data"
WKS_CLIENT = "/usr/lib/gnupg/gpg-wks-client"

class GnuPG:
    """A scratch GnuPG home; its agent is stopped at the end."""

    def __init__(self, path):
        self.home = path
        self.home.mkdir(mode=0o700)

    def __call__(self, *args, input=None, check=True):
        out = subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes",
                              "--pinentry-mode", "loopback", "--passphrase", "", *args],
                             input=input, capture_output=True, timeout=60)
        if check and out.returncode != 0:
            raise AssertionError(f"gpg {args}: {out.stderr.decode(errors='replace')}")
        return out

    def new_key(self, uid, *more, expire="never", faked_time=None):
        """Makes a key (ed25519, cv25519 encryption subkey); its fingerprint."""
        faked = ["--faked-system-time", faked_time] if faked_time else []
        self(*faked, "--quick-gen-key", uid, "future-default", "default", expire)
        fingerprint = self.listing("--list-keys", uid)["fpr"][0]
        for other in more:
            self(*faked, "--quick-add-uid", fingerprint, other)
        return fingerprint

    def listing(self, *args):
        """`--with-colons` output: record type -> list of their fields."""
        records = {}
        for line in self("--with-colons", *args).stdout.decode().splitlines():
            fields = line.split(":")
            value = fields[9] if fields[0] in ("fpr", "uid") else fields
            records.setdefault(fields[0], []).append(value)
        return records

    def export(self, fingerprint):
        return self("--armor", "--export", fingerprint).stdout.decode()

    def stop(self):
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                       capture_output=True, timeout=30)


@pytest.fixture
def gpg(tmp_path):
    homes = []

    def home(name):
        g = GnuPG(tmp_path / name)
        homes.append(g)
        return g
    try:
        yield home
    finally:
        for g in homes:
            g.stop()


@pytest.fixture
def gw(tmp_path):
    gateway = Gateway(tmp_path)
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()


async def key_command(client, action, key="", timeout=30):
    """Runs "OpenPGP key" in its two steps; returns the completed <command/>."""
    first = await client.iq("set", GATEWAY, f"<command xmlns='{COMMANDS}' node='openpgp-key'/>")
    step = first.xml.find(f"{{{COMMANDS}}}command")
    assert step.get("status") == "executing"
    assert step.find(f"{{{FORMS}}}x/{{{FORMS}}}field[@var='key']") is not None
    lines = "".join(f"<value>{escape(line)}</value>" for line in key.splitlines())
    form = (f"<x xmlns='{FORMS}' type='submit'>"
            f"<field var='action'><value>{action}</value></field>"
            f"<field var='key'>{lines}</field></x>")
    done = await client.iq("set", GATEWAY, f"<command xmlns='{COMMANDS}' node='openpgp-key' "
                           f"sessionid='{step.get('sessionid')}' action='complete'>{form}</command>",
                           timeout=timeout)
    command = done.xml.find(f"{{{COMMANDS}}}command")
    assert command.get("status") == "completed"
    return command


def note(command):
    found = command.find(f"{{{COMMANDS}}}note")
    return (found.get("type"), found.text) if found is not None else None


def fetch(gw, url, host=None):
    """GETs an https URL of a WKD from facteur's HTTP listener, with the
    URL's host as Host, as the HTTPS proxy in front would pass it on."""
    parts = urlsplit(url)
    local = f"http://127.0.0.1:{gw.facteur.http_port}{parts.path}"
    if parts.query:
        local += f"?{parts.query}"
    request = urllib.request.Request(local, headers={"Host": host or parts.hostname})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wkd_url(address):
    out = subprocess.run([WKS_CLIENT, "--print-wkd-url", address], capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout.strip()


def direct_url(address):
    """The direct form, from gpg-wks-client's hash of the address."""
    out = subprocess.run([WKS_CLIENT, "--print-wkd-hash", address], capture_output=True,
                         text=True, timeout=30, check=True)
    local, domain = address.split("@")
    return f"https://{domain}/.well-known/openpgpkey/hu/{out.stdout.split()[0]}?l={local}"


def test_a_published_key_is_served_by_wkd_as_gnupg_expects(gw, gpg):
    mine = gpg("alice")
    fingerprint = mine.new_key("Alice <alice@example.test>", "Alice <alice@work.example>")
    # Bob certifies alice's address: a third-party signature facteur drops.
    bobs = mine.new_key("Bob <bob@example.net>")
    mine("--default-key", bobs, "--quick-sign-key", fingerprint)
    assert len(mine.listing("--list-sigs", fingerprint)["sig"]) > 3
    armored = mine.export(fingerprint)

    async def publish(key):
        alice = await registered_client(gw)
        try:
            return await key_command(alice, "publish", key)
        finally:
            await alice.disconnect()

    done = run(publish(armored))
    assert note(done) == ("info", f"Published key {fingerprint} for alice@example.test, "
                                  "with only the user IDs naming alice@example.test.")

    url = wkd_url("alice@example.test")
    assert url.startswith("https://openpgpkey.example.test/.well-known/openpgpkey/example.test/hu/")
    status, headers, body = fetch(gw, url)
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Content-Type"] == "application/octet-stream"
    assert not body.startswith(b"-----"), "binary, not armored"
    status, _, direct = fetch(gw, direct_url("alice@example.test"))
    assert (status, direct) == (200, body)
    for policy in ("https://openpgpkey.example.test/.well-known/openpgpkey/example.test/policy",
                   "https://example.test/.well-known/openpgpkey/policy"):
        assert fetch(gw, policy)[0] == 200, policy

    theirs = gpg("reader")
    theirs("--import", input=body)
    listed = theirs.listing("--list-sigs")
    assert listed["fpr"][:1] == [fingerprint]
    assert listed["uid"] == ["Alice <alice@example.test>"]
    issuers = {sig[4] for sig in listed["sig"]}
    assert issuers == {fingerprint[-16:]}, "only the key's own signatures"
    assert len(listed["sub"]) == 1 and "e" in listed["sub"][0][11]

    # The key IQ serves the same bytes to an XMPP client.
    async def lookup():
        bob = Client("bob", gw.prosody.c2s)
        await bob.connect()
        try:
            answer = await bob.iq("get", GATEWAY,
                                  "<keys xmlns='urn:xmpp:mail:0' jid='alice@example.test'/>")
            return answer.xml.find("{urn:xmpp:mail:0}keys/{urn:xmpp:mail:0}key")
        finally:
            await bob.disconnect()

    key = run(lookup())
    assert key.get("fingerprint") == fingerprint
    assert base64.b64decode(key.text) == body

    # Every address without a key gets the same answer.
    unknown = fetch(gw, wkd_url("bob@example.test"))
    assert unknown[0] == 404
    for other in (wkd_url("nobody@example.test"), wkd_url("alice@elsewhere.test"),
                  direct_url("bob@example.test"),
                  "https://openpgpkey.example.test/.well-known/openpgpkey/example.test/hu/x"):
        status, _, answer = fetch(gw, other)
        assert (status, answer) == (404, unknown[2]), other
    # The key of alice, asked for under another local part.
    assert fetch(gw, url.replace("?l=alice", "?l=bob"))[0] == 404

    # alice revokes her key with the certificate gpg made with it.
    revocation = (mine.home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    revocation = revocation.replace(":-----BEGIN PGP PUBLIC KEY BLOCK-----",
                                    "-----BEGIN PGP PUBLIC KEY BLOCK-----")
    done = run(publish(revocation))
    assert note(done) == ("info", f"Key {fingerprint} is revoked: it is served as revoked "
                                  "from now on.")
    status, _, body = fetch(gw, url)
    assert status == 200
    later = gpg("later")
    later("--import", input=body)
    [pub] = later.listing("--list-keys")["pub"]
    assert pub[1] == "r", f"served as revoked: {pub}"


def test_bad_keys_are_refused_with_the_reason(gw, gpg, tmp_path):
    mine = gpg("alice")
    carol = mine.export(mine.new_key("Carol <carol@example.net>"))
    expired = mine.export(mine.new_key("Alice <alice@example.test>", expire="1d",
                                       faked_time="20200101T000000!"))
    garbage = ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5IGF0IGFsbA==\n"
               "-----END PGP PUBLIC KEY BLOCK-----\n")

    async def scenario():
        alice = await registered_client(gw)
        try:
            return [note(await key_command(alice, "publish", key))
                    for key in (carol, expired, garbage)]
        finally:
            await alice.disconnect()

    no_uid, too_old, unreadable = run(scenario())
    assert no_uid == ("error", "The key has no user ID naming alice@example.test or "
                               "xmpp:alice@example.test.")
    assert too_old == ("error", "The key has expired.")
    assert unreadable[0] == "error"
    assert unreadable[1].startswith("This is not an OpenPGP public key: "), unreadable
    assert fetch(gw, wkd_url("alice@example.test"))[0] == 404

    # 10 MB from the operator's command line (from a client, see below).
    huge = tmp_path / "huge.asc"
    huge.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
                    + ("A" * 76 + "\n") * (10 * 1024 * 1024 // 77)
                    + "-----END PGP PUBLIC KEY BLOCK-----\n")
    out = subprocess.run([gw.facteur.binary, "keys", "import", "--config", str(gw.facteur.config),
                          "--jid", "alice@example.test", str(huge)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "The key is larger than 1024 KiB" in out.stderr, out.stderr
    assert gw.facteur.alive()


def test_a_key_over_the_limit_gets_the_commands_note(tmp_path):
    # Prosody refuses client stanzas over 256 KiB by default; a server that
    # lets more through still gets facteur's own refusal (1 MiB), as a
    # note. (10 MB is refused the same; the operator's import above shows
    # it without the minute a client needs to send that much.)
    gateway = Gateway(tmp_path)
    config = gateway.prosody.config
    config.write_text(config.read_text().replace(
        "allow_unencrypted_plain_auth = true",
        "allow_unencrypted_plain_auth = true\nc2s_stanza_size_limit = 16*1024*1024"))
    huge = ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n"
            + ("A" * 76 + "\n") * (2 * 1024 * 1024 // 77)
            + "-----END PGP PUBLIC KEY BLOCK-----\n")

    async def scenario():
        alice = await registered_client(gateway)
        try:
            return note(await key_command(alice, "publish", huge, timeout=120))
        finally:
            await alice.disconnect()

    try:
        gateway.start()
        try:
            refused = run(scenario())
        except Exception as e:  # its text holds the whole stanza
            raise AssertionError(f"no answer to the command: {type(e).__name__}") from None
        assert refused == ("error", "The key is larger than 1024 KiB.")
        assert gateway.facteur.alive()
        assert fetch(gateway, wkd_url("alice@example.test"))[0] == 404
    finally:
        gateway.stop()


def autocrypt(message):
    """The Autocrypt header of a mail as the relay stored it: its attributes."""
    value = str(message["Autocrypt"])
    attributes = {}
    for part in value.split(";"):
        name, _, val = part.strip().partition("=")
        attributes[name] = val
    return attributes


def test_outgoing_mail_carries_the_key_in_an_autocrypt_header(gw, gpg):
    mine = gpg("alice")
    fingerprint = mine.new_key("Alice <alice@example.test>")

    async def scenario():
        alice = await registered_client(gw)
        try:
            alice.send(escaped("bob@example.net"), "Before any key", subject="One")
            assert await wait_until(lambda: len(gw.relay.received) == 1), gw.facteur.log_tail()
            await key_command(alice, "publish", mine.export(fingerprint))
            alice.send(escaped("bob@example.net"), "With my key", subject="Two")
            assert await wait_until(lambda: len(gw.relay.received) == 2), gw.facteur.log_tail()
        finally:
            await alice.disconnect()

    run(scenario())
    before, after = gw.relay.received
    assert before["message"]["Autocrypt"] is None
    attributes = autocrypt(after["message"])
    assert attributes["addr"] == "alice@example.test"
    assert set(attributes) == {"addr", "keydata"}
    # Folded: no line of the mail's header is longer than 78 characters.
    head = after["raw"].split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n") if not line.startswith(b"DKIM")), head
    keydata = base64.b64decode("".join(attributes["keydata"].split()))
    theirs = gpg("bob")
    theirs("--import", input=keydata)
    listed = theirs.listing("--list-keys")
    assert listed["fpr"][:1] == [fingerprint]
    assert listed["uid"] == ["Alice <alice@example.test>"]


def set_encrypt(client, value):
    """Registers again with the option `encrypt` set to `value`."""
    form = (f"<x xmlns='{FORMS}' type='submit'>"
            "<field var='FORM_TYPE'><value>jabber:iq:register</value></field>"
            f"<field var='encrypt'><value>{value}</value></field></x>")
    return client.iq("set", GATEWAY, f"<query xmlns='jabber:iq:register'>{form}</query>")


def autocrypt_mail(bob, fingerprint):
    """A mail from bob@example.net to alice with his key in an Autocrypt header."""
    keydata = base64.b64encode(bob("--export", fingerprint).stdout).decode()
    folded = "\r\n ".join(keydata[i:i + 72] for i in range(0, len(keydata), 72))
    return ("From: Bob <bob@example.net>\r\nTo: alice@example.test\r\n"
            "Subject: Lunch?\r\nMessage-ID: <lunch-1@example.net>\r\n"
            f"Date: {formatdate(usegmt=True)}\r\n"
            f"Autocrypt: addr=bob@example.net; prefer-encrypt=mutual; keydata=\r\n {folded}\r\n"
            "\r\nShall we meet?\r\n").encode()


async def answer_bob(gw, raw, key=None, react=False):
    """alice, with `encrypt` opportunistic (and her key `key` published),
    gets bob's mail `raw` and answers it (and reacts to her answer with
    `react`); it reaches the relay."""
    alice = await registered_client(gw)
    try:
        if key:
            await key_command(alice, "publish", key)
        answer = await set_encrypt(alice, "opportunistic")
        assert answer["type"] == "result"
        code, text = await asyncio.to_thread(send_mail, gw.facteur.smtp_port, "bob@example.net",
                                             ["alice@example.test"], raw)
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["subject"] == "Lunch?")
        sent = alice.send(got["from"], "Noon at the usual place.", subject="Re: Lunch?")
        assert await wait_until(lambda: gw.relay.received), gw.facteur.log_tail()
        if react:
            reaction = alice.xmpp.make_message(mto=got["from"], mtype="chat")
            reaction.append(slixmpp.xmlstream.ET.fromstring(
                f"<reactions xmlns='urn:xmpp:reactions:0' id='{sent}'>"
                "<reaction>\N{THUMBS UP SIGN}</reaction></reactions>"))
            reaction.send()
            assert await wait_until(lambda: len(gw.relay.received) == 2), gw.facteur.log_tail()
    finally:
        await alice.disconnect()


def test_an_answer_to_a_sender_whose_key_came_by_autocrypt_goes_encrypted(gw, gpg):
    bob = gpg("bob")
    fingerprint = bob.new_key("Bob <bob@example.net>")
    run(answer_bob(gw, autocrypt_mail(bob, fingerprint), react=True))
    out, reaction = gw.relay.received
    assert out["rcpt_tos"] == ["bob@example.net"]
    assert out["message"]["Subject"] == "Re: Lunch?"
    assert out["message"].get_content_type() == "multipart/encrypted"
    assert out["message"].get_param("protocol") == "application/pgp-encrypted"
    assert b"Noon at the usual place" not in out["raw"]
    version, encrypted = out["message"].iter_parts()
    assert version.get_content_type() == "application/pgp-encrypted"
    assert version.get_payload(decode=True).strip() == b"Version: 1"
    assert encrypted.get_content_type() == "application/octet-stream"
    armored = encrypted.get_payload(decode=True)
    plain = bob("--decrypt", input=armored).stdout
    inner = BytesParser(policy=policy.default).parsebytes(plain)
    assert inner.get_content().strip() == "Noon at the usual place."
    # Her reaction to it is mail too, encrypted the same way (RFC 9078 inside).
    assert reaction["message"].get_content_type() == "multipart/encrypted"
    assert "\N{THUMBS UP SIGN}".encode() not in reaction["raw"]
    armored = list(reaction["message"].iter_parts())[1].get_payload(decode=True)
    inner = BytesParser(policy=policy.default).parsebytes(bob("--decrypt", input=armored).stdout)
    assert str(inner["Content-Disposition"]).split(";")[0].strip() == "reaction", inner
    assert inner.get_content().strip() == "\N{THUMBS UP SIGN}"


def test_required_encryption_without_a_key_sends_nothing_and_says_why(gw):
    async def scenario():
        alice = await registered_client(gw)
        try:
            answer = await set_encrypt(alice, "required")
            assert answer["type"] == "result"
            sent = alice.send(escaped("carol@example.net"), "Nobody else may read this.")
            return await alice.wait_for(lambda m: m["type"] == "error" and m["id"] == sent)
        finally:
            await alice.disconnect()

    error = run(scenario())
    assert error["error"] == "not-acceptable"
    assert ("Not sent: no OpenPGP key is known for carol@example.net, and your option "
            "'encrypt' is 'required'.") in html.unescape(error["xml"])
    assert gw.relay.received == []


def test_encrypted_mail_with_autocrypt_is_dkim_signed_and_the_author_can_read_it(tmp_path, gpg):
    import dkim
    from peers import ROOT, dkim_record
    import os

    binary = os.environ.get("FACTEUR_BIN", str(ROOT / "target" / "debug" / "facteur"))
    key = tmp_path / "dkim.pem"
    out = subprocess.run([binary, "dkim", "keygen", "--domain", "example.test", "--selector", "s1",
                          "--out", str(key)], capture_output=True, text=True, check=True).stdout
    name, value = dkim_record(out)
    gateway = Gateway(tmp_path / "gw", dns={"txt": {name: value}},
                      extra=f'[dkim."example.test"]\nselector = "s1"\nkey_file = "{key}"\n')
    alice, bob = gpg("alice"), gpg("bob")
    alices = alice.new_key("Alice <alice@example.test>")
    bobs = bob.new_key("Bob <bob@example.net>")
    try:
        gateway.start()
        run(answer_bob(gateway, autocrypt_mail(bob, bobs), key=alice.export(alices)))
        [out] = gateway.relay.received
        raw = out["raw"]
        txt = lambda name, timeout=5: gateway.dns.txt(name.decode().rstrip("."))  # noqa: E731
        assert dkim.verify(raw, dnsfunc=txt)
        assert not dkim.verify(raw.replace(b"addr=alice@", b"addr=mallory@"), dnsfunc=txt)
    finally:
        gateway.stop()
    assert out["message"].get_content_type() == "multipart/encrypted"
    assert autocrypt(out["message"])["addr"] == "alice@example.test"
    signed = out["message"]["DKIM-Signature"]
    assert "autocrypt" in signed.lower().replace(" ", "").split("h=")[1].split(";")[0], signed
    # alice reads her own sent mail with her key.
    armored = list(out["message"].iter_parts())[1].get_payload(decode=True)
    plain = alice("--decrypt", input=armored).stdout
    assert b"Noon at the usual place." in plain


class WkdServer:
    """A WKD server on a loopback port, plain HTTP (facteur's `http.wkd_https
    = false` and `fetch_private`, for test networks): every GET gets `key`,
    after `delay` seconds, or `size` bytes of garbage instead. It keeps the
    (Host, path) of each request."""

    def __init__(self, key=b"", delay=0, size=None):
        import http.server
        import threading
        self.key, self.delay, self.size = key, delay, size
        self.requests = []
        self.stopping = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.headers.get("Host", ""), self.path))
                if server.stopping.wait(server.delay):
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    if server.size is None:
                        self.send_header("Content-Length", str(len(server.key)))
                        self.end_headers()
                        self.wfile.write(server.key)
                    else:
                        # No Content-Length: the cap holds while reading.
                        self.end_headers()
                        chunk = b"\0" * 65536
                        for _ in range(server.size // len(chunk)):
                            self.wfile.write(chunk)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def wkd_gateway(tmp_path, server):
    """A gateway whose DNS points example.net and openpgpkey.example.net at
    loopback, where `server` answers WKD requests over plain HTTP."""
    return Gateway(tmp_path, dns={"hosts": {"example.net": "127.0.0.1",
                                            "openpgpkey.example.net": "127.0.0.1"}},
                   http=f"wkd_port = {server.port}\nwkd_https = false\n")


async def opportunistic_to_bob(gw, texts):
    """alice, with `encrypt` opportunistic, writes each of `texts` to
    bob@example.net; the seconds each took to reach the relay."""
    alice = await registered_client(gw)
    took = []
    try:
        answer = await set_encrypt(alice, "opportunistic")
        assert answer["type"] == "result"
        for n, text in enumerate(texts, start=1):
            started = time.monotonic()
            alice.send(escaped("bob@example.net"), text, subject=f"Mail {n}")
            assert await wait_until(lambda: len(gw.relay.received) == n, timeout=30), \
                gw.facteur.log_tail()
            took.append(time.monotonic() - started)
    finally:
        await alice.disconnect()
    return took


def test_an_opportunistic_mail_is_encrypted_to_the_key_wkd_serves(tmp_path, gpg):
    bob = gpg("bob")
    fingerprint = bob.new_key("Bob <bob@example.net>")
    key = bob("--export", fingerprint).stdout
    with WkdServer(key) as server:
        gw = wkd_gateway(tmp_path, server)
        try:
            gw.start()
            run(opportunistic_to_bob(gw, ["Found by WKD.", "Found in the cache."]))
        finally:
            gw.stop()
    # The advanced form, asked once: the second mail found the key kept.
    hashed = wkd_url("bob@example.net")
    parts = urlsplit(hashed)
    assert server.requests == [(f"openpgpkey.example.net:{server.port}",
                                f"{parts.path}?{parts.query}")]
    for out, text in zip(gw.relay.received, ["Found by WKD.", "Found in the cache."]):
        assert out["message"].get_content_type() == "multipart/encrypted"
        assert text.encode() not in out["raw"]
        armored = list(out["message"].iter_parts())[1].get_payload(decode=True)
        inner = BytesParser(policy=policy.default).parsebytes(bob("--decrypt", input=armored).stdout)
        assert inner.get_content().strip() == text


@pytest.mark.parametrize("server", [{"delay": 30}, {"size": 50 * 1024 * 1024}],
                         ids=["slow", "50MB"])
def test_a_slow_or_huge_wkd_answer_does_not_hold_the_mail(tmp_path, gpg, server):
    bob = gpg("bob")
    key = bob("--export", bob.new_key("Bob <bob@example.net>")).stdout
    with WkdServer(key, **server) as wkd:
        gw = wkd_gateway(tmp_path, wkd)
        try:
            gw.start()
            took = run(opportunistic_to_bob(gw, ["Plain after all.", "Not asked again."]))
            log = gw.facteur.log_since_start()
        finally:
            gw.stop()
    # The lookup gives up within its budget (4 s): the mail goes as it is.
    assert took[0] < 8, (took, log)
    for out in gw.relay.received:
        assert out["message"].get_content_type() == "text/plain"
    # The failure is kept: the second mail asks nobody.
    assert len(wkd.requests) <= 2, wkd.requests
    asked = len(wkd.requests)
    assert all(path.startswith("/.well-known/openpgpkey/") for _, path in wkd.requests)
    assert asked >= 1
    done = [line for line in log.splitlines() if "Key lookup done." in line]
    assert len(done) == 1 and "none" in done[0], log
    if "size" in server:
        assert "larger than 1048576 bytes" in log, log


def signed_mail(gnupg, sender, text, message_id, tamper=False):
    """A PGP/MIME signed mail (RFC 3156 §5) from `sender` to alice, signed by
    `gnupg`'s key; `tamper` alters the text after signing."""
    inner = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n".encode()
    signature = gnupg("--armor", "--detach-sign", "--digest-algo", "SHA256",
                      input=inner).stdout.decode()
    if tamper:
        inner = inner.replace(b"noon", b"nine")
    return (f"From: {sender}\r\nTo: alice@example.test\r\nSubject: Signed\r\n"
            f"Message-ID: <{message_id}>\r\nDate: {formatdate(usegmt=True)}\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/signed; micalg=pgp-sha256; '
            'protocol="application/pgp-signature"; boundary="sig-b"\r\n\r\n'
            "--sig-b\r\n").encode() + inner + (
            "\r\n--sig-b\r\nContent-Type: application/pgp-signature; name=signature.asc\r\n\r\n"
            f"{signature.replace(chr(10), chr(13) + chr(10))}\r\n--sig-b--\r\n").encode()


def test_signed_mail_shows_what_its_signature_says(gw, gpg):
    bob, carol = gpg("bob"), gpg("carol")
    fingerprint = bob.new_key("Bob <bob@example.net>")
    carol.new_key("Carol <carol@example.net>")
    mails = [
        ("lunch-1@example.net", "bob@example.net", autocrypt_mail(bob, fingerprint)),
        ("good@example.net", "bob@example.net",
         signed_mail(bob, "bob@example.net", "See you at noon.", "good@example.net")),
        ("bad@example.net", "bob@example.net",
         signed_mail(bob, "bob@example.net", "See you at noon.", "bad@example.net", tamper=True)),
        ("unknown@example.net", "carol@example.net",
         signed_mail(carol, "carol@example.net", "See you at noon.", "unknown@example.net")),
    ]

    async def scenario():
        alice = await registered_client(gw)
        got = {}
        try:
            for message_id, sender, raw in mails:
                code, text = await asyncio.to_thread(send_mail, gw.facteur.smtp_port, sender,
                                                     ["alice@example.test"], raw)
                assert code == 250, text
                got[message_id] = await alice.wait_for(
                    lambda m: (m["mail"] or {}).get("message-id") == message_id)
        finally:
            await alice.disconnect()
        return got

    got = run(scenario())
    assert "openpgp" not in (got["lunch-1@example.net"]["auth"] or {})
    assert got["good@example.net"]["auth"]["openpgp"] == "good", got["good@example.net"]["xml"]
    # The signature stays a file, for clients that check it themselves.
    assert got["good@example.net"]["body"].startswith("See you at noon.")
    assert [f["name"] for f in got["good@example.net"]["files"]] == ["signature.asc"]
    assert got["bad@example.net"]["auth"]["openpgp"] == "bad"
    assert got["bad@example.net"]["body"].startswith("See you at nine.")
    assert got["unknown@example.net"]["auth"]["openpgp"] == "unknown"


def test_encrypted_mail_says_so_and_links_the_exact_encrypted_part(gw, gpg):
    alice_keys = gpg("alice")
    fingerprint = alice_keys.new_key("Alice <alice@example.test>")
    secret = b"Content-Type: text/plain\r\n\r\nThe safe code is 1234.\r\n"
    armored = alice_keys("--armor", "--encrypt", "--trust-model", "always", "-r", fingerprint,
                         input=secret).stdout.replace(b"\n", b"\r\n")
    raw = (b"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: Sealed\r\n"
           b"Message-ID: <sealed@example.net>\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; '
           b'boundary="enc-b"\r\n\r\n'
           b"--enc-b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
           b"--enc-b\r\nContent-Type: application/octet-stream\r\n\r\n" + armored +
           b"\r\n--enc-b--\r\n")

    async def scenario():
        alice = await registered_client(gw)
        try:
            code, text = await asyncio.to_thread(send_mail, gw.facteur.smtp_port,
                                                 "bob@example.net", ["alice@example.test"], raw)
            assert code == 250, text
            return await alice.wait_for(lambda m: m["subject"] == "Sealed")
        finally:
            await alice.disconnect()

    got = run(scenario())
    assert "encrypted with OpenPGP" in got["body"], got["xml"]
    assert "1234" not in got["xml"]
    [file] = got["files"]
    assert (file["name"], file["media-type"]) == ("encrypted.asc", "application/octet-stream")
    with urllib.request.urlopen(file["url"], timeout=10) as response:
        served = response.read()
    assert served.strip() == armored.strip()
    # What is served is what alice's OpenPGP client opens.
    assert b"The safe code is 1234." in alice_keys("--decrypt", input=served).stdout


PUBSUB = "http://jabber.org/protocol/pubsub"
OX_KEYS = "urn:xmpp:openpgp:0:public-keys"


def pep_gateway(tmp_path):
    """A gateway whose Prosody has PEP (mod_pep)."""
    from pathlib import Path
    template = (Path(__file__).parent / "prosody.cfg.lua.in").read_text()
    with_pep = tmp_path / "prosody-pep.cfg.lua.in"
    with_pep.write_text(template.replace('"vcard" }', '"vcard"; "pep" }', 1))
    assert with_pep.read_text() != template
    return Gateway(tmp_path, xmpp_options={"template": str(with_pep)})


async def publish_pep_key(client, fingerprint, key, list_element="public-keys-list"):
    """Publishes `key` (binary) as XEP-0373 §4 says, open to anyone: the key
    node, then the metadata node listing it (as `list_element`)."""
    date = "2026-01-02T03:04:05Z"
    open_access = (f"<publish-options><x xmlns='{FORMS}' type='submit'>"
                   f"<field var='FORM_TYPE' type='hidden'><value>{PUBSUB}#publish-options</value></field>"
                   "<field var='pubsub#access_model'><value>open</value></field></x></publish-options>")
    data = base64.b64encode(key).decode()
    for node, item in [
        (f"{OX_KEYS}:{fingerprint}",
         f"<item id='{date}'><pubkey xmlns='urn:xmpp:openpgp:0'><data>{data}</data></pubkey></item>"),
        (OX_KEYS,
         f"<item id='current'><{list_element} xmlns='urn:xmpp:openpgp:0'>"
         f"<pubkey-metadata v4-fingerprint='{fingerprint}' date='{date}'/></{list_element}></item>"),
    ]:
        answer = await client.iq("set", None, f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'>"
                                 f"{item}</publish>{open_access}</pubsub>")
        assert answer["type"] == "result", answer


@pytest.mark.parametrize("list_element", ["public-keys-list", "public-key-list"])
def test_a_key_published_in_pep_nodes_is_served_by_wkd(tmp_path, gpg, list_element):
    mine = gpg("alice")
    fingerprint = mine.new_key("Alice <alice@example.test>", "Alice <alice@elsewhere.example>")
    gw = pep_gateway(tmp_path)

    async def scenario():
        alice = await registered_client(gw)
        try:
            before = await key_command(alice, "refresh")
            await publish_pep_key(alice, fingerprint, mine("--export", fingerprint).stdout,
                                  list_element)
            return before, await key_command(alice, "refresh")
        finally:
            await alice.disconnect()

    try:
        gw.start()
        before, after = run(scenario())
        status, headers, body = fetch(gw, wkd_url("alice@example.test"))
    finally:
        gw.stop()
    assert note(before) == ("error", "No OpenPGP key found in the PEP nodes of alice@example.test.")
    assert note(after)[0] == "info" and fingerprint in note(after)[1], note(after)
    assert status == 200
    theirs = gpg("bob")
    theirs("--import", input=body)
    listed = theirs.listing("--list-keys")
    assert listed["fpr"][:1] == [fingerprint]
    assert listed["uid"] == ["Alice <alice@example.test>"]


def test_a_pep_key_is_taken_at_registration(tmp_path, gpg):
    mine = gpg("alice")
    fingerprint = mine.new_key("Alice <alice@example.test>")
    gw = pep_gateway(tmp_path)

    async def scenario():
        alice = Client("alice", gw.xmpp.c2s)
        await alice.connect()
        try:
            await publish_pep_key(alice, fingerprint, mine("--export", fingerprint).stdout)
            await alice.register()
            assert await wait_until(lambda: fetch(gw, wkd_url("alice@example.test"))[0] == 200), \
                gw.facteur.log_tail()
        finally:
            await alice.disconnect()

    try:
        gw.start()
        run(scenario())
        status, headers, body = fetch(gw, wkd_url("alice@example.test"))
    finally:
        gw.stop()
    theirs = gpg("bob")
    theirs("--import", input=body)
    assert theirs.listing("--list-keys")["fpr"][:1] == [fingerprint]
