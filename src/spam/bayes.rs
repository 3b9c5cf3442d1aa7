//! The Bayesian content classifier's I/O: a mail's tokens (headers, text,
//! HTML text and link hosts, decoded by mail-parser), the models in the
//! store, and `facteur spam train|score`.
//!
//! The models are kept in the store (table `spam_models`, on SQLite and
//! PostgreSQL alike, shared by every instance): the global one is the
//! operator's, trained with `facteur spam train`; each user's holds her
//! own counts, trained by her feedback and added to the global ones once
//! it has learnt from enough of it
//! ([`facteur_policy::bayes::user_model_counts`]). The daemon keeps them
//! in memory ([`Models`]) and reads a model again only when its version
//! in the store changed, checked at most every [`RECHECK`].
//!
//! Models of an older facteur, kept as files in `spam-models/` beside the
//! SQLite database, are moved into the store when it opens ([`import_files`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use facteur_policy::bayes::{self, Model, Tokens};
use jid::BareJid;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use tracing::{info, warn};

use crate::config::Config;
use crate::store::{Kind, Store};

/// How often a cached model's version is checked in the store.
pub const RECHECK: Duration = Duration::from_secs(10);

/// A mail's distinct tokens, hashed.
pub fn tokens(raw: &[u8]) -> Vec<u64> {
    let mut t = Tokens::new();
    // A file cut from an mbox starts with its "From " separator line.
    let raw = match raw.strip_prefix(b"From ".as_slice()) {
        Some(rest) => rest
            .iter()
            .position(|&b| b == b'\n')
            .and_then(|nl| rest.get(nl + 1..))
            .unwrap_or_default(),
        None => raw,
    };
    let Some(msg) = MessageParser::default().parse(raw) else {
        t.token("mail", "unparsable");
        return t.finish();
    };
    match msg.subject() {
        Some(subject) => t.text("subject", subject),
        None => t.token("subject", "none"),
    }
    for (prefix, address) in [("from", msg.from()), ("reply-to", msg.reply_to())] {
        let Some(first) = address.and_then(|a| a.first()) else {
            continue;
        };
        if let Some(name) = first.name() {
            t.text(prefix, name);
        }
        if let Some((_, domain)) = first.address().and_then(|a| a.rsplit_once('@')) {
            t.host(prefix, &domain.to_ascii_lowercase());
        }
    }
    if let Some((_, domain)) = msg.message_id().and_then(|id| id.rsplit_once('@')) {
        t.host("message-id", domain);
    }
    // Every other header's words, prefixed by its name, as bogofilter
    // does: mailers, relays and their hosts tell much.
    for header in msg.headers() {
        let name = header.name.as_str().to_ascii_lowercase();
        if name == "subject" {
            continue;
        }
        let raw = msg
            .raw_message()
            .get(header.offset_start as usize..header.offset_end as usize)
            .unwrap_or_default();
        t.text(&name, &String::from_utf8_lossy(raw));
    }
    for part in &msg.parts {
        match &part.body {
            PartType::Text(text) => t.text("", text),
            PartType::Html(html) => t.html(html),
            PartType::Binary(_) | PartType::InlineBinary(_) => {
                if let Some(ct) = part.content_type() {
                    t.token(
                        "attachment",
                        &format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default())
                            .to_ascii_lowercase(),
                    );
                }
            }
            PartType::Message(_) | PartType::Multipart(_) => {}
        }
    }
    t.finish()
}

/// The regular files of a directory, sorted, hidden ones left out.
fn mail_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("Reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("Reading {}", dir.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // Symbolic links to files count as files.
        let path = entry.path();
        if !hidden && std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The store's name of a model: `""` for the global one, else the user's
/// bare JID.
pub fn owner(user: Option<&str>) -> anyhow::Result<String> {
    match user {
        None => Ok(String::new()),
        Some(user) => Ok(BareJid::new(user.trim())
            .with_context(|| format!("{user:?} is not a bare JID"))?
            .as_str()
            .to_lowercase()),
    }
}

/// Reads a model from the store: the model and the feedbacks it learnt.
pub async fn load(store: &Store, owner: &str) -> anyhow::Result<Option<(Model, i64, i64)>> {
    let Some(stored) = store.spam_model(owner).await? else {
        return Ok(None);
    };
    let model = Model::from_bytes(&stored.bytes).with_context(|| {
        format!(
            "Reading the spam model {}",
            if owner.is_empty() { "global" } else { owner }
        )
    })?;
    Ok(Some((model, stored.feedbacks, stored.version)))
}

/// The name shown for a model.
fn shown(owner: &str) -> String {
    if owner.is_empty() {
        "the global spam model".to_owned()
    } else {
        format!("the spam model of {owner}")
    }
}

/// `facteur spam train`: learns every file of `spam` as spam and of `ham`
/// as ham, into the global model or `user`'s, adding to what it knew.
pub async fn train(
    store: &Store,
    spam: Option<&Path>,
    ham: Option<&Path>,
    user: Option<&str>,
) -> anyhow::Result<String> {
    if spam.is_none() && ham.is_none() {
        anyhow::bail!("Nothing to learn: give --spam DIR, --ham DIR or both");
    }
    let owner = owner(user)?;
    let mut model = load(store, &owner).await?.map(|m| m.0).unwrap_or_default();
    let (mut spams, mut hams) = (0usize, 0usize);
    for (dir, is_spam) in [(spam, true), (ham, false)] {
        let Some(dir) = dir else { continue };
        for file in mail_files(dir)? {
            let raw =
                std::fs::read(&file).with_context(|| format!("Reading {}", file.display()))?;
            model.learn(&tokens(&raw), is_spam);
            if is_spam {
                spams += 1;
            } else {
                hams += 1;
            }
        }
    }
    // What a user's model learns here counts as her feedback.
    let feedbacks = if owner.is_empty() {
        0
    } else {
        i64::try_from(spams + hams).unwrap_or(i64::MAX)
    };
    store
        .save_spam_model(&owner, &model.to_bytes(), feedbacks)
        .await?;
    Ok(format!(
        "{}: learnt {spams} spam and {hams} ham; the model knows {} spam, {} ham, {} tokens",
        shown(&owner),
        model.spam_mails(),
        model.ham_mails(),
        model.len()
    ))
}

/// The models `facteur spam score` judges with: the global one, and the
/// user's if it counts yet.
pub async fn models(store: &Store, user: Option<&str>) -> anyhow::Result<(Model, Option<Model>)> {
    let global = load(store, "").await?.map(|m| m.0).with_context(|| {
        "No global spam model in the store: train one with facteur spam train".to_owned()
    })?;
    let own = match user {
        Some(user) => load(store, &owner(Some(user))?)
            .await?
            .filter(|(_, feedbacks, _)| {
                bayes::user_model_counts(u64::try_from(*feedbacks).unwrap_or(0))
            })
            .map(|m| m.0),
        None => None,
    };
    Ok((global, own))
}

/// Where models of an older facteur were kept: `spam-models/` beside the
/// SQLite database.
fn models_dir(config: &Config) -> Option<PathBuf> {
    let url = &config.store.url;
    if Kind::of(url) != Some(Kind::Sqlite) {
        return None;
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let db = options.get_filename();
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some(dir.join("spam-models"))
}

/// The file an older facteur kept `user`'s model (or the global one) in.
fn model_path(dir: &Path, user: Option<&str>) -> PathBuf {
    let Some(user) = user else {
        return dir.join("global.model");
    };
    let mut t = Tokens::new();
    t.token("user", &user.to_lowercase());
    let hash = t.finish().first().copied().unwrap_or_default();
    dir.join(format!("user-{hash:016x}.model"))
}

/// Moves the model files of an older facteur into the store: the global
/// one and those of registered users, where the store has none yet; the
/// directory is renamed `spam-models.imported` once done. Nothing to do
/// on PostgreSQL or without the directory.
pub async fn import_files(config: &Config, store: &Store) -> anyhow::Result<()> {
    let Some(dir) = models_dir(config).filter(|d| d.is_dir()) else {
        return Ok(());
    };
    let mut owners: Vec<Option<String>> = vec![None];
    owners.extend(store.users().await?.into_iter().map(Some));
    for user in owners {
        let path = model_path(&dir, user.as_deref());
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("Reading {}", path.display())),
        };
        let model =
            Model::from_bytes(&bytes).with_context(|| format!("Reading {}", path.display()))?;
        let owner = user.as_deref().unwrap_or_default().to_lowercase();
        if store.spam_model(&owner).await?.is_none() {
            let feedbacks = i64::try_from(model.spam_mails() + model.ham_mails()).unwrap_or(0);
            store
                .save_spam_model(
                    &owner,
                    &model.to_bytes(),
                    if owner.is_empty() { 0 } else { feedbacks },
                )
                .await?;
            info!(model = %shown(&owner), file = %path.display(), "Spam model moved into the store.");
        }
    }
    let done = dir.with_extension("imported");
    std::fs::rename(&dir, &done)
        .with_context(|| format!("Renaming {} to {}", dir.display(), done.display()))
}

/// A model held in memory, with its version in the store and when that
/// was last checked.
struct Cached {
    model: Option<Arc<Model>>,
    feedbacks: i64,
    version: i64,
    checked: Instant,
}

/// The models in memory, shared by the reception and the commands; cheap
/// to clone.
#[derive(Clone, Default)]
pub struct Models {
    cache: Arc<Mutex<HashMap<String, Arc<Cached>>>>,
}

static SHARED: std::sync::LazyLock<Models> = std::sync::LazyLock::new(Models::default);

impl Models {
    /// The models of this process: the reception judges with what the
    /// commands just trained.
    pub fn shared() -> Models {
        SHARED.clone()
    }

    /// A model from memory, read again from the store when its version
    /// changed (checked at most every [`RECHECK`]).
    async fn get(&self, store: &Store, owner: &str) -> anyhow::Result<Arc<Cached>> {
        let cached = self.cache.lock().ok().and_then(|c| c.get(owner).cloned());
        if let Some(cached) = &cached {
            if cached.checked.elapsed() < RECHECK {
                return Ok(cached.clone());
            }
        }
        let version = store.spam_model_version(owner).await?;
        let fresh = match cached {
            Some(cached) if cached.version == version => Arc::new(Cached {
                model: cached.model.clone(),
                feedbacks: cached.feedbacks,
                version,
                checked: Instant::now(),
            }),
            _ => {
                let loaded = load(store, owner).await?;
                Arc::new(match loaded {
                    Some((model, feedbacks, version)) => Cached {
                        model: Some(Arc::new(model)),
                        feedbacks,
                        version,
                        checked: Instant::now(),
                    },
                    None => Cached {
                        model: None,
                        feedbacks: 0,
                        version: 0,
                        checked: Instant::now(),
                    },
                })
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(owner.to_owned(), fresh.clone());
        }
        Ok(fresh)
    }

    /// The probability that a mail with these tokens is spam for `user`:
    /// the global model plus hers once it counts; `None` when no model
    /// judges (none trained, or only hers and not yet counting). A store
    /// error judges nothing: it never refuses a mail.
    pub async fn probability(&self, store: &Store, user: &BareJid, tokens: &[u64]) -> Option<f64> {
        let owner = user.as_str().to_lowercase();
        let (global, own) = match (self.get(store, "").await, self.get(store, &owner).await) {
            (Ok(global), Ok(own)) => (global, own),
            (Err(e), _) | (_, Err(e)) => {
                warn!(
                    error = format!("{e:#}"),
                    "Spam models unavailable; content not judged."
                );
                return None;
            }
        };
        let own = own
            .model
            .as_deref()
            .filter(|_| bayes::user_model_counts(u64::try_from(own.feedbacks).unwrap_or(0)));
        match (global.model.as_deref(), own) {
            (Some(global), own) => Some(global.score(tokens, own)),
            (None, Some(own)) => Some(own.score(tokens, None)),
            (None, None) => None,
        }
    }

    /// Trains `user`'s own model with one mail's tokens, as spam or ham,
    /// and counts the feedback; a model that learnt from it the other way
    /// (`unlearn`) forgets that first.
    pub async fn train(
        &self,
        store: &Store,
        user: &BareJid,
        tokens: &[u64],
        spam: bool,
        unlearn: bool,
    ) -> anyhow::Result<()> {
        let owner = user.as_str().to_lowercase();
        let (mut model, _, _) = load(store, &owner).await?.unwrap_or_default();
        if unlearn {
            model.unlearn(tokens, !spam);
        }
        model.learn(tokens, spam);
        store
            .save_spam_model(&owner, &model.to_bytes(), i64::from(!unlearn))
            .await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&owner);
        }
        Ok(())
    }
}
