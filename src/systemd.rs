//! Notifications to systemd (`sd_notify(3)`, `Type=notify`): `READY=1`
//! once facteur serves, `WATCHDOG=1` while it lives, `RELOADING=1` and
//! `READY=1` around a reload of the configuration, `STOPPING=1` on
//! shutdown. A datagram to the socket named by `$NOTIFY_SOCKET` (a path,
//! or `@name` in the abstract namespace); without it, nothing is sent.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{debug, warn};

/// Where notifications go, and how often the watchdog wants one.
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
    /// Whether `READY=1` was sent: a reload before it must not send one.
    ready: AtomicBool,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` (the
    /// watchdog is ours unless that names another process).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| match open(&path) {
            Ok(socket) => Some(socket),
            Err(e) => {
                warn!(socket = ?path, error = %e, "Cannot use NOTIFY_SOCKET; systemd will not be told.");
                None
            }
        });
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|usec| *usec > 0 && ours)
            .map(Duration::from_micros);
        Notifier {
            socket,
            watchdog,
            ready: AtomicBool::new(false),
        }
    }

    /// How often to send `WATCHDOG=1`: half the watchdog's timeout, as
    /// `sd_watchdog_enabled(3)` advises.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog
            .filter(|_| self.socket.is_some())
            .map(|t| t / 2)
    }

    pub fn ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.send("READY=1\nSTATUS=Serving\n");
    }

    /// A reload begins: `RELOADING=1` with the monotonic time, as
    /// `sd_notify(3)` asks for `Type=notify-reload` (and `Type=notify`
    /// takes it too). Nothing before facteur is ready.
    pub fn reloading(&self) {
        if self.ready.load(Ordering::SeqCst) {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
            let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000;
            self.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=Reloading the configuration\n"
            ));
        }
    }

    /// A reload is over, taken or refused: `READY=1` again.
    pub fn reloaded(&self) {
        if self.ready.load(Ordering::SeqCst) {
            self.send("READY=1\nSTATUS=Serving\n");
        }
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1\n");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=Shutting down\n");
    }

    fn send(&self, state: &str) {
        let Some((socket, addr)) = &self.socket else {
            return;
        };
        match socket.send_to_addr(state.as_bytes(), addr) {
            Ok(_) => debug!(state = state.trim_end(), "Told systemd."),
            Err(e) => warn!(error = %e, "Cannot notify systemd."),
        }
    }
}

fn open(path: &std::ffi::OsStr) -> io::Result<(UnixDatagram, std::os::unix::net::SocketAddr)> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)?
        }
        None => std::os::unix::net::SocketAddr::from_pathname(path)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datagram_per_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        // A datagram that never comes fails the test instead of hanging it.
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let notifier = Notifier {
            socket: Some(open(path.as_os_str()).expect("open")),
            watchdog: Some(Duration::from_secs(10)),
            ready: AtomicBool::new(false),
        };
        assert_eq!(notifier.watchdog_every(), Some(Duration::from_secs(5)));
        // Not ready yet: a reload tells nothing.
        notifier.reloading();
        notifier.reloaded();
        notifier.ready();
        notifier.watchdog();
        notifier.reloading();
        notifier.reloaded();
        notifier.stopping();
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        for _ in 0..5 {
            let n = listener.recv(&mut buf).expect("recv");
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let reloading = got.remove(2);
        let usec: u64 = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .and_then(|rest| rest.strip_suffix("\nSTATUS=Reloading the configuration\n"))
            .and_then(|usec| usec.parse().ok())
            .unwrap_or_else(|| panic!("{reloading:?}"));
        assert!(usec > 0);
        assert_eq!(
            got,
            [
                "READY=1\nSTATUS=Serving\n",
                "WATCHDOG=1\n",
                "READY=1\nSTATUS=Serving\n",
                "STOPPING=1\nSTATUS=Shutting down\n"
            ]
        );
    }

    #[test]
    fn nothing_without_a_socket() {
        let notifier = Notifier {
            socket: None,
            watchdog: Some(Duration::from_secs(10)),
            ready: AtomicBool::new(false),
        };
        assert_eq!(notifier.watchdog_every(), None);
        notifier.ready();
    }
}
