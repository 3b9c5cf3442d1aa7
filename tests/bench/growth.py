"""How cost grows: the inbound journey (4 KB mails from smtp-source over 10
sessions, accepted, then delivered to alice's client) on an empty store,
then on a store that already holds GROWTH_USERS registered users and
GROWTH_MAILS mails, with GROWTH_IDLE SMTP connections open and idle
throughout. Goal: the loaded rates at least 0.8 of the empty ones.

The store is seeded before facteur starts, so facteur reads it as it
would after a restart: `facteur users add` creates it (facteur's own
migrations), then the rows go straight into its tables in one
transaction: users as registration writes them, and per mail an
inbound_mail row (the same 4 KB mail), its to_xmpp delivery already
done, and its thread metadata (messages), dated over the last six days,
within the default `keep_finished` (7 days): what a week of traffic
leaves before the sweep. SQLite only."""

import asyncio
import smtplib
import socket
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from peers import DOMAIN, GATEWAY, USERS, Gateway  # noqa: E402
from xmppload import RawClient  # noqa: E402
import mta  # noqa: E402

import os  # noqa: E402

SCALE = float(os.environ.get("BENCH_SCALE", "1.0"))
GROWTH_USERS = max(1000, int(10_000 * SCALE))
GROWTH_MAILS = max(1000, int(100_000 * SCALE))
GROWTH_IDLE = 1000
COUNT = max(200, int(1500 * SCALE))
SIZE = 4096
SESSIONS = 10


def seed_users(db_path, jids, registered_at=None):
    """Registered users, written as registration writes them."""
    now = registered_at or int(time.time() * 1000)
    db = sqlite3.connect(db_path)
    try:
        with db:
            db.executemany("INSERT OR IGNORE INTO users (jid, registered_at) VALUES (?, ?)",
                           [(jid, now) for jid in jids])
    finally:
        db.close()


def seed_mails(db_path, recipients, count, raw):
    """`count` inbound mails, round robin over `recipients`, each
    delivered already, with its thread metadata."""
    now = int(time.time() * 1000)
    week = 6 * 24 * 3600 * 1000
    db = sqlite3.connect(db_path)
    try:
        with db:
            first = (db.execute("SELECT COALESCE(MAX(id), 0) FROM inbound_mail").fetchone()[0]) + 1
            rows = [(first + n, now - week + n * week // count) for n in range(count)]
            db.executemany("INSERT INTO inbound_mail (id, mail_from, client_ip, raw, received_at, auth) "
                           "VALUES (?, 'bob@example.net', '127.0.0.1', ?, ?, "
                           "'spf=none dkim=none dmarc=none arc=none')",
                           [(mail_id, raw, at) for mail_id, at in rows])
            db.executemany("INSERT INTO to_xmpp (mail_id, recipient, state, attempts, next_attempt_at, "
                           "created_at, updated_at, message_id) VALUES (?, ?, 'delivered', 1, ?, ?, ?, ?)",
                           [(mail_id, recipients[n % len(recipients)], at, at, at, f"seed-{mail_id}@example.net")
                            for n, (mail_id, at) in enumerate(rows)])
            db.executemany("INSERT OR IGNORE INTO messages (user_jid, message_id, peer_jid, stanza_id, "
                           "author_jid, thread, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(recipients[n % len(recipients)], f"seed-{mail_id}@example.net",
                             f"bob\\40example.net@{GATEWAY}", f"mail-seed-{mail_id}",
                             f"bob\\40example.net@{GATEWAY}", f"thread-{mail_id}", at)
                            for n, (mail_id, at) in enumerate(rows)])
    finally:
        db.close()


def rcpt_each(port, jids, per_session=50):
    """An RCPT to each address, `per_session` per SMTP session (RSET
    between mails): how many facteur accepted."""
    accepted = 0
    for first in range(0, len(jids), per_session):
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("bench.example.net")
            for start in range(first, min(first + per_session, len(jids)), 10):
                smtp.mail("bob@example.net")
                for jid in jids[start:min(start + 10, first + per_session, len(jids))]:
                    code, _ = smtp.rcpt(jid)
                    accepted += code == 250
                smtp.rset()
    return accepted


def idle_connections(port, count):
    """`count` SMTP connections to facteur, each past its greeting, left
    idle."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.recv(512)
        sockets.append(sock)
    return sockets


async def run_phase(work, loaded):
    gateway = Gateway(work, max_connections=3000, idle_timeout='"10m"')
    alice, idle, record = None, [], {}
    try:
        await asyncio.to_thread(gateway.facteur.register, f"alice@{DOMAIN}")
        db = gateway.facteur.dir / "facteur.db"
        if loaded:
            start = time.monotonic()
            users = [f"member{n}@{DOMAIN}" for n in range(GROWTH_USERS)]
            await asyncio.to_thread(seed_users, db, users)
            raw = mta_mail()
            await asyncio.to_thread(seed_mails, db, users, GROWTH_MAILS, raw)
            record["seed_s"] = round(time.monotonic() - start, 1)
            record["store_mb"] = round(sum(p.stat().st_size for p in db.parent.glob("facteur.db*")) / 2**20, 1)
        gateway.start()
        alice = RawClient(gateway.prosody.c2s, "alice", DOMAIN, USERS["alice"])
        await alice.connect()
        if loaded:
            idle = await asyncio.to_thread(idle_connections, gateway.facteur.smtp_port, GROWTH_IDLE)
            await asyncio.sleep(0.5)
        counter = alice.counter(lambda _i, sender, kind: kind != "error"
                                and sender.split("/")[0].endswith("@" + GATEWAY))
        start = time.monotonic()
        accept_s, ok = await asyncio.to_thread(mta.timed, mta.smtp_source(gateway.facteur.smtp_port, SESSIONS,
                                                                          COUNT, SIZE))
        deadline = start + 300
        while counter() < COUNT and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        delivered = counter()
        elapsed = time.monotonic() - start
        still_open = sum(1 for sock in idle if _open(sock))
        record.update({"accepted": COUNT if ok else 0, "delivered": delivered,
                       "accept_per_s": round(COUNT / accept_s, 1), "delivered_per_s": round(delivered / elapsed, 1),
                       "idle_open": still_open})
        return record
    finally:
        for sock in idle:
            sock.close()
        if alice is not None:
            await alice.close()
        gateway.stop()
        # The seeded store is large: not kept.
        for path in gateway.facteur.dir.glob("facteur.db*"):
            path.unlink()


def _open(sock):
    """Whether facteur still holds the idle connection open."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def mta_mail():
    head = (b"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: seeded\r\n"
            b"Message-ID: <seeded@example.net>\r\n\r\n")
    return head + (b"x" * 78 + b"\r\n") * ((SIZE - len(head)) // 80)


async def measure(work):
    result = {"users": GROWTH_USERS, "mails": GROWTH_MAILS, "idle_connections": GROWTH_IDLE,
              "count": COUNT, "sessions": SESSIONS, "size": SIZE}
    result["empty"] = await run_phase(Path(work) / "empty", loaded=False)
    result["loaded"] = await run_phase(Path(work) / "loaded", loaded=True)
    for key in ("accept", "delivered"):
        valid = all(result[p]["accepted"] == COUNT and result[p]["delivered"] == COUNT
                    for p in ("empty", "loaded"))
        valid = valid and result["loaded"]["idle_open"] == GROWTH_IDLE
        result[f"{key}_ratio"] = (round(result["loaded"][f"{key}_per_s"] / result["empty"][f"{key}_per_s"], 3)
                                  if valid else None)
    e, loaded = result["empty"], result["loaded"]
    print(f"growth: empty store accept {e['accept_per_s']:.0f}/s, delivered {e['delivered_per_s']:.0f}/s "
          f"({e['delivered']}/{COUNT}); {GROWTH_USERS} users + {GROWTH_MAILS} mails + {GROWTH_IDLE} idle SMTP "
          f"connections ({loaded['idle_open']} still open): accept {loaded['accept_per_s']:.0f}/s, "
          f"delivered {loaded['delivered_per_s']:.0f}/s ({loaded['delivered']}/{COUNT}), "
          f"seeded in {loaded['seed_s']} s", flush=True)
    return result


def fmt(value):
    return "failed" if value is None else f"{value:.2f}"


def report(r):
    e, loaded = r["empty"], r["loaded"]
    return ["", f"## How cost grows (email → XMPP, {r['count']} mails of 4 KB over {r['sessions']} SMTP clients, "
            "SQLite)", "",
            "| store | accept mails/s | delivered mails/s | delivered |", "|---|---|---|---|",
            f"| empty | {e['accept_per_s']} | {e['delivered_per_s']} | {e['delivered']}/{r['count']} |",
            f"| {r['users']} users, {r['mails']} mails ({loaded.get('store_mb')} MB), "
            f"{r['idle_connections']} idle SMTP connections ({loaded['idle_open']} open at the end) | "
            f"{loaded['accept_per_s']} | {loaded['delivered_per_s']} | {loaded['delivered']}/{r['count']} |",
            "", f"growth: accept_loaded_vs_empty={fmt(r['accept_ratio'])} "
            f"delivered_loaded_vs_empty={fmt(r['delivered_ratio'])} (goal ≥ 0.8)"]
