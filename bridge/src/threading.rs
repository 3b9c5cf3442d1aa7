//! Identities that must survive retries: the stanza id of a mail is
//! derived from its Message-ID, and the Message-ID of an outgoing mail from
//! the sender's stanza id (XEP-0359 origin-id when present). A mail sent
//! twice by SMTP, or a stanza sent twice by a client, keeps one identity,
//! so the other side can recognise the copy.

use jid::BareJid;
use xmpp_parsers::sha2::{Digest, Sha256};

fn digest_hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        // A separator that cannot occur in JIDs or ids keeps parts apart.
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stanza id of the message carrying the mail with `message_id`
/// (without angle brackets).
pub fn stanza_id_for_mail(message_id: &str) -> String {
    format!("mail-{}", digest_hex(&[message_id.trim()]))
}

/// The Message-ID (without angle brackets) of the mail made from the
/// stanza `stanza_id` of `sender`, at the gateway `domain`.
pub fn message_id_for_stanza(sender: &BareJid, stanza_id: &str, domain: &str) -> String {
    format!("{}@{domain}", digest_hex(&[sender.as_str(), stanza_id]))
}

/// The `<thread>` of a mail: derived from the root of its conversation
/// (first of References, else In-Reply-To, else its own Message-ID), so
/// every mail of one conversation lands in one thread.
pub fn thread_for(
    message_id: Option<&str>,
    in_reply_to: &[String],
    references: &[String],
) -> Option<String> {
    let root = references
        .first()
        .or_else(|| in_reply_to.first())
        .map(String::as_str)
        .or(message_id)?;
    Some(format!("thread-{}", digest_hex(&[root.trim()])))
}

/// References of a reply to a parent with `parent_id` and
/// `parent_references` (RFC 5322 §3.6.4).
pub fn references_for_reply(parent_id: &str, parent_references: &[String]) -> Vec<String> {
    let mut references: Vec<String> = parent_references.to_vec();
    references.push(parent_id.to_owned());
    references
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_shares_one_thread() {
        let root = thread_for(Some("a@x"), &[], &[]).expect("thread");
        let reply = thread_for(Some("b@x"), &["a@x".into()], &[]).expect("thread");
        let deeper = thread_for(Some("c@x"), &["b@x".into()], &["a@x".into(), "b@x".into()])
            .expect("thread");
        assert_eq!(root, reply);
        assert_eq!(root, deeper);
        assert_eq!(thread_for(None, &[], &[]), None);
        assert_eq!(references_for_reply("b@x", &["a@x".into()]), ["a@x", "b@x"]);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(
            stanza_id_for_mail("a@example.net"),
            stanza_id_for_mail(" a@example.net ")
        );
        assert_ne!(
            stanza_id_for_mail("a@example.net"),
            stanza_id_for_mail("b@example.net")
        );
        assert_eq!(stanza_id_for_mail("a@example.net").len(), 37);
        let alice = BareJid::new("alice@example.test").expect("jid");
        let bob = BareJid::new("bob@example.test").expect("jid");
        let id = message_id_for_stanza(&alice, "x1", "mail.example.test");
        assert!(id.ends_with("@mail.example.test"));
        assert_eq!(id, message_id_for_stanza(&alice, "x1", "mail.example.test"));
        assert_ne!(id, message_id_for_stanza(&bob, "x1", "mail.example.test"));
        assert_ne!(id, message_id_for_stanza(&alice, "x2", "mail.example.test"));
    }
}
