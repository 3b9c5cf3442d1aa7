-- Each user's spam thresholds, in points (facteur_policy::spam::Thresholds;
-- 0 turns a verdict off).
ALTER TABLE users ADD COLUMN spam_mark DOUBLE PRECISION NOT NULL DEFAULT 5;
ALTER TABLE users ADD COLUMN spam_quarantine DOUBLE PRECISION NOT NULL DEFAULT 10;
ALTER TABLE users ADD COLUMN spam_reject DOUBLE PRECISION NOT NULL DEFAULT 15;

-- The Bayesian models: the global one (owner '') trained by the operator
-- with facteur spam train, and each user's own counts, trained by her
-- feedback. The model is facteur_policy::bayes::Model::to_bytes; version
-- grows with each change, so that instances reload what another changed.
CREATE TABLE spam_models (
    owner TEXT NOT NULL PRIMARY KEY,         -- '' or the user's bare JID
    model BYTEA NOT NULL,
    feedbacks BIGINT NOT NULL DEFAULT 0,          -- spam and ham feedback learnt
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Recent inbound mail per recipient, with its hashed tokens: what "Report
-- spam" offers, and what feedback on a mail trains the models with after
-- the mail itself is gone. Kept [spam] held_for.
CREATE TABLE spam_recent (
    id BIGSERIAL PRIMARY KEY,
    user_jid TEXT NOT NULL,
    mail_id BIGINT NOT NULL,
    message_id TEXT NOT NULL,                -- the Message-ID, or ''
    sender TEXT NOT NULL,                    -- the reverse path, lower case
    client_ip TEXT NOT NULL,
    subject TEXT NOT NULL,
    tokens BYTEA NOT NULL,                      -- sorted u64 hashes, little-endian
    score DOUBLE PRECISION NOT NULL,
    verdict TEXT NOT NULL,                   -- deliver, mark or quarantine
    trained TEXT NOT NULL DEFAULT '',        -- '', spam or ham: what the user's model learnt from it
    received_at BIGINT NOT NULL
);
CREATE INDEX spam_recent_by_user ON spam_recent (user_jid, received_at);
CREATE INDEX spam_recent_by_message ON spam_recent (user_jid, message_id);

-- Mail held in quarantine for a user: stored (inbound_mail keeps its
-- bytes while a row names it), not delivered until released.
CREATE TABLE spam_held (
    id BIGSERIAL PRIMARY KEY,
    recent_id BIGINT NOT NULL,                    -- spam_recent.id
    user_jid TEXT NOT NULL,
    mail_id BIGINT NOT NULL,
    held_at BIGINT NOT NULL,
    digested BIGINT NOT NULL DEFAULT 0            -- named in a digest already
);
CREATE INDEX spam_held_by_user ON spam_held (user_jid, held_at);
CREATE INDEX spam_held_by_mail ON spam_held (mail_id);

-- Marked mail carries its score to the stanza: "POINTS REASONS".
ALTER TABLE to_xmpp ADD COLUMN spam TEXT;

-- What each spam report named, for lists shared with other servers: the
-- sender's domain and the client IP beside the address.
ALTER TABLE spam_reports ADD COLUMN sender_domain TEXT NOT NULL DEFAULT '';
ALTER TABLE spam_reports ADD COLUMN client_ip TEXT NOT NULL DEFAULT '';
