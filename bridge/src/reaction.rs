//! Reactions both ways: XEP-0444 Message Reactions ⇄ RFC 9078 reaction
//! mails, as Delta Chat and other RFC 9078 clients write and read them: a
//! text/plain part with `Content-Disposition: reaction` whose one line is
//! the emoji, In-Reply-To the message reacted to.
//!
//! A XEP-0444 `<reactions>` element carries the whole current set of a
//! sender's reactions to one message; an RFC 9078 mail likewise replaces
//! its sender's earlier reaction. An empty set withdraws them: the mail
//! then has an empty line, as Delta Chat sends it.

use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::text::Text;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use xmpp_parsers::message::{Id, Message, MessageType};
use xmpp_parsers::minidom::Element;

use crate::xml_text::{one_line, xml_safe};
use crate::{Error, MailAddress};

/// XEP-0444 Message Reactions.
pub const NS_REACTIONS: &str = "urn:xmpp:reactions:0";
/// XEP-0334 Message Processing Hints.
const NS_HINTS: &str = "urn:xmpp:hints";
/// The most emoji one reaction carries; more is not a reaction.
const MAX_EMOJI: usize = 16;
/// The longest one emoji may be, in bytes (long ZWJ sequences included).
const MAX_EMOJI_BYTES: usize = 64;

/// A XEP-0444 reaction: to the message its sender's client knows by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaReaction {
    /// The id of the message reacted to.
    pub id: String,
    /// The sender's reactions now, in order; empty withdraws them.
    pub emoji: Vec<String>,
}

/// The reaction a stanza carries, if any. Its body, if the client adds
/// one, is a fallback for clients without reactions and says nothing more.
pub fn stanza_reaction(message: &Message) -> Option<StanzaReaction> {
    let reactions = message
        .payloads
        .iter()
        .find(|p| p.is("reactions", NS_REACTIONS))?;
    let id = reactions.attr("id").unwrap_or_default().to_owned();
    let emoji = reactions
        .children()
        .filter(|c| c.is("reaction", NS_REACTIONS))
        .map(|c| one_line(&c.text()))
        .filter(|e| !e.is_empty() && e.len() <= MAX_EMOJI_BYTES)
        .take(MAX_EMOJI)
        .collect();
    Some(StanzaReaction { id, emoji })
}

/// What a reaction mail is made of.
#[derive(Debug, Clone)]
pub struct ReactionMail<'a> {
    /// The reacting user's address.
    pub from: &'a MailAddress,
    /// The correspondent.
    pub to: &'a MailAddress,
    /// Message-ID of this mail, without angle brackets.
    pub message_id: &'a str,
    /// The Message-ID reacted to, without angle brackets.
    pub in_reply_to: &'a str,
    /// References, oldest first, ending with `in_reply_to`.
    pub references: &'a [String],
    /// The emoji.
    pub emoji: &'a [String],
    /// The sender's JID for a `Jabber-ID` header.
    pub jabber_id: Option<&'a str>,
    /// Date header, seconds since the Unix epoch.
    pub date: i64,
}

/// The RFC 9078 bytes of a reaction.
pub fn reaction_mail(mail: &ReactionMail<'_>) -> Result<Vec<u8>, Error> {
    let line = mail.emoji.concat();
    let part = MimePart::new(
        ContentType::new("text/plain").attribute("charset", "utf-8"),
        format!("{line}\r\n"),
    )
    .header("Content-Disposition", ContentType::new("reaction"));
    let subject = match line.is_empty() {
        true => "Reaction withdrawn".to_owned(),
        false => format!("Reaction: {line}"),
    };
    let mut builder = MessageBuilder::new()
        .from(Address::from(mail.from.to_string()))
        .to(mail.to.to_string())
        .subject(Text::new(subject))
        .message_id(mail.message_id.to_owned())
        .in_reply_to(mail.in_reply_to.to_owned())
        .references(mail.references.to_vec())
        .date(mail.date)
        .body(part);
    if let Some(jid) = mail.jabber_id.map(one_line).filter(|j| !j.is_empty()) {
        builder = builder.header("Jabber-ID", Text::new(jid));
    }
    builder.write_to_vec().map_err(|_| Error::Unparsable)
}

/// An RFC 9078 reaction read from a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailReaction {
    /// The Message-ID reacted to, without angle brackets.
    pub in_reply_to: String,
    /// The emoji, one per grapheme as the line gives them; empty
    /// withdraws the sender's reaction.
    pub emoji: Vec<String>,
}

/// The reaction a mail carries, if it is one: a part with
/// `Content-Disposition: reaction`, and In-Reply-To.
pub fn mail_reaction(raw: &[u8]) -> Option<MailReaction> {
    // Most mail is no reaction: a scan for the word spares it a second
    // parse.
    if !raw.windows(8).any(|w| w.eq_ignore_ascii_case(b"reaction")) {
        return None;
    }
    let message = MessageParser::default().parse(raw)?;
    let in_reply_to = message
        .in_reply_to()
        .as_text_list()
        .and_then(|ids| ids.first().map(|id| id.to_string()))?;
    let part = message.parts.iter().find(|part| {
        part.content_disposition()
            .is_some_and(|d| d.ctype().eq_ignore_ascii_case("reaction"))
    })?;
    let text = match &part.body {
        PartType::Text(text) => text.to_string(),
        _ => return None,
    };
    let line = xml_safe(text.lines().next().unwrap_or_default().trim());
    if line.len() > MAX_EMOJI * MAX_EMOJI_BYTES {
        return None;
    }
    Some(MailReaction {
        in_reply_to,
        emoji: split_emoji(&line),
    })
}

/// The emoji of a line, one each: a character and what joins or modifies
/// it (zero-width joiners, variation selectors, skin tones, keycaps, tag
/// characters), the way XEP-0444 wants one `<reaction>` per emoji.
fn split_emoji(line: &str) -> Vec<String> {
    let mut emoji: Vec<String> = Vec::new();
    let mut join = false;
    for c in line.chars() {
        let modifies = matches!(c,
            '\u{FE00}'..='\u{FE0F}' | '\u{1F3FB}'..='\u{1F3FF}' | '\u{20E3}' | '\u{E0020}'..='\u{E007F}');
        match emoji.last_mut() {
            Some(last) if join || modifies || c == '\u{200D}' => last.push(c),
            _ if c.is_whitespace() => {}
            _ => emoji.push(c.to_string()),
        }
        join = c == '\u{200D}';
    }
    // Flags are two regional indicators.
    let mut out: Vec<String> = Vec::new();
    for e in emoji {
        let regional = |s: &str| {
            s.chars().count() == 1 && s.chars().all(|c| ('\u{1F1E6}'..='\u{1F1FF}').contains(&c))
        };
        match out.last_mut() {
            Some(last) if regional(last) && regional(&e) => last.push_str(&e),
            _ => out.push(e),
        }
    }
    out.truncate(MAX_EMOJI);
    out
}

/// The XEP-0444 stanza of a reaction from `from` to `to`, on the message
/// `to`'s client knows by `target`.
pub fn reaction_stanza(
    from: jid::Jid,
    to: jid::Jid,
    id: &str,
    target: &str,
    emoji: &[String],
) -> Message {
    let mut message = Message::new_with_type(MessageType::Chat, Some(to));
    message.from = Some(from);
    message.id = Some(Id(id.to_owned()));
    let mut reactions = Element::builder("reactions", NS_REACTIONS).attr(
        xmpp_parsers::minidom::rxml::xml_ncname!("id").into(),
        target,
    );
    for e in emoji {
        reactions = reactions.append(
            Element::builder("reaction", NS_REACTIONS)
                .append(e.as_str())
                .build(),
        );
    }
    message.payloads.push(reactions.build());
    message
        .payloads
        .push(Element::builder("store", NS_HINTS).build());
    message
}

#[cfg(test)]
mod tests;
