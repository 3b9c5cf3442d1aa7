//! IQ answers between instances. ejabberd lets several connections bind
//! one component domain and shares the stanzas for it between them, so
//! the answer to an IQ one instance sent (a ping that confirms its
//! deliveries, a request) may reach another. Every IQ id an instance
//! makes names it (`…@host:pid:random`, its lease owner id); an
//! instance that gets an answer naming another leaves it in the store
//! for that one, which looks for answers left for it a few times a
//! second. Only on a shared store (PostgreSQL): a single instance gets
//! every answer itself.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;

use crate::store::Store;

/// How often an instance looks for answers left for it.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The link's side: where answers for other instances go, and where
/// answers other instances took for this one come from.
pub struct Handover {
    pub instance: String,
    pub strays: mpsc::Sender<(String, Iq)>,
    pub returned: mpsc::Receiver<Iq>,
}

/// `id`, naming `instance` as the one that asked.
pub fn tagged(id: &str, instance: Option<&str>) -> String {
    match instance {
        Some(instance) => format!("{id}@{instance}"),
        None => id.to_owned(),
    }
}

/// The instance an IQ id names, if any.
pub fn owner(id: &str) -> Option<&str> {
    id.rsplit_once('@').map(|(_, owner)| owner)
}

/// The link's side, and the task that carries answers through `store`.
pub fn start(
    store: Store,
    shutdown: CancellationToken,
) -> (Handover, impl std::future::Future<Output = ()>) {
    let (strays_tx, strays_rx) = mpsc::channel(256);
    let (returned_tx, returned_rx) = mpsc::channel(256);
    let handover = Handover {
        instance: store.instance().to_owned(),
        strays: strays_tx,
        returned: returned_rx,
    };
    (handover, run(store, strays_rx, returned_tx, shutdown))
}

async fn run(
    store: Store,
    mut strays: mpsc::Receiver<(String, Iq)>,
    returned: mpsc::Sender<Iq>,
    shutdown: CancellationToken,
) {
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            stray = strays.recv() => {
                let Some((owner, iq)) = stray else { return };
                let id = iq.id().to_owned();
                let xml = String::from(&Element::from(iq));
                match store.hand_over_answer(&id, &owner, &xml).await {
                    Ok(()) => debug!(id, owner, "IQ answer handed to the instance that asked."),
                    Err(e) => warn!(id, owner, error = format!("{e:#}"), "IQ answer for another instance dropped: store unavailable."),
                }
            }
            _ = look.tick() => {
                let answers = match store.take_answers().await {
                    Ok(answers) => answers,
                    Err(e) => {
                        debug!(error = format!("{e:#}"), "IQ answers of other instances not looked up.");
                        continue;
                    }
                };
                for xml in answers {
                    match xml.parse::<Element>().map_err(|e| e.to_string()).and_then(|e| Iq::try_from(e).map_err(|e| e.to_string())) {
                        Ok(iq) => {
                            if returned.try_send(iq).is_err() {
                                debug!("IQ answer from another instance dropped: the link is busy or down.");
                            }
                        }
                        Err(e) => warn!(error = e, "Unreadable IQ answer left by another instance."),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_instance() {
        let id = tagged("facteur-ping-3", Some("vm:42:0badcafe"));
        assert_eq!(id, "facteur-ping-3@vm:42:0badcafe");
        assert_eq!(owner(&id), Some("vm:42:0badcafe"));
        assert_eq!(tagged("facteur-ping-3", None), "facteur-ping-3");
        assert_eq!(owner("facteur-ping-3"), None);
    }
}
