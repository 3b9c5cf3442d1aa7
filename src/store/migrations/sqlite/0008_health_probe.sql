-- One row that every /health check rewrites: a write that fails when
-- the database cannot be written, before a mail finds out.
CREATE TABLE health_probe (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    probes INTEGER NOT NULL DEFAULT 0
);
