//! `facteur imap attach|list|detach`: the operator's twins of the users'
//! mailbox commands, over the store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::{admin, imap, store};

#[derive(Subcommand)]
pub enum ImapAction {
    /// Log in to a mailbox once and attach it to a user: new mail in its
    /// folders reaches the user from then on. Attaching it again (a new
    /// password, other folders) resumes a paused mailbox.
    Attach {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        /// The user's bare JID.
        #[arg(long)]
        jid: String,
        /// The IMAP server.
        #[arg(long)]
        host: String,
        #[arg(long)]
        port: u16,
        /// implicit (TLS from the start, usually port 993), starttls
        /// (usually 143) or none (a loopback address only).
        #[arg(long)]
        tls: store::TlsMode,
        /// The login.
        #[arg(long)]
        user: String,
        /// A file holding the password (a final newline is not part of it).
        #[arg(long)]
        password_file: PathBuf,
        /// A folder to follow; repeat for several. Default: INBOX.
        #[arg(long = "folder")]
        folders: Vec<String>,
        /// Also bring the latest N messages of each folder (only new
        /// mail by default).
        #[arg(long, default_value_t = 0)]
        import_last: u32,
        /// The mailbox's outgoing (submission) server: answers to its
        /// mail then leave from its address through it, with SMTP AUTH.
        /// Without it they leave from the user's XMPP address.
        #[arg(long)]
        smtp_host: Option<String>,
        /// The submission port.
        #[arg(long, default_value_t = 587, requires = "smtp_host")]
        smtp_port: u16,
        /// starttls (usually port 587), implicit (usually 465) or none
        /// (a loopback address only).
        #[arg(long, default_value = "starttls", requires = "smtp_host")]
        smtp_tls: store::TlsMode,
        /// The submission login. Default: the IMAP login.
        #[arg(long, requires = "smtp_host")]
        smtp_user: Option<String>,
        /// A file holding the submission password. Default: the IMAP
        /// password.
        #[arg(long, requires = "smtp_host")]
        smtp_password_file: Option<PathBuf>,
        /// The mailbox's address, which answers leave from. Default: the
        /// IMAP login, or else the submission login, if it is an address.
        #[arg(long, requires = "smtp_host")]
        smtp_from: Option<String>,
        /// Put no copy of answers in the Sent folder: for a server that
        /// files one itself.
        #[arg(long, requires = "smtp_host")]
        no_sent_copy: bool,
    },
    /// Print the attached mailboxes, one per line: user, server, TLS,
    /// login, folders, the outgoing server if any (`answers-from ADDRESS
    /// via HOST:PORT TLS`), state.
    List {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        /// Only this user's.
        #[arg(long)]
        jid: Option<String>,
    },
    /// Detach a mailbox: nothing more is fetched from it.
    Detach {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        jid: String,
        #[arg(long)]
        host: String,
        /// The login.
        #[arg(long)]
        user: String,
    },
}

/// Runs `facteur imap …`.
pub fn imap_command(action: ImapAction) -> ExitCode {
    let path = match &action {
        ImapAction::Attach { config, .. }
        | ImapAction::List { config, .. }
        | ImapAction::Detach { config, .. } => config.clone(),
    };
    let user = |jid: &str| jid::BareJid::new(jid).with_context(|| format!("Invalid JID {jid}"));
    admin(&path, |store, config| async move {
        match action {
            ImapAction::Attach {
                jid,
                host,
                port,
                tls,
                user: username,
                password_file,
                folders,
                import_last,
                smtp_host,
                smtp_port,
                smtp_tls,
                smtp_user,
                smtp_password_file,
                smtp_from,
                no_sent_copy,
                ..
            } => {
                let user = user(&jid)?;
                if !config.mail.serves(user.domain().as_str()) || user.node().is_none() {
                    anyhow::bail!(
                        "{user} is not a user of a served domain ({})",
                        config.mail.domains.join(", ")
                    );
                }
                let key = config.imap.key.as_ref().context(
                    "No [imap] secret_file in the configuration: passwords cannot be stored",
                )?;
                let read = |file: &PathBuf| -> anyhow::Result<String> {
                    let password = std::fs::read_to_string(file)
                        .with_context(|| format!("Reading {}", file.display()))?;
                    Ok(password.trim_end_matches(['\r', '\n']).to_owned())
                };
                let password = read(&password_file)?;
                let submission = match smtp_host {
                    Some(host) => Some(imap::SubmissionRequest {
                        host,
                        port: smtp_port,
                        tls: smtp_tls,
                        username: smtp_user.unwrap_or_else(|| username.clone()),
                        password: match &smtp_password_file {
                            Some(file) => read(file)?,
                            None => password.clone(),
                        },
                        from: smtp_from.unwrap_or_default(),
                        sent_copy: !no_sent_copy,
                    }),
                    None => None,
                };
                let request = imap::AttachRequest {
                    user,
                    host,
                    port,
                    tls,
                    username,
                    password,
                    folders,
                    import_last,
                    submission,
                };
                imap::attach(&store, key, &request).await?;
                println!(
                    "attached {} at {} for {}",
                    request.username, request.host, request.user
                );
            }
            ImapAction::List { jid, .. } => {
                let user = jid.as_deref().map(user).transpose()?;
                for mailbox in store.imap_mailboxes(user.as_ref()).await? {
                    println!("{}", imap::line(&mailbox));
                }
            }
            ImapAction::Detach {
                jid,
                host,
                user: username,
                ..
            } => {
                let user = user(&jid)?;
                let host = host.trim().to_ascii_lowercase();
                if !store.imap_detach(&user, &host, &username).await? {
                    anyhow::bail!("{user} has no mailbox {username} at {host}");
                }
                println!("detached {username} at {host} from {user}");
            }
        }
        Ok(())
    })
}
