//! Asking other domains about XMPP-Mail (doc/xmpp-mail.md): the I/O of
//! the route decision that `facteur_policy::route` makes.

pub mod discover;
