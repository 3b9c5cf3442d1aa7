//! Attachments both ways. Inbound: the non-body parts of a mail, with
//! their bytes and SHA-256, for the daemon to store once and serve by
//! link; the links then travel as XEP-0447 file sharing with XEP-0446
//! metadata, plus XEP-0066 OOB for clients that only know that.

use base64::Engine;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use xmpp_parsers::minidom::rxml::xml_ncname;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::sha2::{Digest, Sha256};

use crate::xml_text::{truncate_utf8, xml_safe};
use crate::Error;

/// XEP-0447 Stateless File Sharing.
pub const NS_SFS: &str = "urn:xmpp:sfs:0";
/// XEP-0446 File Metadata Element.
pub const NS_FILE: &str = "urn:xmpp:file:metadata:0";
/// XEP-0300 hashes.
pub const NS_HASHES: &str = "urn:xmpp:hashes:2";
/// XEP-0103 URL address information.
pub const NS_URL_DATA: &str = "http://jabber.org/protocol/url-data";
/// XEP-0066 Out of Band Data.
pub const NS_OOB: &str = "jabber:x:oob";

/// One non-body part of a mail, with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Position among the mail's attachments.
    pub index: usize,
    /// A file name safe to show and to serve.
    pub name: String,
    /// `type/subtype`, lower-case.
    pub content_type: String,
    /// Content-ID, without angle brackets (for `cid:` references).
    pub content_id: Option<String>,
    /// Decoded bytes.
    pub data: Vec<u8>,
    /// SHA-256 of `data`.
    pub sha256: [u8; 32],
}

/// A stored attachment, as clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedFile {
    /// File name shown to the user.
    pub name: String,
    /// `type/subtype`.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// The capability URL that serves it.
    pub url: String,
    /// Content-ID of the part, for `cid:` references.
    pub content_id: Option<String>,
}

/// A file name that cannot name a path or hide its type: no directories,
/// no controls, no leading dots, at most 200 bytes.
pub fn safe_name(name: Option<&str>, index: usize, content_type: &str) -> String {
    let base = name
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_control() || "<>:\"|?*".contains(c) {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').trim().to_owned();
    if cleaned.is_empty() {
        let extension = match content_type {
            "message/rfc822" => "eml",
            "text/html" => "html",
            "text/plain" => "txt",
            "text/calendar" => "ics",
            "application/pdf" => "pdf",
            "image/png" => "png",
            "image/jpeg" => "jpg",
            "image/gif" => "gif",
            _ => "bin",
        };
        return format!("attachment-{}.{extension}", index + 1);
    }
    truncate_utf8(&xml_safe(&cleaned), 200).to_owned()
}

/// The attachments of a raw mail, in the order mail-parser lists them.
pub fn attachments(raw: &[u8]) -> Result<Vec<Attachment>, Error> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(Error::Unparsable)?;
    Ok(attachments_of(&message))
}

/// [`attachments`] of a mail already parsed.
pub fn attachments_of(message: &mail_parser::Message<'_>) -> Vec<Attachment> {
    message
        .attachments()
        .enumerate()
        .map(|(index, part)| {
            let content_type = match &part.body {
                PartType::Message(_) => "message/rfc822".to_owned(),
                _ => part
                    .content_type()
                    .map(|ct| match ct.subtype() {
                        Some(sub) => format!("{}/{}", ct.ctype(), sub),
                        None => ct.ctype().to_owned(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".to_owned())
                    .to_ascii_lowercase(),
            };
            let data = part.contents().to_vec();
            let sha256 = Sha256::digest(&data).into();
            Attachment {
                index,
                name: safe_name(part.attachment_name(), index, &content_type),
                content_id: part.content_id().map(|id| {
                    id.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned()
                }),
                content_type,
                data,
                sha256,
            }
        })
        .collect()
}

/// The XEP-0447 `<file-sharing>` element for a file.
pub fn file_sharing(file: &SharedFile) -> Element {
    let text = |name: &str, value: &str| Element::builder(name, NS_FILE).append(value).build();
    Element::builder("file-sharing", NS_SFS)
        .attr(xml_ncname!("disposition").into(), "attachment")
        .append(
            Element::builder("file", NS_FILE)
                .append(text("media-type", &file.content_type))
                .append(text("name", &file.name))
                .append(text("size", &file.size.to_string()))
                .append(
                    Element::builder("hash", NS_HASHES)
                        .attr(xml_ncname!("algo").into(), "sha-256")
                        .append(base64::engine::general_purpose::STANDARD.encode(file.sha256))
                        .build(),
                )
                .build(),
        )
        .append(
            Element::builder("sources", NS_SFS)
                .append(
                    Element::builder("url-data", NS_URL_DATA)
                        .attr(xml_ncname!("target").into(), file.url.as_str())
                        .build(),
                )
                .build(),
        )
        .build()
}

/// The XEP-0066 `<x xmlns='jabber:x:oob'>` element for a URL.
pub fn oob(url: &str, desc: Option<&str>) -> Element {
    let mut x =
        Element::builder("x", NS_OOB).append(Element::builder("url", NS_OOB).append(url).build());
    if let Some(desc) = desc {
        x = x.append(Element::builder("desc", NS_OOB).append(desc).build());
    }
    x.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(
            safe_name(Some("../../etc/passwd"), 0, "text/plain"),
            "passwd"
        );
        assert_eq!(
            safe_name(Some("C:\\Users\\x\\report.pdf"), 0, "application/pdf"),
            "report.pdf"
        );
        assert_eq!(safe_name(Some(".hidden"), 0, "text/plain"), "hidden");
        assert_eq!(
            safe_name(Some("a\u{0}b\r\n.txt"), 0, "text/plain"),
            "a_b__.txt"
        );
        assert_eq!(safe_name(None, 2, "image/png"), "attachment-3.png");
        assert_eq!(
            safe_name(Some("   "), 0, "message/rfc822"),
            "attachment-1.eml"
        );
    }

    #[test]
    fn parts_come_with_bytes_and_hashes() {
        let raw = b"From: a@example.net\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment; filename=\"r.pdf\"\r\nContent-ID: <pdf@x>\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--XX--\r\n";
        let parts = attachments(raw).expect("parses");
        assert_eq!(parts.len(), 1);
        let pdf = &parts[0];
        assert_eq!(pdf.name, "r.pdf");
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.content_id.as_deref(), Some("pdf@x"));
        assert_eq!(pdf.data, b"%PDF-1.4\n");
        assert_eq!(pdf.sha256, <[u8; 32]>::from(Sha256::digest(b"%PDF-1.4\n")));
    }

    #[test]
    fn file_sharing_carries_metadata_and_source() {
        let file = SharedFile {
            name: "r.pdf".into(),
            content_type: "application/pdf".into(),
            size: 9,
            sha256: [0; 32],
            url: "https://files.example/t/r.pdf".into(),
            content_id: None,
        };
        let xml = String::from(&file_sharing(&file));
        assert!(xml.starts_with("<file-sharing xmlns='urn:xmpp:sfs:0' disposition='attachment'><file xmlns='urn:xmpp:file:metadata:0'><media-type>application/pdf</media-type><name>r.pdf</name><size>9</size><hash xmlns='urn:xmpp:hashes:2' algo='sha-256'>AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=</hash></file>"), "{xml}");
        assert!(xml.contains("<url-data xmlns='http://jabber.org/protocol/url-data' target='https://files.example/t/r.pdf'/>"), "{xml}");
    }
}
