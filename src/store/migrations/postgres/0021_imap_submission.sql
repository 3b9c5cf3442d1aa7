-- The outgoing server of an attached mailbox, if any: answers to its mail
-- leave from `smtp_from` through this submission server, with SMTP AUTH,
-- the password sealed like the IMAP one; `sent_copy` puts a copy of each
-- in the mailbox's Sent folder (off when the server files one itself).
ALTER TABLE imap_mailboxes ADD COLUMN smtp_host TEXT NOT NULL DEFAULT '';   -- '' none
ALTER TABLE imap_mailboxes ADD COLUMN smtp_port BIGINT NOT NULL DEFAULT 0;
ALTER TABLE imap_mailboxes ADD COLUMN smtp_tls TEXT NOT NULL DEFAULT 'starttls';
ALTER TABLE imap_mailboxes ADD COLUMN smtp_username TEXT NOT NULL DEFAULT '';
ALTER TABLE imap_mailboxes ADD COLUMN smtp_password BYTEA NOT NULL DEFAULT ''::BYTEA;
ALTER TABLE imap_mailboxes ADD COLUMN smtp_from TEXT NOT NULL DEFAULT '';
ALTER TABLE imap_mailboxes ADD COLUMN sent_copy BIGINT NOT NULL DEFAULT 1;

-- The mailbox whose submission server a queued mail leaves through;
-- NULL: the normal route (MX, relay or XMPP-Mail).
ALTER TABLE to_mail ADD COLUMN submission BIGINT;

-- A mail from IMAP the user reported as spam: 0 not, 1 to move to the
-- Junk folder, 2 moved (or gone).
ALTER TABLE imap_messages ADD COLUMN junk BIGINT NOT NULL DEFAULT 0;
CREATE INDEX imap_messages_to_move ON imap_messages (mailbox_id) WHERE junk = 1;
