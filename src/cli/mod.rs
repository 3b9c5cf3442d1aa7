//! The command line's subcommands that work on the store without a
//! running daemon, one file per family; `main.rs` keeps the daemon and the
//! smaller ones.

pub mod imap;
pub mod keys;
pub mod spam;
