-- One row that every /health check rewrites: a write that fails when
-- the database cannot be written, before a mail finds out.
CREATE TABLE health_probe (
    id BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    probes BIGINT NOT NULL DEFAULT 0
);
