"""The SMTP references of the benchmark, measured in the same run as
facteur, at the same sizes and concurrency:

- smtp-source → smtp-sink: the loopback SMTP limit, nothing stored;
- a private Postfix (Debian's package, tests/e2e/postfix.py: its own
  configuration, queue and data folders under target/bench/mta/, loopback
  ports, no system daemon), what an operator would run instead:
  - durable accept: a listener whose every mail goes to the hold queue
    (`check_recipient_access static:HOLD`), so nothing leaves; smtpd
    answers 250 once cleanup has fsynced the queue file;
  - relay: a listener that relays to `relayhost`, an smtp-sink that
    writes each mail to a file (as facteur's outbound journey is
    measured), until the sink holds every mail and the queue is empty.

Each measure returns (mails per second, mails done); the caller compares
`done` with what was sent before it uses the rate."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from peers import ROOT, free_port, stop_process, wait_port  # noqa: E402
from postfix import Postfix  # noqa: E402

WORK = ROOT / "target" / "bench" / "mta"


def smtp_source(port, sessions, count, size, to="alice@example.test"):
    return ["smtp-source", "-s", str(sessions), "-m", str(count), "-l", str(size),
            "-f", "bob@example.net", "-t", to, f"127.0.0.1:{port}"]


def timed(command, timeout=600):
    """Runs `command`; (seconds it took, whether it exited 0)."""
    start = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout)
    return time.monotonic() - start, done.returncode == 0


def stored_count(folder):
    return sum(len(files) for _, _, files in os.walk(folder))


def empty(folder):
    for path in Path(folder).iterdir():
        if path.is_file():
            path.unlink()


class FileSink:
    """smtp-sink on 127.0.0.1:`port`, writing each mail it accepts to a
    file of `folder`."""

    def __init__(self, folder, port=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o777)
        self.port = port or free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["smtp-sink", "-u", "postfix", "-d", f"{self.folder}/%M.",
                                      f"127.0.0.1:{self.port}", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)

    def stop(self):
        stop_process(self.proc)
        self.proc = None

    def count(self):
        return stored_count(self.folder)


def sink_rate(sessions, count, size):
    """smtp-source → smtp-sink (nothing written): (mails/s, mails done)."""
    port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "postfix", f"127.0.0.1:{port}", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=sink)
        elapsed, ok = timed(smtp_source(port, sessions, count, size))
        return count / elapsed, count if ok else 0
    finally:
        stop_process(sink)


class PostfixPeer:
    """The private Postfix, with its hold listener and its relay listener,
    and the smtp-sink it relays to."""

    def __init__(self):
        shutil.rmtree(WORK, ignore_errors=True)
        WORK.mkdir(parents=True)
        self.sink = FileSink(WORK / "sink")
        self.hold_port = free_port()
        self.postfix = Postfix(WORK, main_cf=f"""\
relayhost = [127.0.0.1]:{self.sink.port}
hold_everything = check_recipient_access static:HOLD
""", master_cf=f"127.0.0.1:{self.hold_port} inet n - - - - smtpd "
               "-o smtpd_recipient_restrictions=$hold_everything\n")
        self.relay_port = self.postfix.port

    def start(self):
        self.sink.start()
        self.postfix.start()
        wait_port(self.hold_port, proc=self.postfix.proc)

    def stop(self):
        try:
            self.postfix.stop()
        finally:
            self.sink.stop()

    def held(self):
        return sum(1 for path in (self.postfix.queue / "hold").rglob("*") if path.is_file())

    def accept(self, sessions, count, size):
        """Durable accept: smtp-source → the hold listener, until the last
        250; (mails/s, mails in the hold queue)."""
        self.postfix.run("postsuper", "-d", "ALL")
        elapsed, _ = timed(smtp_source(self.hold_port, sessions, count, size))
        held = self.held()
        self.postfix.run("postsuper", "-d", "ALL")
        return count / elapsed, held

    def relay(self, sessions, count, size, timeout=300):
        """Relay: smtp-source → Postfix → smtp-sink, until the sink has
        every mail and Postfix's queue is empty; (mails/s, mails at the
        sink)."""
        self.postfix.run("postsuper", "-d", "ALL")
        empty(self.sink.folder)
        start = time.monotonic()
        timed(smtp_source(self.relay_port, sessions, count, size))
        deadline = start + timeout
        while (self.sink.count() < count or self.postfix.queued()) and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.monotonic() - start
        stored = self.sink.count()
        empty(self.sink.folder)
        return count / elapsed, stored
