-- The OpenPGP key each user publishes (src/keys), as served by WKD and the
-- key IQ: checked and minimised before it is stored, one per user; a new
-- key or a revocation of this one replaces it.
CREATE TABLE openpgp_keys (
    jid TEXT PRIMARY KEY,                    -- the user's bare JID, her address
    domain TEXT NOT NULL,                    -- the JID's domain, for WKD
    wkd_hash TEXT NOT NULL,                  -- z-base-32 SHA-1 of the local part, lower-cased
    fingerprint TEXT NOT NULL,               -- of the primary key, upper-case hex
    cert BLOB NOT NULL,                      -- the minimised certificate, binary
    revoked INTEGER NOT NULL DEFAULT 0,      -- a revocation of the key published before
    source TEXT NOT NULL,                    -- command, iq or cli: how it was published
    updated_at INTEGER NOT NULL
);
CREATE INDEX openpgp_keys_wkd ON openpgp_keys (domain, wkd_hash);
