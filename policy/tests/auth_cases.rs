//! The cases of `fixtures/policy/auth.cases`, one block each.

use facteur_policy::auth::{
    auth_verdict, Action, Arc, AuthFacts, AuthRules, AuthVerdict, Dkim, Dmarc, DmarcPolicy, Failed,
    Spf,
};

fn spf(value: &str) -> Spf {
    match value {
        "pass" => Spf::Pass,
        "fail" => Spf::Fail,
        "softfail" => Spf::SoftFail,
        "neutral" => Spf::Neutral,
        "none" => Spf::None,
        "temperror" => Spf::TempError,
        "permerror" => Spf::PermError,
        other => panic!("spf={other}"),
    }
}

fn dkim(value: &str) -> Dkim {
    match value {
        "pass" => Dkim::Pass,
        "fail" => Dkim::Fail,
        "none" => Dkim::None,
        "temperror" => Dkim::TempError,
        "permerror" => Dkim::PermError,
        other => panic!("dkim={other}"),
    }
}

fn dmarc(value: &str) -> Dmarc {
    match value {
        "pass" => Dmarc::Pass,
        "fail" => Dmarc::Fail,
        "none" => Dmarc::None,
        "temperror" => Dmarc::TempError,
        "permerror" => Dmarc::PermError,
        other => panic!("dmarc={other}"),
    }
}

fn action(value: &str) -> Action {
    match value {
        "reject" => Action::Reject,
        "mark" => Action::Mark,
        "ignore" => Action::Ignore,
        other => panic!("action {other}"),
    }
}

fn pairs(line: &str) -> impl Iterator<Item = (&str, &str)> {
    line.split_whitespace()
        .map(|pair| pair.split_once('=').unwrap_or_else(|| panic!("{pair}")))
}

/// Reads one block; a case without `expect:` is an error naming the case,
/// so that a typo cannot turn a case into no check at all.
fn parse_case(block: &str) -> (String, AuthFacts, AuthRules, String) {
    let mut name = String::new();
    let mut facts = AuthFacts {
        spf: Spf::None,
        dkim: Dkim::None,
        dmarc: Dmarc::None,
        dmarc_policy: None,
        from_domain: "example.net".into(),
        arc: Arc::None,
        arc_sealer: None,
    };
    let mut rules = AuthRules::default();
    let mut expect = None;
    for line in block.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.split_once(':').unwrap_or_else(|| panic!("{line}"));
        let value = value.trim();
        match key {
            "name" => name = value.to_owned(),
            "facts" => {
                for (k, v) in pairs(value) {
                    match k {
                        "spf" => facts.spf = spf(v),
                        "dkim" => facts.dkim = dkim(v),
                        "dmarc" => facts.dmarc = dmarc(v),
                        "policy" => {
                            facts.dmarc_policy = Some(match v {
                                "none" => DmarcPolicy::None,
                                "quarantine" => DmarcPolicy::Quarantine,
                                "reject" => DmarcPolicy::Reject,
                                other => panic!("policy={other}"),
                            })
                        }
                        "from" => facts.from_domain = v.to_owned(),
                        "arc" => {
                            facts.arc = match v {
                                "pass" => Arc::Pass,
                                "fail" => Arc::Fail,
                                "none" => Arc::None,
                                other => panic!("arc={other}"),
                            }
                        }
                        "sealer" => facts.arc_sealer = Some(v.to_owned()),
                        other => panic!("fact {other}"),
                    }
                }
            }
            "rules" => {
                for (k, v) in pairs(value) {
                    match k {
                        "dmarc_reject" => rules.dmarc_reject = action(v),
                        "dmarc_quarantine" => rules.dmarc_quarantine = action(v),
                        "spf_fail" => rules.spf_fail = action(v),
                        "trusted" => rules.trusted_arc_sealers.push(v.to_owned()),
                        other => panic!("rule {other}"),
                    }
                }
            }
            "expect" => expect = Some(value.to_owned()),
            other => panic!("key {other}"),
        }
    }
    let expect = expect.unwrap_or_else(|| panic!("case {name:?} has no expect: line"));
    (name, facts, rules, expect)
}

fn shown(verdict: &AuthVerdict) -> String {
    let check = |failed: &Failed| match failed {
        Failed::Dmarc => "dmarc",
        Failed::Spf => "spf",
    };
    match verdict {
        AuthVerdict::Accept => "accept".into(),
        AuthVerdict::Mark { failed, .. } => format!("mark {}", check(failed)),
        AuthVerdict::Reject { failed, .. } => format!("reject {}", check(failed)),
    }
}

#[test]
fn every_case_of_the_fixture() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/policy/auth.cases");
    let text = std::fs::read_to_string(path).expect("auth.cases");
    let mut count = 0;
    let mut failures = Vec::new();
    // Every block but one of comments only is a case.
    for block in text.split("\n\n").filter(|b| {
        b.lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
    }) {
        let (name, facts, rules, expect) = parse_case(block.trim());
        let got = shown(&auth_verdict(&facts, &rules));
        if got != expect {
            failures.push(format!("{name}: expected {expect}, got {got}"));
        }
        count += 1;
    }
    assert!(count >= 15, "only {count} cases read");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reasons_name_the_domain() {
    let (_, facts, rules, _) = parse_case(
        "name: x\nfacts: spf=pass dkim=none dmarc=fail policy=reject from=bank.test\nexpect: reject dmarc",
    );
    match auth_verdict(&facts, &rules) {
        AuthVerdict::Reject { reason, .. } => assert!(reason.contains("bank.test"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
#[should_panic(expected = "case \"forgotten\" has no expect: line")]
fn a_case_without_expect_is_an_error() {
    parse_case("name: forgotten\nfacts: spf=pass dkim=pass dmarc=pass");
}

#[test]
#[should_panic(expected = "arc=sealed")]
fn an_unknown_arc_result_is_an_error() {
    parse_case("name: typo\nfacts: spf=pass arc=sealed\nexpect: accept");
}
