-- Secrets the gateway makes for itself once, e.g. the key that signs
-- return paths (VERP) so that bounces can be matched to queued mail.
CREATE TABLE secrets (
    name TEXT PRIMARY KEY NOT NULL,
    value BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
