-- What the periodic sweep looks up: finished queue items by age, without
-- reading their rows (to_mail rows hold whole mails), inbound mail still
-- referenced by a delivery (also what the foreign key check needs when a
-- mail is deleted), and thread metadata by age.
CREATE INDEX to_xmpp_finished ON to_xmpp (state, updated_at);
CREATE INDEX to_xmpp_by_mail ON to_xmpp (mail_id);
CREATE INDEX to_mail_finished ON to_mail (state, updated_at);
CREATE INDEX messages_by_age ON messages (created_at);
