"""facteur as the service manager and the log shipper see it: the
systemd notifications (READY=1 only once the component link is up,
WATCHDOG=1 while it runs, STOPPING=1 on SIGTERM) on a datagram socket
the test binds as NOTIFY_SOCKET, one JSON object per log line with
`[log] format = "json"`, and the sandbox of the shipped unit as
`systemd-analyze security` scores it."""

import json
import re
import signal
import socket
import subprocess
import time

from peers import ROOT, Gateway, registered_client, run, send_mail


class NotifySocket:
    """The service manager's end: a datagram socket that keeps what it
    is told, in order."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.received = []

    def read(self, timeout):
        """Everything that arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                self.received.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        return self.received

    def wait_for(self, state, timeout):
        """Reads until a datagram carries the line `state`; its index."""
        deadline = time.monotonic() + timeout
        while True:
            for index, datagram in enumerate(self.received):
                if state in datagram.splitlines():
                    return index
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{state} not received: {self.received}")
            self.sock.settimeout(left)
            try:
                self.received.append(self.sock.recv(4096).decode())
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()


def test_systemd_is_told_ready_once_linked_fed_and_told_of_the_stop(tmp_path):
    gateway = Gateway(tmp_path)
    notify = NotifySocket(tmp_path / "notify")
    # The watchdog wants a sign every 2 s: facteur sends one every second.
    gateway.facteur.env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000"}
    try:
        gateway.dns.start()
        gateway.relay.start()
        # No XMPP server yet: facteur listens, but is not ready.
        gateway.facteur.start()
        gateway.facteur.wait_log("Component connection failed.")
        early = notify.read(3.0)
        assert not any("READY=1" in d.splitlines() for d in early), early
        assert sum(d == "WATCHDOG=1\n" for d in early) >= 2, early

        gateway.prosody.start()
        ready = notify.wait_for("READY=1", timeout=20)
        assert "Component link up." in gateway.facteur.log_since_start()
        assert notify.received[ready] == "READY=1\nSTATUS=Serving\n"

        # Fed while it runs, not only while it waited for the link.
        after = len(notify.received)
        notify.read(2.5)
        assert sum(d == "WATCHDOG=1\n" for d in notify.received[after:]) >= 2, notify.received

        gateway.facteur.proc.send_signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING=1", timeout=10)
        assert notify.received[stopping] == "STOPPING=1\nSTATUS=Shutting down\n"
        assert gateway.facteur.proc.wait(30) == 0
        assert notify.received.count("READY=1\nSTATUS=Serving\n") == 1
    finally:
        gateway.stop()
        notify.close()


def test_json_logs_are_one_object_per_line(tmp_path):
    gateway = Gateway(tmp_path, extra='[log]\nformat = "json"\n')
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            code, text = send_mail(gateway.facteur.smtp_port, "bob@example.net",
                                   ["alice@example.test"],
                                   b"Subject: json\r\nMessage-ID: <json@example.net>\r\n\r\nHi\r\n")
            assert code == 250, text
            await alice.wait_for(lambda m: m["body"] == "Hi")
            await alice.disconnect()
        run(scenario())
        gateway.facteur.wait_log("Delivered to XMPP.")
    finally:
        gateway.stop()
    lines = gateway.facteur.log_since_start().splitlines()
    assert lines
    events = [json.loads(line) for line in lines]
    for event in events:
        assert {"timestamp", "level", "target", "fields"} <= event.keys(), event
        assert event["level"] in {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}, event
        assert isinstance(event["fields"]["message"], str), event
    accepted = [e for e in events if e["fields"]["message"] == "Accepted mail."]
    assert len(accepted) == 1, accepted
    assert accepted[0]["level"] == "INFO"
    assert accepted[0]["target"].startswith("facteur::smtp")
    assert accepted[0]["fields"]["mail_from"] == "bob@example.net"
    assert accepted[0]["fields"]["recipients"] == 1
    assert any(e["fields"]["message"] == "Stopped." for e in events)


def test_the_shipped_unit_is_sandboxed():
    unit = ROOT / "deploy" / "facteur.service"
    out = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(unit)],
                         capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for facteur\.service: (\d+\.\d+) (\w+)", out.stdout)
    assert found, out.stdout + out.stderr
    score, verdict = float(found[1]), found[2]
    print(f"systemd-analyze security: {score} {verdict}")
    assert score <= 1.5 and verdict == "OK", out.stdout
    text = unit.read_text()
    for line in ["Type=notify", "NotifyAccess=main", "WatchdogSec=30s",
                 "Documentation=man:facteur(1)", "ExecReload=/bin/kill -HUP $MAINPID"]:
        assert line in text.splitlines(), line
