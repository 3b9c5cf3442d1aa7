//! The recipient map Postfix needs when it is the MX in front of facteur:
//! the source of `relay_recipient_maps` (postmap(1) format, one
//! `address OK` line per recipient facteur accepts at RCPT), so that
//! Postfix refuses unknown recipients itself (RFC 5321 §3.3: at RCPT,
//! never by a bounce after accepting the mail).
//!
//! Bounces to facteur's return paths (`bounce+ID-TAG@domain`) are not in
//! this map: they are matched by the regexp table shipped in
//! `deploy/postfix/`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use facteur_policy::relay::UserScope;

/// What the map holds, and the registered users it cannot hold.
pub struct RecipientMap {
    /// The postmap source.
    pub text: String,
    /// Users left out: postmap would read their line as a comment.
    pub skipped: Vec<String>,
}

/// The map of the recipients facteur accepts: with `users = "all"`, any
/// address of each served domain (`@domain OK`); otherwise each
/// registered user of a served domain. A user of a domain no longer
/// served is left out, as facteur refuses them too.
pub fn recipients(domains: &[String], scope: UserScope, users: &[String]) -> RecipientMap {
    let mut text = String::from(
        "# Recipients facteur accepts, written by `facteur users export-postfix`:\n\
         # the source of Postfix's relay_recipient_maps (postmap hash:FILE).\n",
    );
    let mut skipped = Vec::new();
    match scope {
        UserScope::All => {
            for domain in domains {
                text.push_str(&format!("@{domain} OK\n"));
            }
        }
        UserScope::Registered => {
            for user in users {
                let served = user.rsplit_once('@').is_some_and(|(_, domain)| {
                    domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
                });
                if !served {
                    continue;
                }
                // A JID node may start with '#' but postmap skips such a
                // line as a comment; nodeprep already forbids whitespace.
                if user.starts_with('#') {
                    skipped.push(user.clone());
                    continue;
                }
                text.push_str(&format!("{user} OK\n"));
            }
        }
    }
    RecipientMap { text, skipped }
}

/// Replaces `path` with `text` atomically: written to a temporary file
/// beside it, flushed to disk, then renamed over it, so that a reader
/// (postmap run from cron) sees the old file or the new one, never a part.
/// A file that already holds `text` is left alone, so that its time tells
/// cron whether postmap must run again.
pub fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == text.as_bytes()) {
        return Ok(());
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .with_context(|| format!("Creating {}", temp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("Writing {}", temp.display()))?;
        std::fs::rename(&temp, path)
            .with_context(|| format!("Renaming {} to {}", temp.display(), path.display()))?;
        Ok(())
    })();
    if written.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("Syncing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn domains() -> Vec<String> {
        vec!["a.test".into(), "b.test".into()]
    }

    #[test]
    fn registered_users_of_served_domains_only() {
        let users = [
            "alice@a.test",
            "bob@b.test",
            "carol@gone.test",
            "#chan@a.test",
        ]
        .map(String::from);
        let map = recipients(&domains(), UserScope::Registered, &users);
        let lines: Vec<&str> = map.text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["alice@a.test OK", "bob@b.test OK"]);
        assert_eq!(map.skipped, ["#chan@a.test"]);
    }

    #[test]
    fn every_address_of_the_domains_when_all_users_have_mail() {
        let map = recipients(&domains(), UserScope::All, &["alice@a.test".into()]);
        let lines: Vec<&str> = map.text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines, ["@a.test OK", "@b.test OK"]);
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("recipients");
        std::fs::write(&path, "old@a.test OK\n").expect("write");
        write_atomically(&path, "new@a.test OK\n").expect("written");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "new@a.test OK\n"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["recipients"]);
    }

    #[test]
    fn the_same_text_leaves_the_file_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("recipients");
        std::fs::write(&path, "alice@a.test OK\n").expect("write");
        let before = std::fs::metadata(&path).expect("stat").ino();
        write_atomically(&path, "alice@a.test OK\n").expect("written");
        assert_eq!(std::fs::metadata(&path).expect("stat").ino(), before);
        write_atomically(&path, "bob@a.test OK\n").expect("written");
        assert_ne!(std::fs::metadata(&path).expect("stat").ino(), before);
    }
}
