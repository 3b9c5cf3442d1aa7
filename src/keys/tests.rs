use std::time::{Duration, SystemTime};

use jid::BareJid;
use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::serialize::SerializeInto;
use openpgp::types::{ReasonForRevocation, SignatureType};
use openpgp::Cert;
use sequoia_openpgp as openpgp;

use super::*;

fn alice() -> BareJid {
    BareJid::new("alice@example.org").expect("jid")
}

/// A key for alice with an encryption subkey, and its revocation.
fn alices_key(userids: &[&str]) -> (Cert, openpgp::packet::Signature) {
    let mut builder = CertBuilder::new().add_transport_encryption_subkey();
    for uid in userids {
        builder = builder.add_userid(*uid);
    }
    builder.generate().expect("key")
}

fn armor(cert: &Cert) -> Vec<u8> {
    cert.armored().to_vec().expect("armor")
}

fn userids(published: &Published) -> Vec<String> {
    Cert::from_bytes(&published.cert)
        .expect("parses")
        .userids()
        .map(|ua| String::from_utf8_lossy(ua.userid().value()).into_owned())
        .collect()
}

#[test]
fn a_key_naming_the_user_is_taken_armored_or_binary() {
    let (cert, _) = alices_key(&["Alice <Alice@Example.org>"]);
    let now = SystemTime::now();
    let published = accept(&alice(), &armor(&cert), None, now).expect("taken");
    assert_eq!(published.fingerprint, cert.fingerprint().to_hex());
    assert!(!published.revoked);
    let binary = accept(&alice(), &cert.to_vec().expect("binary"), None, now).expect("taken");
    assert_eq!(binary, published);
    let (xmpp, _) = alices_key(&["xmpp:alice@example.org"]);
    accept(&alice(), &armor(&xmpp), None, now).expect("an xmpp: URI names her too");
}

#[test]
fn only_the_users_ids_and_the_keys_own_signatures_are_kept() {
    let (cert, _) = alices_key(&[
        "Alice <alice@example.org>",
        "Alice at work <alice@corp.example>",
        "xmpp:alice@example.org",
    ]);
    // Bob certifies alice's address: a third-party signature.
    let (bob, _) = CertBuilder::new()
        .add_userid("bob@example.net")
        .generate()
        .expect("bob");
    let mut signer = bob
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .expect("secret")
        .into_keypair()
        .expect("keypair");
    let uid = cert.userids().next().expect("uid").userid().clone();
    let certification = uid
        .certify(
            &mut signer,
            &cert,
            SignatureType::GenericCertification,
            None,
            None,
        )
        .expect("certified");
    let (cert, _) = cert.insert_packets(certification).expect("inserted");
    assert_eq!(
        cert.userids().next().expect("uid").certifications().count(),
        1
    );

    let published = accept(&alice(), &armor(&cert), None, SystemTime::now()).expect("taken");
    let mut kept = userids(&published);
    kept.sort();
    assert_eq!(
        kept,
        ["Alice <alice@example.org>", "xmpp:alice@example.org"]
    );
    let served = Cert::from_bytes(&published.cert).expect("parses");
    for ua in served.userids() {
        assert_eq!(ua.certifications().count(), 0, "third-party signatures");
    }
    assert_eq!(served.keys().subkeys().count(), 1);
    assert!(!served.is_tsk(), "no secret key material");
}

#[test]
fn keys_that_cannot_serve_are_refused_with_the_reason() {
    let now = SystemTime::now();
    let (wrong, _) = alices_key(&["Mallory <alice@example.net>", "xmpp:eve@example.org"]);
    assert_eq!(
        accept(&alice(), &armor(&wrong), None, now),
        Err(Refused::NoUserId("alice@example.org".into()))
    );
    assert_eq!(
        Refused::NoUserId("alice@example.org".into()).to_string(),
        "The key has no user ID naming alice@example.org or xmpp:alice@example.org"
    );

    let (signing_only, _) = CertBuilder::new()
        .add_userid("alice@example.org")
        .add_signing_subkey()
        .generate()
        .expect("key");
    assert_eq!(
        accept(&alice(), &armor(&signing_only), None, now),
        Err(Refused::NoEncryption)
    );

    let (expired, _) = CertBuilder::new()
        .add_userid("alice@example.org")
        .add_transport_encryption_subkey()
        .set_creation_time(now - Duration::from_secs(3 * 86400))
        .set_validity_period(Duration::from_secs(86400))
        .generate()
        .expect("key");
    assert_eq!(
        accept(&alice(), &armor(&expired), None, now),
        Err(Refused::Expired)
    );

    let (cert, revocation) = alices_key(&["alice@example.org"]);
    let (revoked, _) = cert.insert_packets(revocation).expect("revoked");
    assert_eq!(
        accept(&alice(), &armor(&revoked), None, now),
        Err(Refused::Revoked),
        "a revoked key that was never published"
    );

    let garbage = b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n";
    assert!(matches!(
        accept(&alice(), garbage, None, now),
        Err(Refused::Unreadable(_))
    ));
    assert!(matches!(
        accept(&alice(), b"hello", None, now),
        Err(Refused::Unreadable(_))
    ));
    assert!(matches!(
        accept(&alice(), b"", None, now),
        Err(Refused::Unreadable(_))
    ));

    let huge = vec![b'A'; MAX_KEY_BYTES + 1];
    assert_eq!(accept(&alice(), &huge, None, now), Err(Refused::TooLarge));
}

#[test]
fn a_revocation_replaces_the_published_key() {
    let now = SystemTime::now();
    let (cert, revocation) = alices_key(&["alice@example.org", "other@example.net"]);
    let stored = accept(&alice(), &armor(&cert), None, now).expect("taken");

    // The revoked key, as `gpg --export` writes it after a revocation.
    let (revoked, _) = cert
        .clone()
        .insert_packets(revocation.clone())
        .expect("revoked");
    let published =
        accept(&alice(), &armor(&revoked), Some(&stored.cert), now).expect("revocation taken");
    assert!(published.revoked);
    assert_eq!(published.fingerprint, stored.fingerprint);
    assert_eq!(userids(&published), ["alice@example.org"]);
    let shown = summary(&published.cert, now).expect("summary");
    assert_eq!(shown.status, "revoked");

    // A revocation certificate alone, as `gpg --gen-revoke` writes it.
    let alone = openpgp::Packet::from(revocation)
        .to_vec()
        .expect("serialised");
    let published =
        accept(&alice(), &alone, Some(&stored.cert), now).expect("revocation certificate taken");
    assert!(published.revoked);
    assert_eq!(
        summary(&published.cert, now).expect("summary").status,
        "revoked"
    );
    assert!(
        matches!(
            accept(&alice(), &alone, None, now),
            Err(Refused::Unreadable(_))
        ),
        "a revocation of nothing published"
    );

    // Another key's revocation does not apply.
    let (other, other_revocation) = alices_key(&["alice@example.org"]);
    let (other_revoked, _) = other.insert_packets(other_revocation).expect("revoked");
    assert_eq!(
        accept(&alice(), &armor(&other_revoked), Some(&stored.cert), now),
        Err(Refused::Revoked)
    );

    // A reason other than compromise is a revocation too.
    let mut signer = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .expect("secret")
        .into_keypair()
        .expect("keypair");
    let retired = cert
        .revoke(&mut signer, ReasonForRevocation::KeyRetired, b"new key")
        .expect("revocation");
    let (retired, _) = cert.insert_packets(retired).expect("revoked");
    assert!(
        accept(&alice(), &armor(&retired), Some(&stored.cert), now)
            .expect("taken")
            .revoked
    );
}

#[test]
fn user_ids_name_the_user_by_address() {
    let user = alice();
    for (uid, named) in [
        ("alice@example.org", true),
        ("<alice@example.org>", true),
        ("Alice Liddell <ALICE@example.ORG>", true),
        ("xmpp:alice@example.org", true),
        ("Alice <xmpp:alice@example.org>", true),
        ("alice@example.org.evil", false),
        ("xmpp:alice@example.org/phone", false),
        ("Alice", false),
        ("bob@example.org", false),
        ("mailto:bob@example.org", false),
    ] {
        assert_eq!(names(&UserID::from(uid), &user), named, "{uid}");
    }
}
