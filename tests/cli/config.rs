//! `check-config` and `run` refusing a bad configuration with every
//! problem listed, and warning about deprecated keys.

use crate::invoke::{assert_success, config_file, facteur, with_config};

/// A component and one served domain: all a configuration needs.
const SERVED: &str = "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
    [mail]\ndomains = [\"example.test\"]\n";

/// Runs `check-config` on a file holding `text`: its exit code and
/// standard error.
fn check(text: &str) -> (Option<i32>, String) {
    let (_dir, path) = config_file(text);
    let out = with_config("check-config", &path);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let out = facteur()
        .args(["check-config", "--config", "config/facteur.example.toml"])
        .output()
        .expect("runs");
    assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "config/facteur.example.toml: ok\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

#[test]
fn check_config_refuses_an_address_that_cannot_work() {
    let (code, stderr) = check(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\nserver = \"127.0.0.1:notaport\"\n\
         [mail]\ndomains = [\"example.test\"]\n",
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("component.server: \"127.0.0.1:notaport\""),
        "{stderr}"
    );
}

/// Sets the retry of mail and not that of deliveries to XMPP, as files
/// written before `[xmpp]` existed do.
const OLD_RETRY_KEYS: &str = "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
    [mail]\ndomains = [\"example.test\"]\n[outbound]\nretry_max = \"2h\"\n";

const OLD_RETRY_WARNING: &str = "outbound.retry_max: also applies to deliveries to XMPP users, \
    until the next release; set xmpp.retry_max for them";

#[test]
fn check_config_warns_about_old_retry_keys_and_passes() {
    let (_dir, path) = config_file(OLD_RETRY_KEYS);
    let out = with_config("check-config", &path);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!("{}: warning: {OLD_RETRY_WARNING}\n", path.display())
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn run_logs_old_retry_keys_at_start() {
    // The store cannot open, so the daemon stops right after the warning.
    let (_dir, path) = config_file(&format!(
        "{OLD_RETRY_KEYS}[store]\nurl = \"sqlite:///nonexistent/facteur/facteur.db\"\n"
    ));
    let out = facteur()
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("Configuration to update."))
        .unwrap_or_else(|| panic!("no warning in {stderr}"));
    assert!(
        line.contains("WARN") && line.contains(OLD_RETRY_WARNING),
        "{line}"
    );
}

#[test]
fn check_config_lists_every_problem() {
    let (code, stderr) = check(
        "[component]\njid = \"mail.example.test\"\nsecret_file = \"/nonexistent/secret\"\n\
         [mail]\ndomains = [\"example.test\"]\nusers = \"everyone\"\n\
         [inbound]\nlisten = [\"localhost\"]\n",
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    for needle in ["component.secret_file", "mail.users", "inbound.listen"] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }
}

#[test]
fn run_refuses_a_bad_config_before_starting() {
    let (_dir, path) = config_file("[component]\njid = \"mail.example.test\"\n");
    let out = with_config("run", &path);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing field `mail`"), "{stderr}");
}

#[test]
fn check_config_refuses_an_unknown_log_format() {
    let (code, stderr) = check(&format!("{SERVED}[log]\nformat = \"xml\"\n"));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("1 problem(s) in the configuration:\n  - log.format: \"xml\": expected \"text\" or \"json\""),
        "{stderr}"
    );
}

#[test]
fn check_config_takes_a_postgres_store_without_connecting() {
    // Nothing listens there: the URL's form is checked, not the server.
    let (_dir, path) = config_file(&format!(
        "{SERVED}[store]\nurl = \"postgres://facteur:pw@127.0.0.1:1/facteur?sslmode=require\"\n"
    ));
    let out = with_config("check-config", &path);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));

    let (code, stderr) = check(&format!(
        "{SERVED}[store]\nurl = \"mysql://127.0.0.1/facteur\"\n"
    ));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("store.url: must be a sqlite: or a postgres:// URL"),
        "{stderr}"
    );
}
