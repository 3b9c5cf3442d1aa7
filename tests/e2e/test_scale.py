"""Several facteur instances against one XMPP server, one PostgreSQL store.

ejabberd lets two facteurs bind the same component domain and shares the
stanzas for it between them at random: 500 mails in (SMTP, spread over
both instances) and 500 out (alice's client, through either instance, to
an SMTP relay), one instance killed -9 in the middle. Nothing may be lost
and nothing duplicated, by Message-ID, at the client or at the relay,
except what RFC 1047 allows: a mail the relay accepted while the dead
instance held it, before its outcome was committed, may be sent again.

Prosody takes one connection per component: the second instance stands by
(its link refused with `conflict`), takes over when the first is killed
-9, and mail sent before and after arrives once."""

import asyncio
import os
import re
import smtplib
import subprocess
import time
from collections import defaultdict

import pytest

from peers import (Client, Dns, Ejabberd, Facteur, Prosody, Relay, escaped, send_mail,
                   wait_until)

INBOUND = int(os.environ.get("SCALE_INBOUND", "500"))
OUTBOUND = int(os.environ.get("SCALE_OUTBOUND", "500"))
# Short, so that the survivor takes the dead instance's items in seconds.
LEASE = "5s"


def numbered_mail(n):
    return (f"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: in-{n}\r\n"
            f"Message-ID: <in-{n}@example.net>\r\n\r\nmail number {n}\r\n").encode()


def smtp_until_accepted(ports, n, deadline):
    """Sends mail n as an MTA with several MX hosts does: to the first
    port, then on any failure to the next, until one answers 250."""
    attempt = 0
    while time.monotonic() < deadline:
        port = ports[(n + attempt) % len(ports)]
        attempt += 1
        try:
            code, _ = send_mail(port, "bob@example.net", ["alice@example.test"], numbered_mail(n), timeout=5)
            if code == 250:
                return True
        except (OSError, smtplib.SMTPException):
            pass
        time.sleep(0.1)
    return False


async def send_until_receipt(client, to, body, stanza_id, deadline, wait=5.0):
    """Sends a stanza asking for a receipt, again with the same id after an
    error or silence, as a careful client does."""
    import slixmpp
    # A receipt counts whenever it comes, even after a timeout.
    seen = len(client.messages)
    while time.monotonic() < deadline:
        errors = len(client.messages)
        stanza = client.xmpp.make_message(mto=to, mbody=body, mtype="chat")
        stanza["id"] = stanza_id
        stanza.append(slixmpp.xmlstream.ET.fromstring("<request xmlns='urn:xmpp:receipts'/>"))
        stanza.send()
        end = time.monotonic() + wait
        while time.monotonic() < end:
            for i, m in enumerate(client.messages[seen:], seen):
                if m["receipt"] == stanza_id:
                    return True
                if m["type"] == "error" and m["id"] == stanza_id and i >= errors:
                    end = 0
                    break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    return False


def psql_rows(url, sql):
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def instance_of(facteur, timeout=20):
    """The lease owner id the running facteur logged at start."""
    facteur.wait_log("Taking queue items as this instance.", timeout=timeout)
    found = re.search(r'Taking queue items as this instance\..*?instance="?([^" ]+)"?', facteur.log_since_start())
    assert found, facteur.log_tail()
    return found.group(1)


class Cluster:
    """One XMPP server, DNS, a relay, and `count` facteurs with the same
    component domain, served domain and PostgreSQL store; each has its own
    SMTP and HTTP ports, and all share the attachments directory."""

    def __init__(self, tmp_path, server, store_url, count=2):
        self.xmpp = {"ejabberd": Ejabberd, "prosody": Prosody}[server](tmp_path)
        self.dns = Dns(tmp_path / "dns")
        self.relay = Relay()
        self.store_url = store_url
        shared = tmp_path / "shared"
        shared.mkdir()
        self.facteurs = [
            Facteur(tmp_path / f"instance-{i}", self.xmpp, self.relay, self.dns, store_dir=shared,
                    store_url=store_url, store=f'lease = "{LEASE}"\npoll_interval = "1s"')
            for i in range(count)
        ]

    def start(self):
        self.xmpp.start()
        self.dns.start()
        self.relay.start()

    def stop(self):
        try:
            for facteur in self.facteurs:
                facteur.stop()
            self.relay.stop()
        finally:
            self.xmpp.cleanup()
            self.dns.stop()

    def leased_to(self, owner):
        """The Message-IDs of the items leased to `owner` that wait for
        their delivery, to XMPP and to mail."""
        to_xmpp = psql_rows(self.store_url, f"SELECT message_id FROM to_xmpp WHERE lease_owner = '{owner}' "
                                            "AND lease_until IS NOT NULL AND state = 'pending'")
        to_mail = psql_rows(self.store_url, f"SELECT message_id FROM to_mail WHERE lease_owner = '{owner}' "
                                            "AND lease_until IS NOT NULL AND state = 'queued'")
        return [r[0] for r in to_xmpp], [r[0] for r in to_mail]

    def waiting(self):
        """Items of either queue still waiting for their delivery."""
        rows = psql_rows(self.store_url, "SELECT (SELECT COUNT(*) FROM to_xmpp WHERE state = 'pending') "
                                         "+ (SELECT COUNT(*) FROM to_mail WHERE state = 'queued')")
        return int(rows[0][0])


@pytest.fixture
def cluster(request, tmp_path):
    server = request.param
    url = request.getfixturevalue("pg_cluster").database()
    c = Cluster(tmp_path, server, url)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.mark.parametrize("cluster", ["ejabberd"], indirect=True)
def test_two_instances_share_ejabberd_and_survive_a_kill(cluster):
    a, b = cluster.facteurs
    for facteur in (a, b):
        facteur.start()
        facteur.wait_log("Component link up.", timeout=20)
    owner_a = instance_of(a)

    async def scenario():
        alice = Client("alice", cluster.xmpp.c2s)
        await alice.connect()
        await alice.register()
        started = time.monotonic()
        deadline = started + 240
        ports = [a.smtp_port, b.smtp_port]
        accepted, confirmed = set(), set()
        killed = {}

        async def inbound():
            pending = list(range(INBOUND))[::-1]

            async def worker():
                while pending:
                    # In step with the outbound mails, so that the kill
                    # finds both directions in flight.
                    while (len(accepted) - len(confirmed) * INBOUND / OUTBOUND > 20
                           and time.monotonic() < deadline):
                        await asyncio.sleep(0.02)
                    if not pending:
                        return
                    n = pending.pop()
                    if await asyncio.to_thread(smtp_until_accepted, ports, n, deadline):
                        accepted.add(n)
            await asyncio.gather(*(worker() for _ in range(4)))

        async def outbound():
            for n in range(OUTBOUND):
                if await send_until_receipt(alice, escaped("bob@example.net"), f"out-{n}", f"out-{n}", deadline):
                    confirmed.add(n)

        async def killer():
            """Kills instance A -9 halfway, and reads from the store what it
            held then (with A dead, the store as the kill left it)."""
            total = INBOUND + OUTBOUND
            while (len(accepted) + len(confirmed)) / total < 0.5:
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.02)
            # At a moment A holds work, if one comes within a few seconds.
            look_until = time.monotonic() + 5
            while time.monotonic() < look_until and not any(
                    await asyncio.to_thread(cluster.leased_to, owner_a)):
                pass
            a.kill()
            killed["at"] = time.monotonic() - started
            killed["held"] = await asyncio.to_thread(cluster.leased_to, owner_a)

        await asyncio.gather(inbound(), outbound(), killer())
        sent = time.monotonic() - started
        assert "held" in killed, "the run ended before the kill"
        held_xmpp, held_mail = killed["held"]
        print(f"scale: killed A at {killed['at']:.1f}s holding {len(held_xmpp)} to XMPP, "
              f"{len(held_mail)} to mail; all sent in {sent:.1f}s")
        assert len(accepted) == INBOUND, f"{INBOUND - len(accepted)} mails never got 250"
        assert len(confirmed) == OUTBOUND, f"{OUTBOUND - len(confirmed)} stanzas never confirmed"

        def at_client():
            by_message_id = defaultdict(list)
            for m in alice.messages:
                if m["mail"] and (m["subject"] or "").startswith("in-"):
                    by_message_id[m["mail"].get("message-id")].append(m["id"])
            return by_message_id

        def at_relay():
            copies = defaultdict(list)
            for r in cluster.relay.received:
                copies[r["message"]["Message-ID"]].append(r["message"].get_content().strip())
            return copies

        assert await wait_until(lambda: len(at_client()) == INBOUND, timeout=60), \
            f"{INBOUND - len(at_client())} accepted mails missing at the client"
        assert await wait_until(lambda: len(at_relay()) == OUTBOUND, timeout=60), \
            f"{OUTBOUND - len(at_relay())} confirmed stanzas missing at the relay"
        # Late copies would come from items left in the store: wait until
        # it holds none, then look.
        assert await wait_until(lambda: cluster.waiting() == 0, timeout=60, interval=0.5), cluster.waiting()
        client, relay = at_client(), at_relay()
        # A client shows a mail twice only under two stanza ids; a stanza
        # sent again keeps its id, and only one the dead instance held
        # unconfirmed is sent again.
        shown_twice = {mid: ids for mid, ids in client.items() if len(set(ids)) > 1}
        resent = {mid: ids for mid, ids in client.items() if len(ids) > 1}
        relay_twice = {mid: bodies for mid, bodies in relay.items() if len(bodies) > 1}
        print(f"scale: inbound {len(client)}/{INBOUND}, stanzas sent again {len(resent)}; "
              f"outbound {len(relay)}/{OUTBOUND}, relayed twice {len(relay_twice)}; "
              f"A held {len(held_xmpp)} + {len(held_mail)} at the kill; "
              f"{time.monotonic() - started:.1f}s in all")
        assert not shown_twice, shown_twice
        assert set(resent) <= {f"<{m}>" for m in held_xmpp} | set(held_xmpp), (resent, held_xmpp)
        assert set(relay_twice) <= {f"<{m}>" for m in held_mail} | set(held_mail), (relay_twice, held_mail)
        assert all(len(set(bodies)) == 1 for bodies in relay.values())
        # Both instances did their share before the kill.
        for facteur, name in ((a, "A"), (b, "B")):
            log = facteur.log_since_start()
            assert "Delivered to XMPP." in log and "Sent mail." in log, name
        await alice.disconnect()
    asyncio.run(scenario())


@pytest.mark.parametrize("cluster", ["prosody"], indirect=True)
def test_second_instance_stands_by_beside_prosody_and_takes_over(cluster):
    a, b = cluster.facteurs
    a.start()
    a.wait_log("Component link up.", timeout=20)
    b.start()
    b.wait_log("standing by to take over the link", timeout=20)

    async def exchange(alice, label, count):
        """`count` mails in over both instances' SMTP ports, `count` out
        from alice; returns once each got its 250 or its receipt."""
        for n in range(count):
            port = (a if n % 2 and a.alive() else b).smtp_port
            mail = (f"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: {label}-in-{n}\r\n"
                    f"Message-ID: <{label}-in-{n}@example.net>\r\n\r\n{label} mail {n}\r\n").encode()
            code, text = await asyncio.to_thread(send_mail, port, "bob@example.net", ["alice@example.test"], mail)
            assert code == 250, (code, text)
        deadline = time.monotonic() + 60
        for n in range(count):
            assert await send_until_receipt(alice, escaped("bob@example.net"), f"{label}-out-{n}",
                                            f"{label}-out-{n}", deadline), f"{label}-out-{n} unconfirmed"

    async def scenario():
        alice = Client("alice", cluster.xmpp.c2s)
        await alice.connect()
        await alice.register()
        await exchange(alice, "before", 10)
        assert await wait_until(lambda: cluster.waiting() == 0, timeout=30, interval=0.2), cluster.waiting()
        # A few seconds of standing by: the refusals are not logged again.
        await asyncio.sleep(3)
        a.kill()
        killed = time.monotonic()
        await asyncio.to_thread(b.wait_log, "Component link up.", 20)
        takeover = time.monotonic() - killed
        await exchange(alice, "after", 10)

        def at_client():
            by_message_id = defaultdict(list)
            for m in alice.messages:
                if m["mail"] and "-in-" in (m["subject"] or ""):
                    by_message_id[m["mail"].get("message-id")].append(m["id"])
            return by_message_id

        assert await wait_until(lambda: len(at_client()) == 20, timeout=30), sorted(at_client())
        assert await wait_until(lambda: len(cluster.relay.received) >= 20, timeout=30)
        await asyncio.sleep(1)
        assert cluster.waiting() == 0
        client = at_client()
        assert all(len(ids) == 1 for ids in client.values()), client
        relayed = defaultdict(int)
        for r in cluster.relay.received:
            relayed[r["message"].get_content().strip()] += 1
        expected = {f"{label}-out-{n}" for label in ("before", "after") for n in range(10)}
        assert dict(relayed) == {body: 1 for body in expected}, dict(relayed)
        log = b.log_since_start()
        print(f"scale: standby took over {takeover:.1f}s after the kill; "
              f"{log.count('still held by another connection')} refusals logged at debug")
        assert takeover < 10, takeover
        assert log.count("standing by to take over the link") == 1, log
        assert "refused the component" not in log
        await alice.disconnect()
    asyncio.run(scenario())
