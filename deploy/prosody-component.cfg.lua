-- facteur as a component of Prosody (0.12 or later).
-- Add this to prosody.cfg.lua, beside the VirtualHost of the domain whose
-- users get mail (here example.org), and reload Prosody.

-- Prosody listens for components on 127.0.0.1:5347 by default; facteur's
-- [component] server must point there. Keep the port off the internet.
component_ports = { 5347 }
component_interface = "127.0.0.1"

VirtualHost "example.org"
    -- XMPP-Mail between domains (doc/xmpp-mail.md): other domains find
    -- the gateway in this domain's disco#items, and check there that mail
    -- handed to them in the name of alice@example.org comes from a gateway
    -- example.org vouches for. Prosody lists a component named as a
    -- subdomain (mail.example.org under example.org) by itself, so nothing
    -- is needed for this domain; facteur warns at start when a served
    -- domain does not list it. Every other domain of facteur's
    -- [mail] domains needs it listed in its own VirtualHost, say:
    --   VirtualHost "example.net"
    --       disco_items = { { "mail.example.org", "Mail gateway" } }
    -- (Adding it here too would only list it twice.)

    -- XEP-0356 message permission: facteur then sends mail to a user of
    -- another XMPP-Mail domain as alice's own chat message, from
    -- alice@example.org, and her correspondent answers her directly.
    -- Without it, such mail is handed from gateway to gateway and
    -- answers come back through mail contacts (bob\40example.net@…).
    -- mod_privilege comes with prosody-modules (Debian: apt install
    -- prosody-modules; otherwise put it in plugin_paths). Grant only
    -- "outgoing" messages: facteur needs neither rosters nor presence.
    -- The grant is per VirtualHost: repeat both lines in each served
    -- domain's VirtualHost.
    modules_enabled = { "privilege" }
    privileged_entities = {
        ["mail.example.org"] = { message = "outgoing" };
    }
    -- Optional: users' XEP-0373 public-key PEP nodes that are not open to
    -- anyone are read by facteur only with IQ permission "get" on the
    -- pubsub namespace (it reads nothing else there):
    --     ["mail.example.org"] = { message = "outgoing",
    --         iq = { ["http://jabber.org/protocol/pubsub"] = "get" } };

Component "mail.example.org"
    -- The same secret as facteur's [component] secret / secret_file.
    component_secret = "a long random secret"
    -- The name other domains' clients show for the disco item.
    name = "Mail gateway"
    -- mod_privilege must run on the component too: it tells facteur what
    -- it was granted right after the handshake.
    modules_enabled = { "privilege" }
    -- Prosody closes a component stream that sends one stanza over 512 KiB.
    -- facteur keeps each message body under 256 KiB, and takes handed-off
    -- mail up to [xmpp_mail] max_size (256 KiB by default), so the default
    -- is enough.
    -- component_stanza_size_limit = 1024 * 512

-- Users keep mail that arrives while they are offline: mod_offline is on
-- in Prosody's default configuration; do not disable it, or turn on
-- mod_mam so that clients can fetch what they missed.
