-- Every mail a user got or sent, as both sides know it: what a client
-- quotes (stanza id, <thread>) and what a mail client quotes
-- (Message-ID, References). Replies are threaded from it both ways.
-- `rowid` is the insertion order that SQLite keeps on its own.
CREATE TABLE messages (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    user_jid TEXT NOT NULL,                  -- the served user
    message_id TEXT NOT NULL,                -- without angle brackets
    peer_jid TEXT NOT NULL,                  -- the correspondent's JID
    stanza_id TEXT NOT NULL,                 -- the id the user's client knows
    author_jid TEXT NOT NULL,                -- who wrote it
    thread TEXT NOT NULL,
    refs TEXT NOT NULL DEFAULT '',           -- References, space-separated, oldest first
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_jid, message_id)
);
CREATE INDEX messages_by_stanza ON messages (user_jid, stanza_id);
CREATE INDEX messages_by_thread ON messages (user_jid, thread, created_at);
