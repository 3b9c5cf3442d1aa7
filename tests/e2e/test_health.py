"""`/health` as a monitor sees it: 200 `ok` while the component link is
up and the store takes a write; 503 naming the component link while the
XMPP server is gone, and naming the store while its files cannot be
written; 200 again once each is back. `/metrics` on the same listener,
as a Prometheus server reads it, after one mail in and one out."""

import asyncio
import json
import re
import subprocess
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from peers import ROOT, escaped, rcpt_reply, registered_client, run, send_mail, wait_until


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


def scrape(port):
    """(content type, text) of GET /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        return answer.headers["Content-Type"], answer.read().decode()


def samples(text):
    """{(name, ((label, value), …)): value} as a Prometheus server reads
    the text; the parser refuses what is not the exposition format."""
    read = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            read[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return read


def test_metrics_count_one_mail_in_and_one_out(gateway):
    port = gateway.facteur.http_port

    async def scenario():
        alice = await registered_client(gateway)
        code, text = await asyncio.to_thread(
            send_mail, gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], MAIL)
        assert code == 250, text
        await alice.wait_for(lambda m: m["body"] == "One mail in.")
        code, _ = await asyncio.to_thread(rcpt_reply, gateway.facteur.smtp_port, "nobody@example.test")
        assert code == 550
        alice.send(escaped("bob@example.net"), "One mail out.")
        assert await wait_until(lambda: gateway.relay.received, timeout=15), gateway.facteur.log_tail()
        await alice.disconnect()
    run(scenario())

    # The outcome of the delivery is counted once it is committed.
    sent = 'facteur_to_mail_total{outcome="sent"} 1'
    deadline = time.monotonic() + 10
    content_type, text = scrape(port)
    while sent not in text.splitlines() and time.monotonic() < deadline:
        time.sleep(0.2)
        content_type, text = scrape(port)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    lines = text.splitlines()
    for line in [
        "# TYPE facteur_smtp_received_total counter",
        'facteur_smtp_received_total{outcome="accepted"} 1',
        'facteur_smtp_received_total{outcome="report"} 0',
        'facteur_smtp_refused_total{reason="unknown_user"} 1',
        'facteur_smtp_refused_total{reason="relay_denied"} 0',
        'facteur_to_xmpp_total{outcome="delivered"} 1',
        'facteur_to_xmpp_total{outcome="failed"} 0',
        sent,
        'facteur_to_mail_total{outcome="bounced"} 0',
        'facteur_xmpp_mail_total{outcome="sent"} 0',
        "facteur_component_link_up 1",
        "facteur_component_reconnects_total 0",
        'facteur_queue_items{queue="to_xmpp",state="delivered"} 1',
        'facteur_queue_items{queue="to_xmpp",state="pending"} 0',
        'facteur_queue_items{queue="to_mail",state="sent"} 1',
        'facteur_queue_items{queue="to_mail",state="queued"} 0',
        'facteur_queue_oldest_due_age_seconds{queue="to_xmpp"} 0',
        "# TYPE facteur_to_xmpp_delivery_seconds histogram",
        "facteur_to_xmpp_delivery_seconds_count 1",
        'facteur_to_xmpp_delivery_seconds_bucket{le="+Inf"} 1',
        "facteur_to_mail_delivery_seconds_count 1",
        'facteur_store_transaction_seconds_count{operation="accept_mails"} 1',
    ]:
        assert line in lines, f"{line!r} not in\n{text}"

    read = samples(text)
    # One delivery each way, well within a minute.
    assert read[("facteur_to_xmpp_delivery_seconds_bucket", (("le", "60"),))] == 1
    assert read[("facteur_to_mail_delivery_seconds_bucket", (("le", "60"),))] == 1
    assert 0 < read[("facteur_to_xmpp_delivery_seconds_sum", ())] < 60
    assert read[("facteur_store_transaction_seconds_count", (("operation", "queue_mails"),))] >= 1
    assert read[("facteur_store_transaction_seconds_count", (("operation", "mail_outcomes"),))] >= 1

    # Every metric the shipped dashboard plots is in the scrape.
    dashboard = json.loads((ROOT / "deploy" / "grafana-facteur.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    plotted = {name for expr in exprs for name in re.findall(r"\bfacteur_[a-z_]+", expr)}
    scraped = {name for name, _ in read}
    assert plotted - scraped == set(), plotted - scraped


MAIL = (
    "From: bob@example.net\r\n"
    "To: alice@example.test\r\n"
    "Subject: In\r\n"
    "Message-ID: <metrics@example.net>\r\n"
    "\r\n"
    "One mail in.\r\n"
).encode()
