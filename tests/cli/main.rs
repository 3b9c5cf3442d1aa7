//! The command line as an operator meets it, one module per command
//! family: `check-config` and `run` refusing a bad configuration, the
//! management commands (`users`, `imap`, `keys`, `spam`), `dkim keygen`
//! and the manual page.

mod config;
mod dkim;
mod imap;
mod invoke;
mod keys;
mod man;
mod spam;
mod users;
