//! The `[store]` section: where the durable queues, users and thread
//! metadata are kept (SQLite).

use serde::Deserialize;

use super::Problems;

/// The store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    url: String,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            url: "sqlite:///var/lib/facteur/facteur.db".into(),
        }
    }
}

impl RawStore {
    pub(super) fn check(self, p: &mut Problems) -> StoreConfig {
        if !self.url.starts_with("sqlite:") {
            p.add(
                "store.url",
                "only sqlite: URLs are supported, e.g. sqlite:///var/lib/facteur/facteur.db",
            );
        }
        StoreConfig { url: self.url }
    }
}
