//! Which sent messages the server has surely handled: every message sent
//! before a ping is confirmed by the ping's answer, unless an error for it
//! came back first.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{ErrorType, StanzaError};

/// The server's refusal of a stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Not of type `wait`: sending again will not help.
    pub permanent: bool,
    /// The condition and text, for logs and notices.
    pub text: String,
}

impl Refusal {
    pub fn from_error_message(message: &Message) -> Refusal {
        let error = message
            .payloads
            .iter()
            .find(|p| p.name() == "error")
            .and_then(|e| StanzaError::try_from(e.clone()).ok());
        match error {
            Some(error) => Refusal::from_stanza_error(&error),
            None => Refusal {
                permanent: true,
                text: "error without a condition".into(),
            },
        }
    }

    pub fn from_stanza_error(error: &StanzaError) -> Refusal {
        let element = Element::from(error.clone());
        let condition = element
            .children()
            .find(|c| c.name() != "text")
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| "undefined-condition".into());
        let text = match error.texts.values().next() {
            Some(text) => format!("{condition}: {text}"),
            None => condition,
        };
        Refusal {
            permanent: error.type_ != ErrorType::Wait,
            text,
        }
    }
}

struct Pending {
    id: String,
    done: oneshot::Sender<Result<(), Refusal>>,
    refusal: Option<Refusal>,
}

impl Pending {
    fn resolve(self) {
        let _ = self.done.send(match self.refusal {
            Some(refusal) => Err(refusal),
            None => Ok(()),
        });
    }
}

struct InFlight {
    id: String,
    sent: Instant,
    batch: Vec<Pending>,
}

/// Dropping it reports every pending message as lost with the link.
#[derive(Default)]
pub(super) struct Acks {
    unpinged: Vec<Pending>,
    ping: Option<InFlight>,
    keepalive: bool,
    counter: u64,
}

impl Acks {
    pub fn sent(&mut self, id: String, done: oneshot::Sender<Result<(), Refusal>>) {
        self.unpinged.push(Pending {
            id,
            done,
            refusal: None,
        });
    }

    pub fn want_keepalive(&mut self) {
        self.keepalive = true;
    }

    /// The id of a ping to send now, if one is needed and none is out.
    pub fn ping_to_send(&mut self, now: Instant) -> Option<String> {
        if self.ping.is_some() || (self.unpinged.is_empty() && !self.keepalive) {
            return None;
        }
        self.keepalive = false;
        self.counter += 1;
        let id = format!("facteur-ping-{}", self.counter);
        self.ping = Some(InFlight {
            id: id.clone(),
            sent: now,
            batch: std::mem::take(&mut self.unpinged),
        });
        Some(id)
    }

    /// An IQ answer came; returns whether it was our ping.
    pub fn answered(&mut self, id: &str) -> bool {
        if self.ping.as_ref().is_none_or(|p| p.id != id) {
            return false;
        }
        if let Some(ping) = self.ping.take() {
            ping.batch.into_iter().for_each(Pending::resolve);
        }
        true
    }

    /// An error came back for message `id`; returns whether it is tracked.
    pub fn refused(&mut self, id: &str, refusal: Refusal) -> bool {
        let in_flight = self.ping.iter_mut().flat_map(|p| p.batch.iter_mut());
        match in_flight
            .chain(self.unpinged.iter_mut())
            .find(|p| p.id == id)
        {
            Some(pending) => {
                pending.refusal = Some(refusal);
                true
            }
            None => false,
        }
    }

    pub fn ping_overdue(&self, now: Instant, limit: Duration) -> bool {
        self.ping
            .as_ref()
            .is_some_and(|p| now.duration_since(p.sent) > limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_answer_confirms_what_was_sent_before_it() {
        let mut acks = Acks::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        acks.sent("m1".into(), tx1);
        let ping = acks.ping_to_send(Instant::now()).expect("a ping");
        acks.sent("m2".into(), tx2);
        assert_eq!(
            acks.ping_to_send(Instant::now()),
            None,
            "one ping at a time"
        );
        let refusal = Refusal {
            permanent: true,
            text: "service-unavailable".into(),
        };
        assert!(acks.refused("m1", refusal.clone()));
        assert!(!acks.answered("other"));
        assert!(acks.answered(&ping));
        assert_eq!(rx1.try_recv().expect("resolved"), Err(refusal));
        assert!(rx2.try_recv().is_err(), "m2 waits for the next ping");
        let ping2 = acks.ping_to_send(Instant::now()).expect("next ping");
        assert!(acks.answered(&ping2));
        assert_eq!(rx2.try_recv().expect("resolved"), Ok(()));
    }

    #[test]
    fn dropping_reports_the_link_lost() {
        let mut acks = Acks::default();
        let (tx, mut rx) = oneshot::channel();
        acks.sent("m".into(), tx);
        drop(acks);
        assert!(matches!(
            rx.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn keepalive_and_overdue() {
        let mut acks = Acks::default();
        let start = Instant::now();
        assert_eq!(acks.ping_to_send(start), None);
        acks.want_keepalive();
        assert!(acks.ping_to_send(start).is_some());
        assert!(!acks.ping_overdue(start, Duration::from_secs(1)));
        assert!(acks.ping_overdue(start + Duration::from_secs(2), Duration::from_secs(1)));
    }
}
