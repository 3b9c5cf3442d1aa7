-- Attachments of inbound mail, reachable by unguessable tokens; the files
-- themselves are kept once per SHA-256 on disk.
CREATE TABLE attachments (
    token TEXT PRIMARY KEY NOT NULL,
    mail_id BIGINT NOT NULL,
    part_index BIGINT NOT NULL,
    sha256 TEXT NOT NULL,                    -- hex
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (mail_id, part_index)
);
CREATE INDEX attachments_by_sha ON attachments (sha256);
CREATE INDEX attachments_by_age ON attachments (created_at);

-- Per-user options, set with the registration form.
ALTER TABLE users ADD COLUMN oob_each_file BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN xhtml_im BOOLEAN NOT NULL DEFAULT FALSE;
