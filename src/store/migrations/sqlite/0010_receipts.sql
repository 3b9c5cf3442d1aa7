-- XEP-0184 receipts owed for outgoing mail: sent once the recipient's mail
-- server accepts the mail (250 after DATA) or the other XMPP-Mail domain
-- confirms it, then forgotten. Keyed like the queue's own uniqueness, and
-- written before the mail is queued, so that no delivery can outrun it.
CREATE TABLE mail_receipts (
    sender TEXT NOT NULL,                    -- bare JID of the XMPP sender
    message_id TEXT NOT NULL,                -- of the queued mail
    rcpt TEXT NOT NULL,
    stanza_id TEXT NOT NULL,                 -- the id the receipt names
    author_jid TEXT NOT NULL,                -- full JID the receipt goes to
    contact_jid TEXT NOT NULL,               -- the mail contact it comes from
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sender, message_id, rcpt, stanza_id)
);
