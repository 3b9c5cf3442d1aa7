-- Senders each user blocked (XEP-0191 items at the gateway, unescaped):
-- mail from them to that user is refused at RCPT (unless she unblocked it
-- at the gateway only), and a refusal of the user's server caused by one
-- never turns into a report to the sender.
CREATE TABLE blocked_senders (
    user_jid TEXT NOT NULL,                  -- the served user
    item TEXT NOT NULL,                      -- lower-case address, or domain
    source TEXT NOT NULL,                    -- report, block or privileged-read
    reported BOOLEAN NOT NULL DEFAULT FALSE,  -- blocked with a spam or abuse report
    refused BOOLEAN NOT NULL DEFAULT TRUE,  -- refused at RCPT; false once the user unblocked
                                             -- it with the gateway's command (her server may still block)
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_jid, item)
);

-- Spam and ham feedback, one row per user and mail (or per block report,
-- where no mail is named): the latest verdict stays. Senders reported by
-- several distinct users are counted from it.
CREATE TABLE spam_reports (
    user_jid TEXT NOT NULL,                  -- who reported
    sender TEXT NOT NULL,                    -- lower-case address reported
    message_id TEXT NOT NULL,                -- the mail's Message-ID, or ''
    verdict TEXT NOT NULL,                   -- spam or ham
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_jid, sender, message_id)
);
CREATE INDEX spam_reports_by_sender ON spam_reports (sender, verdict);

-- When each user's blocklist was last read with a XEP-0356 privileged IQ,
-- to read it again once older than [spam] blocklist_max_age.
CREATE TABLE blocklist_reads (
    user_jid TEXT NOT NULL PRIMARY KEY,
    read_at BIGINT NOT NULL
);
