//! `facteur keys …`: the users' OpenPGP keys, as an operator manages
//! them.

use crate::invoke::{facteur, run, store_config};

/// `facteur keys …`: an operator imports, lists, shows and removes the
/// users' OpenPGP keys, with the checks a user's own publication passes.
#[test]
fn keys_are_managed_from_the_command_line() {
    use sequoia_openpgp::cert::CertBuilder;
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::serialize::SerializeInto;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_config(dir.path(), "");
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
        run(&mut command)
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
