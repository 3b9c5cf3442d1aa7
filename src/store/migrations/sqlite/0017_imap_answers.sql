-- The mails taken from IMAP, by the id of the stanza the user's client
-- knows each by (derived from its Message-ID): where each lives on the
-- server, so that the client's displayed marker (or receipt) sets \Seen
-- on it there.
CREATE TABLE imap_messages (
    user_jid TEXT NOT NULL,
    stanza_id TEXT NOT NULL,
    message_id TEXT NOT NULL,                -- without angle brackets
    mailbox_id INTEGER NOT NULL REFERENCES imap_mailboxes (id) ON DELETE CASCADE,
    folder TEXT NOT NULL,
    uid_validity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0,         -- 0 not read here, 1 to set on the server, 2 set
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_jid, stanza_id)
);

CREATE INDEX imap_messages_to_set ON imap_messages (mailbox_id) WHERE seen = 1;
