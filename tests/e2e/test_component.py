"""What the component says about itself and its contacts, through a real
Prosody: service discovery, version, and the vCards it answers."""

from peers import GATEWAY, escaped, registered_client, run

DISCO_INFO = "{http://jabber.org/protocol/disco#info}"


def test_disco_info_lists_what_the_gateway_does(gateway):
    async def scenario():
        alice = await registered_client(gateway)
        info = await alice.iq("get", GATEWAY, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        assert info["type"] == "result", info
        identity = info.xml.find(f".//{DISCO_INFO}identity")
        assert (identity.get("category"), identity.get("type")) == ("gateway", "smtp")
        features = {f.get("var") for f in info.xml.iter(f"{DISCO_INFO}feature")}
        # It answers vCards of contacts and sends receipts for queued mail.
        assert {"vcard-temp", "urn:xmpp:receipts", "jabber:iq:register",
                "jabber:iq:gateway", "urn:xmpp:ping"} <= features, features

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
