-- Users, correspondents and the two durable queues of facteur.
-- Times are Unix milliseconds.

CREATE TABLE users (
    jid TEXT PRIMARY KEY NOT NULL,           -- bare JID of a registered user
    registered_at INTEGER NOT NULL
);

CREATE TABLE contacts (
    jid TEXT PRIMARY KEY NOT NULL,           -- escaped JID, as nodeprep left it
    address TEXT NOT NULL,                   -- the mail address in its original case
    display_name TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
);

CREATE TABLE inbound_mail (
    id INTEGER PRIMARY KEY,
    mail_from TEXT NOT NULL,                 -- envelope sender; '' for the null sender
    client_ip TEXT NOT NULL,
    raw BLOB NOT NULL,                       -- with facteur's Received: header
    received_at INTEGER NOT NULL
);

-- Stanzas owed to XMPP users: one row per recipient of an inbound mail,
-- and notices (mail_id NULL) about outgoing mail that failed.
CREATE TABLE to_xmpp (
    id INTEGER PRIMARY KEY,
    mail_id INTEGER REFERENCES inbound_mail(id),
    recipient TEXT NOT NULL,                 -- bare JID of the user
    notice_from TEXT NOT NULL DEFAULT '',    -- notices: the JID they come from
    notice_subject TEXT NOT NULL DEFAULT '',
    notice_body TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL DEFAULT 'pending',   -- pending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX to_xmpp_due ON to_xmpp (state, next_attempt_at);

-- Mail owed to SMTP peers: one row per outgoing message and recipient.
CREATE TABLE to_mail (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,                    -- bare JID of the XMPP sender
    mail_from TEXT NOT NULL,                 -- envelope sender
    rcpt TEXT NOT NULL,
    message_id TEXT NOT NULL,
    raw BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'queued',    -- queued | sent | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX to_mail_due ON to_mail (state, next_attempt_at);
