"""Legacy IMAP mailboxes against a real Dovecot: attached from the command
line (a login at once, refused with Dovecot's words), new mail brought to
alice as from the sender's escaped JID, through IDLE or polling, every
mail exactly once across restarts of Dovecot and kill -9 of facteur, and
a mailbox whose password changed paused after 3 refused logins with one
notice."""

import asyncio
import os
import re
import socket
import subprocess
import threading
import time
from collections import defaultdict

import pytest

from slixmpp.exceptions import IqError

from peers import GATEWAY, Dovecot, Gateway, escaped, registered_client, run, wait_until
from test_admin import COMMANDS, execute, note, values
from test_clients import MARKERS, client_stanza

PASSWORD = "imap-alice-pw"


def mail(n, message_id=True, subject=None):
    headers = (f"From: Bob <bob@example.net>\r\nTo: alice@example.net\r\n"
               f"Subject: {subject or f'imap-{n}'}\r\n")
    if message_id:
        headers += f"Message-ID: <imap-{n}@example.net>\r\n"
    return (headers + f"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\nmail number {n}\r\n").encode()


class Setup:
    """Dovecot + Prosody + facteur with an [imap] section."""

    def __init__(self, tmp_path, imap="", password=PASSWORD, trust=False):
        secret = tmp_path / "imap.secret"
        secret.write_text("a-test-secret-of-more-than-32-bytes-0123456789\n")
        self.dovecot = Dovecot(tmp_path, users={"alice": password})
        self.gateway = Gateway(tmp_path, extra=f'[imap]\nsecret_file = "{secret}"\n{imap}\n')
        # Trusting the test's CA: in place of the system's roots.
        self.env = {"SSL_CERT_FILE": str(self.dovecot.ca)} if trust else {}
        self.gateway.facteur.env.update(self.env)
        self.password_file = tmp_path / "imap.password"
        self.password_file.write_text(password + "\n")

    def __enter__(self):
        self.dovecot.start()
        self.gateway.start()
        return self

    def __exit__(self, *exc):
        try:
            self.gateway.stop()
        finally:
            self.dovecot.cleanup()

    @property
    def facteur(self):
        return self.gateway.facteur

    def cli(self, *args):
        return subprocess.run([self.facteur.binary, "imap", *args, "--config", str(self.facteur.config)],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **self.env})

    def attach(self, tls="none", port=None, host="127.0.0.1", password_file=None, folders=()):
        return self.cli("attach", "--jid", "alice@example.test", "--host", host,
                        "--port", str(port or self.dovecot.imap), "--tls", tls, "--user", "alice",
                        "--password-file", str(password_file or self.password_file),
                        *(a for f in folders for a in ("--folder", f)))


def from_imap(alice, prefix="imap-"):
    """The stanza ids alice got for each mail, by subject."""
    seen = defaultdict(list)
    for m in alice.messages:
        if m["body"] and (m["subject"] or "").startswith(prefix):
            seen[m["subject"]].append(m["id"])
    return seen


def test_new_mail_reaches_alice_through_idle(tmp_path):
    # Polling once an hour: what arrives within seconds came by IDLE.
    with Setup(tmp_path, imap='poll_interval = "1h"\nidle = true') as s:
        s.dovecot.deliver([mail(0, subject="before the attach")])

        async def scenario():
            alice = await registered_client(s.gateway)
            attached = s.attach()
            assert attached.returncode == 0, attached.stderr
            listed = s.cli("list", "--jid", "alice@example.test")
            assert listed.stdout.split() == ["alice@example.test", f"127.0.0.1:{s.dovecot.imap}", "none",
                                             "alice", "INBOX", "active"], listed.stdout
            await asyncio.to_thread(s.facteur.wait_log, "Logged in.", 15)
            await asyncio.to_thread(s.facteur.wait_log, "IDLE: waiting.", 15)
            s.dovecot.deliver([mail(1)])
            got = await alice.wait_for(lambda m: m["subject"] == "imap-1", timeout=20)
            assert got["from"] == escaped("bob@example.net")
            assert got["body"].strip() == "mail number 1"
            assert got["mail"]["message-id"] == "imap-1@example.net"
            assert "IDLE: news." in s.facteur.log_since_start()
            # Only new mail: what was there at the attach stays there.
            await asyncio.sleep(1)
            assert not [m for m in alice.messages if m["subject"] == "before the attach"]
            await alice.disconnect()
        run(scenario())


def test_forced_polling(tmp_path):
    with Setup(tmp_path, imap='poll_interval = "2s"\nidle = false') as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            assert s.attach().returncode == 0
            await asyncio.to_thread(s.facteur.wait_log, "Logged in.", 15)
            s.dovecot.deliver([mail(1)])
            got = await alice.wait_for(lambda m: m["subject"] == "imap-1", timeout=20)
            assert got["from"] == escaped("bob@example.net")
            assert "idle=false" in s.facteur.log_since_start()
            assert "IDLE: news." not in s.facteur.log_since_start()
            await alice.disconnect()
        run(scenario())


def test_wrong_password_at_attach_fails_with_dovecots_words(tmp_path):
    with Setup(tmp_path) as s:
        wrong = tmp_path / "wrong"
        wrong.write_text("not-the-password\n")
        refused = s.attach(password_file=wrong)
        assert refused.returncode == 1
        assert "login refused: [AUTHENTICATIONFAILED] Authentication failed." in refused.stderr, refused.stderr
        # A certificate of a CA the system does not trust: no login, in
        # implicit TLS or after STARTTLS.
        untrusted = s.attach(tls="implicit", port=s.dovecot.imaps, host="localhost")
        assert untrusted.returncode == 1
        assert "TLS with localhost: invalid peer certificate: UnknownIssuer" in untrusted.stderr, untrusted.stderr
        untrusted = s.attach(tls="starttls", port=s.dovecot.imap, host="localhost")
        assert untrusted.returncode == 1
        assert "TLS with localhost: invalid peer certificate: UnknownIssuer" in untrusted.stderr, untrusted.stderr
        closed = s.attach(port=1)
        assert closed.returncode == 1 and "Connection refused" in closed.stderr, closed.stderr
        # A password in clear goes to loopback only.
        remote = s.attach(host="192.0.2.1")
        assert remote.returncode != 0 and "loopback" in remote.stderr, remote.stderr
        assert s.cli("list").stdout == ""


def garbage_server(greeting):
    """A TCP server on a free loopback port that sends `greeting`, then
    answers every line with bytes no IMAP parser takes, then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.sendall(greeting)
                    conn.recv(4096)
                    conn.sendall(b"\x00\xff)(*& not imap at all {99999999}\r\n" * 3)
                except OSError:
                    pass
    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.mark.parametrize("greeting", [b"* OK ready\r\n", b"\x00\x01garbage\r\n"])
def test_a_server_that_sends_garbage_is_refused_clearly(tmp_path, greeting):
    with Setup(tmp_path) as s:
        listener = garbage_server(greeting)
        try:
            started = time.monotonic()
            refused = s.attach(port=listener.getsockname()[1])
            assert refused.returncode == 1, refused
            assert refused.stderr.startswith(f"127.0.0.1:{listener.getsockname()[1]} as alice: "), refused.stderr
            assert "panicked" not in refused.stderr
            if b"OK" not in greeting:
                assert "127.0.0.1 sent no IMAP greeting (is it an IMAP server, and is the TLS mode right?)" \
                    in refused.stderr, refused.stderr
            assert time.monotonic() - started < 35
            print(refused.stderr)
        finally:
            listener.close()
        assert s.cli("list").stdout == ""


@pytest.mark.parametrize("tls,port", [("implicit", "imaps"), ("starttls", "imap")])
def test_mail_comes_over_tls(tmp_path, tls, port):
    with Setup(tmp_path, imap='poll_interval = "1h"', trust=True) as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            attached = s.attach(tls=tls, port=getattr(s.dovecot, port), host="localhost")
            assert attached.returncode == 0, attached.stderr
            await asyncio.to_thread(s.facteur.wait_log, "IDLE: waiting.", 15)
            s.dovecot.deliver([mail(1)])
            await alice.wait_for(lambda m: m["subject"] == "imap-1", timeout=20)
            # Dovecot saw the login in TLS.
            assert "Login: user=<alice>" in s.dovecot.log_text()
            assert "TLS" in [line for line in s.dovecot.log_text().splitlines()
                             if "Login: user=<alice>" in line][-1]
            await alice.disconnect()
        run(scenario())


def test_a_changed_password_pauses_the_mailbox_with_one_notice(tmp_path):
    with Setup(tmp_path, imap='poll_interval = "1s"\nidle = false') as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            assert s.attach().returncode == 0
            await asyncio.to_thread(s.facteur.wait_log, "Logged in.", 15)
            s.dovecot.set_password("alice", "a-new-password")
            # Dovecot closes nothing: the next login is the one refused.
            s.dovecot.stop()
            s.dovecot.start()
            notice = await alice.wait_for(lambda m: m["subject"] == "Mailbox paused", timeout=60)
            assert notice["from"] == GATEWAY
            assert "refused the login 3 times" in notice["body"]
            assert "Authentication failed" in notice["body"]
            assert "attach the mailbox again" in notice["body"]
            listed = s.cli("list").stdout
            assert " paused: the server refused the login 3 times in a row" in listed, listed
            # Paused: no more tries, no second notice.
            log = s.dovecot.log_text().count("auth failed")
            await asyncio.sleep(5)
            assert s.dovecot.log_text().count("auth failed") == log
            assert [m["subject"] for m in alice.messages].count("Mailbox paused") == 1
            # Attached again with the new password: followed again.
            s.password_file.write_text("a-new-password\n")
            since = s.facteur.log_size()
            assert s.attach().returncode == 0
            await asyncio.to_thread(s.facteur.wait_log, "Logged in.", 20, since)
            s.dovecot.deliver([mail(7)])
            await alice.wait_for(lambda m: m["subject"] == "imap-7", timeout=20)
            await alice.disconnect()
        run(scenario())


def test_a_new_uidvalidity_brings_only_what_is_new_by_date(tmp_path):
    with Setup(tmp_path, imap='poll_interval = "1s"\nidle = false') as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            assert s.attach().returncode == 0
            # No Message-ID: nothing but the folder state tells them apart.
            s.dovecot.deliver([mail(1, message_id=False)])
            await alice.wait_for(lambda m: m["subject"] == "imap-1", timeout=20)
            # INTERNALDATE counts in seconds: the next mail comes later.
            await asyncio.sleep(1.5)
            s.dovecot.doveadm("mailbox", "update", "-u", "alice", "--uid-validity", "4242", "INBOX")
            s.dovecot.deliver([mail(2, message_id=False)])
            await alice.wait_for(lambda m: m["subject"] == "imap-2", timeout=20)
            await asyncio.to_thread(s.facteur.wait_log, "UIDVALIDITY changed", 5)
            log = s.facteur.log_since_start()
            assert "new=4242" in log, log
            await asyncio.sleep(2)
            assert sorted(from_imap(alice)) == ["imap-1", "imap-2"]
            assert all(len(ids) == 1 for ids in from_imap(alice).values()), from_imap(alice)
            await alice.disconnect()
        run(scenario())


def test_a_mail_too_large_is_announced_and_not_fetched(tmp_path):
    # The test gateway takes mail up to 200000 bytes.
    with Setup(tmp_path, imap='poll_interval = "1h"') as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            assert s.attach().returncode == 0
            await asyncio.to_thread(s.facteur.wait_log, "IDLE: waiting.", 15)
            big = mail(1).replace(b"mail number 1", b"x" * 300000)
            s.dovecot.deliver([big, mail(2)])
            notice = await alice.wait_for(lambda m: m["subject"] == "Mail too large", timeout=20)
            assert notice["from"] == GATEWAY
            told = re.match(r"A mail of (\d+) bytes in INBOX of alice at 127\.0\.0\.1 is over the limit "
                            r"of 200000 bytes; it was not fetched\.", notice["body"])
            assert told and int(told.group(1)) > 300000, notice["body"]
            await alice.wait_for(lambda m: m["subject"] == "imap-2", timeout=20)
            assert not [m for m in alice.messages if m["subject"] == "imap-1"]
            # Only the small one's body was asked for.
            assert "Mail over the size limit; the user is told." in s.facteur.log_since_start()
            await alice.disconnect()
        run(scenario())


def test_a_folder_that_vanishes_leaves_the_others_followed(tmp_path):
    with Setup(tmp_path, imap='poll_interval = "1h"') as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            s.dovecot.doveadm("mailbox", "create", "-u", "alice", "Archive")
            assert s.attach(folders=("INBOX", "Archive")).returncode == 0
            await asyncio.to_thread(s.facteur.wait_log, "IDLE: waiting.", 15)
            s.dovecot.doveadm("mailbox", "delete", "-u", "alice", "Archive")
            s.dovecot.deliver([mail(1)])
            await alice.wait_for(lambda m: m["subject"] == "imap-1", timeout=20)
            await asyncio.to_thread(s.facteur.wait_log, "Folder unavailable; the others are followed.", 10)
            assert 'folder=Archive server_said=Mailbox doesn\'t exist: Archive' in s.facteur.log_since_start()
            s.dovecot.deliver([mail(2)])
            await alice.wait_for(lambda m: m["subject"] == "imap-2", timeout=20)
            log = s.facteur.log_since_start()
            assert log.count("Folder unavailable") == 1
            assert "Mailbox unreachable" not in log
            await alice.disconnect()
        run(scenario())


COUNT = int(os.environ.get("IMAP_RESTART_MAILS", "200"))


def test_restarts_lose_nothing_and_duplicate_nothing(tmp_path):
    """Dovecot restarted, then facteur killed (-9) and started again, while
    mail arrives. Half the mails have no Message-ID, so nothing but the
    folder state keeps them from coming twice."""
    with Setup(tmp_path, imap='poll_interval = "1h"') as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            assert s.attach().returncode == 0
            await asyncio.to_thread(s.facteur.wait_log, "IDLE: waiting.", 15)
            delivered = []

            def in_mailbox(n):
                # IMAP SEARCH HEADER matches substrings: the dot keeps
                # "imap-1." from matching "imap-10.".
                try:
                    return bool(s.dovecot.doveadm("search", "-u", "alice", "mailbox", "INBOX",
                                                  "header", "subject", f"imap-{n}.").strip())
                except subprocess.SubprocessError:
                    return False

            def deliver():
                for n in range(COUNT):
                    for _ in range(100):
                        try:
                            s.dovecot.deliver([mail(n, message_id=n % 2 == 0,
                                                    subject=f"imap-{n}.")])
                            delivered.append(n)
                            break
                        except Exception:
                            # A session cut by the restart after Dovecot
                            # took the mail: delivering it again would put
                            # a second copy in the mailbox.
                            if in_mailbox(n):
                                delivered.append(n)
                                break
                            time.sleep(0.1)
                    time.sleep(0.01)
            sender = threading.Thread(target=deliver)
            sender.start()
            await wait_until(lambda: len(delivered) >= COUNT // 4, timeout=60)
            await asyncio.to_thread(s.dovecot.stop)
            await asyncio.to_thread(s.dovecot.start)
            await wait_until(lambda: len(delivered) >= COUNT // 2, timeout=60)
            s.facteur.kill()
            await asyncio.sleep(0.3)
            await asyncio.to_thread(s.facteur.start)
            await asyncio.to_thread(s.facteur.wait_log, "Component link up.", 20)
            await asyncio.to_thread(sender.join, 120)
            assert len(delivered) == COUNT
            assert await wait_until(lambda: len(from_imap(alice)) == COUNT, timeout=90), \
                f"{COUNT - len(from_imap(alice))} mails missing at the client"
            await asyncio.sleep(3)
            seen = from_imap(alice)
            # Sent again with its id (a kill before the server confirmed
            # it) is one mail to a client; under another id it is two.
            copies = {subject: ids for subject, ids in seen.items() if len(set(ids)) > 1}
            print(f"imap restarts: mails={len(seen)}/{COUNT} copies={len(copies)} "
                  f"stanzas={sum(len(ids) for ids in seen.values())}")
            assert copies == {}, {subject: s.dovecot.doveadm(
                "search", "-u", "alice", "mailbox", "INBOX", "header", "subject", subject)
                for subject in copies}
            await alice.disconnect()
        run(scenario())


def test_alice_attaches_lists_and_detaches_from_her_client(tmp_path):
    with Setup(tmp_path, imap='poll_interval = "1h"') as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            listing = f"<query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/>"
            nodes = [i.get("node") for i in (await alice.iq("get", GATEWAY, listing)).xml.iter(
                "{http://jabber.org/protocol/disco#items}item")]
            assert nodes == ["imap-attach", "imap-detach", "imap-list", "imap-search",
                             "openpgp-key", "blocked-senders",
                             "report-spam", "not-spam", "spam-settings"]

            step = await execute(alice, "imap-attach")
            assert step.get("status") == "executing"
            assert values(step, "port") == ["993"] and values(step, "folders") == ["INBOX"]
            instructions = step.findtext("{jabber:x:data}x/{jabber:x:data}instructions")
            assert "leave from your XMPP address, alice@example.test" in instructions
            form = {"host": ["127.0.0.1"], "port": [str(s.dovecot.imap)], "tls": ["none"],
                    "username": ["alice"], "password": ["wrong"], "folders": ["INBOX"], "import": ["1"]}
            with pytest.raises(IqError) as raised:
                await execute(alice, "imap-attach", "complete", step.get("sessionid"), form)
            assert raised.value.iq["error"]["condition"] == "not-acceptable"
            assert "[AUTHENTICATIONFAILED] Authentication failed." in raised.value.iq["error"]["text"]

            # The latest message is brought at once ("import the last 1").
            s.dovecot.deliver([mail(1), mail(2)])
            done = await execute(alice, "imap-attach", "complete", step.get("sessionid"),
                                 {**form, "password": [PASSWORD]})
            assert done.get("status") == "completed"
            assert "Attached alice at 127.0.0.1" in note(done)
            assert "leave from your XMPP address" in note(done)
            await alice.wait_for(lambda m: m["subject"] == "imap-2", timeout=20)
            await asyncio.sleep(1)
            assert not [m for m in alice.messages if m["subject"] == "imap-1"]

            listed = await execute(alice, "imap-list")
            assert note(listed) == f"alice@example.test 127.0.0.1:{s.dovecot.imap} none alice INBOX active"

            choose = await execute(alice, "imap-detach")
            assert [o.findtext("{jabber:x:data}value") for o in choose.iter("{jabber:x:data}option")] == \
                ["127.0.0.1 alice"]
            gone = await execute(alice, "imap-detach", "complete", choose.get("sessionid"),
                                 {"mailbox": ["127.0.0.1 alice"]})
            assert note(gone) == "Detached alice at 127.0.0.1: nothing more comes from it."
            assert note(await execute(alice, "imap-list")) == "No mailbox is attached."
            assert s.cli("list").stdout == ""
            await alice.disconnect()
        run(scenario())


def flags(s, n):
    """The flags Dovecot holds for mail `n` of INBOX, as `doveadm fetch` shows
    them, but \\Recent (which only says no session selected it yet)."""
    out = s.dovecot.doveadm("fetch", "-u", "alice", "flags", "mailbox", "INBOX",
                            "header", "Message-ID", f"imap-{n}@example.net")
    if "flags:" not in out:
        return None
    return [f for f in out.split("flags:", 1)[1].split() if f != "\\Recent"]


def test_displayed_marker_and_receipt_set_seen_on_the_server(tmp_path):
    """Mail from the mailbox reaches alice markable; Conversations' displayed
    marker on one, and a XEP-0184 receipt for another, set \\Seen on each
    in Dovecot; a third, not displayed, stays unseen."""
    marker, _ = client_stanza("conversations-displayed")
    with Setup(tmp_path, imap='poll_interval = "1h"\nidle = true') as s:
        async def scenario():
            alice = await registered_client(s.gateway)
            assert s.attach().returncode == 0
            await asyncio.to_thread(s.facteur.wait_log, "IDLE: waiting.", 15)
            s.dovecot.deliver([mail(1), mail(2), mail(3)])
            got = {}
            for n in (1, 2, 3):
                got[n] = await alice.wait_for(lambda m, n=n: m["subject"] == f"imap-{n}", timeout=20)
                assert f"<markable xmlns=\"{MARKERS}\"" in got[n]["xml"], got[n]["xml"]
            assert [flags(s, n) for n in (1, 2, 3)] == [[], [], []]
            alice.xmpp.send_raw(marker.replace("TARGET", got[1]["id"]))
            alice.xmpp.send_raw(
                f"<message xmlns='jabber:client' to='{escaped('bob@example.net')}' id='r-2'>"
                f"<received xmlns='urn:xmpp:receipts' id='{got[2]['id']}'/></message>")
            assert await wait_until(lambda: flags(s, 1) == ["\\Seen"] and flags(s, 2) == ["\\Seen"],
                                    timeout=20, interval=0.3), (flags(s, 1), flags(s, 2), s.facteur.log_tail())
            assert flags(s, 3) == []
            await alice.disconnect()
        run(scenario())


def test_search_mail_finds_by_subject_and_show_brings_it(tmp_path):
    """Mail there before the attach stays there; "Search mail" finds one by
    subject on the server, and "Show" brings it to alice as a message from
    its sender's escaped JID."""
    with Setup(tmp_path, imap='poll_interval = "1h"') as s:
        s.dovecot.deliver([mail(1), mail(2, subject="Quarterly report"), mail(3)])

        async def scenario():
            alice = await registered_client(s.gateway)
            assert s.attach().returncode == 0
            step = await execute(alice, "imap-search")
            assert step.get("status") == "executing"
            assert values(step, "mailbox") == ["127.0.0.1 alice"] and values(step, "folder") == ["INBOX"]
            session = step.get("sessionid")
            nothing = await execute(alice, "imap-search", "complete", session,
                                    {"mailbox": ["127.0.0.1 alice"], "subject": ["no such thing"]})
            assert note(nothing) == "Nothing found in INBOX."

            found = await execute(alice, "imap-search", "complete", session,
                                  {"mailbox": ["127.0.0.1 alice"], "folder": ["INBOX"],
                                   "subject": ["quarterly"], "since": ["2020-01-01"]})
            assert found.get("status") == "executing"
            options = [(o.get("label"), o.findtext("{jabber:x:data}value"))
                       for o in found.iter("{jabber:x:data}option")]
            assert len(options) == 1, options
            label, uid = options[0]
            assert "Quarterly report" in label and "bob@example.net" in label, label
            hidden = {var: values(found, var) for var in ("mailbox", "folder", "uidvalidity")}
            assert not [m for m in alice.messages if m["subject"] == "Quarterly report"]
            shown = await execute(alice, "imap-search", "complete", session, {**hidden, "message": [uid]})
            assert note(shown) == "The message comes to you in a chat."
            got = await alice.wait_for(lambda m: m["subject"] == "Quarterly report", timeout=20)
            assert got["from"] == escaped("bob@example.net")
            assert got["body"].strip() == "mail number 2"
            # Shown only: the others stay on the server.
            await asyncio.sleep(1)
            assert not [m for m in alice.messages if m["subject"] in ("imap-1", "imap-3")]
            await alice.disconnect()
        run(scenario())
