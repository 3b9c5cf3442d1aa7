//! The command line as an operator meets it: `check-config` and `run`
//! refusing a bad configuration with every problem listed, and warning
//! about deprecated keys.

use std::process::Command;

fn facteur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_facteur"))
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let out = facteur()
        .args(["check-config", "--config", "config/facteur.example.toml"])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "config/facteur.example.toml: ok\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// Writes `text` to a config file in a fresh directory.
fn config_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("facteur.toml");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

#[test]
fn check_config_refuses_an_address_that_cannot_work() {
    let (_dir, path) = config_file(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\nserver = \"127.0.0.1:notaport\"\n\
         [mail]\ndomains = [\"example.test\"]\n",
    );
    let out = facteur()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
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
    let out = facteur()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
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
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[component]\njid = \"mail.example.test\"\nsecret_file = \"/nonexistent/secret\"\n\
         [mail]\ndomains = [\"example.test\"]\nusers = \"everyone\"\n\
         [inbound]\nlisten = [\"localhost\"]\n",
    )
    .expect("write");
    let out = facteur()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("3 problem(s)"), "{stderr}");
    for needle in ["component.secret_file", "mail.users", "inbound.listen"] {
        assert!(stderr.contains(needle), "{needle} in {stderr}");
    }
}

#[test]
fn run_refuses_a_bad_config_before_starting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[component]\njid = \"mail.example.test\"\n").expect("write");
    let out = facteur()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing field `mail`"), "{stderr}");
}

#[test]
fn users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("facteur.toml");
    std::fs::write(
        &path,
        format!(
            "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n\
             [store]\nurl = \"sqlite://{}/facteur.db\"\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let users = |args: &[&str]| {
        let out = facteur()
            .arg("users")
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        users(&["add", "Alice@example.test"]).1,
        "registered alice@example.test\n"
    );
    let (code, _, stderr) = users(&["add", "eve@elsewhere.test"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not a user of a served domain"), "{stderr}");
    assert_eq!(users(&["list"]).1, "alice@example.test\n");
    assert_eq!(
        users(&["remove", "alice@example.test"]).1,
        "unregistered alice@example.test\n"
    );
    assert_eq!(users(&["list"]).1, "");
}

/// `facteur imap …` without a server to log in to: what it refuses before
/// connecting anywhere, and what it says of what is not attached.
#[test]
fn imap_mailboxes_are_refused_before_any_login_when_they_cannot_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("imap.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("write");
    let password = dir.path().join("password");
    std::fs::write(&password, "pw\n").expect("write");
    let config = |imap: &str| {
        let path = dir.path().join("facteur.toml");
        std::fs::write(
            &path,
            format!(
                "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n\
                 [store]\nurl = \"sqlite://{}/facteur.db\"\n{imap}",
                dir.path().display()
            ),
        )
        .expect("write");
        path
    };
    let imap = |path: &std::path::Path, args: &[&str]| {
        let out = facteur()
            .arg("imap")
            .arg(args[0])
            .arg("--config")
            .arg(path)
            .args(&args[1..])
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let attach = |path: &std::path::Path, jid: &str, host: &str, tls: &str| {
        imap(
            path,
            &[
                "attach",
                "--jid",
                jid,
                "--host",
                host,
                "--port",
                "143",
                "--tls",
                tls,
                "--user",
                "alice",
                "--password-file",
                password.to_str().expect("utf-8"),
                "--folder",
                "INBOX",
            ],
        )
    };
    let without_key = config("");
    let (code, _, stderr) = attach(&without_key, "alice@example.test", "192.0.2.1", "starttls");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("No [imap] secret_file"), "{stderr}");

    let path = config(&format!("[imap]\nsecret_file = \"{}\"\n", secret.display()));
    let (code, _, stderr) = attach(&path, "alice@example.test", "192.0.2.1", "none");
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(
            "--tls none is only for a loopback address; 192.0.2.1 needs implicit or starttls"
        ),
        "{stderr}"
    );
    let (code, _, stderr) = attach(&path, "eve@elsewhere.test", "127.0.0.1", "none");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not a user of a served domain"), "{stderr}");
    let (code, _, stderr) = attach(&path, "alice@example.test", "127.0.0.1", "tls");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown TLS mode \"tls\""), "{stderr}");
    assert_eq!(
        imap(&path, &["list"]),
        (Some(0), String::new(), String::new())
    );
    let (code, _, stderr) = imap(
        &path,
        &[
            "detach",
            "--jid",
            "alice@example.test",
            "--host",
            "imap.example.net",
            "--user",
            "alice",
        ],
    );
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "alice@example.test has no mailbox alice at imap.example.net\n"
    );
}

/// `dkim keygen` prints a record a zone file can hold: BIND's
/// `named-checkzone` (Debian bind9-utils) loads a zone holding it, and
/// the strings it loaded join to the DKIM tags.
#[test]
fn dkim_records_load_in_a_zone_file() {
    for algorithm in ["rsa", "ed25519"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = facteur()
            .args(["dkim", "keygen", "--domain", "example.test"])
            .args(["--selector", "s1", "--algorithm", algorithm, "--out"])
            .arg(dir.path().join("key.pem"))
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        let (_, record) = stdout
            .split_once("Publish this record:\n")
            .expect("a record");
        let zone = dir.path().join("example.test.zone");
        std::fs::write(
            &zone,
            format!(
                "$TTL 3600\n\
                 @ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n\
                 @ IN NS ns.example.test.\n\
                 ns IN A 192.0.2.1\n\
                 {record}"
            ),
        )
        .expect("write");
        let check = Command::new("named-checkzone")
            .args(["-D", "-o", "-", "example.test"])
            .arg(&zone)
            .output()
            .expect("named-checkzone (bind9-utils) runs");
        let dumped = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{algorithm}: {dumped}{}\n{record}",
            String::from_utf8_lossy(&check.stderr)
        );
        let loaded = dumped
            .lines()
            .find(|line| line.starts_with("s1._domainkey.example.test.") && line.contains("TXT"))
            .expect("the DKIM record in the loaded zone");
        let text: String = loaded.split('"').skip(1).step_by(2).collect();
        let key = text
            .strip_prefix(&format!("v=DKIM1; k={algorithm}; p="))
            .unwrap_or_else(|| panic!("{loaded}"));
        assert!(
            key.len() > 40
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
            "{loaded}"
        );
        if algorithm == "rsa" {
            // Verifiers built on OpenSSL (OpenDKIM, Mail::DKIM) read the
            // key as a SubjectPublicKeyInfo (d2i_PUBKEY).
            let der = dir.path().join("p.der");
            let decoded = Command::new("base64")
                .arg("-d")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child
                        .stdin
                        .take()
                        .map(|mut stdin| stdin.write_all(key.as_bytes()))
                        .transpose()?;
                    child.wait_with_output()
                })
                .expect("base64 runs");
            std::fs::write(&der, &decoded.stdout).expect("write");
            let read = Command::new("openssl")
                .args(["pkey", "-pubin", "-inform", "DER", "-noout", "-text", "-in"])
                .arg(&der)
                .output()
                .expect("openssl runs");
            let text = String::from_utf8_lossy(&read.stdout);
            assert!(
                read.status.success() && text.contains("Public-Key: (2048 bit)"),
                "{text}{}",
                String::from_utf8_lossy(&read.stderr)
            );
            // `openssl pkey` also takes a bare PKCS#1 key; d2i_PUBKEY does
            // not: the outer structure must name the algorithm.
            let parsed = Command::new("openssl")
                .args(["asn1parse", "-inform", "DER", "-in"])
                .arg(&der)
                .output()
                .expect("openssl runs");
            let structure = String::from_utf8_lossy(&parsed.stdout);
            assert!(
                structure.contains(":rsaEncryption") && structure.contains("BIT STRING"),
                "{structure}"
            );
        }
    }
}

/// `users export-postfix` writes what Postfix's postmap(1) loads: each
/// registered user found as a key with the value `OK`, an unknown
/// address not found; `--output` replaces the file whole.
#[test]
fn users_export_as_a_postfix_recipient_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("facteur.toml");
    std::fs::write(
        &path,
        format!(
            "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n\
             [store]\nurl = \"sqlite://{}/facteur.db\"\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let users = |args: &[&str]| {
        let out = facteur()
            .arg("users")
            .arg("--config")
            .arg(&path)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    users(&["add", "bob@example.test"]);
    users(&["add", "Alice@example.test"]);
    let printed = users(&["export-postfix"]);
    let entries: Vec<&str> = printed.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(entries, ["alice@example.test OK", "bob@example.test OK"]);

    let map = dir.path().join("facteur_recipients");
    std::fs::write(&map, "stale@example.test OK\n").expect("write");
    let out_arg = map.to_str().expect("utf-8 path");
    assert_eq!(users(&["export-postfix", "--output", out_arg]), "");
    assert_eq!(std::fs::read_to_string(&map).expect("read"), printed);

    // postmap reads main.cf; an empty one gives it the defaults.
    let postfix_conf = dir.path().join("postfix");
    std::fs::create_dir(&postfix_conf).expect("mkdir");
    std::fs::write(postfix_conf.join("main.cf"), "").expect("write");
    let postmap = |args: &[&str]| {
        Command::new("postmap")
            .arg("-c")
            .arg(&postfix_conf)
            .args(args)
            .output()
            .expect("postmap (Debian postfix) runs")
    };
    let table = format!("hash:{out_arg}");
    let made = postmap(&[&table]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for (address, found) in [
        ("alice@example.test", Some("OK\n")),
        ("ALICE@example.test", Some("OK\n")),
        ("bob@example.test", Some("OK\n")),
        ("stale@example.test", None),
        ("carol@example.test", None),
    ] {
        let query = postmap(&["-q", address, &table]);
        match found {
            Some(value) => assert_eq!(String::from_utf8_lossy(&query.stdout), value, "{address}"),
            // postmap -q exits 1 for a key not found.
            None => assert_eq!(query.status.code(), Some(1), "{address}"),
        }
    }
}

#[test]
fn the_shipped_manual_page_is_what_the_binary_writes() {
    let out = facteur().arg("man").output().expect("runs");
    assert!(out.status.success());
    let shipped = std::fs::read("deploy/facteur.1").expect("deploy/facteur.1");
    assert!(
        out.stdout == shipped,
        "deploy/facteur.1 is stale: write it again with `facteur man > deploy/facteur.1`"
    );
    let page = String::from_utf8_lossy(&out.stdout);
    // Every command the unit and the README name is on the page.
    for command in [
        "facteur run",
        "facteur check-config",
        "facteur queue",
        "facteur users add",
        "facteur imap attach",
        "facteur imap list",
        "facteur imap detach",
    ] {
        assert!(page.contains(&format!(".SS \"{command}\"")), "{command}");
    }
    assert!(
        page.starts_with(".ie") && page.contains(".TH facteur 1"),
        "{page}"
    );
}

#[test]
fn check_config_refuses_an_unknown_log_format() {
    let (_dir, path) = config_file(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"example.test\"]\n[log]\nformat = \"xml\"\n",
    );
    let out = facteur()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 problem(s) in the configuration:\n  - log.format: \"xml\": expected \"text\" or \"json\""),
        "{stderr}"
    );
}

#[test]
fn check_config_takes_a_postgres_store_without_connecting() {
    // Nothing listens there: the URL's form is checked, not the server.
    let (_dir, path) = config_file(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"example.test\"]\n\
         [store]\nurl = \"postgres://facteur:pw@127.0.0.1:1/facteur?sslmode=require\"\n",
    );
    let out = facteur()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));

    let (_dir, path) = config_file(
        "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
         [mail]\ndomains = [\"example.test\"]\n\
         [store]\nurl = \"mysql://127.0.0.1/facteur\"\n",
    );
    let out = facteur()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("store.url: must be a sqlite: or a postgres:// URL"),
        "{stderr}"
    );
}

/// `facteur keys …`: an operator imports, lists, shows and removes the
/// users' OpenPGP keys, with the checks a user's own publication passes.
#[test]
fn keys_are_managed_from_the_command_line() {
    use sequoia_openpgp::cert::CertBuilder;
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::serialize::SerializeInto;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("facteur.toml");
    std::fs::write(
        &path,
        format!(
            "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n\
             [store]\nurl = \"sqlite://{}/facteur.db\"\n",
            dir.path().display()
        ),
    )
    .expect("write");
    let key_file = |name: &str, userids: &[&str]| {
        let mut builder = CertBuilder::new().add_transport_encryption_subkey();
        for uid in userids {
            builder = builder.add_userid(*uid);
        }
        let (cert, _) = builder.generate().expect("key");
        let file = dir.path().join(name);
        std::fs::write(&file, cert.armored().to_vec().expect("armored")).expect("write");
        (cert.fingerprint().to_hex(), file)
    };
    let keys = |args: &[&str], file: Option<&std::path::Path>| {
        let mut command = facteur();
        command.arg("keys").arg(args[0]).arg("--config").arg(&path);
        command.args(&args[1..]);
        if let Some(file) = file {
            command.arg(file);
        }
        let out = command.output().expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (fingerprint, alice) = key_file(
        "alice.asc",
        &["Alice <alice@example.test>", "Alice <alice@corp.example>"],
    );
    assert_eq!(
        keys(&["import", "--jid", "alice@example.test"], Some(&alice)),
        (
            Some(0),
            format!("imported key {fingerprint} for alice@example.test\n"),
            String::new()
        )
    );
    let (code, listed, _) = keys(&["list"], None);
    assert_eq!(code, Some(0));
    assert!(
        listed.starts_with(&format!("alice@example.test {fingerprint} valid cli ")),
        "{listed}"
    );
    assert_eq!(listed.lines().count(), 1);
    assert_eq!(keys(&["list", "--jid", "bob@example.test"], None).1, "");

    let (code, shown, _) = keys(&["show", "--jid", "alice@example.test"], None);
    assert_eq!(code, Some(0));
    assert!(
        shown.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{shown}"
    );
    let served = sequoia_openpgp::Cert::from_bytes(shown.as_bytes()).expect("parses");
    assert_eq!(served.fingerprint().to_hex(), fingerprint);
    let userids: Vec<String> = served
        .userids()
        .map(|ua| String::from_utf8_lossy(ua.userid().value()).into_owned())
        .collect();
    assert_eq!(userids, ["Alice <alice@example.test>"]);

    // Refusals name the reason, and change nothing.
    let (_, bob) = key_file("bob.asc", &["Bob <bob@example.net>"]);
    let (code, out, stderr) = keys(&["import", "--jid", "bob@example.test"], Some(&bob));
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        stderr.contains("The key has no user ID naming bob@example.test or xmpp:bob@example.test"),
        "{stderr}"
    );
    let (code, _, stderr) = keys(&["import", "--jid", "eve@elsewhere.test"], Some(&alice));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not a user of a served domain"), "{stderr}");
    let garbage = dir.path().join("garbage.asc");
    std::fs::write(
        &garbage,
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all!\n-----END PGP PUBLIC KEY BLOCK-----\n",
    )
    .expect("write");
    let (code, _, stderr) = keys(&["import", "--jid", "alice@example.test"], Some(&garbage));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("This is not an OpenPGP public key"),
        "{stderr}"
    );
    let huge = dir.path().join("huge.asc");
    std::fs::write(&huge, vec![b'A'; 10 * 1024 * 1024]).expect("write");
    let (code, _, stderr) = keys(&["import", "--jid", "alice@example.test"], Some(&huge));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("The key is larger than 1024 KiB"),
        "{stderr}"
    );
    assert_eq!(keys(&["list"], None).1, listed);

    assert_eq!(
        keys(&["remove", "--jid", "alice@example.test"], None).1,
        "removed the key of alice@example.test\n"
    );
    assert_eq!(
        keys(&["remove", "--jid", "alice@example.test"], None).1,
        "alice@example.test had no key\n"
    );
    let (code, _, stderr) = keys(&["show", "--jid", "alice@example.test"], None);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("alice@example.test has published no key"),
        "{stderr}"
    );
    assert_eq!(keys(&["list"], None).1, "");
}

/// A configuration whose SQLite database is in `dir`, where the spam
/// models are kept.
fn spam_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("facteur.toml");
    std::fs::write(
        &path,
        format!(
            "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n\
             [mail]\ndomains = [\"example.test\"]\n\
             [store]\nurl = \"sqlite://{}\"\n",
            dir.join("facteur.db").display()
        ),
    )
    .expect("write");
    path
}

/// An RFC 5322 mail.
fn mail(from: &str, subject: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: user@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <1@{}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        from.rsplit_once('@').map_or("x", |(_, d)| d)
    )
}

const SPAM_MAILS: [(&str, &str); 5] = [
    (
        "Cheap meds online",
        "Buy pills now! Limited offer, click http://pills.example.ru/buy",
    ),
    (
        "You won a prize",
        "Claim your lottery winnings now, click http://win.example.ru",
    ),
    (
        "Cheap watches",
        "Replica watches at the lowest price, order now http://shop.example.ru",
    ),
    (
        "Make money fast",
        "Earn $5000 a week from home, click here now http://cash.example.ru",
    ),
    (
        "Winner notification",
        "Your lottery prize is waiting, claim now http://prize.example.ru",
    ),
];
const HAM_MAILS: [(&str, &str); 5] = [
    (
        "Meeting tomorrow",
        "Can we move the project meeting to ten? The agenda is attached.",
    ),
    (
        "Re: patch review",
        "The patch looks good, but the test for the parser fails.",
    ),
    (
        "Lunch",
        "Are you free for lunch on Thursday? The new place near the office.",
    ),
    (
        "Release notes",
        "Here are the release notes for version two, please review them.",
    ),
    (
        "Re: project plan",
        "I updated the project plan and the schedule for the release.",
    ),
];

/// Writes the training mails into `dir/spam` and `dir/ham`.
fn corpus(dir: &std::path::Path) {
    for (kind, mails, from) in [
        ("spam", SPAM_MAILS, "deals@promo.example.ru"),
        ("ham", HAM_MAILS, "alice@work.example.org"),
    ] {
        std::fs::create_dir_all(dir.join(kind)).expect("mkdir");
        for (i, (subject, body)) in mails.iter().enumerate() {
            std::fs::write(
                dir.join(kind).join(format!("{i}.eml")),
                mail(from, subject, body),
            )
            .expect("write");
        }
    }
}

/// Runs `facteur spam score` on the files; returns each line's score and file.
fn scores(
    config: &std::path::Path,
    user: Option<&str>,
    files: &[&std::path::Path],
) -> Vec<(f64, String)> {
    let mut cmd = facteur();
    cmd.args(["spam", "score", "--config"]).arg(config);
    if let Some(user) = user {
        cmd.args(["--user", user]);
    }
    let out = cmd.args(files).output().expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (score, file) = l.split_once(' ').expect("SCORE FILE");
            (score.parse().expect("a number"), file.to_owned())
        })
        .collect()
}

#[test]
fn spam_train_then_score_tells_unseen_spam_from_ham() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = spam_config(dir.path());
    corpus(dir.path());
    let out = facteur()
        .args(["spam", "train", "--config"])
        .arg(&config)
        .arg("--spam")
        .arg(dir.path().join("spam"))
        .arg("--ham")
        .arg(dir.path().join("ham"))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("the global spam model: learnt 5 spam and 5 ham"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Kept in the store, beside nothing.
    assert!(!dir.path().join("spam-models").exists());

    let spam = dir.path().join("new-spam.eml");
    std::fs::write(
        &spam,
        mail(
            "offers@promo.example.ru",
            "Lowest price offer",
            "Click now to claim your prize http://pills.example.ru/x",
        ),
    )
    .expect("write");
    let ham = dir.path().join("new-ham.eml");
    std::fs::write(
        &ham,
        mail(
            "bob@work.example.org",
            "Re: release schedule",
            "Please review the agenda for the project meeting.",
        ),
    )
    .expect("write");
    let got = scores(&config, None, &[&spam, &ham]);
    assert_eq!(got.len(), 2, "{got:?}");
    let (spam_score, spam_file) = &got[0];
    let (ham_score, ham_file) = &got[1];
    assert_eq!(spam_file, &spam.display().to_string());
    assert_eq!(ham_file, &ham.display().to_string());
    assert!(*spam_score > 0.9 && *spam_score <= 1.0, "{got:?}");
    assert!(*ham_score < 0.1 && *ham_score >= 0.0, "{got:?}");
}

#[test]
fn spam_score_without_a_model_says_to_train_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = spam_config(dir.path());
    let out = facteur()
        .args(["spam", "score", "--config"])
        .arg(&config)
        .arg(&config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("train one with facteur spam train"));
    assert_eq!(out.stdout, b"");
}

#[test]
fn a_users_model_counts_from_its_twentieth_feedback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = spam_config(dir.path());
    corpus(dir.path());
    let train = |spam: &std::path::Path, ham: Option<&std::path::Path>, user: Option<&str>| {
        let mut cmd = facteur();
        cmd.args(["spam", "train", "--config"])
            .arg(&config)
            .arg("--spam")
            .arg(spam);
        if let Some(ham) = ham {
            cmd.arg("--ham").arg(ham);
        }
        if let Some(user) = user {
            cmd.args(["--user", user]);
        }
        let out = cmd.output().expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    train(
        &dir.path().join("spam"),
        Some(&dir.path().join("ham")),
        None,
    );
    // What this user calls spam, and nobody else knows of: 19 of them.
    let newsletters = dir.path().join("newsletters");
    std::fs::create_dir(&newsletters).expect("mkdir");
    for i in 0..19 {
        std::fs::write(
            newsletters.join(format!("{i}.eml")),
            mail(
                "news@club.example.net",
                "Quarterly bulletin",
                "The quarterly bulletin of our association",
            ),
        )
        .expect("write");
    }
    let next = dir.path().join("next.eml");
    std::fs::write(
        &next,
        mail(
            "news@club.example.net",
            "Quarterly bulletin",
            "The quarterly bulletin of our association",
        ),
    )
    .expect("write");
    train(&newsletters, None, Some("user@example.test"));
    let before = scores(&config, Some("user@example.test"), &[&next])[0].0;
    assert!(
        before < 0.9,
        "{before}: the user's model counted before its 20th feedback"
    );
    let one = dir.path().join("one");
    std::fs::create_dir(&one).expect("mkdir");
    std::fs::copy(&next, one.join("20.eml")).expect("copy");
    train(&one, None, Some("user@example.test"));
    let after = scores(&config, Some("user@example.test"), &[&next])[0].0;
    assert!(
        after > 0.9,
        "{after}: the user's model did not count from its 20th feedback"
    );
    // Another user, and the global model, are unchanged.
    let other = scores(&config, Some("other@example.test"), &[&next])[0].0;
    assert_eq!(other, before);
    assert_eq!(scores(&config, None, &[&next])[0].0, before);
}

#[test]
fn model_files_of_an_older_facteur_move_into_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = spam_config(dir.path());
    let models = dir.path().join("spam-models");
    std::fs::create_dir(&models).expect("mkdir");
    // A saved model: magic, 3 spam and 4 ham mails learnt, no token.
    let mut bytes = b"FCTBAYS1".to_vec();
    for word in [3u64, 4, 0] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    std::fs::write(models.join("global.model"), bytes).expect("write");
    let ham = dir.path().join("ham");
    std::fs::create_dir(&ham).expect("mkdir");
    std::fs::write(ham.join("1.eml"), mail("a@b.example", "Hi", "Lunch")).expect("write");
    let out = facteur()
        .args(["spam", "train", "--config"])
        .arg(&config)
        .arg("--ham")
        .arg(&ham)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The counts of the file, and the mail just learnt.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the model knows 3 spam, 5 ham"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!models.exists());
    assert!(dir
        .path()
        .join("spam-models.imported/global.model")
        .is_file());
}
