//! Address keys, checked at load so that a typo fails `check-config`, not
//! the daemon: `host:port` where the host is an IPv4 address, an IPv6
//! address in brackets (RFC 3986 §3.2.2) or a DNS name (RFC 1035 §2.3.1
//! labels, `_` allowed as RFC 2181 §11 does), and the port is 1 to 65535.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Problems;

/// The host part of an address.
#[derive(Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name,
}

/// Checks a `host:port` to connect to (a name is resolved then).
pub(super) fn host_port(p: &mut Problems, key: &str, value: &str) {
    if let Err(why) = parse(value) {
        p.add(key, format!("{value:?}: {why}"));
    }
}

/// An `ip:port` to listen on: a name could stand for several addresses,
/// or none at start.
pub(super) fn listen(p: &mut Problems, key: &str, value: &str) -> Option<SocketAddr> {
    match parse(value) {
        Ok((Host::Ip(ip), port)) => Some(SocketAddr::new(ip, port)),
        Ok((Host::Name, _)) => {
            p.add(key, format!("{value:?}: must be an IP address and port"));
            None
        }
        Err(why) => {
            p.add(key, format!("{value:?}: {why}"));
            None
        }
    }
}

/// A name server: `ip` (port 53) or `ip:port`; it cannot be a name, since
/// names are what it answers.
pub(super) fn nameserver(p: &mut Problems, key: &str, value: &str) -> Option<SocketAddr> {
    match value.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, 53)),
        Err(_) => listen(p, key, value),
    }
}

/// Splits and checks `host:port`; the error says what is wrong.
fn parse(value: &str) -> Result<(Host, u16), String> {
    let (host, port) = match value.strip_prefix('[') {
        Some(bracketed) => {
            let (inside, after) = bracketed
                .split_once(']')
                .ok_or("'[' without ']' around an IPv6 address")?;
            let ip = inside
                .parse::<Ipv6Addr>()
                .map_err(|_| format!("{inside:?} in brackets is not an IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or("no :port after the IPv6 address")?;
            (Host::Ip(ip.into()), port)
        }
        None => {
            let (host, port) = value.rsplit_once(':').ok_or("no :port")?;
            if host.contains(':') {
                return Err("an IPv6 address goes in brackets, e.g. [2001:db8::1]:25".into());
            }
            (host_part(host)?, port)
        }
    };
    Ok((host, port_part(port)?))
}

fn host_part(host: &str) -> Result<Host, String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(ip.into()));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    // An all-digit last label is a mistyped IPv4 address, not a name.
    let numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()));
    if name.len() <= 253 && name.split('.').all(label_ok) && !numeric {
        Ok(Host::Name)
    } else {
        Err(format!("{host:?} is neither an IP address nor a DNS name"))
    }
}

fn port_part(port: &str) -> Result<u16, String> {
    if port.is_empty() {
        return Err("the port is empty".into());
    }
    if !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("the port {port:?} is not a number"));
    }
    match port.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("the port {port} is not from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(value: &str) -> String {
        parse(value).expect_err(value)
    }

    #[test]
    fn good_addresses() {
        for (value, host, port) in [
            ("127.0.0.1:5347", Host::Ip([127, 0, 0, 1].into()), 5347),
            ("[::1]:25", Host::Ip(Ipv6Addr::LOCALHOST.into()), 25),
            ("smtp.example.net:587", Host::Name, 587),
            ("localhost:65535", Host::Name, 65535),
            ("relay.example.net.:1", Host::Name, 1),
        ] {
            assert_eq!(parse(value), Ok((host, port)), "{value}");
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        for (value, why) in [
            (":25", "the host is empty"),
            ("example.net", "no :port"),
            ("example.net:", "the port is empty"),
            ("example.net:0", "the port 0 is not from 1 to 65535"),
            ("example.net:70000", "the port 70000 is not from 1 to 65535"),
            (
                "127.0.0.1:notaport",
                "the port \"notaport\" is not a number",
            ),
            ("127.0.0.1:-1", "the port \"-1\" is not a number"),
            (
                "exa mple:25",
                "\"exa mple\" is neither an IP address nor a DNS name",
            ),
            (
                "-example.net:25",
                "\"-example.net\" is neither an IP address nor a DNS name",
            ),
            (
                "999.1.1.1:25",
                "\"999.1.1.1\" is neither an IP address nor a DNS name",
            ),
            ("::1:25", "an IPv6 address goes in brackets"),
            ("[::1]", "no :port after the IPv6 address"),
            ("[::1:25", "'[' without ']'"),
            ("[mail]:25", "\"mail\" in brackets is not an IPv6 address"),
        ] {
            let got = refused(value);
            assert!(got.starts_with(why), "{value}: {got}");
        }
    }

    #[test]
    fn listen_and_nameservers_need_ip_addresses() {
        let mut p = Problems::default();
        assert_eq!(
            nameserver(&mut p, "dns.nameservers", "::1"),
            Some("[::1]:53".parse().expect("addr"))
        );
        assert_eq!(
            nameserver(&mut p, "dns.nameservers", "192.0.2.1:5353"),
            Some("192.0.2.1:5353".parse().expect("addr"))
        );
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(listen(&mut p, "inbound.listen", "localhost:25"), None);
        assert_eq!(nameserver(&mut p, "dns.nameservers", "192.0.2.1:0"), None);
        assert_eq!(
            p.errors,
            [
                "inbound.listen: \"localhost:25\": must be an IP address and port",
                "dns.nameservers: \"192.0.2.1:0\": the port 0 is not from 1 to 65535",
            ]
        );
    }
}
