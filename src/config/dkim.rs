//! The `[dkim."domain"]` sections: the key and selector each served domain
//! signs its outgoing mail with (RFC 6376).

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{MailConfig, Problems};

/// The DKIM key of a domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKey {
    pub selector: String,
    pub key_file: PathBuf,
}

/// The keys by domain, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub(super) struct RawDkim(HashMap<String, DkimKey>);

impl RawDkim {
    /// Only domains `mail` serves may have a key.
    pub(super) fn check(self, p: &mut Problems, mail: &MailConfig) -> HashMap<String, DkimKey> {
        for (domain, key) in &self.0 {
            if !mail.serves(domain) {
                p.add(&format!("dkim.{domain}"), "not a served domain");
            }
            if key.selector.is_empty()
                || !key
                    .selector
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            {
                p.add(
                    &format!("dkim.{domain}.selector"),
                    "letters, digits, '-' and '.' only",
                );
            }
            if let Err(e) = std::fs::metadata(&key.key_file) {
                p.add(
                    &format!("dkim.{domain}.key_file"),
                    format!("{}: {e}", key.key_file.display()),
                );
            }
        }
        self.0
    }
}
