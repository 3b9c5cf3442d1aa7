-- Shared spam lists (XEP-0060 real-time blocklists, xmppbl.org's format).

-- The items of each consumed list, as its service last told: the item id
-- (a domain, the lower-case hex SHA-256 of an address, or an IP address).
-- Written by the instance that holds the component link, read by every
-- instance at the end of DATA.
CREATE TABLE spam_list_entries (
    list TEXT NOT NULL,                      -- the list's name ([[spam.lists]] name)
    item TEXT NOT NULL,                      -- the pubsub item id
    created_at BIGINT NOT NULL,
    PRIMARY KEY (list, item)
);

-- The trust weight of each consumed list and DNS list, in [0, 1]: it
-- starts at the configured weight and moves with users' feedback.
CREATE TABLE spam_list_weights (
    list TEXT NOT NULL PRIMARY KEY,          -- a list's name, or dnsbl:ZONE
    weight DOUBLE PRECISION NOT NULL,
    confirmed BIGINT NOT NULL DEFAULT 0,     -- spam feedback that confirmed a listing
    contradicted BIGINT NOT NULL DEFAULT 0,  -- ham feedback that contradicted one
    updated_at BIGINT NOT NULL
);

-- facteur's own published list: the items of each node, as last
-- published (the difference with what the reports say now is what is
-- notified).
CREATE TABLE spam_published_items (
    node TEXT NOT NULL,                      -- spam_source_domains, _addresses_sha256, _ips
    item TEXT NOT NULL,                      -- the item id
    reporters BIGINT NOT NULL,               -- the threshold it passed when published
    published_at BIGINT NOT NULL,
    PRIMARY KEY (node, item)
);

-- Who subscribed to a node of the published list (XEP-0060 §6.1).
CREATE TABLE spam_list_subscribers (
    node TEXT NOT NULL,
    jid TEXT NOT NULL,                       -- the subscriber's JID, as it asked
    subscribed_at BIGINT NOT NULL,
    PRIMARY KEY (node, jid)
);
