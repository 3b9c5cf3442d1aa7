//! Which sent messages the server has surely handled: every message sent
//! before a ping is confirmed by the ping's answer, unless an error for it
//! came back first.

use std::fmt;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use xmpp_parsers::message::Message;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// The server's refusal of a stanza.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Not of type `wait`: sending again will not help.
    pub permanent: bool,
    /// What went wrong (RFC 6120 §8.3.3).
    pub condition: DefinedCondition,
    /// The server's explanation, if it gave one.
    pub text: Option<String>,
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
                condition: DefinedCondition::UndefinedCondition,
                text: Some("error without a condition".into()),
            },
        }
    }

    pub fn from_stanza_error(error: &StanzaError) -> Refusal {
        Refusal {
            permanent: error.type_ != ErrorType::Wait,
            condition: error.defined_condition.clone(),
            text: error.texts.values().next().cloned(),
        }
    }
}

/// `condition: text`, for logs and notices.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&condition_name(&self.condition))?;
        match &self.text {
            Some(text) => write!(f, ": {text}"),
            None => Ok(()),
        }
    }
}

/// The name of a condition as on the wire (`item-not-found`).
fn condition_name(condition: &DefinedCondition) -> String {
    Element::from(condition.clone()).name().to_owned()
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
    /// The ping's id, and those of the pings sent again for it: an answer
    /// to any of them confirms the batch.
    ids: Vec<String>,
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
    /// What ping ids end with: the instance that sends them.
    instance: Option<String>,
}

impl Acks {
    /// Acks whose ping ids name `instance`, where several instances bind
    /// one component domain and any of them may get the answer.
    pub fn for_instance(instance: Option<&str>) -> Acks {
        Acks {
            instance: instance.map(str::to_owned),
            ..Acks::default()
        }
    }

    fn next_id(&mut self) -> String {
        self.counter += 1;
        super::handover::tagged(
            &format!("facteur-ping-{}", self.counter),
            self.instance.as_deref(),
        )
    }

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
        let id = self.next_id();
        self.ping = Some(InFlight {
            ids: vec![id.clone()],
            sent: now,
            batch: std::mem::take(&mut self.unpinged),
        });
        Some(id)
    }

    /// An IQ answer came; returns whether it was our ping.
    pub fn answered(&mut self, id: &str) -> bool {
        if self
            .ping
            .as_ref()
            .is_none_or(|p| !p.ids.iter().any(|i| i == id))
        {
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

    /// The id of a ping to send again for the one out, unanswered: its
    /// answer may have gone to an instance that died before handing it
    /// over. None once it was sent again already: the link is then
    /// taken as lost.
    pub fn ping_again(&mut self, now: Instant) -> Option<String> {
        if self.ping.as_ref().is_none_or(|p| p.ids.len() > 1) {
            return None;
        }
        let id = self.next_id();
        let ping = self.ping.as_mut()?;
        ping.ids.push(id.clone());
        ping.sent = now;
        Some(id)
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
            condition: DefinedCondition::ServiceUnavailable,
            text: None,
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
    fn a_refusal_reads_condition_then_text() {
        let error = StanzaError::new(
            ErrorType::Cancel,
            DefinedCondition::ItemNotFound,
            "en",
            "no such user",
        );
        let refusal = Refusal::from_stanza_error(&error);
        assert!(refusal.permanent);
        assert_eq!(refusal.condition, DefinedCondition::ItemNotFound);
        assert_eq!(refusal.to_string(), "item-not-found: no such user");
        let mut bare = StanzaError::new(
            ErrorType::Wait,
            DefinedCondition::ResourceConstraint,
            "en",
            "",
        );
        bare.texts.clear();
        let refusal = Refusal::from_stanza_error(&bare);
        assert!(!refusal.permanent);
        assert_eq!(refusal.to_string(), "resource-constraint");
        let gone = DefinedCondition::Gone { new_address: None };
        assert_eq!(condition_name(&gone), "gone");
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
    fn an_unanswered_ping_is_sent_again_once_and_either_answer_confirms() {
        let mut acks = Acks::for_instance(Some("vm:7:beef"));
        let (tx, mut rx) = oneshot::channel();
        acks.sent("m".into(), tx);
        let start = Instant::now();
        let first = acks.ping_to_send(start).expect("a ping");
        assert_eq!(first, "facteur-ping-1@vm:7:beef");
        let again = acks.ping_again(start).expect("sent again");
        assert_eq!(again, "facteur-ping-2@vm:7:beef");
        assert_eq!(acks.ping_again(start), None, "only once");
        assert!(acks.answered(&first));
        assert_eq!(rx.try_recv().expect("resolved"), Ok(()));
        assert!(!acks.answered(&again), "the batch is confirmed already");
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
