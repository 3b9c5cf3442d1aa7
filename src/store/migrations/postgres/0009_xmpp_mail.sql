-- XMPP-Mail between domains (doc/xmpp-mail.md).

-- How an outgoing mail goes: '' not decided yet, 'smtp' or 'xmpp'. A mail
-- that has gone one way never goes the other, except back to SMTP when
-- the XMPP side reports a temporary failure (nothing was delivered).
ALTER TABLE to_mail ADD COLUMN route TEXT NOT NULL DEFAULT '';
-- The mail as an XMPP message (XML of a jabber:client <message> without
-- from and to), kept for mail to domains facteur does not serve; '' when
-- it can only go by SMTP.
ALTER TABLE to_mail ADD COLUMN stanza TEXT NOT NULL DEFAULT '';

-- What other domains answered, kept for the answer's ttl: per domain its
-- gateway or none ('domain'), per recipient accept/reject/unknown
-- ('rcpt'), and whether a domain lists a gateway that handed mail over
-- ('lists', subject 'domain gateway').
-- `rowid`, here and in handoffs, is the row number SQLite keeps on its own.
CREATE TABLE xmpp_mail_answers (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    kind TEXT NOT NULL,                      -- domain | rcpt | lists
    subject TEXT NOT NULL,                   -- a domain, a bare JID, or 'domain gateway'
    status TEXT NOT NULL,                    -- gateway | none | accept | reject | unknown | listed | unlisted
    gateway TEXT NOT NULL DEFAULT '',        -- the gateway's JID
    max_size BIGINT NOT NULL DEFAULT 0,     -- largest stanza the gateway takes
    handoff BIGINT NOT NULL DEFAULT 0,      -- 1: the peer's gateway wrote by handoff; answer the same way
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX xmpp_mail_answers_by_age ON xmpp_mail_answers (expires_at);

-- Handoffs taken from other gateways: one mail per author, Message-ID and
-- recipient, whatever the other side sends again.
CREATE TABLE handoffs (
    rowid BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    author TEXT NOT NULL,
    message_id TEXT NOT NULL,
    rcpt TEXT NOT NULL,
    mail_id BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (author, message_id, rcpt)
);
CREATE INDEX handoffs_by_age ON handoffs (received_at);

-- Users told that a correspondent reads mail over XMPP (once each).
CREATE TABLE xmpp_mail_told (
    "user" TEXT NOT NULL,
    peer TEXT NOT NULL,
    PRIMARY KEY ("user", peer)
);
