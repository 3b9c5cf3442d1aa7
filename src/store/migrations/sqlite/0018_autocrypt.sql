-- Keys of others, as the Autocrypt header of their last mail carried them
-- (src/keys/autocrypt.rs): one per mail address, the newest by the mail's
-- effective date (its Date, never later than its arrival) kept.
CREATE TABLE autocrypt_peers (
    addr TEXT PRIMARY KEY,                   -- the sender's address, lower-cased
    last_seen INTEGER NOT NULL,              -- effective date of the header kept, seconds
    fingerprint TEXT NOT NULL,               -- of the primary key, upper-case hex
    cert BLOB NOT NULL,                      -- keydata, binary
    prefer_mutual INTEGER NOT NULL DEFAULT 0,-- prefer-encrypt=mutual
    updated_at INTEGER NOT NULL
);

-- Whether the user's outgoing mail is encrypted to its recipient's key:
-- off, opportunistic (when a key is known) or required (never sent without).
ALTER TABLE users ADD COLUMN encrypt TEXT NOT NULL DEFAULT 'off';
