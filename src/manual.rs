//! The manual page facteur(1), in roff, made from the command line's
//! clap definitions (`clap_mangen`): one page for the daemon and every
//! command (each command a subsection, so that no page it names is
//! missing), then what clap does not know: files, environment, signals,
//! exit status. `facteur man` prints it; `deploy/facteur.1` is its output,
//! and a test keeps the two equal.

use std::io::{self, Write};

use clap::Command;
use clap_mangen::Man;

/// What the page says beyond the command line, in roff.
const TRAILER: &str = r#".SH FILES
.TP
\fI/etc/facteur/facteur.toml\fR
The configuration (TOML). Every key, with its default, is in
\fIconfig/facteur.example.toml\fR of the sources.
.TP
\fI/var/lib/facteur/\fR
The store (\fIfacteur.db\fR, SQLite, unless \fB[store] url\fR names a
PostgreSQL database) and attachment files, as the configuration names
them.
.SH ENVIRONMENT
.TP
\fBFACTEUR_CONFIG\fR
The configuration file, when \fB\-\-config\fR is not given.
.TP
\fBRUST_LOG\fR
What is logged, as a tracing filter: \fBinfo\fR by default,
\fBinfo,facteur=debug\fR for protocol detail. The log goes to stderr, as
text or JSON (\fB[log] format\fR).
.TP
\fBNOTIFY_SOCKET\fR, \fBWATCHDOG_USEC\fR
Set by systemd for \fBType=notify\fR: \fBfacteur run\fR sends
\fBREADY=1\fR once the store is migrated, the listeners are bound and the
component link is up for the first time, \fBWATCHDOG=1\fR every half
\fBWATCHDOG_USEC\fR, \fBRELOADING=1\fR and \fBREADY=1\fR around a reload,
and \fBSTOPPING=1\fR on shutdown.
.SH SIGNALS
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Stop: the listeners close, idle SMTP sessions get \fB421 4.3.2\fR, a DATA
in progress and deliveries in progress finish (30 seconds at most).
.TP
\fBSIGHUP\fR
Reload the configuration file (\fBsystemctl reload facteur\fR). The whole
file is checked as at start and the STARTTLS certificate and key are read
again; only then is it put in force, at once. A file with a problem is
refused, every problem logged, and the running configuration stays.
Keys marked \fB(restart)\fR in \fIconfig/facteur.example.toml\fR keep
their running value until the next start; the log names each one the
file changes. Administrators reload from their XMPP client with the
ad-hoc command \fBreload\fR, whose note says the same.
.SH MONITORING
The HTTP listener (\fB[http] listen\fR) answers \fB/health\fR (\fB200 ok\fR,
or \fB503\fR naming what is down) and \fB/metrics\fR (Prometheus text).
.SH "EXIT STATUS"
0 on success; 1 when the configuration is refused or a command fails.
.SH "SEE ALSO"
\fBsystemd.service\fR(5), \fBsystemd\-analyze\fR(1)
"#;

/// Writes the page for `cli` to `out`.
pub fn render(cli: Command, out: &mut dyn Write) -> io::Result<()> {
    let cli = cli.disable_help_subcommand(true);
    let page = Man::new(cli.clone());
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for command in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
        subsection(out, &format!("facteur {}", command.get_name()), command)?;
    }
    out.write_all(TRAILER.as_bytes())?;
    page.render_version_section(out)
}

/// One command: its synopsis, what it does, its options, and its own
/// commands after it.
fn subsection(out: &mut dyn Write, name: &str, command: &Command) -> io::Result<()> {
    let command = command
        .clone()
        .bin_name(name.to_owned())
        .disable_help_flag(true)
        .disable_help_subcommand(true);
    writeln!(out, ".SS \"{name}\"")?;
    let page = Man::new(command.clone());
    let mut text = Vec::new();
    page.render_synopsis_section(&mut text)?;
    page.render_description_section(&mut text)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut text)?;
    }
    // The sections of a page become paragraphs of a subsection.
    for line in String::from_utf8_lossy(&text).lines() {
        match line.strip_prefix(".SH ") {
            Some(_) => writeln!(out, ".PP")?,
            None => writeln!(out, "{line}")?,
        }
    }
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        subsection(out, &format!("{name} {}", sub.get_name()), sub)?;
    }
    Ok(())
}
