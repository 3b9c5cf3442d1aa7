//! `facteur keys import|list|show|remove`: the users' OpenPGP keys, over
//! the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::{admin, keys, store};

#[derive(Subcommand)]
pub enum KeysAction {
    /// Publish a user's key (armored or binary) after the checks a user's
    /// own publication passes: valid, neither expired nor revoked, with an
    /// encryption subkey and a user ID naming the JID. Only those user
    /// IDs and the key's own signatures are kept. A revocation of the
    /// key published replaces it.
    Import {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        /// The user's bare JID.
        #[arg(long)]
        jid: String,
        /// The key file.
        file: PathBuf,
    },
    /// Print one line per published key: JID, fingerprint, status,
    /// source and when it was published.
    List {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        /// Only this user's key.
        #[arg(long)]
        jid: Option<String>,
    },
    /// Print a user's key, armored, as it is served.
    Show {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        /// The user's bare JID.
        #[arg(long)]
        jid: String,
    },
    /// Stop serving a user's key.
    Remove {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        /// The user's bare JID.
        #[arg(long)]
        jid: String,
    },
}

/// `facteur keys …`.
pub fn keys_command(action: KeysAction) -> ExitCode {
    let user = |jid: &str| -> anyhow::Result<jid::BareJid> {
        jid::BareJid::new(jid).with_context(|| format!("Invalid JID {jid}"))
    };
    match action {
        KeysAction::Import { config, jid, file } => admin(&config, |store, config| async move {
            let jid = user(&jid)?;
            if !config.mail.serves(jid.domain().as_str()) || jid.node().is_none() {
                anyhow::bail!(
                    "{jid} is not a user of a served domain ({})",
                    config.mail.domains.join(", ")
                );
            }
            let input =
                keys::read_limited(&file).with_context(|| format!("Reading {}", file.display()))?;
            let stored = store.key(&jid).await?;
            let published = keys::accept(
                &jid,
                &input,
                stored.as_ref().map(|k| k.cert.as_slice()),
                std::time::SystemTime::now(),
            )
            .with_context(|| format!("{} refused", file.display()))?;
            store
                .put_key(&jid, &published, store::KeySource::Cli)
                .await?;
            let what = if published.revoked {
                "revocation of"
            } else {
                "key"
            };
            println!("imported {what} {} for {jid}", published.fingerprint);
            Ok(())
        }),
        KeysAction::List { config, jid } => admin(&config, |store, _| async move {
            let listed = match jid {
                Some(jid) => store.key(&user(&jid)?).await?.into_iter().collect(),
                None => store.keys().await?,
            };
            let now = std::time::SystemTime::now();
            for key in listed {
                let status = keys::summary(&key.cert, now)
                    .map_or_else(|e| format!("unreadable: {e}"), |summary| summary.status);
                println!(
                    "{} {} {status} {} {}",
                    key.user,
                    key.fingerprint,
                    key.source,
                    store::admin::timestamp(key.updated_at)
                );
            }
            Ok(())
        }),
        KeysAction::Show { config, jid } => admin(&config, |store, _| async move {
            let jid = user(&jid)?;
            let key = store
                .key(&jid)
                .await?
                .with_context(|| format!("{jid} has published no key"))?;
            print!("{}", keys::armored(&key.cert)?);
            Ok(())
        }),
        KeysAction::Remove { config, jid } => admin(&config, |store, _| async move {
            let jid = user(&jid)?;
            if store.remove_key(&jid).await? {
                println!("removed the key of {jid}");
            } else {
                println!("{jid} had no key");
            }
            Ok(())
        }),
    }
}
