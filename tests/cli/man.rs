//! `facteur man`: the manual page shipped is the one the binary writes.

use crate::invoke::facteur;

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
