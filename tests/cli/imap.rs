//! `facteur imap …`: attaching, listing and detaching legacy IMAP
//! mailboxes.

use crate::invoke::{facteur, run, store_config};

/// `facteur imap …` without a server to log in to: what it refuses before
/// connecting anywhere, and what it says of what is not attached.
#[test]
fn imap_mailboxes_are_refused_before_any_login_when_they_cannot_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("imap.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("write");
    let password = dir.path().join("password");
    std::fs::write(&password, "pw\n").expect("write");
    let config = |imap: &str| store_config(dir.path(), imap);
    let imap = |path: &std::path::Path, args: &[&str]| {
        run(facteur()
            .arg("imap")
            .arg(args[0])
            .arg("--config")
            .arg(path)
            .args(&args[1..]))
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
    // The outgoing server is checked before any login too.
    let pw = password.to_str().expect("utf-8");
    let base = [
        "attach",
        "--jid",
        "alice@example.test",
        "--host",
        "192.0.2.1",
        "--port",
        "993",
        "--tls",
        "implicit",
        "--user",
        "alice",
        "--password-file",
        pw,
    ];
    let with = |more: &[&str]| imap(&path, &[&base[..], more].concat());
    let (code, _, stderr) = with(&[
        "--smtp-host",
        "smtp.example.net",
        "--smtp-tls",
        "none",
        "--smtp-from",
        "alice@example.net",
    ]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("No TLS to the outgoing server is only for a loopback address"),
        "{stderr}"
    );
    let (code, _, stderr) = with(&["--smtp-host", "smtp.example.net"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("Give the mailbox's address"), "{stderr}");
    let (code, _, stderr) = with(&["--smtp-port", "465"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--smtp-host"), "{stderr}");
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
