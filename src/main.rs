//! facteur: an XMPP-Mail ⇄ SMTP gateway, run as an XEP-0114 component
//! beside an existing XMPP server.

mod cli;
mod component;
mod config;
mod dkim;
mod dns;
mod fetch;
mod http;
mod imap;
mod keys;
mod manual;
mod pipeline;
mod postfix_map;
mod probe;
mod reload;
mod return_path;
mod smtp;
mod spam;
mod store;
mod systemd;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::component::intake::Intake;
use crate::component::Link;
use crate::config::{Config, LogFormat};
use crate::pipeline::to_mail::ToMail;
use crate::pipeline::to_xmpp::ToXmpp;
use crate::smtp::session::Reception;
use crate::store::admin::{ItemId, LIST_LIMIT};
use crate::store::Store;

/// How long open sessions and deliveries get to finish on shutdown.
const GRACE: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    name = "facteur",
    version,
    about = "XMPP-Mail ⇄ SMTP gateway (XEP-0114 component)",
    long_about = "facteur gives the users of an XMPP server mail. It runs beside the \
        server as an XEP-0114 external component and carries mail both ways: mail \
        to a user reaches their XMPP client as a chat message, and their answer \
        leaves as an ordinary mail, by SMTP. It is the SMTP server of the served \
        domains, and keeps every mail in its store until delivered."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway in the foreground until SIGTERM or SIGINT. SIGHUP
    /// reloads the configuration file: what a reload may change is put in
    /// force if the whole file passes every check; restart-only keys keep
    /// their running value, and each one changed is named in the log.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
    },
    /// Check a configuration file; print every problem found.
    CheckConfig {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
    },
    /// Print how many items each queue holds, by state; or list, show,
    /// retry or delete queued items.
    Queue {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: Option<QueueAction>,
    },
    /// Print the statistics: registered users, items per queue and state,
    /// and the age of each queue's oldest waiting item.
    Stats {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
    },
    /// DKIM keys.
    Dkim {
        #[command(subcommand)]
        action: DkimAction,
    },
    /// List, register or unregister users (what XEP-0077 does from a client).
    Users {
        /// The configuration file (TOML).
        #[arg(long, short, env = "FACTEUR_CONFIG")]
        config: PathBuf,
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Attach, list or detach users' legacy IMAP mailboxes (what the
    /// ad-hoc commands "Attach a mailbox", "Mailboxes" and "Detach a
    /// mailbox" do from a client). A running gateway follows the change
    /// within seconds.
    Imap {
        #[command(subcommand)]
        action: cli::imap::ImapAction,
    },
    /// The users' OpenPGP keys, as WKD and the key IQ serve them: import
    /// one for a user, list, show or remove them.
    Keys {
        #[command(subcommand)]
        action: cli::keys::KeysAction,
    },
    /// Train or check the Bayesian spam classifier, without a running
    /// daemon.
    Spam {
        #[command(subcommand)]
        action: cli::spam::SpamAction,
    },
    /// Write the manual page, facteur(1), as roff to stdout.
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand)]
enum DkimAction {
    /// Write a new key and print the DNS TXT record to publish.
    Keygen {
        /// The signing domain (d=).
        #[arg(long)]
        domain: String,
        /// The selector (s=): the record goes at SELECTOR._domainkey.DOMAIN.
        #[arg(long)]
        selector: String,
        /// ed25519 (RFC 8463) or rsa (2048 bits; what every verifier knows).
        #[arg(long, default_value = "rsa")]
        algorithm: String,
        /// Where the private key goes (PEM, mode 0600); never overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum QueueAction {
    /// Print the waiting items, oldest first, one per line.
    List {
        #[arg(long, default_value_t = LIST_LIMIT)]
        limit: u32,
    },
    /// Print one item, in whatever state (e.g. to_mail:42).
    Show { item: ItemId },
    /// Make a waiting item due now.
    Retry { item: ItemId },
    /// Give a waiting item up without telling anyone.
    Delete { item: ItemId },
}

#[derive(Subcommand)]
enum UsersAction {
    /// Print the registered users.
    List,
    /// Register a user of a served domain.
    Add {
        /// The user's bare JID.
        jid: String,
    },
    /// Unregister a user.
    Remove {
        /// The user's bare JID.
        jid: String,
    },
    /// Print the recipients facteur accepts as the source of Postfix's
    /// relay_recipient_maps ("address OK" lines, for postmap), so that a
    /// Postfix in front refuses unknown recipients at RCPT.
    ExportPostfix {
        /// Write the map to this file instead of standard output, replacing
        /// it atomically (a temporary file beside it, then renamed).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("{}: warning: {warning}", config.display());
                }
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e:#}", config.display());
                ExitCode::FAILURE
            }
        },
        Command::Queue { config, action } => admin(&config, |store, _| async move {
            match action {
                None => {
                    for (queue, state, count) in store.queue_counts().await? {
                        println!("{queue} {state} {count}");
                    }
                }
                Some(QueueAction::List { limit }) => {
                    for entry in store.queue_list(limit).await? {
                        println!("{}", entry.line());
                    }
                }
                Some(QueueAction::Show { item }) => {
                    let detail = store
                        .queue_show(item)
                        .await?
                        .with_context(|| format!("No queue item {item}"))?;
                    for (_, label, value) in detail.fields() {
                        println!("{label}: {value}");
                    }
                }
                Some(QueueAction::Retry { item }) => {
                    if !store.queue_retry(item, store::Millis::now()).await? {
                        anyhow::bail!("{item} is not waiting in the queue");
                    }
                    println!("{item} is due now");
                }
                Some(QueueAction::Delete { item }) => {
                    if !store.queue_delete(item, store::Millis::now()).await? {
                        anyhow::bail!("{item} is not waiting in the queue");
                    }
                    println!("{item} is deleted");
                }
            }
            Ok(())
        }),
        Command::Stats { config } => admin(&config, |store, _| async move {
            for (name, _, value) in store.stats().await?.fields(store::Millis::now()) {
                println!("{name} {value}");
            }
            Ok(())
        }),
        Command::Spam { action } => cli::spam::spam(action),
        Command::Dkim {
            action:
                DkimAction::Keygen {
                    domain,
                    selector,
                    algorithm,
                    out,
                },
        } => match dkim::keygen(&domain, &selector, &algorithm, &out) {
            Ok(record) => {
                println!(
                    "Key written to {}. Publish this record:\n{record}",
                    out.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Users { config, action } => admin(&config, |store, config| async move {
            match action {
                UsersAction::List => {
                    for user in store.users().await? {
                        println!("{user}");
                    }
                }
                UsersAction::Add { jid } => {
                    let jid =
                        jid::BareJid::new(&jid).with_context(|| format!("Invalid JID {jid}"))?;
                    if !config.mail.serves(jid.domain().as_str()) || jid.node().is_none() {
                        anyhow::bail!(
                            "{jid} is not a user of a served domain ({})",
                            config.mail.domains.join(", ")
                        );
                    }
                    store.register(&jid).await?;
                    println!("registered {jid}");
                }
                UsersAction::Remove { jid } => {
                    let jid =
                        jid::BareJid::new(&jid).with_context(|| format!("Invalid JID {jid}"))?;
                    let was = store.unregister(&jid).await?;
                    println!(
                        "{} {jid}",
                        if was {
                            "unregistered"
                        } else {
                            "was not registered:"
                        }
                    );
                }
                UsersAction::ExportPostfix { output } => {
                    let map = postfix_map::recipients(
                        &config.mail.domains,
                        config.mail.users,
                        &store.users().await?,
                    );
                    for user in &map.skipped {
                        eprintln!("{user}: left out, postmap would read it as a comment");
                    }
                    match output {
                        Some(path) => postfix_map::write_atomically(&path, &map.text)?,
                        None => print!("{}", map.text),
                    }
                }
            }
            Ok(())
        }),
        Command::Imap { action } => cli::imap::imap_command(action),
        Command::Keys { action } => cli::keys::keys_command(action),
        Command::Man => match manual::render(Cli::command(), &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Writing the manual page: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            let path = config.clone();
            // The log's format is in the file: read it first, and report a
            // file that does not load in the default format.
            let loaded = Config::load(&config);
            init_logs(loaded.as_ref().map_or(LogFormat::Text, |c| c.log.format));
            let config = match loaded {
                Ok(config) => Arc::new(config),
                Err(e) => {
                    error!("{e:#}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("Starting the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(config, path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs to stderr, at the level of `RUST_LOG` (`info` by default).
fn init_logs(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
}

/// Runs an admin command against the store named by the config.
fn admin<F, Fut>(path: &std::path::Path, command: F) -> ExitCode
where
    F: FnOnce(Store, Arc<Config>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let outcome = tokio::runtime::Runtime::new()
        .context("Starting the runtime")
        .and_then(|runtime| {
            runtime.block_on(async {
                let config = Arc::new(Config::load(path)?);
                let store = Store::open(&config.store.url).await?;
                let outcome = command(store.clone(), config).await;
                store.close().await;
                outcome
            })
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Arc<Config>, path: PathBuf) -> anyhow::Result<()> {
    // Before anything can be told facteur runs (a bound port, a log
    // line): a SIGHUP that came before its handler would end the process.
    let signals = Signals::install()?;
    let metrics = telemetry::install().context("Installing the metrics recorder")?;
    let systemd = Arc::new(systemd::Notifier::from_env());
    // What a reload replaces; the tasks below read it when they use it.
    let (config_tx, live) = config::Live::new(config.clone());
    for warning in &config.warnings {
        warn!(%warning, "Configuration to update.");
    }
    // One descriptor per SMTP connection: the soft limit (often 1024) would
    // refuse connections long before inbound.max_connections.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < config.inbound.max_connections as u64 + 64 => warn!(
            limit,
            max_connections = config.inbound.max_connections,
            "The open files limit is below inbound.max_connections."
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "Cannot raise the open files limit."),
    }
    let store = Store::open(&config.store.url)
        .await?
        .with_lease(config.store.lease);
    info!(
        instance = store.instance(),
        lease_s = config.store.lease.as_secs(),
        "Taking queue items as this instance."
    );
    if let Err(e) = spam::bayes::import_files(&config, &store).await {
        warn!(
            error = format!("{e:#}"),
            "Moving the spam model files into the store failed."
        );
    }
    match store.release_dead_leases().await {
        Ok(0) => {}
        Ok(freed) => info!(
            items = freed,
            "Queue items an earlier run on this host was working on are due again."
        ),
        Err(e) => warn!(
            error = format!("{e:#}"),
            "Cannot free earlier runs' leases."
        ),
    }
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(store::keep_leases(store.clone(), shutdown.clone()));

    let resolver = dns::resolver(&config.dns)?;
    let verifier = config
        .auth
        .verify
        .then(|| smtp::verify::Verifier::new(resolver.clone(), &config.inbound.hostname));
    let return_paths = return_path::ReturnPaths::new(&store.secret("return-path").await?);
    let mut reception = Reception::new(
        live.clone(),
        store.clone(),
        verifier,
        return_paths.clone(),
        &tracker,
    );
    // The shared lists and DNS lists the spam check asks.
    reception.spam.listings = spam::Listings::new(live.clone(), store.clone(), resolver.clone());
    let reception = Arc::new(reception);
    let tls = match &config.inbound.tls {
        Some(files) => Some(smtp::server::tls_acceptor(files)?),
        None => None,
    };
    let (tls_tx, tls) = watch::channel(tls);
    let reloader = reload::Reloader::new(path, config_tx, tls_tx, systemd.clone());
    let listeners = smtp::server::bind(&reception).await?;
    let http_listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("Listening for HTTP on {}", config.http.listen))?;
    info!(addr = %config.http.listen, public_url = %config.http.public_url, "HTTP listening.");
    let files = http::files::FileStore::new(&config.http.storage);
    let sender = Arc::new(smtp::client::Sender::new(
        &config.outbound,
        resolver.clone(),
    ));

    // Room for a burst of stanzas while the intake queues them in batches.
    let (intake_tx, intake_rx) = mpsc::channel(4096);
    // Errors other domains send for XMPP-Mail after the server confirmed it.
    let (late_tx, late_rx) = mpsc::channel(256);
    let (link, handle) = Link::new(live.clone(), intake_tx, late_tx);
    // Several instances may bind the component domain: answers to one
    // instance's IQs that reach another come back through the store.
    let link = match store.is_shared() {
        true => {
            let (handover, task) = component::handover::start(store.clone(), shutdown.clone());
            tracker.spawn(task);
            link.with_handover(handover)
        }
        false => link,
    };
    let link_up = handle.watch();
    tracker.spawn(link.run(shutdown.clone()));
    let signers = Arc::new(dkim::Signers::load(&config.dkim)?);
    let intake = Intake::new(
        live.clone(),
        store.clone(),
        handle.clone(),
        signers,
        fetch::Fetcher::new(&config.http).context("Setting up file fetching")?,
        tracker.clone(),
        Some(reloader.clone()),
    )
    .with_listings(spam::Listings::new(
        live.clone(),
        store.clone(),
        resolver.clone(),
    ));
    tracker.spawn(intake.run(intake_rx, shutdown.clone()));
    tracker.spawn(
        spam::blocklist::Reader {
            config: live.clone(),
            store: store.clone(),
            link: handle.clone(),
        }
        .run(shutdown.clone()),
    );
    if let Err(e) = spam::start_weights(&config, &store).await {
        warn!(
            error = format!("{e:#}"),
            "Store unavailable; shared list weights not started."
        );
    }
    tracker.spawn(
        spam::lists::Consumer {
            config: live.clone(),
            store: store.clone(),
            link: handle.clone(),
        }
        .run(shutdown.clone()),
    );
    tracker.spawn(
        spam::publish::Publisher {
            config: live.clone(),
            store: store.clone(),
            link: handle.clone(),
        }
        .run(shutdown.clone()),
    );
    tracker.spawn(component::listing::run(
        probe::discover::Discovery {
            own: config.component.jid.clone().into(),
            link: handle.clone(),
            step: config.xmpp_mail.step_timeout,
        },
        config.mail.domains.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(http::run(
        http_listener,
        http::router(
            store.clone(),
            files.clone(),
            config.http.retention,
            handle.watch(),
            metrics.clone(),
            &config.mail.domains,
        ),
        shutdown.clone(),
    ));
    tracker.spawn(http::scrape::upkeep(metrics, shutdown.clone()));
    tracker.spawn(store::sweep::run(
        store.clone(),
        store::sweep::Retention {
            keep_finished: config.store.keep_finished,
            keep_threads: config.store.keep_threads,
        },
        config.store.sweep_interval,
        shutdown.clone(),
    ));
    tracker.spawn(spam::digest::run(
        store.clone(),
        live.clone(),
        shutdown.clone(),
    ));
    tracker.spawn(http::expire(
        config.clone(),
        store.clone(),
        files.clone(),
        shutdown.clone(),
    ));
    let to_xmpp = ToXmpp {
        config: live.clone(),
        store: store.clone(),
        files,
        link: handle.clone(),
    };
    tracker.spawn(to_xmpp.run(shutdown.clone()));
    let to_mail = ToMail {
        config: live.clone(),
        store: store.clone(),
        outcomes: store::OutcomeCommitter::outcomes(store.clone(), &tracker),
        sender,
        return_paths,
        prober: Arc::new(probe::Prober::new(
            live.clone(),
            store.clone(),
            handle.clone(),
            resolver,
        )),
        link: handle,
    };
    tracker.spawn(to_mail.run(shutdown.clone()));
    match &config.imap.key {
        Some(key) => {
            let followers = imap::follow::Followers {
                store: store.clone(),
                key: key.clone(),
                config: live.clone(),
                gateway: config.component.jid.clone(),
            };
            tracker.spawn(followers.run(shutdown.clone()));
        }
        None => info!("No [imap] secret_file: IMAP mailboxes are not followed."),
    }
    tracker.spawn(pipeline::to_mail::late_errors(
        store.clone(),
        config.component.jid.clone(),
        late_rx,
        shutdown.clone(),
    ));
    for listener in listeners {
        tracker.spawn(smtp::server::run(
            listener,
            reception.clone(),
            tls.clone(),
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    // The listeners and their sessions hold the reception now; once the
    // last is gone, its committing task ends and shutdown stops waiting.
    drop(reception);
    info!(component = %config.component.jid, domains = ?config.mail.domains, "facteur started.");

    serve(signals, &systemd, &reloader, link_up).await?;
    info!("Shutting down.");
    systemd.stopping();
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        warn!("Some tasks did not finish in time.");
    }
    store.close().await;
    info!("Stopped.");
    Ok(())
}

/// The signals facteur handles; from their installation on, each waits
/// for the main loop instead of taking its default action.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("Installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("Installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("Installing the SIGHUP handler")?,
        })
    }
}

/// The main loop, until SIGTERM or SIGINT: tells systemd facteur is
/// ready once the component link is up for the first time (the store is
/// migrated and the listeners bound by then), feeds its watchdog, and
/// reloads the configuration on SIGHUP.
async fn serve(
    signals: Signals,
    systemd: &systemd::Notifier,
    reloader: &reload::Reloader,
    mut link_up: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Signals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    let every = systemd.watchdog_every();
    // Never fires without a watchdog: the branch below is disabled then.
    let mut watchdog = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    let mut ready = false;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                reloader.reload("SIGHUP").await;
            }
            up = link_up.wait_for(|up| *up), if !ready => {
                if up.is_ok() {
                    systemd.ready();
                }
                ready = true;
            }
            _ = watchdog.tick(), if every.is_some() => systemd.watchdog(),
        }
    }
}
