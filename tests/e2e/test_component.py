"""What the component says about itself and its contacts, through a real
Prosody: service discovery, version, and the vCards it answers."""

import slixmpp

from peers import DOMAIN, GATEWAY, escaped, registered_client, run

DISCO_INFO = "{http://jabber.org/protocol/disco#info}"


def test_disco_info_lists_what_the_gateway_does(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        info = await alice.iq("get", GATEWAY, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        assert info["type"] == "result", info
        identity = info.xml.find(f".//{DISCO_INFO}identity")
        assert (identity.get("category"), identity.get("type")) == ("gateway", "smtp")
        features = {f.get("var") for f in info.xml.iter(f"{DISCO_INFO}feature")}
        # It answers vCards of contacts and sends receipts for delivered mail.
        assert {"vcard-temp", "urn:xmpp:receipts", "jabber:iq:register",
                "jabber:iq:gateway", "urn:xmpp:ping", "urn:xmpp:mail:0"} <= features, features

        version = await alice.iq("get", GATEWAY, "<query xmlns='jabber:iq:version'/>")
        assert version.xml.find(".//{jabber:iq:version}name").text == "facteur"

        contact = escaped("bob@example.net")
        info = await alice.iq("get", contact, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        features = {f.get("var") for f in info.xml.iter(f"{DISCO_INFO}feature")}
        assert "vcard-temp" in features, features
        vcard = await alice.iq("get", contact, "<vCard xmlns='vcard-temp'/>")
        assert vcard.xml.find(".//{vcard-temp}USERID").text == "bob@example.net"
        await alice.disconnect()
    run(scenario())


def test_xmpp_mail_probes_are_for_other_domains_and_the_domain_lists_the_gateway(gateway):
    """A user of a served domain is no other domain's gateway: her probe is
    refused, through the intake. At link-up facteur found itself in its
    served domain's disco#items (Prosody lists subdomain components)."""
    async def scenario():
        alice = await registered_client(gateway)
        probe = "<probe xmlns='urn:xmpp:mail:0'><rcpt jid='alice@example.test'/></probe>"
        try:
            answer = await alice.iq("get", GATEWAY, probe)
            raise AssertionError(f"a probe from a served domain was answered: {answer}")
        except slixmpp.exceptions.IqError as refused:
            error = refused.iq.xml.find("{jabber:client}error")
            assert error.get("type") == "cancel", refused.iq
            assert error.find("{urn:ietf:params:xml:ns:xmpp-stanzas}not-allowed") is not None, refused.iq
        await alice.disconnect()
    run(scenario())
    gateway.facteur.wait_log(f"The served domain lists the gateway. domain={DOMAIN}")
    assert "does not list the gateway" not in gateway.facteur.log_since_start()
