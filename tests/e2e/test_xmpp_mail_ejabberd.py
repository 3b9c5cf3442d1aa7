"""XMPP-Mail (doc/xmpp-mail.md) from a domain served by ejabberd 23.01 to
one served by Prosody, joined by a real server-to-server link: ejabberd
grants facteur XEP-0356 message permission in its older namespace
(`urn:xmpp:privilege:1`) through deploy/ejabberd-component.yml as shipped,
facteur takes the grant, and ejabberd sends the author's own message that
facteur wraps on to the other domain. The network is xmpp_mail_net.py's,
with ejabberd as server A."""

import asyncio

import pytest

from peers import escaped, run
from xmpp_mail_net import MailNet


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = MailNet(tmp_path_factory.mktemp("xmpp-mail-ejabberd"), a_server="ejabberd")
    try:
        network.start()
        yield network
    finally:
        network.stop()


def test_ejabberd_grants_message_permission_in_its_older_namespace(net):
    """The shipped snippet grants mail.a.test `message outgoing` and
    nothing else; facteur-a reads the grant, and ejabberd lists the gateway
    in a.test's disco#items by itself (no warning)."""
    assert net.grants["mail.a.test"] == {"message": "outgoing", "roster": "none", "presence": "none"}, net.grants
    net.a.wait_log("Privileges announced.", timeout=5)
    announced = [line for line in net.a.log_since_start().splitlines() if "Privileges announced." in line]
    assert any('outgoing_messages=Some("urn:xmpp:privilege:1")' in line for line in announced), announced
    net.a.wait_log("The served domain lists the gateway.", timeout=10)
    assert "does not list the gateway" not in net.a.log_since_start()


def test_mail_from_ejabberd_arrives_at_prosody_as_the_authors_own_message(net):
    """alice@a.test (ejabberd) writes to bob@b.test (Prosody) through her
    mail contact: facteur-a probes b.test, then hands ejabberd alice's own
    message in a privilege:1 wrapper; ejabberd sends it over s2s, and bob
    gets it from alice@a.test. His answer to that JID reaches her
    directly."""
    async def scenario():
        alice = await net.client("alice", "a.test")
        bob = await net.client("bob", "b.test")
        contact = escaped("bob@b.test", "mail.a.test")
        alice.send(contact, "Shall we meet at noon?", subject="Lunch")
        got = await bob.wait_for(lambda m: m["body"] == "Shall we meet at noon?", timeout=30)
        assert got["from"] == "alice@a.test", got["xml"]
        assert got["type"] == "chat" and got["subject"] == "Lunch" and got["thread"], got["xml"]
        assert got["mail"] is not None and got["mail"].get("message-id"), got["xml"]
        notice = await alice.wait_for(lambda m: m["from"] == contact and "reads mail over XMPP" in (m["body"] or ""))
        assert notice["body"] == "bob@b.test reads mail over XMPP: you can write to bob@b.test directly."
        assert 'route="xmpp" reason="privilege"' in net.a.log_since_start()
        # The message crossed a server-to-server link that ejabberd set up.
        assert ("Incoming", "a.test", "b.test") in net.s2s_links("b"), net.s2s_links("b")
        assert not any(sink.received for sink in net.sinks.values())

        bob.send("alice@a.test", "Noon is fine.")
        answer = await alice.wait_for(lambda m: m["body"] == "Noon is fine.", timeout=30)
        assert answer["from"].startswith("bob@b.test"), answer["xml"]
        await asyncio.sleep(1)
        assert [m["from"] for m in bob.messages if m["body"] == "Shall we meet at noon?"] == ["alice@a.test"]
        await alice.disconnect()
        await bob.disconnect()
    run(scenario())
