"""Mail the internet trusts, end to end against a real DNS server
(dnsmasq on loopback, the only one facteur asks): SPF/DKIM/DMARC verdicts
and their codes, MX delivery with fallback and null MX, rate limits, and
headers a stanza cannot inject."""

import asyncio
import os
import smtplib
import socket
import subprocess
import time

import pytest

from peers import (ROOT, Gateway, Relay, dkim_record, escaped, free_port, registered_client, run,
                   send_mail, wait_until)

BINARY = os.environ.get("FACTEUR_BIN", str(ROOT / "target" / "debug" / "facteur"))


def mail(sender, subject, body="Hello.", headers=""):
    return (f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@{sender.split('@')[1]}>\r\n{headers}"
            f"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n\r\n{body}\r\n").encode()


# Every domain a test sends from, with what it publishes.
RECORDS = {
    # Forged: the bank allows no host and refuses what fails.
    "bank.test": "v=spf1 -all",
    "_dmarc.bank.test": "v=DMARC1; p=reject",
    # Honest: loopback may send for it, and its mail is DKIM-signed.
    "good.test": "v=spf1 ip4:127.0.0.1 -all",
    "_dmarc.good.test": "v=DMARC1; p=reject",
    # Asks for quarantine of what fails.
    "shady.test": "v=spf1 -all",
    "_dmarc.shady.test": "v=DMARC1; p=quarantine",
    # No DMARC, SPF hard fail.
    "spoofed.test": "v=spf1 -all",
    # Soft fail, monitoring only.
    "soft.test": "v=spf1 ~all",
    "_dmarc.soft.test": "v=DMARC1; p=none",
    # A HELO name whose domain disowns every host.
    "disowned.test": "v=spf1 -all",
}


@pytest.fixture
def trusting(tmp_path):
    """A gateway whose DNS knows the test domains, with a DKIM key of
    good.test published."""
    key = tmp_path / "good.pem"
    out = subprocess.run([BINARY, "dkim", "keygen", "--domain", "good.test", "--selector", "s1",
                          "--out", str(key)], capture_output=True, text=True, check=True).stdout
    name, value = dkim_record(out)
    records = dict(RECORDS)
    records[name] = value
    gateway = Gateway(tmp_path, dns={"txt": records})
    gateway.dkim_key = key.read_bytes()
    try:
        gateway.start()
        gateway.facteur.register("alice@example.test")
        yield gateway
    finally:
        gateway.stop()


def test_forged_from_of_a_reject_domain_is_refused(trusting):
    code, text = send_mail(trusting.facteur.smtp_port, "ceo@bank.test", ["alice@example.test"],
                           mail("CEO <ceo@bank.test>", "Wire transfer"))
    assert code == 550, text
    assert text.startswith("5.7.1"), text
    assert "bank.test" in text, text


def test_authenticated_mail_carries_its_results(trusting):
    import dkim

    async def scenario():
        alice = await registered_client(trusting)
        raw = mail("Good <news@good.test>", "Signed news", body="Signed and aligned.")
        signature = dkim.sign(raw, b"s1", b"good.test", trusting.dkim_key,
                              include_headers=[b"from", b"to", b"subject", b"message-id", b"date"])
        code, text = send_mail(trusting.facteur.smtp_port, "news@good.test", ["alice@example.test"],
                               signature + raw)
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["subject"] == "Signed news")
        assert got["body"] == "Signed and aligned."
        auth = got["auth"]
        assert auth == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}, auth
        # The same body with a forged signature: DKIM fails, SPF still
        # passes and aligns, so DMARC passes and the mail is accepted.
        tampered = signature + raw.replace(b"Signed and aligned.", b"Changed on the way.")
        code, text = send_mail(trusting.facteur.smtp_port, "news@good.test", ["alice@example.test"],
                               tampered.replace(b"Signed-news@", b"Tampered-news@"))
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["body"] == "Changed on the way.")
        assert got["auth"]["dkim"] == "fail" and got["auth"]["dmarc"] == "pass", got["auth"]
        await alice.disconnect()
    run(scenario())


def test_failures_the_operator_marks_reach_the_user_with_a_warning(trusting):
    async def scenario():
        alice = await registered_client(trusting)
        # p=quarantine: marked by default.
        code, text = send_mail(trusting.facteur.smtp_port, "x@shady.test", ["alice@example.test"],
                               mail("x@shady.test", "Quarantine me"))
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["subject"] == "Quarantine me")
        assert got["body"].startswith("[Unverified sender: the DMARC policy of shady.test"), got["body"]
        assert got["auth"]["dmarc"] == "fail"
        # SPF hard fail without DMARC: marked by default.
        code, text = send_mail(trusting.facteur.smtp_port, "x@spoofed.test", ["alice@example.test"],
                               mail("x@spoofed.test", "Spoofed"))
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["subject"] == "Spoofed")
        assert got["body"].startswith("[Unverified sender: SPF"), got["body"]
        assert got["auth"] == {"spf": "fail", "dkim": "none", "dmarc": "none", "arc": "none"}
        # Soft fail under p=none: delivered as it is.
        code, text = send_mail(trusting.facteur.smtp_port, "x@soft.test", ["alice@example.test"],
                               mail("x@soft.test", "Soft"))
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["subject"] == "Soft")
        assert got["body"] == "Hello."
        assert got["auth"]["spf"] == "softfail" and got["auth"]["dmarc"] == "fail"
        # The same, from a host whose HELO name disowns it: SPF fails.
        code, text = send_mail(trusting.facteur.smtp_port, "x@soft.test", ["alice@example.test"],
                               mail("x@soft.test", "Disowned"), helo="disowned.test")
        assert code == 250, text
        got = await alice.wait_for(lambda m: m["subject"] == "Disowned")
        assert got["body"].startswith("[Unverified sender: SPF"), got["body"]
        assert got["auth"]["spf"] == "fail"
        await alice.disconnect()
    run(scenario())


def test_operator_rules_refuse_spf_failures(tmp_path):
    gateway = Gateway(tmp_path, dns={"txt": RECORDS}, auth='spf_fail = "reject"\ndmarc_reject = "mark"')
    try:
        gateway.start()
        gateway.facteur.register("alice@example.test")
        code, text = send_mail(gateway.facteur.smtp_port, "x@spoofed.test", ["alice@example.test"],
                               mail("x@spoofed.test", "Spoofed"))
        assert (code, text[:6]) == (550, "5.7.23"), text
        # The stricter rule wins: DMARC would only mark the bank's forged
        # mail, its SPF fail refuses it.
        code, text = send_mail(gateway.facteur.smtp_port, "ceo@bank.test", ["alice@example.test"],
                               mail("ceo@bank.test", "Forged"))
        assert (code, text[:6]) == (550, "5.7.23"), text
    finally:
        gateway.stop()


def mx_port_free_on(*hosts):
    """A port free on every one of the loopback addresses."""
    return free_port(*hosts)


def test_mx_delivery_falls_back_to_the_next_host_and_null_mx_fails_at_once(tmp_path):
    port = mx_port_free_on("127.0.0.2", "127.0.0.3")
    dns = {
        "mx": {"two.test": [(10, "mx1.two.test"), (20, "mx2.two.test")],
               "nomail.test": [(0, ".")]},
        "hosts": {"mx1.two.test": "127.0.0.2", "mx2.two.test": "127.0.0.3"},
    }
    # mx1 refuses connections (nothing listens on it); mx2 takes the mail.
    second = Relay(host="127.0.0.3", port=port)
    gateway = Gateway(tmp_path, dns=dns, relay=False, mx_port=port)
    try:
        second.start()
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            alice.send(escaped("bob@two.test"), "Through the second MX.", subject="MX")
            assert await wait_until(lambda: second.received, timeout=20), gateway.facteur.log_tail()
            assert second.received[0]["rcpt_tos"] == ["bob@two.test"]
            assert second.received[0]["message"]["Subject"] == "MX"

            started = time.monotonic()
            alice.send(escaped("bob@nomail.test"), "Nobody takes this.", subject="Null MX")
            notice = await alice.wait_for(lambda m: m["subject"] == "Undelivered mail", timeout=15)
            assert time.monotonic() - started < 10, "a null MX is not retried"
            assert notice["from"] == escaped("bob@nomail.test")
            assert "bob@nomail.test" in notice["body"] and "null MX" in notice["body"], notice["body"]
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()
        second.stop()


def test_rate_limits_trip_at_the_configured_numbers_and_recover(tmp_path):
    # Loopback is exempt by default (an MTA in front of facteur): not here.
    limits = {"client_mails_per_minute": 30, "client_connections": 2, "sender_mails_per_hour": 2,
              "client_exceptions": "[]"}
    gateway = Gateway(tmp_path, limits=limits)
    try:
        gateway.start()
        port = gateway.facteur.smtp_port
        # Connections: two at once from one address, the third refused.
        first, second = (smtplib.SMTP("127.0.0.1", port, timeout=10) for _ in range(2))
        third = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert third.recv(200).startswith(b"421 4.7.0 Too many connections from your address")
        third.close()
        second.quit()
        assert wait_for_connection(port)
        # Mails: 30 a minute, as a burst (plus one more for every 2 s the
        # burst took); then one waits its turn.
        first.ehlo("client.example.net")
        started, accepted = time.monotonic(), 0
        while True:
            code, text = first.mail("bob@example.net")
            first.rset()
            if code != 250:
                break
            accepted += 1
            assert accepted <= 40, "no limit"
        assert (code, text[:5]) == (450, b"4.7.1"), text
        assert 30 <= accepted <= 30 + int((time.monotonic() - started) / 2) + 1, accepted
        time.sleep(2.2)
        assert first.mail("bob@example.net")[0] == 250
        first.quit()

        async def scenario():
            alice = await registered_client(gateway)
            for n in range(2):
                alice.send(escaped("bob@example.net"), f"mail {n}")
            assert await wait_until(lambda: len(gateway.relay.received) == 2, timeout=15)
            refused = alice.send(escaped("bob@example.net"), "one too many")
            error = await alice.wait_for(lambda m: m["id"] == refused and m["type"] == "error")
            assert (error["error"], error["error_type"]) == ("policy-violation", "wait"), error
            assert "at most 2 mails an hour" in error["xml"], error["xml"]
            await asyncio.sleep(1)
            assert len(gateway.relay.received) == 2
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()


def wait_for_connection(port):
    """Waits until the gateway has noticed a closed connection: a new one
    gets its greeting."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            if s.recv(200).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                return True
        time.sleep(0.1)
    return False


def test_a_stanza_cannot_add_headers(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        import slixmpp
        message = alice.xmpp.make_message(mto=escaped("bob@example.net"), mtype="chat",
                                          mbody="Body\r\n\r\nBcc: evil@example.net")
        message["subject"] = "Hello\r\nBcc: evil@example.net\r\nX-Injected: yes"
        message["id"] = "injection-1"
        message.append(slixmpp.xmlstream.ET.fromstring(
            "<nick xmlns='http://jabber.org/protocol/nick'>Alice\r\nBcc: evil@example.net</nick>"))
        message.send()
        assert await wait_until(lambda: gateway.relay.received, timeout=15)
        received = gateway.relay.received[0]
        assert received["rcpt_tos"] == ["bob@example.net"]
        head = received["raw"].split(b"\r\n\r\n", 1)[0]
        for line in head.split(b"\r\n"):
            assert not line.lower().startswith((b"bcc:", b"x-injected:")), head
        assert received["message"]["Bcc"] is None and received["message"]["X-Injected"] is None
        assert "Body" in received["message"].get_content()
        await alice.disconnect()
    run(scenario())


def delivery_status_notification(to, rcpt, status="5.1.1", message_id="<x@example.test>"):
    """A DSN as Postfix writes it (RFC 3464)."""
    return (
        f"From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not\r\n"
        f"be delivered to one or more recipients.\r\n\r\n<{rcpt}>: host mx.example.net said: 550 {status} "
        "<bob@example.net>: Recipient address rejected: User unknown\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{rcpt}>: Recipient address rejected: User unknown\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\nSubject: Plans\r\n"
        "--B--\r\n"
    ).encode()


def test_a_bounce_reaches_the_xmpp_sender_once(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        alice.send(escaped("bob@example.net"), "Are you there?", subject="Plans")
        assert await wait_until(lambda: gateway.relay.received, timeout=15)
        return_path = gateway.relay.received[0]["mail_from"]
        port = gateway.facteur.smtp_port
        report = delivery_status_notification(return_path, "bob@example.net")
        # A guessed return path is an unknown address.
        forged = return_path.replace("-", "-0", 1)
        assert send_mail(port, "", [forged], report)[0] == 550
        assert send_mail(port, "", [return_path], report) == (250, "2.0.0 Ok: report received")
        notice = await alice.wait_for(lambda m: m["subject"] == "Undelivered mail")
        assert notice["from"] == escaped("bob@example.net")
        assert "Your mail to bob@example.net could not be delivered" in notice["body"], notice["body"]
        assert "5.1.1" in notice["body"] and "User unknown" in notice["body"], notice["body"]
        # The same report again (a remote MTA retrying) tells her nothing new.
        assert send_mail(port, "", [return_path], report)[0] == 250
        await asyncio.sleep(2)
        assert [m["subject"] for m in alice.messages].count("Undelivered mail") == 1
        await alice.disconnect()
    run(scenario())


def test_notices_reach_the_sender_without_waiting_for_the_idle_poll(tmp_path):
    # The runners poll only every ten minutes: a relay's refusal and a
    # later bounce still reach alice at once, since whoever commits a
    # notice wakes the runner that delivers it.
    gateway = Gateway(tmp_path, store='poll_interval = "10m"')
    try:
        gateway.start()

        async def scenario():
            alice = await registered_client(gateway)
            alice.send(escaped("nobody@example.net"), "Is anyone there?", subject="Refused")
            refused = await alice.wait_for(
                lambda m: m["subject"] == "Undelivered mail"
                and m["from"] == escaped("nobody@example.net"), timeout=20)
            assert "550" in refused["body"] and "no such mailbox" in refused["body"], refused

            alice.send(escaped("bob@example.net"), "Are you there?", subject="Plans")
            assert await wait_until(lambda: gateway.relay.received, timeout=20)
            return_path = gateway.relay.received[0]["mail_from"]
            report = delivery_status_notification(return_path, "bob@example.net")
            assert send_mail(gateway.facteur.smtp_port, "", [return_path], report)[0] == 250
            bounced = await alice.wait_for(
                lambda m: m["subject"] == "Undelivered mail"
                and m["from"] == escaped("bob@example.net"), timeout=20)
            assert "5.1.1" in bounced["body"] and "User unknown" in bounced["body"], bounced
            await alice.disconnect()
        run(scenario())
    finally:
        gateway.stop()


def test_mail_accepted_but_undeliverable_gets_one_report(trusting):
    # carol has mail at the gateway but no account on the XMPP server,
    # which refuses the stanza: the vouched-for sender gets a report.
    trusting.facteur.register("carol@example.test")
    raw = mail("News <news@good.test>", "For Carol").replace(b"To: alice@", b"To: carol@")
    code, text = send_mail(trusting.facteur.smtp_port, "news@good.test", ["carol@example.test"], raw)
    assert code == 250, text
    assert run(wait_until(lambda: trusting.relay.received, timeout=20)), trusting.facteur.log_tail()
    report = trusting.relay.received[0]
    assert report["mail_from"] in ("", "<>") and report["rcpt_tos"] == ["news@good.test"]
    message = report["message"]
    assert message.get_content_type() == "multipart/report"
    assert message["Auto-Submitted"] == "auto-replied"
    status = [part for part in message.walk() if part.get_content_type() == "message/delivery-status"]
    text = status[0].as_string() if status else ""
    assert "Final-Recipient: rfc822; carol@example.test" in text, message.as_string()
    assert "Status: 5.1.1" in text and "Action: failed" in text, text
    # A sender its domain does not vouch for gets nothing (no backscatter),
    # nor does the null sender.
    for sender in ("x@spoofed.test", ""):
        raw = mail("x@spoofed.test", f"Spam for Carol {sender}").replace(b"To: alice@", b"To: carol@")
        assert send_mail(trusting.facteur.smtp_port, sender, ["carol@example.test"], raw)[0] == 250
    # A report is queued in the transaction that gives the delivery up:
    # once all three deliveries failed, the queue holds every report owed.
    assert run(wait_until(lambda: trusting.facteur.queue().get(("to_xmpp", "failed")) == 3,
                          timeout=20)), trusting.facteur.queue()
    outgoing = {k: v for k, v in trusting.facteur.queue().items() if k[0] == "to_mail"}
    assert outgoing == {("to_mail", "sent"): 1}, outgoing
    assert len(trusting.relay.received) == 1, [r["rcpt_tos"] for r in trusting.relay.received]
