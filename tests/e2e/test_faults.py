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
from pathlib import Path

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


def in_flight(counts):
    """Items the store holds that still wait for their delivery: to XMPP
    and to mail."""
    return counts.get(("to_xmpp", "pending"), 0), counts.get(("to_mail", "queued"), 0)


def test_crash_anywhere(gateway):
    print(f"fault seed: FAULT_SEED={SEED}")
    rng = random.Random(SEED)

    async def scenario():
        alice = await registered_client(gateway)
        deadline = time.monotonic() + 240
        port = gateway.facteur.smtp_port
        accepted, confirmed = set(), set()

        async def inbound():
            pending = list(range(INBOUND))
            async def worker():
                while pending:
                    n = pending.pop()
                    if await asyncio.to_thread(smtp_until_accepted, port, n, deadline):
                        accepted.add(n)
            await asyncio.gather(*(worker() for _ in range(4)))

        async def outbound():
            for n in range(OUTBOUND):
                if await send_until_receipt(alice, escaped("bob@example.net"), f"out-{n}", f"out-{n}", deadline):
                    confirmed.add(n)

        async def killer():
            """Kills facteur once in each of KILLS equal slices of the run's
            progress, so that kills land early, midway and late; returns
            what the store held undelivered at each kill, to XMPP and
            to mail."""
            held = []
            total = INBOUND + OUTBOUND
            for k in range(KILLS):
                mark = (k + rng.uniform(0.1, 0.9)) / KILLS
                while (len(accepted) + len(confirmed)) / total < mark:
                    if time.monotonic() > deadline:
                        return held
                    await asyncio.sleep(0.02)
                gateway.facteur.kill()
                # Read with facteur dead: the store as the kill left it.
                held.append(in_flight(await asyncio.to_thread(gateway.facteur.queue)))
                await asyncio.sleep(rng.uniform(0.0, 0.5))
                await asyncio.to_thread(gateway.facteur.start)
                await asyncio.to_thread(gateway.facteur.wait_log, "Component link up.", 20)
            return held

        _, _, held = await asyncio.gather(inbound(), outbound(), killer())
        kills = len(held)
        print(f"fault kills: undelivered items (to XMPP, to mail) in the store at each kill: {held}")
        assert kills == KILLS, f"only {kills} of {KILLS} kills happened before the run ended"
        interrupted = sum(1 for counts in held if sum(counts) > 0)
        assert interrupted >= max(1, KILLS // 3), f"only {interrupted} kills caught work in flight: {held}"
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
        # Late copies would come from items left in the store: wait until
        # it holds none, then look.
        assert await wait_until(lambda: in_flight(gateway.facteur.queue()) == (0, 0), timeout=60, interval=0.5), \
            gateway.facteur.queue()

        by_subject = subjects()
        copies = sink()
        # A copy a client shows twice: the same mail under a second id
        # (stanzas sent again keep their id, and clients drop those).
        client_copies = sum(len(set(ids)) - 1 for ids in by_subject.values())
        resent_stanzas = sum(len(ids) - len(set(ids)) for ids in by_subject.values())
        sink_duplicates = sum(len(ids) - 1 for ids in copies.values())
        print(f"fault result: seed={SEED} kills={kills} inbound={len(by_subject)}/{INBOUND} "
              f"client_copies={client_copies} outbound={len(copies)}/{OUTBOUND} "
              f"sink_duplicates={sink_duplicates} resent_stanzas={resent_stanzas}")
        assert client_copies == 0, {s: ids for s, ids in by_subject.items() if len(set(ids)) > 1}
        for body, message_ids in copies.items():
            assert len(set(message_ids)) == 1, f"{body} was mailed under several Message-IDs: {message_ids}"
        # A relay copy happens only for a kill between the relay's 250 and
        # the commit of "sent": at most one per kill.
        assert sink_duplicates <= kills, {b: ids for b, ids in copies.items() if len(ids) > 1}
        # A stanza goes out again only if a kill found it unconfirmed: a
        # mail that came again because a kill cut its sender between the
        # commit and the 250 is not queued twice (same recipient and
        # Message-ID).
        unconfirmed = sum(to_xmpp for to_xmpp, _ in held)
        assert resent_stanzas <= unconfirmed, (resent_stanzas, held)
        await alice.disconnect()
    asyncio.run(scenario())


def test_xmpp_server_restart_mid_stream(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        port = gateway.facteur.smtp_port
        deadline = time.monotonic() + 120
        count = 200
        accepted = []
        seen = defaultdict(set)

        def ids_by_subject(*clients):
            for client in clients:
                for m in client.messages:
                    if m["body"] and (m["subject"] or "").startswith("in-"):
                        seen[m["subject"]].add(m["id"])
            return seen

        async def mails():
            for n in range(count):
                assert await asyncio.to_thread(smtp_until_accepted, port, n, deadline)
                accepted.append(n)

        async def restart():
            """Stops the XMPP server once mails are flowing, while some are
            accepted and not yet at the client."""
            assert await wait_until(lambda: 0 < len(ids_by_subject(alice)) < len(accepted) < count,
                                    timeout=60, interval=0.01), (len(accepted), len(seen))
            since = gateway.facteur.log_size()
            gateway.prosody.stop()
            await asyncio.to_thread(gateway.facteur.wait_log, "Component link lost.", 20, since)
            # With the server down nothing leaves: what the store holds now
            # was in flight when it stopped.
            held = await asyncio.to_thread(gateway.facteur.queue)
            assert held.get(("to_xmpp", "pending"), 0) > 0, held
            since = gateway.facteur.log_size()
            await asyncio.to_thread(gateway.prosody.start)
            await asyncio.to_thread(gateway.facteur.wait_log, "Component link up.", 20, since)

        await asyncio.gather(mails(), restart())
        first = alice
        alice = Client("alice", gateway.prosody.c2s)
        await alice.connect()
        assert await wait_until(lambda: len(ids_by_subject(first, alice)) == count, timeout=60), \
            f"missing {count - len(ids_by_subject(first, alice))}: {gateway.facteur.log_tail(20)}"
        assert all(len(ids) == 1 for ids in ids_by_subject(first, alice).values())
        await alice.disconnect()
    asyncio.run(scenario())


def test_relay_outage_then_queue_drains(gateway):
    async def scenario():
        gateway.relay.stop()
        alice = await registered_client(gateway)
        # Taken while nothing can be delivered: no receipt yet (a receipt
        # says delivered), no error either.
        for n in range(50):
            alice.send(escaped("bob@example.net"), f"queued-{n}", receipt=True)
        assert await wait_until(lambda: gateway.facteur.queue().get(("to_mail", "queued")) == 50, timeout=30), \
            gateway.facteur.queue()
        await asyncio.to_thread(gateway.facteur.wait_log, "Mail deferred.", 15)
        assert not any(m["receipt"] or m["type"] == "error" for m in alice.messages), alice.messages
        # The relay is back but refuses with 451: it could take the mails,
        # and sees every one of them tried again, yet keeps none.
        gateway.relay.refusing = True
        gateway.relay.start()

        def tries():
            by_mail = defaultdict(int)
            for attempt in gateway.relay.refused:
                by_mail[attempt["mail_from"]] += 1
            return by_mail
        assert await wait_until(lambda: len(tries()) == 50 and min(tries().values()) >= 2, timeout=30), \
            dict(tries())
        assert gateway.relay.received == []
        assert gateway.facteur.queue().get(("to_mail", "queued")) == 50, gateway.facteur.queue()
        gateway.relay.refusing = False
        assert await wait_until(lambda: len(gateway.relay.received) >= 50, timeout=30)
        def drained():
            counts = gateway.facteur.queue()
            return counts.get(("to_mail", "sent")) == 50 and not any(s == "queued" for _, s in counts)
        assert await wait_until(drained, timeout=30, interval=0.5), gateway.facteur.queue()
        bodies = sorted(r["message"].get_content().strip() for r in gateway.relay.received)
        assert bodies == sorted(f"queued-{n}" for n in range(50)), bodies
        # Delivered now: one receipt each.
        assert await wait_until(lambda: len({m["receipt"] for m in alice.messages if m["receipt"]}) == 50), \
            len([m for m in alice.messages if m["receipt"]])
        await alice.disconnect()
    asyncio.run(scenario())


class TroubledStore:
    """A file system of its own for the store, that a test can put in
    trouble and repair: "full" is a 4 MiB tmpfs filled to the last byte;
    "read-only" is ext4 on a loop device that an error turns read-only
    under the running daemon (errors=remount-ro), as a failing disk does.
    Needs root."""

    def __init__(self, tmp_path, trouble):
        self.trouble = trouble
        self.mount = tmp_path / "store"
        self.mount.mkdir()
        self.image = tmp_path / "store.img"
        self.filler = None
        self._mount()

    def _mount(self):
        if self.trouble == "full":
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(self.mount)], check=True)
        else:
            if not self.image.exists():
                self.image.write_bytes(b"")
                os.truncate(self.image, 32 << 20)
                subprocess.run(["mkfs.ext4", "-q", str(self.image)], check=True)
            subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.mount)], check=True)

    def break_(self):
        if self.trouble == "full":
            self.filler = fill(self.mount)
            return
        device = subprocess.run(["findmnt", "-no", "SOURCE", str(self.mount)], capture_output=True,
                                text=True, check=True).stdout.strip()
        Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error").write_text("facteur fault test\n")
        assert "ro" in self.options() or "emergency_ro" in self.options(), self.options()

    def options(self):
        return subprocess.run(["findmnt", "-no", "OPTIONS", str(self.mount)], capture_output=True,
                              text=True, check=True).stdout.strip().split(",")

    def repair(self, facteur):
        """Frees the space; a read-only file system is checked and mounted
        again with facteur stopped, as an operator would."""
        if self.trouble == "full":
            self.filler.unlink()
            return
        facteur.stop()
        subprocess.run(["umount", str(self.mount)], check=True)
        fsck = subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, text=True)
        assert fsck.returncode in (0, 1), fsck.stdout + fsck.stderr
        self._mount()
        facteur.start()
        facteur.wait_log("Component link up.", 20)

    def remove(self):
        subprocess.run(["umount", "-l", str(self.mount)], check=False)


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


@pytest.fixture(params=["full", "read-only"])
def troubled_store(request, tmp_path):
    store = TroubledStore(tmp_path, request.param)
    try:
        yield store
    finally:
        store.remove()


def test_store_full_or_read_only_gives_try_later(tmp_path, troubled_store):
    store = troubled_store
    gateway = Gateway(tmp_path, store_dir=store.mount)
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            port = gateway.facteur.smtp_port
            store.break_()
            big = numbered_mail(1) + b"x" * 150000 + b"\r\n"
            code, text = await asyncio.to_thread(send_mail, port, "bob@example.net", ["alice@example.test"], big)
            assert (code, text.split()[0]) == (451, "4.3.0"), f"{code} {text}"
            # Larger than any slack the database's files hold, so that
            # queueing it needs new space.
            sent = alice.send(escaped("bob@example.net"), "while the store is in trouble " + "y" * 20000,
                              receipt=True)
            answer = await alice.wait_for(lambda m: m["id"] == sent or m["receipt"] == sent)
            assert (answer["type"], answer["error"], answer["error_type"]) == \
                ("error", "internal-server-error", "wait"), answer
            assert gateway.facteur.alive()

            await asyncio.to_thread(store.repair, gateway.facteur)
            code, text = await asyncio.to_thread(send_mail, port, "bob@example.net", ["alice@example.test"], big)
            assert code == 250, f"{code} {text}"
            await alice.wait_for(lambda m: m["subject"] == "in-1")
            sent = alice.send(escaped("bob@example.net"), "after the trouble", receipt=True)
            await alice.wait_for(lambda m: m["receipt"] == sent)
            bodies = lambda: {r["message"].get_content().strip() for r in gateway.relay.received}
            assert await wait_until(lambda: "after the trouble" in bodies(), timeout=15)
            assert not any(b.startswith("while the store") for b in bodies()), bodies()
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


def peak_rss_kib(facteur):
    """The most resident memory the running facteur has held, in KiB."""
    for line in Path(f"/proc/{facteur.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def open_files_for(count):
    """Raises this process's open-file limit (inherited by the peers it
    starts) to hold `count` sockets, within the hard limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 1024
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.fail(f"open-file limit {hard} is below the {want} this test needs: raise ulimit -n")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def test_endless_data_is_cut(tmp_path):
    gateway = Gateway(tmp_path, data_timeout='"3s"')
    try:
        gateway.start()
        gateway.facteur.register("alice@example.test")
        port = gateway.facteur.smtp_port
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
        assert time.monotonic() - start >= 3
        endless.close()
    finally:
        gateway.stop()


def test_slow_and_hostile_clients(tmp_path):
    open_files_for(1000)
    # data_timeout is long enough for 100 MB on a loaded debug build: this
    # test is about memory, test_endless_data_is_cut about the deadline.
    gateway = Gateway(tmp_path, idle_timeout='"2s"', data_timeout='"300s"', max_connections=1500,
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
            huge.settimeout(300)
            chunk = (b"y" * 998 + b"\r\n") * 1024
            start = time.monotonic()
            for _ in range(100):
                huge.sendall(chunk)
            huge.sendall(b".\r\n")
            reply = read_reply(huge)
            print(f"100 MB of DATA refused in {time.monotonic() - start:.1f} s")
            assert reply.startswith("552 5.3.4"), reply
            huge.close()
            # The peak, not the resident size after: memory a session held
            # is given back when it ends.
            assert peak_rss_kib(gateway.facteur) - rss_start < 64 * 1024, (rss_start, peak_rss_kib(gateway.facteur))

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
