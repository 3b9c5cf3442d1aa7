"""Postfix as the MX in front of facteur, configured with the files of
deploy/postfix/ as shipped (only the example domain, ports and folders
replaced): mail for a registered user goes through Postfix to facteur and
reaches her client; an unknown recipient is refused by Postfix itself at
RCPT, from the map `facteur users export-postfix` wrote; her answer
leaves through the same Postfix, which relays it to the internet (an
aiosmtpd Relay here). Postfix names each mail's client to facteur with
XFORWARD, and facteur's SPF check judges that client."""

import asyncio
import re
import subprocess
import time
import tomllib
import types
from pathlib import Path

import pytest

from peers import (DOMAIN, ROOT, Client, Dns, Facteur, Prosody, Relay, escaped, free_port, rcpt_reply,
                   run, send_mail)
from postfix import Postfix

SHIPPED = ROOT / "deploy" / "postfix"


class Front:
    """Prosody, facteur behind a private Postfix, and the Relay that
    stands for the internet beyond that Postfix."""

    def __init__(self, tmp_path):
        self.prosody = Prosody(tmp_path)
        # Bob's domain lets only 127.0.0.2 send its mail: the client, not
        # the Postfix in front.
        self.dns = Dns(Path(tmp_path) / "dns", txt={"example.net": "v=spf1 ip4:127.0.0.2 -all"})
        self.relay = Relay()
        facteur_port = free_port()
        postfix_for_facteur = free_port()
        conf = Path(tmp_path) / "postfix" / "conf"
        placeholders = {
            "example.org": DOMAIN,
            r"example\.org": re.escape(DOMAIN),
            "[127.0.0.1]:2525": f"[127.0.0.1]:{facteur_port}",
            "127.0.0.1:2525": f"127.0.0.1:{facteur_port}",
            "127.0.0.1:10025": f"127.0.0.1:{postfix_for_facteur}",
            "/etc/postfix/": f"{conf}/",
        }
        shipped = {}
        for name in ("main.cf", "master.cf", "facteur_transport", "facteur_return_paths",
                     "facteur.toml"):
            shipped[name] = text = (SHIPPED / name).read_text()
            for placeholder, value in placeholders.items():
                text = text.replace(placeholder, value)
            shipped[name] = text
        # Each placeholder the test replaces is still in the files.
        assert f"hash:{conf}/facteur_recipients" in shipped["main.cf"]
        assert f"relay:[127.0.0.1]:{facteur_port}" in shipped["facteur_transport"]
        assert re.escape(DOMAIN) in shipped["facteur_return_paths"]
        assert f"127.0.0.1:{postfix_for_facteur} inet" in shipped["master.cf"]

        settings = tomllib.loads(shipped["facteur.toml"])
        assert settings["inbound"]["listen"] == [f"127.0.0.1:{facteur_port}"]
        host, port = settings["outbound"]["relay"].rsplit(":", 1)
        assert host == "127.0.0.1"
        exceptions = ", ".join(f'"{e}"' for e in settings["limits"]["client_exceptions"])
        self.facteur = Facteur(
            tmp_path, self.prosody, types.SimpleNamespace(port=int(port)), self.dns,
            smtp_port=facteur_port,
            auth=(f"verify = {str(settings['auth']['verify']).lower()}\n"
                  f"dmarc_reject = \"{settings['auth']['dmarc_reject']}\""),
            limits={"client_exceptions": f"[{exceptions}]"},
            xforward_from="[" + ", ".join(f'"{a}"' for a in settings["inbound"]["xforward_from"]) + "]")
        self.recipients = conf / "facteur_recipients"
        self.postfix = Postfix(
            tmp_path,
            # The operator's own setting, not facteur's: where mail to the
            # internet goes.
            main_cf=shipped["main.cf"] + f"relayhost = [127.0.0.1]:{self.relay.port}\n",
            master_cf=shipped["master.cf"],
            files={"facteur_transport": shipped["facteur_transport"],
                   "facteur_return_paths": shipped["facteur_return_paths"]})

    def export_recipients(self):
        """What an operator's cron job does after registrations change.
        Postfix's daemons notice a rebuilt map by its modification time,
        to the second: the map is rebuilt in a later second than it was
        last built, as a cron job would."""
        indexed = self.recipients.with_name(self.recipients.name + ".db")
        if indexed.exists():
            built = int(indexed.stat().st_mtime)
            _wait(lambda: int(time.time()) > built, timeout=5)
        subprocess.run([self.facteur.binary, "users", "--config", str(self.facteur.config),
                        "export-postfix", "--output", str(self.recipients)],
                       check=True, capture_output=True, timeout=30)
        self.postfix.postmap(f"hash:{self.recipients}")

    def start(self):
        self.prosody.start()
        self.dns.start()
        self.relay.start()
        self.facteur.start()
        self.facteur.wait_log("Component link up.")
        self.facteur.register(f"alice@{DOMAIN}")
        self.export_recipients()
        self.postfix.postmap(f"hash:{self.postfix.conf}/facteur_transport")
        self.postfix.start()

    def stop(self):
        self.postfix.stop()
        self.facteur.stop()
        self.relay.stop()
        self.prosody.stop()
        self.dns.stop()


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    front = Front(tmp_path_factory.mktemp("postfix-front"))
    try:
        front.start()
        yield front
    finally:
        front.stop()


def test_mail_through_postfix_reaches_the_client(front):
    async def scenario():
        alice = Client("alice", front.prosody.c2s)
        await alice.connect()
        raw = (b"From: Bob <bob@example.net>\r\nTo: alice@example.test\r\n"
               b"Subject: Through the MX\r\nMessage-ID: <via-postfix-1@example.net>\r\n\r\n"
               b"Hello Alice, this came through Postfix.\r\n")
        code, text = send_mail(front.postfix.port, "bob@example.net", [f"alice@{DOMAIN}"], raw,
                               source="127.0.0.2")
        assert code == 250 and text.startswith("2.0.0 Ok: queued as "), (code, text)
        message = await alice.wait_for(lambda m: m["subject"] == "Through the MX")
        assert message["from"] == escaped("bob@example.net")
        assert message["to"] == f"alice@{DOMAIN}"
        assert message["body"] == "Hello Alice, this came through Postfix."
        assert message["mail"]["message-id"] == "via-postfix-1@example.net", message["xml"]
        # SPF judged bob's client, named by Postfix, not Postfix itself.
        assert message["auth"]["spf"] == "pass", message["xml"]
        await alice.disconnect()
        return text.removeprefix("2.0.0 Ok: queued as ")
    queue_id = run(scenario())
    front.postfix.wait_queue_empty()
    log = front.postfix.log()
    assert re.search(rf"{queue_id}: to=<alice@{DOMAIN}>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:"
                     rf"{front.facteur.smtp_port},.* status=sent \(250 ", log), log
    shown = subprocess.run([front.facteur.binary, "queue", "--config", str(front.facteur.config),
                            "show", "to_xmpp:1"], check=True, capture_output=True, text=True,
                           timeout=30).stdout
    assert "Subject: Through the MX\nClient: 127.0.0.2\n" in shown, shown


def test_an_unknown_recipient_is_refused_by_postfix_at_rcpt(front):
    since = front.facteur.log_size()
    code, text = rcpt_reply(front.postfix.port, f"carol@{DOMAIN}")
    assert (code, text) == (550, f"5.1.1 <carol@{DOMAIN}>: Recipient address rejected: "
                                 "User unknown in relay recipient table")
    front.postfix.wait_log(f"NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 "
                           f"<carol@{DOMAIN}>")
    # Registered later and exported again, carol is known to Postfix.
    front.facteur.register(f"carol@{DOMAIN}")
    front.export_recipients()
    assert rcpt_reply(front.postfix.port, f"carol@{DOMAIN}")[0] == 250
    # Postfix queued nothing for her and never tried to deliver to
    # facteur, which saw no transaction. (The transactions of these
    # probes hold a queue file in "incoming" until they are dropped.)
    front.postfix.wait_queue_empty()
    assert f"to=<carol@{DOMAIN}>, relay=" not in front.postfix.log()
    with open(front.facteur.logfile, "rb") as log:
        log.seek(since)
        assert "MAIL FROM." not in log.read().decode(errors="replace")


def test_the_answer_leaves_through_postfix(front):
    async def scenario():
        alice = Client("alice", front.prosody.c2s)
        await alice.connect()
        alice.send(escaped("bob@example.net"), "Hello Bob, answered through Postfix.",
                   subject="Back out")
        await asyncio.to_thread(lambda: _wait(lambda: front.relay.received))
        await alice.disconnect()
    run(scenario())
    front.postfix.wait_queue_empty()
    [mail] = front.relay.received
    assert mail["rcpt_tos"] == ["bob@example.net"]
    assert re.fullmatch(rf"bounce\+[0-9]+-[0-9a-f]{{24}}@{re.escape(DOMAIN)}", mail["mail_from"])
    message = mail["message"]
    assert message["From"] == f"alice@{DOMAIN}"
    assert message["To"] == "bob@example.net"
    assert message["Subject"] == "Back out"
    assert "Hello Bob, answered through Postfix." in message.get_content()
    # The first Received line is the one Postfix added when facteur
    # handed it the mail on its listener for facteur.
    received = message.get_all("Received")[0]
    assert re.search(r"from mx\.example\.test \(localhost \[127\.0\.0\.1\]\)\s+by mx\.postfix\.test "
                     r"\(Postfix\) with E?SMTP id [0-9A-F]+\s+for <bob@example\.net>;", received), received
    # A bounce of it would be taken by Postfix at RCPT: the shipped return
    # path table matches the return path facteur used.
    table = f"regexp:{front.postfix.conf}/facteur_return_paths"
    assert front.postfix.run("postmap", "-q", mail["mail_from"], table).stdout == "OK\n"
    assert rcpt_reply(front.postfix.port, mail["mail_from"], mail_from="")[0] == 250


def test_a_bounce_from_beyond_postfix_reaches_the_sender(front):
    # The internet refuses the recipient after Postfix took the mail:
    # Postfix's own bounce goes to facteur's return path, through the
    # transport map, and becomes a notice in alice's conversation.
    async def scenario():
        alice = Client("alice", front.prosody.c2s)
        await alice.connect()
        alice.send(escaped("nobody@example.net"), "Is anyone there?", subject="Lost")
        notice = await alice.wait_for(lambda m: m["subject"] == "Undelivered mail", timeout=30)
        assert notice["from"] == escaped("nobody@example.net")
        assert "Your mail to nobody@example.net could not be delivered" in notice["body"], notice["body"]
        assert "550 5.1.1 <nobody@example.net>: no such mailbox" in notice["body"], notice["body"]
        await alice.disconnect()
    run(scenario())
    front.postfix.wait_queue_empty()
    assert re.search(rf"to=<bounce\+[0-9]+-[0-9a-f]{{24}}@{re.escape(DOMAIN)}>, "
                     rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{front.facteur.smtp_port},.* status=sent",
                     front.postfix.log()), front.postfix.log_tail()


def test_a_receipt_waits_for_the_delivery_report_of_postfix(front):
    """Alice asks for a XEP-0184 receipt. facteur hands the mail to Postfix
    asking for delivery reports (RFC 3461 NOTIFY=SUCCESS,FAILURE): the 250
    of Postfix brings no receipt while the internet still refuses the mail
    for now; once it takes it, Postfix's success report (relayed: the
    internet here offers no DSN) comes back to the return path, and the
    receipt reaches alice, once. The report itself reaches nobody."""
    since = front.facteur.log_size()
    front.relay.refusing = True
    before = len(front.relay.received)
    try:
        async def scenario():
            alice = Client("alice", front.prosody.c2s)
            await alice.connect()
            sent = alice.send(escaped("bob@example.net"), "Tell me when it arrives.",
                              subject="Receipt please", receipt=True)
            await asyncio.to_thread(front.facteur.wait_log, "report_asked=true", 30, since)
            # Postfix tried the internet and was told to come back later.
            await asyncio.to_thread(lambda: _wait(lambda: front.relay.refused))
            assert not any(m["receipt"] == sent for m in alice.messages), alice.messages
            front.relay.refusing = False
            receipt = await alice.wait_for(lambda m: m["receipt"] == sent, timeout=30)
            assert receipt["from"] == escaped("bob@example.net"), receipt
            await asyncio.to_thread(front.facteur.wait_log, "Delivery report received.", 30, since)
            await asyncio.to_thread(front.postfix.wait_queue_empty)
            assert [m["receipt"] for m in alice.messages if m["receipt"]] == [sent], alice.messages
            assert not any(m["body"] for m in alice.messages), alice.messages
            await alice.disconnect()
        run(scenario())
    finally:
        front.relay.refusing = False
    [mail] = front.relay.received[before:]
    assert mail["message"]["Subject"] == "Receipt please"
    # Postfix's report went to the return path, at facteur.
    assert re.search(rf"to=<{re.escape(mail['mail_from'])}>, "
                     rf"relay=127\.0\.0\.1\[127\.0\.0\.1\]:{front.facteur.smtp_port},.* status=sent",
                     front.postfix.log()), front.postfix.log_tail()
    assert "sender delivery status notification" in front.postfix.log(), front.postfix.log_tail()


def _wait(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("not reached in time")
        time.sleep(0.1)
