//! The configuration as an operator writes it: shipped files parse, every
//! problem is listed at once, address keys and the retry keys of
//! deliveries to XMPP.

use std::time::Duration;

use super::*;

const MINIMAL: &str = "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n";

fn with(extra: &str) -> Result<Config, ConfigErrors> {
    Config::parse(&format!("{MINIMAL}{extra}"))
}

#[test]
fn every_shipped_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("readable");
            match Config::parse(&text) {
                Ok(config) => assert!(
                    config.warnings.is_empty(),
                    "{}: {:?}",
                    path.display(),
                    config.warnings
                ),
                Err(e) => panic!("{}: {e}", path.display()),
            }
            seen += 1;
        }
    }
    assert!(seen > 0, "no config in {}", dir.display());
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"
        [component]
        jid = "user@mail.example.test"
        [mail]
        domains = []
        users = "some"
        [inbound]
        listen = ["nowhere"]
        idle_timeout = "5 parsecs"
        [outbound]
        relay = "smarthost"
        [store]
        url = "mysql://x"
        keep_finished = "a week"
    "#;
    let errors = Config::parse(text).expect_err("invalid").0;
    for key in [
        "component.jid",
        "component: secret or secret_file",
        "mail.domains",
        "mail.users",
        "inbound.listen",
        "inbound.idle_timeout",
        "outbound.relay",
        "store.url",
        "store.keep_finished",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(key)),
            "{key} missing in {errors:#?}"
        );
    }
}

#[test]
fn a_missing_jid_is_one_of_the_problems() {
    let text = "[component]\nsecret = \"s\"\n[mail]\ndomains = []\n";
    let errors = Config::parse(text).expect_err("no jid").0;
    assert_eq!(
        errors,
        [
            "component.jid: is required, e.g. mail.example.org",
            "mail.domains: at least one served domain is required",
        ]
    );
}

#[test]
fn unknown_keys_are_refused() {
    let text = "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\nsecrt = \"typo\"\n[mail]\ndomains = [\"example.test\"]\n";
    let errors = Config::parse(text).expect_err("unknown key").0;
    assert!(errors[0].contains("unknown field `secrt`"), "{errors:?}");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(432_000)));
    assert!(parse_duration("5").is_err());
    assert!(parse_duration("m").is_err());
}

#[test]
fn every_address_key_names_itself_and_its_value() {
    for (section, key, value) in [
        ("component", "server", "\"127.0.0.1:notaport\""),
        ("inbound", "listen", "[\"127.0.0.1:0\"]"),
        ("outbound", "relay", "\"exa mple:25\""),
        ("http", "listen", "\"127.0.0.1:70000\""),
        ("dns", "nameservers", "[\":53\"]"),
    ] {
        // [component] is already written: its key goes first, into it.
        let text = if section == "component" {
            MINIMAL.replace("secret = ", &format!("{key} = {value}\nsecret = "))
        } else {
            format!("{MINIMAL}[{section}]\n{key} = {value}\n")
        };
        let errors = Config::parse(&text).expect_err(key).0;
        let bare = value.trim_matches(['[', ']']);
        assert!(
            errors.len() == 1 && errors[0].starts_with(&format!("{section}.{key}: {bare}: ")),
            "{section}.{key} = {value}: {errors:?}"
        );
    }
}

#[test]
fn deliveries_to_xmpp_have_their_own_retry_keys() {
    let config = with(
        "[outbound]\nretry_initial = \"1m\"\nretry_max = \"2m\"\nmax_lifetime = \"1d\"\n\
         [xmpp]\nretry_initial = \"10s\"\nretry_max = \"20s\"\nmax_lifetime = \"2h\"\n",
    )
    .expect("valid");
    assert_eq!(config.outbound.retry.initial, Duration::from_secs(60));
    assert_eq!(config.xmpp.retry.initial, Duration::from_secs(10));
    assert_eq!(config.xmpp.retry.max, Duration::from_secs(20));
    assert_eq!(config.xmpp.retry.lifetime, Duration::from_secs(7200));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn retry_defaults_are_the_same_for_mail_and_xmpp() {
    let config = with("").expect("valid");
    let expected = facteur_policy::retry::RetrySchedule {
        initial: Duration::from_secs(300),
        max: Duration::from_secs(3600),
        lifetime: Duration::from_secs(5 * 86400),
    };
    assert_eq!(config.outbound.retry, expected);
    assert_eq!(config.xmpp.retry, expected);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn outbound_retry_keys_still_apply_to_xmpp_with_a_warning() {
    let config = with(
        "[outbound]\nretry_initial = \"1s\"\nmax_lifetime = \"1h\"\n\
         [xmpp]\nmax_lifetime = \"2h\"\n",
    )
    .expect("valid");
    // Written in [outbound] only: taken, with a warning.
    assert_eq!(config.xmpp.retry.initial, Duration::from_secs(1));
    // Written in neither: the default.
    assert_eq!(config.xmpp.retry.max, Duration::from_secs(3600));
    // Written in [xmpp]: its own.
    assert_eq!(config.xmpp.retry.lifetime, Duration::from_secs(7200));
    assert_eq!(
        config.warnings,
        [
            "outbound.retry_initial: also applies to deliveries to XMPP users, \
          until the next release; set xmpp.retry_initial for them"
        ]
    );
}

#[test]
fn bad_retry_keys_are_reported_once_under_their_own_section() {
    let errors = with("[outbound]\nretry_initial = \"2h\"\n[xmpp]\nretry_max = \"soon\"\n")
        .expect_err("invalid")
        .0;
    assert_eq!(
        errors,
        [
            "outbound.retry_max: must not be shorter than retry_initial",
            "xmpp.retry_max: \"soon\" does not start with a number",
        ]
    );
}

#[test]
fn log_formats() {
    assert_eq!(with("").expect("valid").log.format, LogFormat::Text);
    assert_eq!(
        with("[log]\nformat = \"json\"\n")
            .expect("valid")
            .log
            .format,
        LogFormat::Json
    );
    let errors = with("[log]\nformat = \"JSON\"\n").expect_err("invalid").0;
    assert_eq!(
        errors,
        ["log.format: \"JSON\": expected \"text\" or \"json\""]
    );
    assert!(with("[log]\nlevel = \"debug\"\n").is_err());
}

#[test]
fn the_store_is_sqlite_or_postgres() {
    for url in [
        "sqlite:///var/lib/facteur/facteur.db",
        "postgres://facteur@db.example.test/facteur",
        "postgresql://facteur:secret@127.0.0.1:5433/facteur?sslmode=require",
        "postgres:///facteur?host=/run/postgresql",
    ] {
        let config = with(&format!("[store]\nurl = \"{url}\"\n")).expect(url);
        assert_eq!(config.store.url, url);
    }
    for (url, problem) in [
        (
            "mysql://db/facteur",
            "store.url: must be a sqlite: or a postgres:// URL",
        ),
        (
            "/var/lib/facteur/facteur.db",
            "store.url: must be a sqlite: or a postgres:// URL",
        ),
        (
            "postgres://db.example.test:port/facteur",
            "store.url: not a PostgreSQL URL",
        ),
    ] {
        let errors = with(&format!("[store]\nurl = \"{url}\"\n"))
            .expect_err(url)
            .0;
        assert!(
            errors.iter().any(|e| e.starts_with(problem)),
            "{url}: {errors:?}"
        );
    }
}
