"""`/health` as a monitor sees it: 200 `ok` while the component link is
up and the store takes a write; 503 naming the component link while the
XMPP server is gone, and naming the store while its files cannot be
written; 200 again once each is back."""

import subprocess
import time
import urllib.error
import urllib.request


def health(port):
    """(status, body) of GET /health."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def poll_health(port, wanted, timeout=20.0):
    """Asks until the answer satisfies `wanted`; returns the last answer."""
    deadline = time.monotonic() + timeout
    answer = health(port)
    while not wanted(answer) and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = health(port)
    return answer


def chattr(flag, paths):
    for path in paths:
        subprocess.run(["chattr", flag, str(path)], check=True, timeout=10)


def test_health_names_the_component_link_and_the_store(gateway):
    port = gateway.facteur.http_port
    ok = (200, "ok\n")
    assert health(port) == ok

    gateway.prosody.stop()
    status, body = poll_health(port, lambda answer: answer[0] == 503)
    assert status == 503, body
    assert body.startswith("component link down"), body
    assert "store" not in body, body

    gateway.prosody.start()
    assert poll_health(port, lambda answer: answer == ok) == ok

    # An immutable file refuses writes even through descriptors already
    # open (ext4), as a file system gone read-only does; root ignores
    # mode bits, and a busy mount cannot be remounted read-only.
    db = gateway.facteur.dir / "facteur.db"
    frozen = [db, db.with_name("facteur.db-wal")]
    chattr("+i", frozen)
    try:
        status, body = poll_health(port, lambda answer: answer[0] == 503)
        assert (status, body) == (503, "store cannot be written\n")
    finally:
        chattr("-i", frozen)
    assert poll_health(port, lambda answer: answer == ok) == ok
