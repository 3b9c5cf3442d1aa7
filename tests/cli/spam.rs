//! `facteur spam …`: training the spam models from mail files, and
//! scoring mail with them.

use std::path::Path;

use crate::invoke::{assert_success, facteur, store_config};

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
fn corpus(dir: &Path) {
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
fn scores(config: &Path, user: Option<&str>, files: &[&Path]) -> Vec<(f64, String)> {
    let mut cmd = facteur();
    cmd.args(["spam", "score", "--config"]).arg(config);
    if let Some(user) = user {
        cmd.args(["--user", user]);
    }
    let out = cmd.args(files).output().expect("runs");
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (score, file) = l.split_once(' ').expect("SCORE FILE");
            (score.parse().expect("a number"), file.to_owned())
        })
        .collect()
}

/// Runs `facteur spam train` on the folders of mail given, for `user`
/// or the global model; returns what it printed.
fn train(config: &Path, spam: Option<&Path>, ham: Option<&Path>, user: Option<&str>) -> String {
    let mut cmd = facteur();
    cmd.args(["spam", "train", "--config"]).arg(config);
    if let Some(spam) = spam {
        cmd.arg("--spam").arg(spam);
    }
    if let Some(ham) = ham {
        cmd.arg("--ham").arg(ham);
    }
    if let Some(user) = user {
        cmd.args(["--user", user]);
    }
    let out = cmd.output().expect("runs");
    assert_success(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn spam_train_then_score_tells_unseen_spam_from_ham() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = store_config(dir.path(), "");
    corpus(dir.path());
    let learnt = train(
        &config,
        Some(&dir.path().join("spam")),
        Some(&dir.path().join("ham")),
        None,
    );
    assert!(
        learnt.starts_with("the global spam model: learnt 5 spam and 5 ham"),
        "{learnt}"
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
    let config = store_config(dir.path(), "");
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
    let config = store_config(dir.path(), "");
    corpus(dir.path());
    train(
        &config,
        Some(&dir.path().join("spam")),
        Some(&dir.path().join("ham")),
        None,
    );
    // What this user calls spam, and nobody else knows of: 19 of them.
    let newsletters = dir.path().join("newsletters");
    std::fs::create_dir(&newsletters).expect("mkdir");
    let bulletin = mail(
        "news@club.example.net",
        "Quarterly bulletin",
        "The quarterly bulletin of our association",
    );
    for i in 0..19 {
        std::fs::write(newsletters.join(format!("{i}.eml")), &bulletin).expect("write");
    }
    let next = dir.path().join("next.eml");
    std::fs::write(&next, &bulletin).expect("write");
    train(&config, Some(&newsletters), None, Some("user@example.test"));
    let before = scores(&config, Some("user@example.test"), &[&next])[0].0;
    assert!(
        before < 0.9,
        "{before}: the user's model counted before its 20th feedback"
    );
    let one = dir.path().join("one");
    std::fs::create_dir(&one).expect("mkdir");
    std::fs::copy(&next, one.join("20.eml")).expect("copy");
    train(&config, Some(&one), None, Some("user@example.test"));
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
    let config = store_config(dir.path(), "");
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
    let learnt = train(&config, None, Some(&ham), None);
    // The counts of the file, and the mail just learnt.
    assert!(learnt.contains("the model knows 3 spam, 5 ham"), "{learnt}");
    assert!(!models.exists());
    assert!(dir
        .path()
        .join("spam-models.imported/global.model")
        .is_file());
}
