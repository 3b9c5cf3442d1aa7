-- Prosody 0.12: tell facteur of users' blocks and spam reports of mail
-- senders (README, "Spam"). Install mod_mail_feedback.lua in a folder of
-- plugin_paths, merge these lines into prosody.cfg.lua beside the
-- component of deploy/prosody-component.cfg.lua, and reload Prosody.

plugin_paths = { "/usr/local/lib/facteur/prosody" }

VirtualHost "example.org"
    -- mod_blocklist answers the users' XEP-0191 blocks (Prosody enables it
    -- by default); mod_mail_feedback forwards those of mail senders.
    -- Prosody adds a VirtualHost's modules to the global ones. Repeat in
    -- each served domain's VirtualHost.
    modules_enabled = { "blocklist"; "mail_feedback" }
    -- The gateway's component JID: blocks of its JIDs are forwarded to it.
    mail_feedback_gateway = "mail.example.org"

    -- Optional, with prosody-modules' mod_privilege (XEP-0356): let the
    -- gateway read users' blocklists itself, at registration and once a
    -- day ([spam] blocklist_max_age), which also covers blocks made
    -- before a user registered. Add "privilege" to both modules_enabled
    -- lists (here and in the Component section), and merge this grant
    -- with the one of deploy/prosody-component.cfg.lua:
    --   privileged_entities = {
    --       ["mail.example.org"] = { message = "outgoing"; iq = { ["urn:xmpp:blocking"] = "get" } };
    --   }
