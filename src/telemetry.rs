//! What facteur counts for monitoring, in the Prometheus text format
//! (exposition format 0.0.4) served at `/metrics` by `http::scrape`.
//!
//! Every metric is named and described here, once. The handles are made
//! once, when the recorder is installed at start: counting a mail is then
//! an atomic add, with no lookup and no allocation on the hot paths.
//! Queue depths are not counted as they change: `/metrics` reads them
//! from the store when it is scraped (`Store::queue_gauges`).
//!
//! Spam verdicts get their counter beside the inbound SMTP ones once
//! inbound mail is scored.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

pub const SMTP_RECEIVED: &str = "facteur_smtp_received_total";
pub const SMTP_REFUSED: &str = "facteur_smtp_refused_total";
pub const TO_XMPP: &str = "facteur_to_xmpp_total";
pub const TO_XMPP_SECONDS: &str = "facteur_to_xmpp_delivery_seconds";
pub const TO_MAIL: &str = "facteur_to_mail_total";
pub const TO_MAIL_SECONDS: &str = "facteur_to_mail_delivery_seconds";
pub const XMPP_MAIL: &str = "facteur_xmpp_mail_total";
pub const PROBES_SENT: &str = "facteur_xmpp_mail_probes_sent_total";
pub const PROBES_ANSWERED: &str = "facteur_xmpp_mail_probes_answered_total";
pub const LINK_UP: &str = "facteur_component_link_up";
pub const RECONNECTS: &str = "facteur_component_reconnects_total";
pub const QUEUE_ITEMS: &str = "facteur_queue_items";
pub const QUEUE_OLDEST_DUE: &str = "facteur_queue_oldest_due_age_seconds";
pub const STORE_SECONDS: &str = "facteur_store_transaction_seconds";
pub const SPAM_LIST_WEIGHT: &str = "facteur_spam_list_weight";
pub const SPAM_LIST_ENTRIES: &str = "facteur_spam_list_entries";

/// Deliveries take from milliseconds (a connected client) to days
/// (retries while a server is down).
const DELIVERY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
    86400.0,
];

/// A commit is one fsync: well under a millisecond on an SSD, seconds on
/// a disk in trouble.
const STORE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The refusals of inbound SMTP, by reason class.
pub struct Refusals {
    /// `550 5.1.1`: no such user, or not registered.
    pub unknown_user: Counter,
    /// `550 5.7.1`: a domain facteur does not serve.
    pub relay_denied: Counter,
    /// `550 5.7.1`: a sender the recipient blocked.
    pub blocked: Counter,
    /// `552 5.3.4`: over `inbound.max_message_size`.
    pub too_big: Counter,
    /// `450 4.7.1`: the client is over its mail rate.
    pub rate_limited: Counter,
    /// `550 5.7.x`: failed SPF, DKIM or DMARC as `[auth]` says to refuse.
    pub authentication: Counter,
    pub spam: Counter,
    /// `554`: not a mail facteur can read.
    pub unparsable: Counter,
    /// `451 4.3.0`: the store did not take it.
    pub store: Counter,
}

/// Time spent in store transactions, by what they change.
pub struct StoreTimes {
    /// The group commit of inbound mail (before the `250`).
    pub accept_mails: Histogram,
    /// The group commit of SMTP and XMPP-Mail delivery outcomes.
    pub mail_outcomes: Histogram,
    /// Outgoing mail queued from XMPP.
    pub queue_mails: Histogram,
    /// Deliveries to XMPP confirmed, in batches.
    pub to_xmpp_delivered: Histogram,
    /// A delivery to XMPP deferred.
    pub to_xmpp_retry: Histogram,
    /// A delivery to XMPP given up (with its report).
    pub to_xmpp_failed: Histogram,
}

/// The handles counted on the hot paths.
pub struct Meters {
    /// Mails taken at the end of DATA (`250`), queued for XMPP users.
    pub smtp_accepted: Counter,
    /// Mails taken at the end of DATA that were only reports to a return
    /// path.
    pub smtp_reports: Counter,
    pub smtp_refused: Refusals,
    pub to_xmpp_delivered: Counter,
    pub to_xmpp_deferred: Counter,
    pub to_xmpp_failed: Counter,
    /// Commit of the mail (end of DATA) to the server's confirmation.
    pub to_xmpp_seconds: Histogram,
    pub to_mail_sent: Counter,
    pub to_mail_deferred: Counter,
    pub to_mail_bounced: Counter,
    /// Message from XMPP queued to the `250` of the next hop.
    pub to_mail_seconds: Histogram,
    pub xmpp_mail_sent: Counter,
    pub xmpp_mail_rerouted: Counter,
    pub probes_sent_accept: Counter,
    pub probes_sent_reject: Counter,
    pub probes_sent_unknown: Counter,
    pub probes_sent_failed: Counter,
    pub probes_answered_accept: Counter,
    pub probes_answered_reject: Counter,
    pub probes_answered_unknown: Counter,
    pub link_up: Gauge,
    pub reconnects: Counter,
    pub store: StoreTimes,
}

static METERS: OnceLock<Meters> = OnceLock::new();

/// The handles. Before `install` (unit tests, admin commands) they count
/// nowhere.
pub fn meters() -> &'static Meters {
    METERS.get_or_init(Meters::register)
}

/// Installs the process-wide recorder and describes every metric; the
/// handle renders the text. Called once, at the start of `run`.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(STORE_SECONDS.into()), STORE_BUCKETS)?
        .set_buckets_for_metric(
            Matcher::Suffix("_delivery_seconds".into()),
            DELIVERY_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    // The handles bind to the recorder that is current when they are made.
    meters();
    Ok(handle)
}

fn describe() {
    describe_counter!(
        SMTP_RECEIVED,
        "Mails taken by SMTP at the end of DATA, by outcome: accepted (queued for XMPP users), report (a bounce to a return path)"
    );
    describe_counter!(
        SMTP_REFUSED,
        "Refusals of inbound SMTP, by reason: unknown_user, relay_denied, too_big, rate_limited, authentication, spam, unparsable, store"
    );
    describe_counter!(
        TO_XMPP,
        "Deliveries of mail and notices to XMPP users, by outcome: delivered (confirmed by the server), deferred, failed"
    );
    describe_histogram!(
        TO_XMPP_SECONDS,
        Unit::Seconds,
        "From a mail's commit at the end of DATA to the XMPP server's confirmation of its stanza"
    );
    describe_counter!(
        TO_MAIL,
        "Delivery attempts of outgoing mail, by outcome: sent (by SMTP), deferred (tried again later), bounced (failed for good; the sender is told); deferred and bounced count XMPP-Mail attempts too"
    );
    describe_histogram!(
        TO_MAIL_SECONDS,
        Unit::Seconds,
        "From an XMPP message queued as mail to the next hop's 250"
    );
    describe_counter!(
        XMPP_MAIL,
        "Outgoing mail to XMPP-Mail domains, by outcome: sent (as XMPP), rerouted (by SMTP instead)"
    );
    describe_counter!(
        PROBES_SENT,
        "XMPP-Mail probes asked of other domains' gateways, by result: accept, reject, unknown, failed (no answer)"
    );
    describe_counter!(
        PROBES_ANSWERED,
        "Recipients of probes from other domains answered, by status: accept, reject, unknown"
    );
    describe_gauge!(
        LINK_UP,
        "1 while the XEP-0114 component link to the XMPP server is up, else 0"
    );
    describe_counter!(
        RECONNECTS,
        "Times the component link came up again after it was lost"
    );
    describe_gauge!(
        QUEUE_ITEMS,
        "Items in each queue (to_xmpp, to_mail) by state, read from the store at scrape time"
    );
    describe_gauge!(
        SPAM_LIST_WEIGHT,
        "Trust weight of each consumed spam list and DNS list, in [0, 1], read from the store at scrape time"
    );
    describe_gauge!(
        SPAM_LIST_ENTRIES,
        "Entries of each consumed XMPP spam list, read from the store at scrape time"
    );
    describe_gauge!(
        QUEUE_OLDEST_DUE,
        Unit::Seconds,
        "Age of the oldest item of each queue that is due for an attempt now (0 when none is)"
    );
    describe_histogram!(
        STORE_SECONDS,
        Unit::Seconds,
        "Store transactions that change queues, by operation"
    );
}

impl Meters {
    fn register() -> Meters {
        let refused = |reason: &'static str| counter!(SMTP_REFUSED, "reason" => reason);
        let store = |operation: &'static str| histogram!(STORE_SECONDS, "operation" => operation);
        Meters {
            smtp_accepted: counter!(SMTP_RECEIVED, "outcome" => "accepted"),
            smtp_reports: counter!(SMTP_RECEIVED, "outcome" => "report"),
            smtp_refused: Refusals {
                unknown_user: refused("unknown_user"),
                relay_denied: refused("relay_denied"),
                blocked: refused("blocked"),
                too_big: refused("too_big"),
                rate_limited: refused("rate_limited"),
                authentication: refused("authentication"),
                spam: refused("spam"),
                unparsable: refused("unparsable"),
                store: refused("store"),
            },
            to_xmpp_delivered: counter!(TO_XMPP, "outcome" => "delivered"),
            to_xmpp_deferred: counter!(TO_XMPP, "outcome" => "deferred"),
            to_xmpp_failed: counter!(TO_XMPP, "outcome" => "failed"),
            to_xmpp_seconds: histogram!(TO_XMPP_SECONDS),
            to_mail_sent: counter!(TO_MAIL, "outcome" => "sent"),
            to_mail_deferred: counter!(TO_MAIL, "outcome" => "deferred"),
            to_mail_bounced: counter!(TO_MAIL, "outcome" => "bounced"),
            to_mail_seconds: histogram!(TO_MAIL_SECONDS),
            xmpp_mail_sent: counter!(XMPP_MAIL, "outcome" => "sent"),
            xmpp_mail_rerouted: counter!(XMPP_MAIL, "outcome" => "rerouted"),
            probes_sent_accept: counter!(PROBES_SENT, "result" => "accept"),
            probes_sent_reject: counter!(PROBES_SENT, "result" => "reject"),
            probes_sent_unknown: counter!(PROBES_SENT, "result" => "unknown"),
            probes_sent_failed: counter!(PROBES_SENT, "result" => "failed"),
            probes_answered_accept: counter!(PROBES_ANSWERED, "status" => "accept"),
            probes_answered_reject: counter!(PROBES_ANSWERED, "status" => "reject"),
            probes_answered_unknown: counter!(PROBES_ANSWERED, "status" => "unknown"),
            link_up: gauge!(LINK_UP),
            reconnects: counter!(RECONNECTS),
            store: StoreTimes {
                accept_mails: store("accept_mails"),
                mail_outcomes: store("mail_outcomes"),
                queue_mails: store("queue_mails"),
                to_xmpp_delivered: store("to_xmpp_delivered"),
                to_xmpp_retry: store("to_xmpp_retry"),
                to_xmpp_failed: store("to_xmpp_failed"),
            },
        }
    }
}

/// Records the time from its making to its drop into a histogram: put
/// one at the top of a transaction, and every way out is measured.
pub struct Timed<'a> {
    histogram: &'a Histogram,
    started: std::time::Instant,
}

impl<'a> Timed<'a> {
    pub fn start(histogram: &'a Histogram) -> Timed<'a> {
        Timed {
            histogram,
            started: std::time::Instant::now(),
        }
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.histogram.record(self.started.elapsed());
    }
}

/// Sets the queue gauges from what the store holds now. `counts` are
/// (queue, state, items); `oldest_due` the age of each queue's oldest
/// due item. States with no item read 0, not their last value.
pub fn set_queue_gauges(counts: &[(String, String, i64)], oldest_due: &[(String, Duration)]) {
    const STATES: &[(&str, &str)] = &[
        ("to_xmpp", "pending"),
        ("to_xmpp", "delivered"),
        ("to_xmpp", "failed"),
        ("to_mail", "queued"),
        ("to_mail", "sent"),
        ("to_mail", "failed"),
    ];
    for (queue, state) in STATES {
        if !counts.iter().any(|(q, s, _)| q == queue && s == state) {
            gauge!(QUEUE_ITEMS, "queue" => *queue, "state" => *state).set(0.0);
        }
    }
    for (queue, state, items) in counts {
        gauge!(QUEUE_ITEMS, "queue" => queue.clone(), "state" => state.clone()).set(*items as f64);
    }
    for queue in ["to_xmpp", "to_mail"] {
        let age = oldest_due
            .iter()
            .find(|(q, _)| q == queue)
            .map_or(0.0, |(_, age)| age.as_secs_f64());
        gauge!(QUEUE_OLDEST_DUE, "queue" => queue).set(age);
    }
}

/// Sets the spam list gauges from what the store holds: each list's
/// weight, and its entries.
pub fn set_spam_list_gauges(
    weights: &[(String, f64)],
    entries: &std::collections::BTreeMap<String, i64>,
) {
    for (list, weight) in weights {
        gauge!(SPAM_LIST_WEIGHT, "list" => list.clone()).set(*weight);
        if !list.starts_with("dns:") {
            let count = entries.get(list).copied().unwrap_or(0);
            gauge!(SPAM_LIST_ENTRIES, "list" => list.clone()).set(count as f64);
        }
    }
}
