-- Keys of others found before sending (src/keys/finder.rs): by the key IQ
-- of the recipient's gateway or by WKD. A lookup that found nothing is
-- kept too (an empty cert), so that it is not asked again before it expires.
CREATE TABLE openpgp_key_cache (
    addr TEXT PRIMARY KEY,                   -- the recipient's address, lower-cased
    source TEXT NOT NULL,                    -- iq, wkd-advanced, wkd-direct or none
    fingerprint TEXT NOT NULL DEFAULT '',    -- of the primary key, upper-case hex
    cert BYTEA NOT NULL,                     -- binary; empty when nothing was found
    expires_at BIGINT NOT NULL,              -- milliseconds
    updated_at BIGINT NOT NULL
);
