-- Per-user option, off by default: mail an RFC 8098 MDN when the user's
-- client marks displayed a mail that asked for one.
ALTER TABLE users ADD COLUMN send_mdn INTEGER NOT NULL DEFAULT 0;

-- Read notifications asked for by inbound mail (Disposition-Notification-To),
-- by the stanza id the user's client knows the mail by; taken when the MDN
-- is queued, so that it is sent once.
CREATE TABLE mdn_requests (
    user_jid TEXT NOT NULL,                  -- the served user, who got the mail
    stanza_id TEXT NOT NULL,                 -- the id the user's client knows
    peer_jid TEXT NOT NULL,                  -- the correspondent's JID
    message_id TEXT NOT NULL,                -- of the mail, without angle brackets
    subject TEXT NOT NULL,
    notify_to TEXT NOT NULL,                 -- the Disposition-Notification-To address
    final_recipient TEXT NOT NULL,           -- the user's address the mail came to
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_jid, stanza_id)
);

-- XEP-0184 receipts queued for delivery to XMPP (when a positive delivery
-- report arrives by SMTP): the full JID and the id the receipt names;
-- NULL for mail and notices.
ALTER TABLE to_xmpp ADD COLUMN receipt_to TEXT;
ALTER TABLE to_xmpp ADD COLUMN receipt_id TEXT;
