//! `facteur users …`: registering, listing and removing users, and the
//! recipient map exported for Postfix.

use std::path::Path;
use std::process::Command;

use crate::invoke::{assert_success, facteur, run, store_config};

/// `facteur users --config PATH ARGS…`.
fn command(path: &Path, args: &[&str]) -> Command {
    let mut command = facteur();
    command.arg("users").arg("--config").arg(path).args(args);
    command
}

#[test]
fn users_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_config(dir.path(), "");
    let users = |args: &[&str]| run(&mut command(&path, args));
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

/// `users export-postfix` writes what Postfix's postmap(1) loads: each
/// registered user found as a key with the value `OK`, an unknown
/// address not found; `--output` replaces the file whole.
#[test]
fn users_export_as_a_postfix_recipient_map() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_config(dir.path(), "");
    let users = |args: &[&str]| {
        let out = command(&path, args).output().expect("runs");
        assert_success(&out);
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
    assert_success(&made);
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
