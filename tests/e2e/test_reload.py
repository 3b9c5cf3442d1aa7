"""Reloading the configuration of a running facteur, as an operator does
it: edit the file, then SIGHUP (`systemctl reload facteur`) or the
administrators' ad-hoc command `reload` from a real XMPP client. A file
that passes every check is put in force at once, restart-only keys keep
their running value, and a file with a problem changes nothing."""

import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest
import test_operations
from slixmpp.exceptions import IqError
from peers import GATEWAY, Client, Gateway, free_port, registered_client, run, send_mail

COMMANDS = "http://jabber.org/protocol/commands"

# About 10 kB: under the 200000 bytes the gateway starts with, over the
# 4096 the edited file allows.
MAIL = (b"From: bob@example.net\r\nTo: alice@example.test\r\nSubject: Big\r\n\r\n"
        + b"0123456789abcdef" * 640 + b"\r\n")


def edit(gateway, old, new):
    """Rewrites one line of the gateway's configuration file."""
    text = gateway.facteur.config.read_text()
    assert old in text, old
    gateway.facteur.config.write_text(text.replace(old, new, 1))


def sighup(gateway, outcome):
    """Sends SIGHUP; waits for `outcome` in the log written after it.
    Returns the log of the reload."""
    since = gateway.facteur.log_size()
    gateway.facteur.proc.send_signal(signal.SIGHUP)
    gateway.facteur.wait_log(outcome, since=since)
    with open(gateway.facteur.logfile, "rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace")


def mail_with_size(port, size):
    """The reply to MAIL FROM with a SIZE parameter (RFC 1870)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
        smtp.ehlo("client.example.net")
        code, text = smtp.mail("bob@example.net", options=[f"SIZE={size}"])
        return code, text.decode()


def wait_datagrams(notify, count, timeout=10.0):
    """Reads the notification socket until `count` datagrams arrived."""
    deadline = time.monotonic() + timeout
    while len(notify.received) < count:
        left = deadline - time.monotonic()
        assert left > 0, notify.received
        notify.sock.settimeout(left)
        try:
            notify.received.append(notify.sock.recv(4096).decode())
        except socket.timeout:
            pass


def send_big(gateway):
    return send_mail(gateway.facteur.smtp_port, "bob@example.net", ["alice@example.test"], MAIL)


def test_sighup_applies_a_lowered_size_limit_and_refuses_a_bad_file_whole(tmp_path):
    gateway = Gateway(tmp_path)
    notify = test_operations.NotifySocket(tmp_path / "notify")
    gateway.facteur.env = {"NOTIFY_SOCKET": notify.path}
    try:
        gateway.start()
        gateway.facteur.register("alice@example.test")
        ready = notify.wait_for("READY=1", timeout=20)
        assert send_big(gateway)[0] == 250

        # A file with two problems, and a valid change beside them: refused
        # whole, each problem logged; the old limits stay, all of them.
        edit(gateway, "max_message_size = 200000", "max_message_size = 4096\nmax_recipients = 0")
        edit(gateway, 'idle_timeout = "30s"', 'idle_timeout = "soon"')
        log = sighup(gateway, "Reload refused; the running configuration stays.")
        assert "inbound.max_recipients: must be at least 1" in log, log
        assert 'inbound.idle_timeout: "soon" does not start with a number' in log, log
        assert log.count("Configuration refused.") == 2, log
        assert "Configuration reloaded." not in log, log
        assert send_big(gateway)[0] == 250
        assert mail_with_size(gateway.facteur.smtp_port, 10000)[0] == 250

        # Fixed: the lower limit is in force for the next client, at MAIL
        # FROM (SIZE=) and at the end of DATA alike.
        edit(gateway, "max_recipients = 0", "max_recipients = 100")
        edit(gateway, 'idle_timeout = "soon"', 'idle_timeout = "30s"')
        log = sighup(gateway, "Configuration reloaded.")
        assert 'applied=["inbound.max_message_size"]' in log, log
        assert "needs a restart" not in log, log
        assert mail_with_size(gateway.facteur.smtp_port, 10000) == (
            552, "5.3.4 Message size exceeds fixed maximum message size")
        assert send_big(gateway) == (552, "5.3.4 Message size exceeds fixed maximum message size")
        with smtplib.SMTP("127.0.0.1", gateway.facteur.smtp_port, timeout=15) as smtp:
            smtp.ehlo("client.example.net")
            assert smtp.esmtp_features["size"] == "4096"

        # systemd heard of each reload, refused or not: RELOADING=1 with
        # the monotonic time, then READY=1 again.
        wait_datagrams(notify, ready + 5)
        told = notify.received[ready + 1:]
        assert [d.splitlines()[0] for d in told] == [
            "RELOADING=1", "READY=1", "RELOADING=1", "READY=1"], told
        for reloading, done in (told[0:2], told[2:4]):
            assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC="), reloading
            assert int(reloading.splitlines()[1].split("=")[1]) > 0, reloading
            assert done == "READY=1\nSTATUS=Serving\n", done
    finally:
        gateway.stop()
        notify.close()


def test_a_restart_only_key_is_named_and_kept(tmp_path):
    gateway = Gateway(tmp_path)
    try:
        gateway.start()
        gateway.facteur.register("alice@example.test")
        old_port = gateway.facteur.smtp_port
        new_port = free_port()
        edit(gateway, f'listen = ["127.0.0.1:{old_port}"]', f'listen = ["127.0.0.1:{new_port}"]')
        edit(gateway, 'hostname = "mx.example.test"', 'hostname = "mx2.example.test"')
        edit(gateway, "max_message_size = 200000", "max_message_size = 4096")
        log = sighup(gateway, "Configuration reloaded.")
        warnings = [line for line in log.splitlines()
                    if "Changed key needs a restart; its running value stays." in line]
        # outbound.hostname follows inbound.hostname when not set.
        assert [w.split("key=")[1] for w in warnings] == [
            '"inbound.listen"', '"inbound.hostname"', '"outbound.hostname"'], log
        assert 'applied=["inbound.max_message_size"]' in log, log
        # Still on the old port, under the old name; nothing on the new one.
        with smtplib.SMTP("127.0.0.1", old_port, timeout=15) as smtp:
            code, greeting = smtp.ehlo("client.example.net")
            assert code == 250 and greeting.decode().startswith("mx.example.test"), greeting
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", new_port)) != 0
        # The reloadable key beside them is in force.
        assert send_big(gateway)[0] == 552
    finally:
        gateway.stop()


def test_an_administrator_reloads_from_the_client(tmp_path):
    gateway = Gateway(tmp_path, component='admins = ["bob@example.test"]')

    async def reload(client):
        answer = await client.iq("set", GATEWAY,
                                 f"<command xmlns='{COMMANDS}' node='reload' action='execute'/>")
        command = answer.xml.find(f"{{{COMMANDS}}}command")
        assert command.get("status") == "completed"
        note = command.find(f"{{{COMMANDS}}}note")
        return note.get("type"), note.text

    async def scenario():
        alice = await registered_client(gateway)
        bob = Client("bob", gateway.prosody.c2s)
        await bob.connect()
        try:
            listing = f"<query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/>"
            items = (await bob.iq("get", GATEWAY, listing)).xml.iter(
                "{http://jabber.org/protocol/disco#items}item")
            assert ("reload", "Reload the configuration") in [
                (i.get("node"), i.get("name")) for i in items]
            # Alice is no administrator: she may not reload.
            with pytest.raises(IqError) as raised:
                await alice.iq("set", GATEWAY, f"<command xmlns='{COMMANDS}' node='reload'/>")
            assert raised.value.iq["error"]["condition"] == "forbidden"
            assert send_big(gateway)[0] == 250

            edit(gateway, "max_message_size = 200000", "max_message_size = 4096")
            edit(gateway, 'ping_interval = "2s"', 'ping_interval = "3s"')
            since = gateway.facteur.log_size()
            kind, text = await reload(bob)
            assert kind == "warn", text
            assert text == (
                "Configuration reloaded. Now in force: inbound.max_message_size.\n"
                "Changed, but only a restart applies them (the running values stay): "
                "component.ping_interval."), text
            gateway.facteur.wait_log("Configuration reloaded.", since=since)
            gateway.facteur.wait_log('by="ad-hoc command from bob@example.test/', since=since)
            assert send_big(gateway) == (552, "5.3.4 Message size exceeds fixed maximum message size")

            # Bob takes his own administrator rights away: in force at once.
            edit(gateway, 'admins = ["bob@example.test"]', "admins = []")
            edit(gateway, "max_message_size = 4096", "max_message_size = 0")
            kind, text = await reload(bob)
            assert kind == "error", text
            assert text == ("Configuration refused; the running one stays, unchanged. "
                            "1 problem(s):\n- inbound.max_message_size: must be at least 1024 bytes"
                            ), text
            edit(gateway, "max_message_size = 0", "max_message_size = 4096")
            kind, text = await reload(bob)
            # The changed restart-only key is named at every reload until
            # a restart.
            assert (kind, text) == (
                "warn", "Configuration reloaded. Now in force: component.admins.\n"
                "Changed, but only a restart applies them (the running values stay): "
                "component.ping_interval."), text
            # He keeps the commands every user has.
            items = (await bob.iq("get", GATEWAY, listing)).xml.iter(
                "{http://jabber.org/protocol/disco#items}item")
            assert [item.get("node") for item in items] == ["openpgp-key", "blocked-senders",
                             "report-spam", "not-spam", "spam-settings"]
        finally:
            await alice.disconnect()
            await bob.disconnect()

    try:
        gateway.start()
        run(scenario())
    finally:
        gateway.stop()


def certificate(directory, name):
    """A self-signed certificate for `name` and its key, as PEM files."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def served_certificate(port):
    """The certificate facteur shows after STARTTLS, as DER."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=15) as smtp:
        smtp.ehlo("client.example.net")
        smtp.starttls(context=context)
        return smtp.sock.getpeercert(binary_form=True)


def der(cert):
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


def test_a_renewed_certificate_is_served_after_a_reload(tmp_path):
    tls = tmp_path / "tls"
    tls.mkdir()
    old_cert, old_key = certificate(tls, "old.example.test")
    new_cert, new_key = certificate(tls, "new.example.test")
    cert, key = tls / "fullchain.pem", tls / "privkey.pem"
    cert.write_bytes(old_cert.read_bytes())
    key.write_bytes(old_key.read_bytes())
    gateway = Gateway(tmp_path, tls_cert=f'"{cert}"', tls_key=f'"{key}"')
    try:
        gateway.start()
        port = gateway.facteur.smtp_port
        assert served_certificate(port) == der(old_cert)

        # Renewed in place, but the key does not match yet: refused, the
        # old certificate is still served.
        cert.write_bytes(new_cert.read_bytes())
        log = sighup(gateway, "Reload refused; the running configuration stays.")
        assert "TLS certificate and key do not match" in log, log
        assert served_certificate(port) == der(old_cert)

        # Both renewed: the same paths, the new certificate.
        key.write_bytes(new_key.read_bytes())
        log = sighup(gateway, "Configuration reloaded.")
        assert "applied=[]" in log, log
        assert served_certificate(port) == der(new_cert)
    finally:
        gateway.stop()
