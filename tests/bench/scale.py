"""One facteur instance versus two, beside one ejabberd and one PostgreSQL
store (tests/peers/pg-cluster): the email → XMPP journey, 4 KB mails from
smtp-source in 20 sessions split over the instances' SMTP ports, until
alice's client has them all (a lean c2s client counts them, as in
xmppload.py). Each instance is pinned to a core of its own (`taskset -c
0`, `-c 1`); ejabberd, PostgreSQL and the peers share the machine with
them. Prints the rates and their ratio (goal: two ≥ 1.6 × one), how busy
the machine's cores were and the CPU seconds of the other processes (so
that a ratio held down by the peers says so), and writes
target/bench/scale.json. A benchmark: it prints figures
and asserts none. Sizes: BENCH_SCALE (default 1.0)."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from peers import DOMAIN, GATEWAY, ROOT, USERS, Client, Dns, Ejabberd, Facteur, PgCluster, Relay  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xmppload import RawClient  # noqa: E402

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


def cpu_by_command():
    """CPU seconds used so far by every process of the machine, summed by
    command name (beam.smp for ejabberd, postgres, smtp-source, ...)."""
    used = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1]
        fields = rest.split()
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def machine_busy():
    """Busy and total jiffies of all cores, from /proc/stat."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


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
        # Registered with the gateway by slixmpp; then counted by a lean
        # client, so that a Python XML parser is not what is measured.
        registering = Client("alice", xmpp.c2s)
        await registering.connect()
        await registering.register()
        await registering.disconnect()
        alice = RawClient(xmpp.c2s, "alice", DOMAIN, USERS["alice"])
        await alice.connect()
        received = alice.counter(lambda _id, sender, kind: sender.endswith(GATEWAY) and kind != "error")
        cpu_before = [cpu_seconds(f.proc.pid) for f in facteurs]
        commands_before, busy_before = cpu_by_command(), machine_busy()
        start = time.monotonic()
        senders = [subprocess.Popen(smtp_source(f.smtp_port, SESSIONS // instances, COUNT // instances),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for f in facteurs]
        wanted = COUNT // instances * instances
        deadline = start + 600
        got = received()
        while got < wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            got = received()
        elapsed = time.monotonic() - start
        commands_after, busy_after = cpu_by_command(), machine_busy()
        for sender in senders:
            sender.wait(60)
        cpu = [round(cpu_seconds(f.proc.pid) - b, 1) for f, b in zip(facteurs, cpu_before)]
        # Where the machine's two cores went: when they are busy already
        # with one instance, a second one has nothing to run on.
        others = {name: round(commands_after.get(name, 0.0) - before, 1)
                  for name, before in commands_before.items()
                  if commands_after.get(name, 0.0) - before >= 0.1 and name != "facteur"}
        busy = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
        return {"instances": instances, "mails": wanted, "delivered": got,
                "seconds": round(elapsed, 2), "mails_per_s": round(got / elapsed, 1), "cpu_s": cpu,
                "machine_busy": round(busy, 2), "others_cpu_s": others}
    finally:
        if alice is not None:
            await alice.close()
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
                  f"({row['delivered']}/{row['mails']} in {row['seconds']} s, facteur CPU s {row['cpu_s']}, "
                  f"machine busy {row['machine_busy']:.0%}, others' CPU s {row['others_cpu_s']})",
                  flush=True)
    finally:
        cluster.stop()
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
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
