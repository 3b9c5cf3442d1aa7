//! `facteur dkim keygen`: the key, and the DNS record to publish.

use std::process::Command;

use crate::invoke::facteur;

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
