"""Fault injection, end to end: facteur killed at random moments, the XMPP
server restarted, the relay down, the store full or read-only, slow and
hostile SMTP clients. What must hold: every mail that got 250 reaches the
user (one stanza id per mail, so the client sees it once), every stanza
the gateway acknowledged reaches the relay with one Message-ID, and no
limit gives way."""

import asyncio
import os
import random
import smtplib
import socket
import subprocess
import time
from collections import defaultdict

import pytest

from peers import Client, Gateway, escaped, registered_client, send_mail, wait_until

SEED = int(os.environ.get("FAULT_SEED", str(random.SystemRandom().randrange(1 << 30))))
INBOUND = int(os.environ.get("FAULT_INBOUND", "500"))
OUTBOUND = int(os.environ.get("FAULT_OUTBOUND", "500"))
KILLS = int(os.environ.get("FAULT_KILLS", "6"))


def numbered_mail(n):
    return (f"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: in-{n}\r\n"
            f"Message-ID: <in-{n}@example.net>\r\n\r\nmail number {n}\r\n").encode()


def smtp_until_accepted(port, n, deadline):
    """Sends mail n like an MTA would: again after any failure, until 250."""
    while time.monotonic() < deadline:
        try:
            code, _ = send_mail(port, "bob@example.net", ["alice@example.test"], numbered_mail(n), timeout=5)
            if code == 250:
                return True
        except (OSError, smtplib.SMTPException):
            pass
        time.sleep(0.2)
    return False


async def send_until_receipt(client, to, body, stanza_id, deadline):
    """Sends a stanza with a receipt request, again with the same id after
    an error or silence, as a careful client does."""
    import slixmpp
    while time.monotonic() < deadline:
        seen = len(client.messages)
        stanza = client.xmpp.make_message(mto=to, mbody=body, mtype="chat")
        stanza["id"] = stanza_id
        stanza.append(slixmpp.xmlstream.ET.fromstring("<request xmlns='urn:xmpp:receipts'/>"))
        stanza.send()
        end = time.monotonic() + 3
        while time.monotonic() < end:
            for m in client.messages[seen:]:
                if m["receipt"] == stanza_id:
                    return True
                if m["type"] == "error" and m["id"] == stanza_id:
                    end = 0
                    break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
    return False


def test_crash_anywhere(gateway):
    print(f"fault seed: FAULT_SEED={SEED}")
    rng = random.Random(SEED)

    async def scenario():
        alice = await registered_client(gateway)
        deadline = time.monotonic() + 240
        port = gateway.facteur.smtp_port

        async def inbound():
            pending = list(range(INBOUND))
            accepted = set()
            async def worker():
                while pending:
                    n = pending.pop()
                    if await asyncio.to_thread(smtp_until_accepted, port, n, deadline):
                        accepted.add(n)
            await asyncio.gather(*(worker() for _ in range(4)))
            return accepted

        async def outbound():
            confirmed = set()
            for n in range(OUTBOUND):
                if await send_until_receipt(alice, escaped("bob@example.net"), f"out-{n}", f"out-{n}", deadline):
                    confirmed.add(n)
            return confirmed

        async def killer():
            kills = 0
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                gateway.facteur.kill()
                kills += 1
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                await asyncio.to_thread(gateway.facteur.start)
                await asyncio.to_thread(gateway.facteur.wait_log, "Component link up.", 20)
            return kills

        accepted, confirmed, kills = await asyncio.gather(inbound(), outbound(), killer())
        assert kills >= 5
        assert len(accepted) == INBOUND, f"{INBOUND - len(accepted)} mails never got 250"
        assert len(confirmed) == OUTBOUND, f"{OUTBOUND - len(confirmed)} stanzas never confirmed"

        def subjects():
            by_subject = defaultdict(list)
            for m in alice.messages:
                if m["body"] and (m["subject"] or "").startswith("in-"):
                    by_subject[m["subject"]].append(m["id"])
            return by_subject
        assert await wait_until(lambda: len(subjects()) == INBOUND, timeout=90), \
            f"{INBOUND - len(subjects())} accepted mails missing at the client"

        def sink():
            copies = defaultdict(list)
            for r in gateway.relay.received:
                copies[r["message"].get_content().strip()].append(r["message"]["Message-ID"])
            return copies
        assert await wait_until(lambda: len(sink()) == OUTBOUND, timeout=90), \
            f"{OUTBOUND - len(sink())} confirmed stanzas missing at the relay"
        await asyncio.sleep(2)

        by_subject = subjects()
        for subject, ids in by_subject.items():
            assert len(set(ids)) == 1, f"{subject} reached the client under several ids: {ids}"
        copies = sink()
        for body, message_ids in copies.items():
            assert len(set(message_ids)) == 1, f"{body} was mailed under several Message-IDs: {message_ids}"
        client_dups = sum(len(ids) - 1 for ids in by_subject.values())
        sink_dups = sum(len(ids) - 1 for ids in copies.values())
        print(f"fault result: seed={SEED} kills={kills} inbound={len(by_subject)}/{INBOUND} "
              f"client_copies={client_dups} outbound={len(copies)}/{OUTBOUND} sink_duplicates={sink_dups}")
        await alice.disconnect()
    asyncio.run(scenario())


def test_xmpp_server_restart_mid_stream(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        port = gateway.facteur.smtp_port
        deadline = time.monotonic() + 120
        count = 200

        async def mails():
            for n in range(count):
                assert await asyncio.to_thread(smtp_until_accepted, port, n, deadline)

        async def restart():
            await asyncio.sleep(0.5)
            gateway.prosody.stop()
            await asyncio.sleep(1)
            await asyncio.to_thread(gateway.prosody.start)

        await asyncio.gather(mails(), restart())
        await asyncio.to_thread(gateway.facteur.wait_log, "Component link up.", 20)
        first = alice
        alice = Client("alice", gateway.prosody.c2s)
        await alice.connect()

        def ids_by_subject():
            seen = defaultdict(set)
            for m in first.messages + alice.messages:
                if m["body"] and (m["subject"] or "").startswith("in-"):
                    seen[m["subject"]].add(m["id"])
            return seen
        assert await wait_until(lambda: len(ids_by_subject()) == count, timeout=60), \
            f"missing {count - len(ids_by_subject())}: {gateway.facteur.log_tail(20)}"
        assert all(len(ids) == 1 for ids in ids_by_subject().values())
        await alice.disconnect()
    asyncio.run(scenario())


def test_relay_outage_then_queue_drains(gateway):
    async def scenario():
        gateway.relay.stop()
        alice = await registered_client(gateway)
        deadline = time.monotonic() + 60
        for n in range(50):
            assert await send_until_receipt(alice, escaped("bob@example.net"), f"queued-{n}", f"q-{n}", deadline)
        await asyncio.sleep(3)  # longer than one retry interval
        assert gateway.relay.received == []
        gateway.relay.start()
        assert await wait_until(lambda: len(gateway.relay.received) >= 50, timeout=30)
        out = subprocess.run([gateway.facteur.binary, "queue", "--config", str(gateway.facteur.config)],
                             capture_output=True, text=True, check=True).stdout
        assert "to_mail sent 50" in out and "queued" not in out, out
        await alice.disconnect()
    asyncio.run(scenario())


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "store"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path):
    """Fills the file system holding path; returns the filler."""
    filler = path / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
    except OSError:
        pass
    return filler


def test_full_disk_gives_try_later(tmp_path, small_disk):
    trouble = "full"
    gateway = Gateway(tmp_path, store_dir=small_disk)
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            port = gateway.facteur.smtp_port
            queued_while_full = False
            if trouble == "full":
                filler = fill(small_disk)
            else:
                subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
            big = numbered_mail(1) + b"x" * 150000 + b"\r\n"
            code, text = await asyncio.to_thread(send_mail, port, "bob@example.net", ["alice@example.test"], big)
            assert 400 <= code < 500, f"{code} {text}"
            sent = alice.send(escaped("bob@example.net"), "while the disk is in trouble", receipt=True)
            answer = await alice.wait_for(lambda m: m["id"] == sent or m["receipt"] == sent)
            if answer["receipt"] is None:
                assert answer["type"] == "error" and answer["error_type"] == "wait", answer
            else:
                # A full disk may still take a small write in space the
                # database already holds; then the mail must not be lost.
                assert trouble == "full", answer
                queued_while_full = True
            assert gateway.facteur.alive()

            if trouble == "full":
                filler.unlink()
            else:
                subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
            code, text = await asyncio.to_thread(send_mail, port, "bob@example.net", ["alice@example.test"], big)
            assert code == 250, f"{code} {text}"
            await alice.wait_for(lambda m: m["subject"] == "in-1")
            sent = alice.send(escaped("bob@example.net"), "after the trouble", receipt=True)
            await alice.wait_for(lambda m: m["receipt"] == sent)
            bodies = lambda: {r["message"].get_content().strip() for r in gateway.relay.received}
            assert await wait_until(lambda: "after the trouble" in bodies(), timeout=15)
            if queued_while_full:
                assert await wait_until(lambda: "while the disk is in trouble" in bodies(), timeout=15)
            await alice.disconnect()
        asyncio.run(scenario())
    finally:
        gateway.stop()


def read_reply(sock):
    data = b""
    while not data.endswith(b"\r\n") or data.split(b"\r\n")[-2][3:4] == b"-":
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def test_slow_and_hostile_clients(tmp_path):
    gateway = Gateway(tmp_path, idle_timeout='"2s"', data_timeout='"3s"', max_connections=1500,
                      max_message_size=2_000_000)
    try:
        gateway.start()
        port = gateway.facteur.smtp_port

        async def scenario():
            alice = await registered_client(gateway)
            rss_start = gateway.facteur.rss_kib()

            # One byte a second never completes a command line in time.
            drip = socket.create_connection(("127.0.0.1", port), timeout=10)
            read_reply(drip)
            start = time.monotonic()
            reply = ""
            for byte in b"EHLO slow.example.net\r\n":
                try:
                    drip.sendall(bytes([byte]))
                except OSError:
                    break
                drip.settimeout(0.5)
                try:
                    reply = drip.recv(512).decode()
                    break
                except socket.timeout:
                    continue
            assert reply.startswith("421 4.4.2"), reply
            assert time.monotonic() - start < 6
            drip.close()

            # A DATA that never ends is cut at data_timeout.
            endless = socket.create_connection(("127.0.0.1", port), timeout=10)
            read_reply(endless)
            for line in (b"EHLO x\r\n", b"MAIL FROM:<bob@example.net>\r\n", b"RCPT TO:<alice@example.test>\r\n", b"DATA\r\n"):
                endless.sendall(line)
                read_reply(endless)
            start = time.monotonic()
            reply = ""
            endless.settimeout(0.3)
            while time.monotonic() - start < 10:
                try:
                    endless.sendall(b"still writing\r\n")
                    reply = endless.recv(512).decode()
                    if reply:
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            assert reply.startswith("421 4.4.2"), reply
            endless.close()

            # 1,000 idle connections: memory stays bounded, others are served.
            idle = []
            for _ in range(1000):
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                idle.append(s)
            for s in idle:
                assert s.recv(512).startswith(b"220 ")
            rss_idle = gateway.facteur.rss_kib()
            print(f"rss: start={rss_start} KiB with_1000_idle={rss_idle} KiB "
                  f"per_connection={(rss_idle - rss_start) / 1000:.1f} KiB")
            assert rss_idle - rss_start < 64 * 1024, (rss_start, rss_idle)
            code, text = await asyncio.to_thread(
                send_mail, port, "bob@example.net", ["alice@example.test"], numbered_mail(7))
            assert code == 250, text
            for s in idle:
                s.close()

            # 100 MB of DATA: refused with 552, read and dropped, not kept.
            huge = socket.create_connection(("127.0.0.1", port), timeout=30)
            read_reply(huge)
            for line in (b"EHLO x\r\n", b"MAIL FROM:<bob@example.net>\r\n", b"RCPT TO:<alice@example.test>\r\n", b"DATA\r\n"):
                huge.sendall(line)
                read_reply(huge)
            chunk = (b"y" * 998 + b"\r\n") * 1024
            for _ in range(100):
                huge.sendall(chunk)
            huge.sendall(b".\r\n")
            assert read_reply(huge).startswith("552 5.3.4")
            huge.close()
            assert gateway.facteur.rss_kib() - rss_start < 64 * 1024

            # A 1 MB header line: accepted, and the stanza stays small.
            long_subject = (b"From: bob@example.net\r\nSubject: " + b"z" * 1_000_000 +
                            b"\r\nMessage-ID: <long@example.net>\r\n\r\nlong header\r\n")
            code, text = await asyncio.to_thread(
                send_mail, port, "bob@example.net", ["alice@example.test"], long_subject)
            assert code == 250, text
            got = await alice.wait_for(lambda m: m["body"] == "long header", timeout=15)
            assert len(got["subject"]) < 2000
            assert gateway.facteur.alive()
            await alice.disconnect()
        asyncio.run(scenario())
    finally:
        gateway.stop()
