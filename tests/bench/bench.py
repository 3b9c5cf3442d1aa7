"""Benchmark of facteur's journeys against real peers, each beside its
references measured in the same run (tests/bench/mta.py: smtp-sink and a
private Postfix; tests/bench/xmppload.py: Prosody's routing between
sender processes and a lean receiver). Usage: bench.py [CRITERION_OUTPUT]
(tests/bench/run calls it). Its last line is the ratios line."""

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from peers import (DOMAIN, GATEWAY, ROOT, USERS, Client, Gateway, PgCluster, escaped,  # noqa: E402
                   registered_client)
from xmppload import RawClient, Senders  # noqa: E402
import growth  # noqa: E402
import mta  # noqa: E402
import native  # noqa: E402

# Measured as run in production: info, not the tests' debug log.
os.environ.setdefault("RUST_LOG", "info")

SCALE = float(os.environ.get("BENCH_SCALE", "1.0"))
SIZES = {"4KB": 4096, "40KB": 40960, "1MB": 1048576}
CONCURRENCY = (1, 10, 50)
COUNTS = {"4KB": int(1500 * SCALE), "40KB": int(300 * SCALE), "1MB": int(40 * SCALE)}
# Stanzas of each Prosody reference, split over its sender processes.
REFERENCE_COUNTS = {"4KB": max(100, int(3000 * SCALE)), "40KB": max(40, int(1000 * SCALE)),
                    "1MB": max(20, int(200 * SCALE))}
OUT = ROOT / "target" / "bench"
# BENCH_ONLY=native measures the native journey alone; BENCH_ONLY=inbound
# the email → XMPP journey alone (its table, on SQLite and PostgreSQL);
# BENCH_ONLY=imap the IMAP mailboxes alone (memory per idle mailbox, LMTP
# delivery → stanza); BENCH_ONLY=growth how the inbound rate holds with a
# full store and idle connections (growth.py).
ONLY = os.environ.get("BENCH_ONLY", "")
IMAP_MAILBOXES = int(os.environ.get("BENCH_IMAP_MAILBOXES", "100"))
IMAP_MAILS = int(os.environ.get("BENCH_IMAP_MAILS", "100"))


def rss(pid, field="VmRSS"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def stanza_id(message_id):
    return "mail-" + hashlib.sha256(message_id.encode() + b"\0").hexdigest()[:32]


def percentile(values, fraction):
    """The `fraction` percentile of `values`, where a mail that never
    arrived counts as infinitely late: enough of them make it inf."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def raw_smtp_send(port, messages, sent_at, interval=0.0):
    """One SMTP session sending (message_id, bytes) pairs, one every
    `interval` seconds at most; records when each 250 came back. A
    refusal or a lost connection ends the session: the mails not
    acknowledged count as never delivered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply():
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("connection closed")
            if line[3:4] != b"-":
                return line

    try:
        await reply()
        writer.write(b"EHLO bench.example.net\r\n")
        await writer.drain()
        await reply()
        next_at = time.monotonic()
        for message_id, data in messages:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            writer.write(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
            await writer.drain()
            for _ in range(3):
                await reply()
            writer.write(data + b".\r\n")
            await writer.drain()
            line = await reply()
            if not line.startswith(b"250"):
                break
            sent_at[message_id] = time.monotonic()
        writer.write(b"QUIT\r\n")
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


def mail_bytes(message_id, size):
    head = (f"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: bench\r\n"
            f"Message-ID: <{message_id}>\r\n\r\n").encode()
    line = b"x" * 78 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


# Prosody closes a client stream over 256 KiB (c2s_stanza_size_limit), and
# facteur cuts bodies at 256 KiB: larger mails are compared with stanzas of
# this size.
XMPP_MAX_BODY = 200_000
# The Prosody references are measured at these numbers of sender
# processes: the second adds clients, to show they are not the limit.
REFERENCE_CLIENTS = (10, 20)
SENDERS = max(REFERENCE_CLIENTS)
# Their XMPP accounts, made by every Prosody the bench starts.
USERS.update({f"user{n}": f"pw{n}" for n in range(SENDERS)})


async def wait_count(counter, wanted, timeout, poll=0.005):
    deadline = time.monotonic() + timeout
    while counter() < wanted and time.monotonic() < deadline:
        await asyncio.sleep(poll)
    return counter()


async def prosody_reference(senders, receiver, total, size, tag, server_pid):
    """Prosody's own routing of `total` stanzas with bodies of `size`
    bytes (at most XMPP_MAX_BODY), client to client, from sender
    processes to `receiver` (a RawClient), at each of REFERENCE_CLIENTS:
    {clients: (stanzas/s, stanzas received, stanzas sent, Prosody's CPU
    share of the wall time)}. A CPU share near one core, not rising with
    the senders, says Prosody is the limit, not its clients."""
    figures = {}
    body = min(size, XMPP_MAX_BODY)
    for clients in REFERENCE_CLIENTS:
        per_client = max(1, total // clients)
        wanted = per_client * clients
        prefix = f"ref-{tag}-{clients}"
        counter = receiver.counter(lambda i, _f, kind, p=prefix: i.startswith(p) and kind != "error")
        cpu = cpu_seconds(server_pid)
        start = time.monotonic()
        await asyncio.to_thread(senders.run, receiver.jid, prefix, per_client, body, clients)
        got = await wait_count(counter, wanted, 120)
        elapsed = time.monotonic() - start
        figures[clients] = (round(got / elapsed, 1), got, wanted,
                            round((cpu_seconds(server_pid) - cpu) / elapsed, 2))
    return figures


def reference_rate(figures):
    """The reference figure: the highest over the client counts, if every
    stanza arrived; else None."""
    if any(got != wanted for _, got, wanted, _ in figures.values()):
        return None
    return max(rate for rate, _, _, _ in figures.values())


def reference_text(figures):
    return ", ".join(f"{clients} clients {rate:.0f}/s ({got}/{wanted}, Prosody CPU {busy:.0%} of a core, "
                     f"{rate / busy if busy else math.nan:.0f} stanzas per Prosody CPU second)"
                     for clients, (rate, got, wanted, busy) in figures.items())


class Journeys:
    """What the journeys of one gateway need: alice's lean client
    (`alice`, registered), bob's (`bob`), the sender processes
    (`senders`: user0…) and the SMTP references (`mta`)."""

    def __init__(self, gateway, alice, bob, senders, mta_peer):
        self.gateway, self.alice, self.bob = gateway, alice, bob
        self.senders, self.mta = senders, mta_peer


def from_gateway(_id, sender, kind):
    return kind != "error" and sender.split("/")[0].endswith("@" + GATEWAY)


async def inbound(j, results, table="inbound"):
    """The email → XMPP journey, into `results[table]`: per size and
    number of SMTP clients, facteur's accept rate (smtp-source until its
    last 250) and its delivered rate (until alice's client has every
    stanza), beside smtp-source → smtp-sink, Postfix's durable accept and
    Prosody's routing of the same body size."""
    port = j.gateway.facteur.smtp_port
    pid = j.gateway.facteur.proc.pid
    for label, size in SIZES.items():
        figures = await prosody_reference(j.senders, j.alice, REFERENCE_COUNTS[label], size, f"in-{table}-{label}",
                                          j.gateway.prosody.proc.pid)
        xmpp_limit = reference_rate(figures)
        print(f"{table} {label}: Prosody client→client {reference_text(figures)}", flush=True)
        for sessions in CONCURRENCY:
            count = max(sessions, COUNTS[label])
            limit, limit_done = await asyncio.to_thread(mta.sink_rate, sessions, count, size)
            postfix, held = await asyncio.to_thread(j.mta.accept, sessions, count, size)
            counter = j.alice.counter(from_gateway)
            start = time.monotonic()
            accept_s, accepted = await asyncio.to_thread(mta.timed, mta.smtp_source(port, sessions, count, size))
            delivered = await wait_count(counter, count, 120)
            elapsed = time.monotonic() - start
            accept = count / accept_s
            rate = delivered / elapsed
            # Latency: end of DATA (the 250) → stanza at the client, the
            # same number of sessions sending at half the sustained rate;
            # over every mail sent, one that never arrives counting as
            # infinitely late.
            sent_at, per_session = {}, max(2, min(40, count // sessions))
            interval = sessions / max(rate / 2, 1.0)
            batches = [[(f"lat-{table}-{label}-{sessions}-{s}-{n}@bench",
                         mail_bytes(f"lat-{table}-{label}-{sessions}-{s}-{n}@bench", size))
                        for n in range(per_session)] for s in range(sessions)]
            await asyncio.gather(*(raw_smtp_send(port, batch, sent_at, interval) for batch in batches))
            wanted = {stanza_id(mid): mid for mid in sent_at}
            arrivals = j.alice.arrivals
            await wait_count(lambda: len(wanted.keys() & arrivals.keys()), len(wanted), 120)
            latencies = [(arrivals[sid][0] - sent_at[mid]) * 1000 if sid in arrivals else math.inf
                         for sid, mid in wanted.items()]
            latencies += [math.inf] * (per_session * sessions - len(sent_at))
            row = {
                "size": label, "sessions": sessions, "mails": count, "accepted": count if accepted else 0,
                "delivered": delivered,
                "accept_per_s": round(accept, 1), "delivered_per_s": round(rate, 1),
                "smtp_sink_per_s": round(limit, 1), "smtp_sink_done": limit_done,
                "postfix_accept_per_s": round(postfix, 1), "postfix_held": held,
                "prosody_per_s": xmpp_limit, "prosody_by_clients": figures,
                "latency_p50_ms": round(percentile(latencies, 0.5), 1),
                "latency_p99_ms": round(percentile(latencies, 0.99), 1),
                "latency_missing": sum(1 for v in latencies if v == math.inf),
                "rss_peak_mb": round(rss(pid, "VmHWM"), 1),
            }
            row["accept_vs_smtp_sink"] = ratio(row, "accept_per_s", "smtp_sink_per_s",
                                               ("accepted", "mails"), ("smtp_sink_done", "mails"))
            row["accept_vs_postfix"] = ratio(row, "accept_per_s", "postfix_accept_per_s",
                                             ("accepted", "mails"), ("postfix_held", "mails"))
            row["delivered_vs_prosody"] = ratio(row, "delivered_per_s", "prosody_per_s", ("delivered", "mails"))
            results[table].append(row)
            print(f"{table} {label} x{sessions}: accept {accept:.0f}/s, delivered {rate:.0f}/s "
                  f"({delivered}/{count}); smtp-sink {limit:.0f}/s, Postfix accept {postfix:.0f}/s "
                  f"({held}/{count} held); p50 {row['latency_p50_ms']} ms, p99 {row['latency_p99_ms']} ms",
                  flush=True)


def ratio(row, numerator, denominator, *checks):
    """row[numerator] / row[denominator], or None (printed as failed)
    unless every (done, wanted) pair of `checks` is equal and the
    denominator was measured; a failure is noted in row["failures"]."""
    failed = [f"{done} {row.get(done)}/{row.get(wanted)}" for done, wanted in checks
              if row.get(done) != row.get(wanted)]
    if not row.get(denominator):
        failed.append(f"{denominator} not measured")
    if failed:
        row.setdefault("failures", []).append(f"{numerator}/{denominator}: " + ", ".join(failed))
        return None
    return round(row[numerator] / row[denominator], 3)


async def outbound(j, results):
    """The XMPP → email journey: `per_client` stanzas with 4 KB bodies
    from each of 1 and 10 XMPP clients (sender processes) to an escaped
    address, until smtp-sink has stored every mail as a file; beside
    smtp-source → smtp-sink and smtp-source → Postfix → smtp-sink (the
    same size and number of SMTP sessions), and Prosody's routing of the
    same stanzas client to client."""
    per_client = max(10, int(300 * SCALE))
    size = SIZES["4KB"]
    gateway = j.gateway
    gateway.relay.stop()
    sink = mta.FileSink(Path(tempfile.mkdtemp(prefix="facteur-bench-sink-")), port=gateway.relay.port)
    sink.start()
    try:
        for n_clients in (1, 10):
            total = per_client * n_clients
            figures = await prosody_reference(j.senders, j.bob, max(total, REFERENCE_COUNTS["4KB"]), size,
                                              f"out-{n_clients}", gateway.prosody.proc.pid)
            limit, limit_done = await asyncio.to_thread(mta.sink_rate, n_clients, total, size)
            postfix, relayed = await asyncio.to_thread(j.mta.relay, n_clients, total, size)
            mta.empty(sink.folder)
            start = time.monotonic()
            await asyncio.to_thread(j.senders.run, escaped("bob@example.net"), f"out-{n_clients}",
                                    per_client, size, n_clients)
            stored = await wait_count(sink.count, total, 120, poll=0.05)
            rate = stored / (time.monotonic() - start)
            row = {"clients": n_clients, "stanzas": total, "stored": stored,
                   "mails_per_s": round(rate, 1), "smtp_sink_per_s": round(limit, 1), "smtp_sink_done": limit_done,
                   "postfix_relay_per_s": round(postfix, 1), "postfix_relayed": relayed,
                   "prosody_per_s": reference_rate(figures), "prosody_by_clients": figures,
                   "rss_peak_mb": round(rss(gateway.facteur.proc.pid, "VmHWM"), 1)}
            row["outbound_vs_smtp_sink"] = ratio(row, "mails_per_s", "smtp_sink_per_s",
                                                 ("stored", "stanzas"), ("smtp_sink_done", "stanzas"))
            row["outbound_vs_postfix"] = ratio(row, "mails_per_s", "postfix_relay_per_s",
                                               ("stored", "stanzas"), ("postfix_relayed", "stanzas"))
            row["outbound_vs_prosody"] = ratio(row, "mails_per_s", "prosody_per_s", ("stored", "stanzas"))
            results["outbound"].append(row)
            print(f"outbound x{n_clients}: {rate:.0f}/s ({stored}/{total}); smtp-sink {limit:.0f}/s, "
                  f"Postfix relay {postfix:.0f}/s ({relayed}/{total}); Prosody client→client "
                  f"{reference_text(figures)}", flush=True)
    finally:
        sink.stop()
        shutil.rmtree(sink.folder, ignore_errors=True)


def store_bytes(folder):
    """The store on disk: (pages in use, files): the database's pages that
    hold rows (free pages are reused), and the database and write-ahead
    log files as they stand."""
    db = sqlite3.connect(f"file:{folder}/facteur.db?mode=ro", uri=True)
    try:
        page_size, = db.execute("PRAGMA page_size").fetchone()
        pages, = db.execute("PRAGMA page_count").fetchone()
        free, = db.execute("PRAGMA freelist_count").fetchone()
    finally:
        db.close()
    files = sum(path.stat().st_size for path in Path(folder).glob("facteur.db*"))
    return (pages - free) * page_size, files


async def swept(gateway, timeout=60):
    """Waits for the sweep: it keeps only the newest delivered row."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.facteur.queue().get(("to_xmpp", "delivered"), 0) <= 1:
            return
        await asyncio.sleep(0.5)


async def steady_store(work, results):
    """The store's size on disk under steady load, with finished items kept
    one second: after 2N mails it should hold what it held after N, the
    pages of swept rows being reused."""
    count = max(100, int(1000 * SCALE))
    gateway = Gateway(work, store='keep_finished = "1s"\nsweep_interval = "1s"')
    alice = None
    try:
        gateway.start()
        alice = await registered_client(gateway)
        sizes = []
        for _ in range(2):
            before = len(alice.messages)
            await asyncio.to_thread(mta.timed, mta.smtp_source(gateway.facteur.smtp_port, 10, count, 4096))
            await wait_count(lambda: len(alice.messages) - before, count, 300)
            await swept(gateway)
            sizes.append(store_bytes(gateway.facteur.dir))
        (used_n, files_n), (used_2n, files_2n) = sizes
        results["store"] = {"mails_per_step": count, "used_after_n_mb": round(used_n / 2**20, 2),
                            "used_after_2n_mb": round(used_2n / 2**20, 2),
                            "files_after_n_mb": round(files_n / 2**20, 2),
                            "files_after_2n_mb": round(files_2n / 2**20, 2),
                            "kept_bytes_per_mail": round((used_2n - used_n) / count)}
        print(f"store after {count} mails: {used_n / 2**20:.1f} MB used, "
              f"after {2 * count}: {used_2n / 2**20:.1f} MB used", flush=True)
    finally:
        if alice is not None:
            await alice.disconnect()
        gateway.stop()


async def native_journey(work, results):
    """Mail between two XMPP-Mail domains: alice@a.test writes to
    bob\\40b.test@mail.a.test and bob's client counts what arrives from
    alice@a.test, beside, in the same run, Prosody's own routing of the same
    body from alice's client straight to bob's, and the same mail by SMTP
    into facteur-b. Then the time facteur-a takes to choose a route: from
    its `Queued mail.` line to its `Route chosen.` line, for recipients it
    never asked about (a probe each) and again for the same ones (cached)."""
    count = max(20, int(600 * SCALE))
    samples = max(10, int(100 * SCALE))
    size = SIZES["4KB"]
    cold = [f"cold{n}" for n in range(samples)]
    net = native.Network(work, recipients=cold)
    alice = net.client("alice", native.A, "alicepw")
    bob = net.client("bob", native.B, "bobpw")
    record = results["native"] = {"mails": count, "body_bytes": size}
    try:
        net.start()
        await alice.connect()
        await bob.connect()
        to_bob = native.escaped(f"bob@{native.B}", f"mail.{native.A}")
        alice_jid = f"alice@{native.A}"
        body = "x" * size

        # One mail first: the probe of b.test and bob is not part of the rate.
        since = net.a.log_size()
        alice.send(to_bob, "warm-up")
        route = await native.logged(net.a, since, "Route chosen.", f"rcpt=bob@{native.B} ", timeout=15)
        record["first_route"] = route.split("Route chosen.", 1)[1].strip() if route else "no route logged"
        if route and native.route_of(route) == "xmpp":
            await wait_count(lambda: bob.count(lambda f, b: b == "warm-up"), 1, 30)
        if bob.count(lambda f, b: b == "warm-up" and f == alice_jid) == 0:
            print(f"native: the first mail did not reach bob as XMPP ({record['first_route']}); "
                  "no rate measured", flush=True)
            record["mails_per_s"] = None
        else:
            since, relayed = net.a.log_size(), len(net.relay.received)
            cpu = {name: cpu_seconds(proc.pid) for name, proc in (("prosody", net.prosody), ("facteur", net.a.proc))}
            start = time.monotonic()
            for i in range(count):
                alice.send(to_bob, f"native {i} {body}")
            got = await wait_count(lambda: bob.count(lambda f, b: b.startswith("native ") and f == alice_jid),
                                   count, 120)
            record["mails_per_s"] = round(got / (time.monotonic() - start), 1)
            await wait_count(lambda: native.count_log(net.a, "Sent as XMPP-Mail.", since), got, 10, poll=0.1)
            record["prosody_cpu_ms_per_mail"] = round(
                (cpu_seconds(net.prosody.pid) - cpu["prosody"]) * 1000 / max(got, 1), 2)
            record["facteur_cpu_ms_per_mail"] = round(
                (cpu_seconds(net.a.proc.pid) - cpu["facteur"]) * 1000 / max(got, 1), 2)
            record["delivered"] = got
            # facteur logs a mail as sent once the server has confirmed it,
            # a little after bob has it.
            await wait_count(lambda: native.count_log(net.a, "Sent as XMPP-Mail.", since), got, 10, poll=0.1)
            record["sent_as_xmpp"] = native.count_log(net.a, "Sent as XMPP-Mail.", since)
            record["sent_by_smtp"] = len(net.relay.received) - relayed

        # Reference: the same body, alice's client straight to bob's.
        before = cpu_seconds(net.prosody.pid)
        start = time.monotonic()
        for i in range(count):
            alice.send(f"bob@{native.B}", f"c2c {i} {body}")
        got = await wait_count(lambda: bob.count(lambda f, b: b.startswith("c2c ")), count, 120)
        record["c2c_per_s"] = round(got / (time.monotonic() - start), 1)
        record["c2c_delivered"] = got
        record["c2c_prosody_cpu_ms_per_mail"] = round((cpu_seconds(net.prosody.pid) - before) * 1000 / max(got, 1), 2)

        # The same mail by SMTP into facteur-b, 10 sessions as the inbound
        # journey's headline figure.
        start = time.monotonic()
        await asyncio.to_thread(mta.timed, mta.smtp_source(net.b.smtp_port, 10, count, size, to=f"bob@{native.B}"))
        got = await wait_count(lambda: bob.count(lambda f, b: f.endswith(f"@mail.{native.B}")), count, 120)
        record["smtp_per_s"] = round(got / (time.monotonic() - start), 1)
        record["smtp_delivered"] = got

        # Route decision, one mail at a time: cold, then warm.
        for phase in ("cold", "warm"):
            latencies, probes, routes = [], [], {}
            for user in cold:
                rcpt = f"{user}@{native.B}"
                since = net.a.log_size()
                alice.send(native.escaped(rcpt, f"mail.{native.A}"), f"{phase} probe")
                # The whole probe of a domain takes at most [xmpp_mail] budget (10 s).
                line = await native.logged(net.a, since, "Route chosen.", f"rcpt={rcpt} ", timeout=15)
                route = native.route_of(line) if line else "not logged"
                routes[route] = routes.get(route, 0) + 1
                if line is None:
                    break
                # From the mail's commit to the queue, in facteur's own clock:
                # the client's and Prosody's TCP stacks add delays of their own
                # (delayed ACKs) that are not facteur's.
                queued = await native.logged(net.a, since, "Queued mail.", f"rcpt={rcpt} ", timeout=0.05)
                if queued is not None:
                    latencies.append((native.log_time(line) - native.log_time(queued)) * 1000)
                # The probe's own round trip: its query line to the route line.
                probe = await native.logged(net.a, since, "XMPP-Mail query sent.", 'query="probe"', timeout=0.05)
                if probe is not None:
                    probes.append((native.log_time(line) - native.log_time(probe)) * 1000)
            record[f"route_{phase}_p50_ms"] = round(percentile(latencies, 0.5), 1)
            record[f"route_{phase}_p99_ms"] = round(percentile(latencies, 0.99), 1)
            record[f"route_{phase}_probes"] = len(probes)
            record[f"probe_{phase}_p50_ms"] = round(percentile(probes, 0.5), 1)
            record[f"probe_{phase}_p99_ms"] = round(percentile(probes, 0.99), 1)
            record[f"route_{phase}_routes"] = routes
        print(f"native: {record.get('mails_per_s')}/s (Prosody client→client {record['c2c_per_s']}/s, "
              f"SMTP into facteur-b {record['smtp_per_s']}/s), route chosen p50 cold "
              f"{record['route_cold_p50_ms']} ms, warm {record['route_warm_p50_ms']} ms", flush=True)
    finally:
        for client in (alice, bob):
            try:
                await client.disconnect()
            except Exception:
                pass
        net.stop()


def criterion_figures(path):
    figures = {}
    text = Path(path).read_text(errors="replace") if path and Path(path).exists() else ""
    for name, unit_value, unit in re.findall(
            r"^(\S+/\S+)\s*\n\s*time:.*\n\s*thrpt:\s*\[\S+ \S+ (\S+) (\S+)", text, re.M):
        value = float(unit_value)
        figures[name] = round(value * {"GiB/s": 1024, "MiB/s": 1, "KiB/s": 1 / 1024}.get(unit, 1), 2)
    return figures


def established(port):
    """How many TCP connections to 127.0.0.1:`port` are established."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"dport = :{port}"],
                         capture_output=True, text=True, timeout=10).stdout
    return len(out.splitlines())


async def imap_mailboxes(work, results):
    """IMAP mailboxes followed by IDLE in a real Dovecot: facteur's memory
    per idle mailbox (RSS with IMAP_MAILBOXES attached and idling, less
    RSS before), and the time from a mail's LMTP delivery (Dovecot's 250)
    to its stanza at alice's client, one mail at a time, p50 and p99."""
    from peers import Dovecot
    users = {f"box{n}": f"pw{n}" for n in range(IMAP_MAILBOXES)}
    work.mkdir(parents=True, exist_ok=True)
    dovecot = Dovecot(work, users=users)
    secret = work / "imap.secret"
    secret.write_text("a-bench-secret-of-more-than-32-bytes-0123456789\n")
    gateway = Gateway(work, extra=f'[imap]\nsecret_file = "{secret}"\nidle = true\npoll_interval = "1h"\n')
    alice = None
    record = {"mailboxes": IMAP_MAILBOXES, "mails": IMAP_MAILS}
    results["imap"] = record
    try:
        dovecot.start()
        gateway.start()
        alice = await stamped_client(gateway)
        pid = gateway.facteur.proc.pid
        await asyncio.sleep(1)
        before = rss(pid)
        for n in range(IMAP_MAILBOXES):
            password = work / f"box{n}.password"
            password.write_text(f"pw{n}\n")
            subprocess.run([gateway.facteur.binary, "imap", "attach", "--config", str(gateway.facteur.config),
                            "--jid", f"alice@{DOMAIN}", "--host", "127.0.0.1", "--port", str(dovecot.imap),
                            "--tls", "none", "--user", f"box{n}", "--password-file", str(password)],
                           check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 120
        while established(dovecot.imap) < IMAP_MAILBOXES and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        record["connected"] = established(dovecot.imap)
        # Settled: every follower idling.
        await asyncio.sleep(3)
        after = rss(pid)
        record["rss_before_mb"] = round(before, 1)
        record["rss_idle_mb"] = round(after, 1)
        record["per_idle_mailbox_kb"] = round((after - before) * 1024 / IMAP_MAILBOXES, 1)

        import smtplib
        latencies = []
        with smtplib.LMTP("127.0.0.1", dovecot.lmtp, timeout=30) as lmtp:
            for n in range(IMAP_MAILS):
                message_id = f"bench-imap-{n}@example.net"
                raw = (f"From: Bob <bob@example.net>\r\nTo: box0@example.net\r\nSubject: imap bench {n}\r\n"
                       f"Message-ID: <{message_id}>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n"
                       f"mail number {n}\r\n").encode()
                wanted = stanza_id(message_id)
                refused = lmtp.sendmail("bob@example.net", [f"box{n % IMAP_MAILBOXES}"], raw)
                delivered = time.monotonic()
                assert not refused, refused
                deadline = delivered + 30
                while wanted not in alice.arrival and time.monotonic() < deadline:
                    await asyncio.sleep(0.001)
                if wanted in alice.arrival:
                    latencies.append((alice.arrival[wanted] - delivered) * 1000)
        record["received"] = len(latencies)
        record["latency_p50_ms"] = round(percentile(latencies, 0.50), 1)
        record["latency_p99_ms"] = round(percentile(latencies, 0.99), 1)
        print(f"imap: {IMAP_MAILBOXES} idle mailboxes ({record['connected']} connected): "
              f"{record['per_idle_mailbox_kb']} KB each; LMTP → stanza p50 {record['latency_p50_ms']} ms, "
              f"p99 {record['latency_p99_ms']} ms ({len(latencies)}/{IMAP_MAILS})", flush=True)
    finally:
        if alice is not None:
            try:
                await alice.disconnect()
            except Exception:
                pass
        gateway.stop()
        dovecot.cleanup()


def imap_report(results):
    r = results.get("imap")
    if not r:
        return []
    return ["", "## IMAP mailboxes (Dovecot, IDLE)", "", "| measure | value |", "|---|---|",
            f"| idle mailboxes | {r['mailboxes']} ({r.get('connected', '?')} connected) |",
            f"| RSS before / with them idle MB | {r.get('rss_before_mb')} / {r.get('rss_idle_mb')} |",
            f"| memory per idle mailbox KB | {r.get('per_idle_mailbox_kb')} |",
            f"| LMTP delivery → stanza p50 ms | {r.get('latency_p50_ms')} |",
            f"| LMTP delivery → stanza p99 ms | {r.get('latency_p99_ms')} |",
            f"| mails received | {r.get('received')}/{r['mails']} |"]


async def main(criterion_output):
    OUT.mkdir(parents=True, exist_ok=True)
    results = {"inbound": [], "inbound_postgres": [], "outbound": [], "memory": {},
               "translation_mib_per_s": criterion_figures(criterion_output)}
    work = Path(tempfile.mkdtemp(prefix="facteur-bench-"))
    try:
        await run_parts(work, results)
    finally:
        # A run's stores and logs are large (the growth store alone is
        # about 500 MB): kept only with BENCH_KEEP=1.
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


async def run_parts(work, results):
    """The parts BENCH_ONLY chose (all by default), in `work`."""
    if ONLY == "imap":
        await imap_mailboxes(work / "imap", results)
        (OUT / "results.json").write_text(json.dumps(results, indent=2))
        print("\n".join(imap_report(results)))
        print(f"\nJSON: {OUT / 'results.json'}")
        return
    if ONLY == "growth":
        results["growth"] = await growth.measure(work / "growth")
        (OUT / "results.json").write_text(json.dumps(results, indent=2))
        print("\n".join(growth.report(results["growth"])))
        print(f"\nJSON: {OUT / 'results.json'}")
        return
    if not ONLY:
        await imap_mailboxes(work / "imap", results)
    if ONLY != "native":
        peer = mta.PostfixPeer()
        try:
            peer.start()
            await gateway_journeys(work, results, peer)
            await inbound_on_postgres(work / "postgres", results, peer)
        finally:
            peer.stop()
    if not ONLY:
        results["growth"] = await growth.measure(work / "growth")
    if ONLY != "inbound":
        await native_journey(work / "native", results)
    report(results)


async def stamped_client(gateway):
    """alice, registered, noting when each stanza arrives (`arrival`)."""
    alice = Client("alice", gateway.prosody.c2s)
    alice.arrival = {}
    original = alice._on_message

    def stamped(stanza):
        alice.arrival[stanza["id"]] = time.monotonic()
        original(stanza)
    alice.xmpp.remove_handler("all messages")
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import MatchXPath
    alice.xmpp.register_handler(Callback("all messages", MatchXPath("{jabber:client}message"), stamped))
    await alice.connect()
    await alice.register()
    return alice


async def inbound_on_postgres(work, results, peer):
    """The email → XMPP journey again, the store on PostgreSQL: a private
    cluster on loopback with the server's default durability (fsync and
    synchronous_commit on), as SQLite commits with a sync each time."""
    cluster = PgCluster(options="")
    try:
        cluster.start()
        gateway = Gateway(work, max_connections=2000, max_message_size=2_000_000, store_url=cluster.database())
        async with journeys(gateway, peer) as j:
            await inbound(j, results, table="inbound_postgres")
    finally:
        cluster.stop()


@contextlib.asynccontextmanager
async def journeys(gateway, peer, before_start=None):
    """Registers alice and the sender accounts with facteur (`facteur
    users add`, which also creates the store), calls `before_start()`,
    starts the gateway, logs in the lean clients and the sender
    processes, and yields their Journeys; stops everything after."""
    clients, senders = [], None
    try:
        for user in ["alice", *(f"user{n}" for n in range(SENDERS))]:
            await asyncio.to_thread(gateway.facteur.register, f"{user}@{DOMAIN}")
        if before_start is not None:
            await before_start()
        gateway.start()
        c2s = gateway.prosody.c2s
        for user in ("alice", "bob"):
            client = RawClient(c2s, user, DOMAIN, USERS[user])
            await client.connect()
            clients.append(client)
        senders = Senders(c2s, DOMAIN, [(f"user{n}", USERS[f"user{n}"]) for n in range(SENDERS)])
        await asyncio.to_thread(senders.start)
        yield Journeys(gateway, clients[0], clients[1], senders, peer)
    finally:
        if senders is not None:
            await asyncio.to_thread(senders.stop)
        for client in clients:
            try:
                await client.close()
            except Exception:
                pass
        gateway.stop()


def key_row(results, table="inbound"):
    """The row of 4 KB mails over 10 SMTP clients."""
    return next((r for r in results.get(table, []) if r["size"] == "4KB" and r["sessions"] == 10), None)


def postgres_ratio(results):
    """PostgreSQL's delivered rate over SQLite's, 10 clients, 4 KB, if
    both delivered every mail; else None."""
    sqlite, postgres = key_row(results), key_row(results, "inbound_postgres")
    if not sqlite or not postgres or any(r["delivered"] != r["mails"] for r in (sqlite, postgres)):
        return None
    return postgres["delivered_per_s"] / sqlite["delivered_per_s"]


def fmt(value, digits=2):
    """A ratio, or `failed` where it could not be computed."""
    return "failed" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def inbound_table(rows, title, against=None):
    """The email → XMPP table; with `against` (the SQLite rows), a last
    column with the ratio of each delivered rate to SQLite's."""
    extra = " delivered vs SQLite |" if against is not None else ""
    lines = [title, "",
             "accept: smtp-source until its last 250 (facteur answers after its commit); delivered: until "
             "alice's client has every stanza. Beside, the same mails from smtp-source to smtp-sink (nothing "
             "stored) and to a private Postfix that holds them (250 after its fsync); Prosody client→client: "
             "the same body size (at most 200 KB) from sender processes to alice, the higher of "
             f"{' and '.join(map(str, REFERENCE_CLIENTS))} senders. Latency: end of DATA → stanza at the "
             "client, at half the sustained rate, over every mail sent (a missing one is inf).", "",
             "| size | SMTP clients | accept/s | delivered/s | smtp-sink/s | Postfix accept/s | accept vs smtp-sink | "
             "accept vs Postfix | Prosody client→client/s | delivered vs Prosody | p50 ms | p99 ms | delivered | "
             "peak RSS MB |" + extra,
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if extra else "")]
    for r in rows:
        line = (f"| {r['size']} | {r['sessions']} | {r['accept_per_s']} | {r['delivered_per_s']} | "
                f"{r['smtp_sink_per_s']} | {r['postfix_accept_per_s']} | {fmt(r['accept_vs_smtp_sink'])} | "
                f"{fmt(r['accept_vs_postfix'])} | {r['prosody_per_s'] or 'failed'} | "
                f"{fmt(r['delivered_vs_prosody'])} | {r['latency_p50_ms']} | {r['latency_p99_ms']} | "
                f"{r['delivered']}/{r['mails']} | {r['rss_peak_mb']} |")
        if against is not None:
            same = next((a for a in against if a["size"] == r["size"] and a["sessions"] == r["sessions"]), None)
            valid = same and same["delivered_per_s"] and same["delivered"] == same["mails"] \
                and r["delivered"] == r["mails"]
            line += f" {r['delivered_per_s'] / same['delivered_per_s']:.2f} |" if valid else " failed |"
        lines.append(line)
    return lines


async def gateway_journeys(work, results, peer):
    """Both journeys of one gateway, its memory and its store."""
    gateway = Gateway(work, max_connections=2000, max_message_size=2_000_000)
    members = [f"member{n}@{DOMAIN}" for n in range(1000)]

    async def seed():
        # 1,000 more registered users, in the store before facteur starts.
        await asyncio.to_thread(growth.seed_users, gateway.facteur.dir / "facteur.db", members)

    async with journeys(gateway, peer, before_start=seed) as j:
        pid = gateway.facteur.proc.pid
        await asyncio.sleep(1)
        results["memory"]["idle_rss_mb"] = round(rss(pid), 1)
        # facteur reads each of them: an RCPT to each, all accepted.
        known = await asyncio.to_thread(growth.rcpt_each, gateway.facteur.smtp_port, members)
        await asyncio.sleep(0.5)
        results["memory"]["users_known_at_rcpt"] = f"{known}/{len(members)}"
        results["memory"]["rss_1000_users_mb"] = round(rss(pid), 1)

        # Idle SMTP connections.
        before = rss(pid)
        idle = await asyncio.to_thread(growth.idle_connections, gateway.facteur.smtp_port, 1000)
        await asyncio.sleep(0.5)
        after = rss(pid)
        for sock in idle:
            sock.close()
        results["memory"]["rss_with_1000_idle_smtp_mb"] = round(after, 1)
        results["memory"]["per_idle_connection_kb"] = round((after - before) * 1024 / 1000, 1)

        await inbound(j, results)
        if ONLY == "inbound":
            return
        await outbound(j, results)
        results["memory"]["peak_rss_mb"] = round(rss(pid, "VmHWM"), 1)
    await steady_store(work / "steady", results)


def failures(results):
    """Every measure whose ratio was not computed, and why."""
    lines = []
    for table in ("inbound", "inbound_postgres", "outbound"):
        for r in results.get(table, []):
            where = f"{r['size']} x{r['sessions']}" if "size" in r else f"x{r['clients']}"
            lines += [f"- {table} {where}: {f}" for f in r.get("failures", [])]
    return lines


def ratios_line(results):
    """The last line of the run: each at 4 KB over 10 clients."""
    inbound, out = key_row(results) or {}, next((r for r in results["outbound"] if r["clients"] == 10), {})
    return (f"ratios: accept_vs_smtp_sink={fmt(inbound.get('accept_vs_smtp_sink'))} "
            f"accept_vs_postfix={fmt(inbound.get('accept_vs_postfix'))} "
            f"delivered_vs_prosody={fmt(inbound.get('delivered_vs_prosody'))} "
            f"outbound_vs_smtp_sink={fmt(out.get('outbound_vs_smtp_sink'))} "
            f"outbound_vs_postfix={fmt(out.get('outbound_vs_postfix'))} "
            f"native_vs_prosody={fmt(native_ratio(results))}")


def report(results):
    if ONLY == "native":
        lines = native_report(results.get("native", {}))
        (OUT / "results.json").write_text(json.dumps(results, indent=2))
        print("\n".join(lines))
        print(f"\nJSON: {OUT / 'results.json'}")
        print(f"native: native_prosody_bound={fmt(prosody_bound(results))}")
        print(f"ratios: native_vs_prosody={fmt(native_ratio(results))}")
        return
    lines = inbound_table(results["inbound"], "## Email → XMPP (durable, counted at the client), store on SQLite")
    lines += [""] + inbound_table(results["inbound_postgres"],
                                  "## Email → XMPP, store on PostgreSQL (private cluster on loopback, "
                                  "fsync and synchronous_commit on)", against=results["inbound"])
    key = key_row(results) or {}
    if ONLY == "inbound":
        (OUT / "results.json").write_text(json.dumps(results, indent=2))
        print("\n".join(lines + [""] + failures(results)))
        print(f"\nJSON: {OUT / 'results.json'}")
        print(f"inbound: postgres_vs_sqlite={fmt(postgres_ratio(results))}")
        print(f"ratios: accept_vs_smtp_sink={fmt(key.get('accept_vs_smtp_sink'))} "
              f"accept_vs_postfix={fmt(key.get('accept_vs_postfix'))} "
              f"delivered_vs_prosody={fmt(key.get('delivered_vs_prosody'))}")
        return
    lines += ["", "## XMPP → email (4 KB bodies, until stored by smtp-sink)", "",
              "Beside, the same number of 4 KB mails from smtp-source over as many SMTP sessions to smtp-sink, "
              "and through a private Postfix relaying to smtp-sink (until the sink has them all and the queue is "
              "empty); Prosody client→client: the same stanzas from the same sender processes to bob, at "
              f"{' and '.join(map(str, REFERENCE_CLIENTS))} senders.", "",
              "| XMPP clients | facteur mails/s | smtp-sink/s | Postfix relay/s | vs smtp-sink | vs Postfix | "
              "Prosody client→client/s | vs Prosody | stored | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["outbound"]:
        by_clients = ", ".join(f"{n}: {rate}" for n, (rate, _, _, _) in r["prosody_by_clients"].items())
        lines.append(f"| {r['clients']} | {r['mails_per_s']} | {r['smtp_sink_per_s']} | {r['postfix_relay_per_s']} | "
                     f"{fmt(r['outbound_vs_smtp_sink'])} | {fmt(r['outbound_vs_postfix'])} | "
                     f"{r['prosody_per_s'] or 'failed'} ({by_clients}) | {fmt(r['outbound_vs_prosody'])} | "
                     f"{r['stored']}/{r['stanzas']} | {r['rss_peak_mb']} |")
    lines += ["", "## Memory", "", "| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in results["memory"].items()]
    if "store" in results:
        st = results["store"]
        lines += ["", "## Store size under steady load (finished items kept 1 s, 4 KB mails)", "",
                  "| mails | pages in use MB | database + WAL files MB |", "|---|---|---|",
                  f"| {st['mails_per_step']} | {st['used_after_n_mb']} | {st['files_after_n_mb']} |",
                  f"| {2 * st['mails_per_step']} | {st['used_after_2n_mb']} | {st['files_after_2n_mb']} |",
                  "", f"Kept per mail (thread metadata): {st['kept_bytes_per_mail']} bytes"]
    if "growth" in results:
        lines += growth.report(results["growth"])
    lines += native_report(results.get("native", {}))
    lines += imap_report(results)
    lines += ["", "## Translation core (criterion, MiB/s)", "", "| bench | MiB/s |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in results["translation_mib_per_s"].items()]
    out10 = next((r for r in results["outbound"] if r["clients"] == 10), {})
    memory = results["memory"]

    def at_least(value, goal):
        return value is not None and value >= goal
    targets = [
        ("accept_vs_postfix ≥ 3", at_least(key.get("accept_vs_postfix"), 3)),
        ("accept_vs_smtp_sink ≥ 0.6", at_least(key.get("accept_vs_smtp_sink"), 0.6)),
        ("delivered_vs_prosody ≥ 0.8", at_least(key.get("delivered_vs_prosody"), 0.8)),
        ("outbound_vs_postfix ≥ 5", at_least(out10.get("outbound_vs_postfix"), 5)),
        ("outbound_vs_smtp_sink ≥ 0.6", at_least(out10.get("outbound_vs_smtp_sink"), 0.6)),
        ("inbound on PostgreSQL ≥ 70% of SQLite's (10 clients, 4 KB)", at_least(postgres_ratio(results), 0.7)),
        ("p99 end of DATA → stanza at half load < 20 ms (10 clients, 4 KB)",
         key.get("latency_p99_ms", math.inf) < 20),
        ("idle RSS ≤ 12 MB", memory.get("idle_rss_mb", 1e9) <= 12),
        ("per idle SMTP connection ≤ 8 KB", memory.get("per_idle_connection_kb", 1e9) <= 8),
        ("growth: rates with a full store and idle connections ≥ 0.8 of the empty store's",
         at_least(results.get("growth", {}).get("accept_ratio"), 0.8)
         and at_least(results.get("growth", {}).get("delivered_ratio"), 0.8)),
        ("store flat under steady load: < 1 KB kept per 4 KB mail",
         results.get("store", {}).get("kept_bytes_per_mail", 1e9) < 1024),
    ]
    lines += ["", "## Targets", ""] + [f"- {name}: {'met' if ok else 'not met'}" for name, ok in targets]
    results["targets"] = {name: ok for name, ok in targets}
    missed = failures(results)
    if missed:
        lines += ["", "## Failed measures (no ratio computed)", ""] + missed
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    print(f"\nJSON: {OUT / 'results.json'}")
    print(f"other: postgres_vs_sqlite={fmt(postgres_ratio(results))} "
          f"native_prosody_bound={fmt(prosody_bound(results))}")
    print(ratios_line(results))


def prosody_bound(results):
    """The highest native_vs_c2c Prosody's own CPU allows: its CPU per
    client message over its CPU per native mail (Prosody runs on one
    core; each native mail crosses it twice)."""
    r = results.get("native", {})
    native_cpu, c2c_cpu = r.get("prosody_cpu_ms_per_mail"), r.get("c2c_prosody_cpu_ms_per_mail")
    return c2c_cpu / native_cpu if native_cpu and c2c_cpu else float("nan")


def cpu_seconds(pid):
    """CPU time (user and system) a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def native_ratio(results):
    """XMPP-Mail between domains against Prosody's own client-to-client
    routing of the same body; None unless both delivered every mail."""
    r = results.get("native", {})
    if r.get("delivered") != r.get("mails") or r.get("c2c_delivered") != r.get("mails"):
        return None
    return r["mails_per_s"] / r["c2c_per_s"] if r.get("mails_per_s") and r.get("c2c_per_s") else None


def native_report(r):
    if not r:
        return []
    xmpp = (f"{r['mails_per_s']}" if r.get("mails_per_s") is not None
            else f"not measured: the first mail did not arrive as XMPP-Mail ({r.get('first_route', '?')})")
    routes = {phase: ", ".join(f"{k} {v}" for k, v in sorted(r.get(f"route_{phase}_routes", {}).items()))
              for phase in ("cold", "warm")}
    return ["", "## XMPP-Mail between domains (alice@a.test → bob@b.test, 4 KB bodies, counted at bob's client)", "",
            "| route | mails/s | delivered |", "|---|---|---|",
            f"| XMPP-Mail: facteur-a, privileged, as alice's own message | {xmpp} | "
            f"{r.get('delivered', 0)}/{r['mails']} (sent as XMPP-Mail {r.get('sent_as_xmpp', 0)}, "
            f"by SMTP {r.get('sent_by_smtp', 0)}) |",
            f"| Prosody client→client, alice to bob | {r.get('c2c_per_s')} | |",
            f"| SMTP into facteur-b (smtp-source, 10 sessions) | {r.get('smtp_per_s')} | "
            f"{r.get('smtp_delivered', 0)}/{r['mails']} |",
            "", "CPU per mail: Prosody handles a native mail twice (alice → mail.a.test, then "
            "the privileged message → bob) besides the link's pings, a client's message once:", "",
            "| journey | Prosody CPU ms/mail | facteur-a CPU ms/mail |", "|---|---|---|",
            f"| XMPP-Mail | {r.get('prosody_cpu_ms_per_mail')} | {r.get('facteur_cpu_ms_per_mail')} |",
            f"| client→client | {r.get('c2c_prosody_cpu_ms_per_mail')} | |",
            "", "At most Prosody's CPU per client message over its CPU per native mail "
            "(`native_prosody_bound`) of the client-to-client rate is open to XMPP-Mail on this machine.",
            "", "Route chosen by facteur-a, one mail at a time: from the mail queued (`Queued mail.`) to "
            "`Route chosen.`, and of that the probe (its query sent → the route chosen):", "",
            "| cache | p50 ms | p99 ms | probes | probe p50 ms | probe p99 ms | routes |",
            "|---|---|---|---|---|---|---|"] + [
            f"| {label} | {r.get(f'route_{phase}_p50_ms')} | {r.get(f'route_{phase}_p99_ms')} | "
            f"{r.get(f'route_{phase}_probes', 0)} | {r.get(f'probe_{phase}_p50_ms')} | "
            f"{r.get(f'probe_{phase}_p99_ms')} | {routes[phase]} |"
            for phase, label in (("cold", "cold (a new recipient each time)"),
                                 ("warm", "warm (the same recipients again)"))]


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
