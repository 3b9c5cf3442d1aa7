//! The administrators' spam list commands: "Spam lists" shows each
//! consumed list and DNS list with its trust weight, its entries and the
//! feedback that moved it; "Check the spam lists" asks them about a
//! sender address and a client IP, as the end of DATA does.

use std::net::IpAddr;

use xmpp_parsers::minidom::Element;

use super::{field, note, result_form, NS_COMMANDS};
use crate::component::reply::Fault;
use crate::config::Config;
use crate::spam::Listings;
use crate::store::Store;

/// One field per list: `weight W, N entries, C confirmed, K contradicted`.
pub(super) async fn show(config: &Config, store: &Store) -> anyhow::Result<Vec<Element>> {
    let weights = store.list_weights().await?;
    let entries = store.list_entry_counts().await?;
    let kind = |name: &str| {
        config
            .spam
            .lists
            .iter()
            .find(|l| l.name == name)
            .map(|l| format!("{} {} at {}", l.kind.name(), l.node, l.service))
            .unwrap_or_else(|| "DNS list".to_owned())
    };
    if weights.is_empty() {
        return Ok(vec![note("info", "No spam list is configured.")]);
    }
    let fields = weights
        .iter()
        .map(|w| {
            // DNS lists have no entries to count, and keep their weight.
            let value = if config.spam.lists.iter().any(|l| l.name == w.list) {
                format!(
                    "weight {}, {} entries, {} confirmed, {} contradicted",
                    w.weight,
                    entries.get(&w.list).copied().unwrap_or(0),
                    w.confirmed,
                    w.contradicted
                )
            } else {
                format!("weight {}", w.weight)
            };
            field(&w.list, "text-single", &kind(&w.list), &[value])
        })
        .collect();
    Ok(vec![result_form(NS_COMMANDS, fields)])
}

/// The listings of `values` (an address or domain, and an IP address, in
/// any order, separated by blanks).
pub(super) async fn check(listings: &Listings, values: &[String]) -> Result<Vec<Element>, Fault> {
    let mut sender = String::new();
    let mut client: Option<IpAddr> = None;
    for word in values.iter().flat_map(|v| v.split_whitespace()) {
        match word.parse::<IpAddr>() {
            Ok(ip) => client = Some(ip),
            Err(_) if word.contains('@') => sender = word.to_owned(),
            Err(_) => sender = format!("postmaster@{word}"),
        }
    }
    if sender.is_empty() && client.is_none() {
        return Err(super::bad_input(
            "give a sender address or domain, and/or a client IP".into(),
        ));
    }
    let found = match client {
        Some(ip) => listings.lookup(&sender, ip, &[]).await,
        None => listings.lookup_parts(&sender, None, &[]).await,
    };
    if found.is_empty() {
        return Ok(vec![note("info", "No list names it.")]);
    }
    let fields = found
        .iter()
        .map(|l| {
            field(
                &l.list,
                "text-single",
                &l.what,
                &[format!("{} weight {}", l.what, l.weight)],
            )
        })
        .collect();
    Ok(vec![result_form(NS_COMMANDS, fields)])
}
