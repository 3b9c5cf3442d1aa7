-- facteur as a component of Prosody (0.12 or later).
-- Add this to prosody.cfg.lua, beside the VirtualHost of the domain whose
-- users get mail (here example.org), and reload Prosody.

-- Prosody listens for components on 127.0.0.1:5347 by default; facteur's
-- [component] server must point there. Keep the port off the internet.
component_ports = { 5347 }
component_interface = "127.0.0.1"

Component "mail.example.org"
    -- The same secret as facteur's [component] secret / secret_file.
    component_secret = "a long random secret"
    -- Prosody closes a component stream that sends one stanza over 512 KiB.
    -- facteur keeps each message body under 256 KiB, so the default is enough.
    -- component_stanza_size_limit = 1024 * 512

-- Users keep mail that arrives while they are offline: mod_offline is on
-- in Prosody's default configuration; do not disable it, or turn on
-- mod_mam so that clients can fetch what they missed.
