"""The administrators' commands, from an XMPP client (XEP-0050 ad-hoc
commands, XEP-0133 for users) and from their `facteur` command-line twins,
against a real Prosody, facteur and relay."""

import subprocess

import pytest
from slixmpp.exceptions import IqError

from peers import GATEWAY, Client, Gateway, escaped, registered_client, run, wait_until

COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"
FORMS = "jabber:x:data"


@pytest.fixture
def gw(tmp_path):
    # Bob administers the gateway; a refused mail waits an hour before
    # its next attempt, unless an administrator says otherwise.
    gateway = Gateway(tmp_path, component='admins = ["bob@example.test"]',
                      retry={"retry_initial": '"1h"', "retry_max": '"2h"'})
    try:
        gateway.start()
        yield gateway
    finally:
        gateway.stop()


def cli(gw, *args):
    out = subprocess.run([gw.facteur.binary, *args[:1], "--config", str(gw.facteur.config),
                          *args[1:]], capture_output=True, text=True, timeout=30)
    return out.returncode, out.stdout, out.stderr


async def execute(client, node, action=None, session=None, fields=None):
    """Runs a command step; returns the <command/> element of the answer."""
    attrs = f"node='{node}'"
    if action:
        attrs += f" action='{action}'"
    if session:
        attrs += f" sessionid='{session}'"
    form = ""
    if fields is not None:
        form = f"<x xmlns='{FORMS}' type='submit'>" + "".join(
            f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in values) + "</field>"
            for var, values in fields.items()) + "</x>"
    answer = await client.iq("set", GATEWAY, f"<command xmlns='{COMMANDS}' {attrs}>{form}</command>")
    return answer.xml.find(f"{{{COMMANDS}}}command")


def values(command, var):
    field = command.find(f"{{{FORMS}}}x/{{{FORMS}}}field[@var='{var}']")
    assert field is not None, f"no field {var}"
    return [v.text or "" for v in field.findall(f"{{{FORMS}}}value")]


def note(command):
    return command.findtext(f"{{{COMMANDS}}}note")


async def refused(client, command_node):
    with pytest.raises(IqError) as raised:
        await execute(client, command_node)
    return raised.value.iq["error"]["condition"]


def test_administrators_run_commands_from_their_client(gw):
    async def scenario():
        alice = await registered_client(gw)
        bob = Client("bob", gw.prosody.c2s)
        await bob.connect()
        try:
            listing = f"<query xmlns='http://jabber.org/protocol/disco#items' node='{COMMANDS}'/>"
            items = (await bob.iq("get", GATEWAY, listing)).xml.iter(
                "{http://jabber.org/protocol/disco#items}item")
            nodes = [item.get("node") for item in items]
            assert nodes == [f"{ADMIN}#add-user", f"{ADMIN}#delete-user",
                             f"{ADMIN}#get-registered-users-list",
                             f"{ADMIN}#get-registered-users-num",
                             "queue-list", "queue-show", "queue-retry", "queue-delete", "stats",
                             "reload", "spam-lists", "spam-check", "openpgp-key", "blocked-senders",
                             "report-spam", "not-spam", "spam-settings"]
            # A user who is no administrator sees the users' own commands only, and
            # runs none of theirs.
            items = (await alice.iq("get", GATEWAY, listing)).xml.iter(
                "{http://jabber.org/protocol/disco#items}item")
            assert [item.get("node") for item in items] == ["openpgp-key", "blocked-senders",
                             "report-spam", "not-spam", "spam-settings"]
            assert await refused(alice, "stats") == "forbidden"

            # Users: bob registers carol... of his own domain only.
            step = await execute(bob, f"{ADMIN}#add-user")
            assert step.get("status") == "executing"
            assert step.find(f"{{{FORMS}}}x/{{{FORMS}}}field[@var='accountjid']") is not None
            done = await execute(bob, f"{ADMIN}#add-user", "complete", step.get("sessionid"),
                                 {"accountjid": ["carol@example.test"]})
            assert done.get("status") == "completed"
            assert note(done) == "Registered carol@example.test."
            assert cli(gw, "users", "list")[1] == "alice@example.test\ncarol@example.test\n"
            with pytest.raises(IqError) as raised:
                await execute(bob, f"{ADMIN}#add-user", "complete", "s",
                              {"accountjid": ["eve@elsewhere.test"]})
            assert raised.value.iq["error"]["condition"] == "bad-request"
            listed = await execute(bob, f"{ADMIN}#get-registered-users-list")
            assert values(listed, "registereduserjids") == ["alice@example.test", "carol@example.test"]

            # The queue: two mails the relay refuses wait an hour.
            gw.relay.refusing = True
            alice.send(escaped("dave@example.net"), "First", subject="Retry me")
            alice.send(escaped("erin@example.net"), "Second", subject="Delete me")
            assert await wait_until(lambda: len(gw.relay.refused) >= 2)
            assert await wait_until(lambda: gw.facteur.queue().get(("to_mail", "queued")) == 2)
            listed = await execute(bob, "queue-list")
            lines = values(listed, "items")
            assert lines == cli(gw, "queue", "list")[1].splitlines()
            assert len(lines) == 2
            assert all(" queued " in line and " attempts=1 " in line
                       and line.endswith("(451): 4.3.0 Try again later") for line in lines), lines
            [retry_id] = [line.split()[0] for line in lines
                          if " alice@example.test -> dave@example.net " in line]
            [delete_id] = [line.split()[0] for line in lines
                           if " alice@example.test -> erin@example.net " in line]

            shown = await execute(bob, "queue-show", fields={"item": [retry_id]})
            assert values(shown, "subject") == ["Retry me"]
            code, out, _ = cli(gw, "queue", "show", delete_id)
            assert code == 0 and "Subject: Delete me\n" in out and "State: queued\n" in out

            # Retry now from the client: it leaves at once, not in an hour.
            gw.relay.refusing = False
            done = await execute(bob, "queue-retry", fields={"item": [retry_id]})
            assert note(done) == f"{retry_id} is due now."
            assert await wait_until(lambda: len(gw.relay.received) == 1, timeout=10)
            assert gw.relay.received[0]["rcpt_tos"] == ["dave@example.net"]

            # Delete from the command line: it never leaves.
            assert cli(gw, "queue", "delete", delete_id)[1] == f"{delete_id} is deleted\n"
            code, _, err = cli(gw, "queue", "retry", delete_id)
            assert code == 1 and f"{delete_id} is not waiting in the queue" in err
            with pytest.raises(IqError) as raised:
                await execute(bob, "queue-delete", fields={"item": [delete_id]})
            assert raised.value.iq["error"]["condition"] == "item-not-found"
            assert gw.facteur.queue() == {("to_mail", "sent"): 1, ("to_mail", "failed"): 1}

            stats = await execute(bob, "stats")
            assert values(stats, "users") == ["2"]
            assert values(stats, "to_mail.failed") == ["1"]
            assert cli(gw, "stats")[1].splitlines()[:3] == [
                "users 2", "to_mail.failed 1", "to_mail.sent 1"]
        finally:
            await alice.disconnect()
            await bob.disconnect()
        assert len(gw.relay.received) == 1

    run(scenario())
