//! The `[log]` section: how the log on stderr is written.

use serde::Deserialize;

use super::Problems;

/// How each log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: `2026-12-01T07:30:16Z  INFO facteur::smtp: Accepted mail. mail_id=1 …`.
    #[default]
    Text,
    /// For log shippers: one JSON object per line, with `timestamp`,
    /// `level`, `target`, `fields` (the message among them) and `span`s.
    Json,
}

/// The log.
#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
        }
    }
}

impl RawLog {
    pub(super) fn check(self, p: &mut Problems) -> LogConfig {
        let format = match self.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                p.add(
                    "log.format",
                    format!("{other:?}: expected \"text\" or \"json\""),
                );
                LogFormat::Text
            }
        };
        LogConfig { format }
    }
}
