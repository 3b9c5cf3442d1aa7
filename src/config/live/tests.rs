//! The split between reloadable and restart-only keys, and the merge of a
//! new file into the running configuration.

use std::collections::BTreeSet;
use std::path::Path;

use super::*;

/// Two configurations that differ in every key; files they name exist in
/// `dir`.
fn two_configs(dir: &Path) -> (Config, Config) {
    for f in ["a.pem", "a.key", "b.pem", "b.key", "a.dkim", "b.dkim"] {
        std::fs::write(dir.join(f), "x").expect("written");
    }
    for f in ["a.imap", "b.imap"] {
        std::fs::write(dir.join(f), format!("{f} {}", "s".repeat(32))).expect("written");
    }
    let d = dir.display();
    let a = format!(
        r#"
[component]
jid = "mail.a.test"
server = "127.0.0.1:5347"
secret = "a"
ping_interval = "30s"
reconnect_max = "60s"
admins = ["root@a.test"]
[mail]
domains = ["a.test"]
users = "registered"
[inbound]
listen = ["127.0.0.1:2525"]
hostname = "mx.a.test"
max_message_size = 26214400
max_recipients = 100
max_connections = 200
idle_timeout = "5m"
data_timeout = "10m"
tls_cert = "{d}/a.pem"
tls_key = "{d}/a.key"
xforward_from = []
[outbound]
relay = "127.0.0.1:2526"
hostname = "out.a.test"
retry_initial = "5m"
retry_max = "1h"
max_lifetime = "5d"
timeout = "5m"
jabber_id_header = true
mx_port = 25
destination_concurrency = 10
[xmpp]
retry_initial = "5m"
retry_max = "1h"
max_lifetime = "5d"
[xmpp_mail]
enabled = true
step_timeout = "5s"
budget = "10s"
ttl_accept = "24h"
ttl_reject = "1h"
ttl_unsupported = "6h"
ttl_error = "15m"
probes_per_minute = 60
max_size = 262144
[spam]
blocklist_max_age = "1d"
held_for = "30d"
digest_interval = "1d"
[http]
listen = "127.0.0.1:8025"
public_url = "https://a.test/files"
storage = "/var/lib/a"
retention = "30d"
fetch_hosts = []
fetch_private = false
fetch_max_size = 20971520
fetch_timeout = "30s"
wkd_port = 443
wkd_https = true
[imap]
secret_file = "{d}/a.imap"
poll_interval = "5m"
idle = true
[dkim."a.test"]
selector = "a"
key_file = "{d}/a.dkim"
[store]
url = "sqlite:///a.db"
poll_interval = "5s"
lease = "60s"
keep_finished = "7d"
keep_threads = "365d"
sweep_interval = "1h"
[dns]
nameservers = []
timeout = "5s"
[auth]
verify = true
dmarc_reject = "reject"
dmarc_quarantine = "mark"
spf_fail = "mark"
trusted_arc_sealers = []
[limits]
sender_mails_per_hour = 200
client_connections = 20
client_mails_per_minute = 120
client_exceptions = ["127.0.0.0/8"]
[log]
format = "text"
"#
    );
    let b = format!(
        r#"
[component]
jid = "mail.b.test"
server = "127.0.0.1:5348"
secret = "b"
ping_interval = "31s"
reconnect_max = "61s"
admins = ["root@b.test"]
[mail]
domains = ["b.test"]
users = "all"
[inbound]
listen = ["127.0.0.1:2527"]
hostname = "mx.b.test"
max_message_size = 2048
max_recipients = 2
max_connections = 3
idle_timeout = "6m"
data_timeout = "11m"
tls_cert = "{d}/b.pem"
tls_key = "{d}/b.key"
xforward_from = ["192.0.2.1"]
[outbound]
relay = "127.0.0.1:2528"
hostname = "out.b.test"
retry_initial = "6m"
retry_max = "2h"
max_lifetime = "6d"
timeout = "6m"
jabber_id_header = false
mx_port = 2525
destination_concurrency = 11
[xmpp]
retry_initial = "7m"
retry_max = "3h"
max_lifetime = "7d"
[xmpp_mail]
enabled = false
step_timeout = "6s"
budget = "11s"
ttl_accept = "25h"
ttl_reject = "2h"
ttl_unsupported = "7h"
ttl_error = "16m"
probes_per_minute = 61
max_size = 262145
[spam]
blocklist_max_age = "2d"
held_for = "31d"
digest_interval = "2d"
dnsbl = ["b.dnsbl.test"]
domain_blocklists = ["b.dbl.test"]
dns_timeout = "3s"
publish = false
publish_threshold = 4
[[spam.lists]]
service = "rtbl.b.test"
node = "spam_source_domains"
kind = "domains"
[http]
listen = "127.0.0.1:8026"
public_url = "https://b.test/files"
storage = "/var/lib/b"
retention = "31d"
fetch_hosts = ["up.b.test"]
fetch_private = true
fetch_max_size = 20971521
fetch_timeout = "31s"
wkd_port = 8443
wkd_https = false
[imap]
secret_file = "{d}/b.imap"
poll_interval = "6m"
idle = false
[dkim."b.test"]
selector = "b"
key_file = "{d}/b.dkim"
[store]
url = "sqlite:///b.db"
poll_interval = "6s"
lease = "90s"
keep_finished = "8d"
keep_threads = "366d"
sweep_interval = "2h"
[dns]
nameservers = ["192.0.2.53"]
timeout = "6s"
[auth]
verify = false
dmarc_reject = "mark"
dmarc_quarantine = "ignore"
spf_fail = "ignore"
trusted_arc_sealers = ["lists.b.test"]
[limits]
sender_mails_per_hour = 201
client_connections = 21
client_mails_per_minute = 121
client_exceptions = []
[log]
format = "json"
"#
    );
    let parse = |t: &str| Config::parse(t).unwrap_or_else(|e| panic!("{e}"));
    (parse(&a), parse(&b))
}

fn names(apply: Apply, c: &Config) -> Vec<&'static str> {
    keys(c)
        .into_iter()
        .filter(|(_, a, _)| *a == apply)
        .map(|(k, _, _)| k)
        .collect()
}

#[test]
fn a_reload_applies_the_reloadable_keys_and_keeps_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, new) = two_configs(dir.path());
    let merged = merge(&running, new.clone());
    // Every key differs, so every key is named, on its side.
    assert_eq!(merged.applied, names(Apply::Reload, &running));
    assert_eq!(merged.need_restart, names(Apply::Restart, &running));
    // What runs now: the running value of each restart-only key, the new
    // value of each other key. This checks `keep_restart_only` against
    // the list of keys, both ways.
    for (((key, apply, now), (_, _, old)), (_, _, wanted)) in keys(&merged.config)
        .into_iter()
        .zip(keys(&running))
        .zip(keys(&new))
    {
        match apply {
            Apply::Restart => assert_eq!(now, old, "{key} must keep its running value"),
            Apply::Reload => assert_eq!(now, wanted, "{key} must take the new value"),
        }
    }
}

#[test]
fn the_same_file_again_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (running, _) = two_configs(dir.path());
    let merged = merge(&running, running.clone());
    assert!(merged.applied.is_empty(), "{:?}", merged.applied);
    assert!(merged.need_restart.is_empty(), "{:?}", merged.need_restart);
}

#[test]
fn a_mixed_change_is_split() {
    let base = "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n";
    let running = Config::parse(base).expect("parses");
    let new = Config::parse(&format!(
        "{base}[inbound]\nmax_message_size = 4096\nlisten = [\"127.0.0.1:2600\"]\n"
    ))
    .expect("parses");
    let merged = merge(&running, new);
    assert_eq!(merged.applied, ["inbound.max_message_size"]);
    assert_eq!(merged.need_restart, ["inbound.listen"]);
    assert_eq!(merged.config.inbound.max_message_size, 4096);
    assert_eq!(merged.config.inbound.listen, running.inbound.listen);
}

/// The `section.key` names the example file sets or shows (commented out),
/// each with whether its line marks it restart-only.
fn example_keys() -> Vec<(String, bool)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/facteur.example.toml");
    let text = std::fs::read_to_string(path).expect("example config");
    let mut section = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        let bare = line.trim_start_matches('#').trim();
        if let Some(name) = bare.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = name.split('.').next().unwrap_or_default().to_owned();
            continue;
        }
        let Some((key, _)) = bare.split_once(" = ") else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') || section.is_empty() {
            continue;
        }
        let name = if section == "dkim" {
            "dkim".to_owned()
        } else {
            format!("{section}.{key}")
        };
        // `secret_file` is the other spelling of `secret`.
        let name = name.replace("secret_file", "secret");
        found.push((name, line.contains("(restart)")));
    }
    found
}

#[test]
fn the_example_config_names_every_key_and_marks_the_restart_only_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = two_configs(dir.path());
    let known: BTreeSet<_> = keys(&config).into_iter().map(|(k, _, _)| k).collect();
    let restart: BTreeSet<_> = names(Apply::Restart, &config).into_iter().collect();
    let example = example_keys();
    let shown: BTreeSet<_> = example.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        shown, known,
        "the example and the reload split list other keys"
    );
    for (key, marked) in &example {
        assert_eq!(
            *marked,
            restart.contains(key.as_str()),
            "{key}: restart-only keys, and they alone, say (restart) on their line"
        );
    }
}

#[test]
fn the_readme_lists_the_restart_only_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, _) = two_configs(dir.path());
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    let start = readme
        .find("Restart-only keys:")
        .expect("a paragraph \"Restart-only keys: ...\" in the README");
    let listed = readme.get(start..).unwrap_or_default();
    let listed = listed.split("\n\n").next().unwrap_or_default();
    for key in names(Apply::Restart, &config) {
        let section = key.split('.').next().unwrap_or(key);
        assert!(
            listed.contains(&format!("`{key}`")) || listed.contains(&format!("`[{section}]`")),
            "{key} is missing from the README's restart-only keys"
        );
    }
}
