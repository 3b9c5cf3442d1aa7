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
