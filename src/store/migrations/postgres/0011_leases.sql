-- Several instances share the queues: an item being worked on is leased
-- to one instance (its id) until a time (ms), which it renews while it
-- works. An item whose lease has run out is due again for anyone.
ALTER TABLE to_mail ADD COLUMN lease_owner TEXT;
ALTER TABLE to_mail ADD COLUMN lease_until BIGINT;
ALTER TABLE to_xmpp ADD COLUMN lease_owner TEXT;
ALTER TABLE to_xmpp ADD COLUMN lease_until BIGINT;

-- Jobs that run once per cluster (the sweeps): the instance that holds a
-- job's lease runs it, and renews the lease each time it does.
CREATE TABLE job_leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until BIGINT NOT NULL
);

-- A mail is delivered once per recipient and Message-ID: the same mail
-- accepted again (its sender retrying to another instance, say, when the
-- first one died before answering) is not queued twice, for as long as
-- finished deliveries are kept. Notices and mail without a Message-ID
-- have none (NULL), and are never taken for one another.
ALTER TABLE to_xmpp ADD COLUMN message_id TEXT;
CREATE UNIQUE INDEX to_xmpp_once ON to_xmpp (recipient, message_id);
