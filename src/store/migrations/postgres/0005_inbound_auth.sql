-- What the inbound checks found (SPF, DKIM, DMARC, ARC), shown to the
-- user with the mail, and the warning a failure the operator marks gives.
ALTER TABLE inbound_mail ADD COLUMN auth TEXT NOT NULL DEFAULT '';      -- e.g. 'spf=pass dkim=none dmarc=none arc=none'
ALTER TABLE inbound_mail ADD COLUMN warning TEXT NOT NULL DEFAULT '';
