-- A stanza sent again by a client (same sender, same id, hence same
-- Message-ID) is queued once.
CREATE UNIQUE INDEX to_mail_once ON to_mail (sender, message_id, rcpt);
