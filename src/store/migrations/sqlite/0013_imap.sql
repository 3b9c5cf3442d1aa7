-- Legacy IMAP mailboxes attached by users: where to log in, the password
-- sealed with the key of `[imap] secret_file` (never in clear), which
-- folders to follow, and whether the gateway follows it now.
CREATE TABLE imap_mailboxes (
    id INTEGER PRIMARY KEY,
    user_jid TEXT NOT NULL,                  -- the served user the mail goes to
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    tls TEXT NOT NULL,                       -- implicit, starttls or none
    username TEXT NOT NULL,
    password BLOB NOT NULL,                  -- sealed: nonce, then ciphertext and tag
    folders TEXT NOT NULL,                   -- one name per line
    state TEXT NOT NULL DEFAULT 'active',    -- active or paused
    reason TEXT NOT NULL DEFAULT '',         -- why it is paused
    auth_failures INTEGER NOT NULL DEFAULT 0, -- consecutive
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,             -- a follower restarts when it changes
    UNIQUE (user_jid, host, username)
);

-- What the gateway took from each followed folder: the UIDVALIDITY its
-- UIDs belong to, the highest UID taken (or skipped), and the latest
-- INTERNALDATE taken, which a UIDVALIDITY change resyncs from.
CREATE TABLE imap_folders (
    mailbox_id INTEGER NOT NULL REFERENCES imap_mailboxes (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    uid_validity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL,
    last_date INTEGER NOT NULL DEFAULT 0,    -- ms since the epoch
    since_date INTEGER NOT NULL DEFAULT 0,   -- while resyncing: take only mail after this
    PRIMARY KEY (mailbox_id, name)
);
