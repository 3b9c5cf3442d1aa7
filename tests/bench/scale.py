"""One facteur instance versus two, beside one ejabberd and one PostgreSQL
store (tests/peers/pg-cluster): the email → XMPP journey, 4 KB mails from
smtp-source in 20 sessions split over the instances' SMTP ports, until
alice's client has them all. Each instance is pinned to a core of its own
(`taskset -c 0`, `-c 1`); ejabberd, PostgreSQL and the peers share the
machine with them. Prints the rates and their ratio (goal: two ≥ 1.6 ×
one) and writes target/bench/scale.json. A benchmark: it prints figures
and asserts none. Sizes: BENCH_SCALE (default 1.0)."""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from peers import ROOT, Client, Dns, Ejabberd, Facteur, PgCluster, Relay  # noqa: E402

# Measured as run in production: info, not the tests' debug log.
os.environ.setdefault("RUST_LOG", "info")

SCALE = float(os.environ.get("BENCH_SCALE", "1.0"))
COUNT = max(100, int(3000 * SCALE))
SESSIONS = 20
SIZE = 4096
OUT = ROOT / "target" / "bench"


def smtp_source(port, sessions, count):
    return ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(SIZE),
            "-f", "bob@example.net", "-t", "alice@example.test", f"127.0.0.1:{port}"]


def pin(pid, cpu):
    """Pins every thread of process `pid` to core `cpu`."""
    subprocess.run(["taskset", "-a", "-c", "-p", str(cpu), str(pid)], check=True,
                   capture_output=True, timeout=10)


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(instances, work, cluster):
    xmpp = Ejabberd(work)
    dns = Dns(work / "dns")
    relay = Relay()
    shared = work / "shared"
    shared.mkdir(parents=True)
    url = cluster.database()
    facteurs = [Facteur(work / f"instance-{i}", xmpp, relay, dns, store_dir=shared, store_url=url,
                        max_connections=2000) for i in range(instances)]
    alice = None
    try:
        xmpp.start()
        dns.start()
        relay.start()
        for cpu, facteur in enumerate(facteurs):
            facteur.start()
            pin(facteur.proc.pid, cpu)
            facteur.wait_log("Component link up.", timeout=20)
        alice = Client("alice", xmpp.c2s)
        await alice.connect()
        await alice.register()
        cpu_before = [cpu_seconds(f.proc.pid) for f in facteurs]
        start = time.monotonic()
        senders = [subprocess.Popen(smtp_source(f.smtp_port, SESSIONS // instances, COUNT // instances),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for f in facteurs]
        wanted = COUNT // instances * instances
        deadline = start + 600
        while len(alice.messages) < wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - start
        for sender in senders:
            sender.wait(60)
        got = len(alice.messages)
        cpu = [round(cpu_seconds(f.proc.pid) - b, 1) for f, b in zip(facteurs, cpu_before)]
        return {"instances": instances, "mails": wanted, "delivered": got,
                "seconds": round(elapsed, 2), "mails_per_s": round(got / elapsed, 1), "cpu_s": cpu}
    finally:
        if alice is not None:
            await alice.disconnect()
        for facteur in facteurs:
            facteur.stop()
        relay.stop()
        xmpp.cleanup()
        dns.stop()


async def main():
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="facteur-bench-scale-"))
    cluster = PgCluster(options="")
    results = []
    try:
        cluster.start()
        for instances in (1, 2):
            row = await measure(instances, work / f"x{instances}", cluster)
            results.append(row)
            print(f"scale x{instances}: {row['mails_per_s']:.0f} mails/s "
                  f"({row['delivered']}/{row['mails']} in {row['seconds']} s, facteur CPU s {row['cpu_s']})",
                  flush=True)
    finally:
        cluster.stop()
    one, two = (r["mails_per_s"] for r in results)
    complete = all(r["delivered"] == r["mails"] for r in results)
    ratio = two / one if one and complete else None
    print("\n| instances | mails | delivered | seconds | mails/s | facteur CPU s |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['instances']} | {r['mails']} | {r['delivered']} | {r['seconds']} | {r['mails_per_s']} "
              f"| {' + '.join(str(c) for c in r['cpu_s'])} |")
    figure = f"{ratio:.2f}" if ratio is not None else "failed (not every mail delivered)"
    print(f"\nscale: two_vs_one_instance={figure} (goal ≥ 1.6)")
    (OUT / "scale.json").write_text(json.dumps({"runs": results, "two_vs_one": ratio}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
