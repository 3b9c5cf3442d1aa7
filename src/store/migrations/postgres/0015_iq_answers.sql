-- Several instances bound to one component domain (ejabberd shares the
-- stanzas for it between them): an answer to an IQ one instance sent can
-- reach another. That one leaves it here for the instance that asked
-- (named in the IQ's id), which takes it within a moment. Answers nobody
-- takes (their instance died) are removed after a minute.
CREATE TABLE iq_answers (
    id TEXT NOT NULL,
    owner TEXT NOT NULL,
    stanza TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX iq_answers_owner ON iq_answers (owner);
