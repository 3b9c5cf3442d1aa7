//! The Bayesian content classifier's I/O: a mail's tokens (headers, text,
//! HTML text and link hosts, decoded by mail-parser), the model files, and
//! `facteur spam train|score`.
//!
//! The models are kept beside the SQLite database, in `spam-models/`:
//! `global.model` is the operator's, trained with `facteur spam train`;
//! `user-<hash>.model` holds a user's own counts, added to the global ones
//! once it has learnt from enough feedback
//! ([`facteur_policy::bayes::user_model_counts`]).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use facteur_policy::bayes::{self, Model, Tokens};
use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::config::Config;
use crate::store::Kind;

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

/// Where the models are kept: `spam-models/` beside the SQLite database.
pub fn models_dir(config: &Config) -> anyhow::Result<PathBuf> {
    let url = &config.store.url;
    if Kind::of(url) != Some(Kind::Sqlite) {
        anyhow::bail!(
            "The spam models are kept beside the SQLite database; store.url is not a SQLite database"
        );
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .with_context(|| format!("Parsing store URL {url}"))?;
    let db = options.get_filename();
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok(dir.join("spam-models"))
}

/// The model file of `user` (a bare JID), or the global one.
pub fn model_path(dir: &Path, user: Option<&str>) -> anyhow::Result<PathBuf> {
    let Some(user) = user else {
        return Ok(dir.join("global.model"));
    };
    let jid = jid::BareJid::new(user).with_context(|| format!("{user:?} is not a bare JID"))?;
    let mut t = Tokens::new();
    t.token("user", &jid.as_str().to_lowercase());
    let hash = t.finish().first().copied().unwrap_or_default();
    Ok(dir.join(format!("user-{hash:016x}.model")))
}

/// Reads a model; `None` when there is none yet.
pub fn load(path: &Path) -> anyhow::Result<Option<Model>> {
    match std::fs::read(path) {
        Ok(bytes) => Model::from_bytes(&bytes)
            .map(Some)
            .with_context(|| format!("Reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("Reading {}", path.display())),
    }
}

/// Writes a model in place of the old one, atomically.
pub fn save(path: &Path, model: &Model) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("Creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("model.tmp");
    std::fs::write(&tmp, model.to_bytes()).with_context(|| format!("Writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("Writing {}", path.display()))
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

/// `facteur spam train`: learns every file of `spam` as spam and of `ham`
/// as ham, into the global model or `user`'s, adding to what it knew.
pub fn train(
    config: &Config,
    spam: Option<&Path>,
    ham: Option<&Path>,
    user: Option<&str>,
) -> anyhow::Result<String> {
    if spam.is_none() && ham.is_none() {
        anyhow::bail!("Nothing to learn: give --spam DIR, --ham DIR or both");
    }
    let path = model_path(&models_dir(config)?, user)?;
    let mut model = load(&path)?.unwrap_or_default();
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
    save(&path, &model)?;
    Ok(format!(
        "{}: learnt {spams} spam and {hams} ham; the model knows {} spam, {} ham, {} tokens",
        path.display(),
        model.spam_mails(),
        model.ham_mails(),
        model.len()
    ))
}

/// The models `facteur spam score` judges with: the global one, and the
/// user's if it counts yet.
pub fn models(config: &Config, user: Option<&str>) -> anyhow::Result<(Model, Option<Model>)> {
    let dir = models_dir(config)?;
    let path = model_path(&dir, None)?;
    let global = load(&path)?.with_context(|| {
        format!(
            "No spam model at {}: train one with facteur spam train",
            path.display()
        )
    })?;
    let own = match user {
        Some(user) => load(&model_path(&dir, Some(user))?)?
            .filter(|m| bayes::user_model_counts(m.spam_mails() + m.ham_mails())),
        None => None,
    };
    Ok((global, own))
}
