//! The XEP-0114 stream itself, on tokio-xmpp's `xmlstream` API: unlike its
//! `Component`, which ends on the first stanza it cannot parse, this sees
//! every read error and can answer a bad stanza and go on.

use futures_util::{SinkExt, StreamExt};
use tokio_xmpp::connect::{DnsConfig, ServerConnector, TcpServerConnector};
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, Timeouts, XmppStream, XmppStreamElement,
};
use xmpp_parsers::component::Handshake;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stream_error::DefinedCondition;

use crate::config;

pub type LinkStream = XmppStream<<TcpServerConnector as ServerConnector>::Stream>;

pub enum LoginError {
    /// The server said no: wrong secret or unknown component.
    Refused(String),
    /// Another connection holds the component (`conflict`): a server
    /// that takes one connection per component, such as Prosody, and
    /// another instance of the gateway connected first.
    Taken(String),
    /// Network trouble, worth retrying quietly.
    Failed(String),
}

/// Connects and authenticates with the handshake of XEP-0114 §3.
pub async fn connect(component: &config::ComponentConfig) -> Result<LinkStream, LoginError> {
    let timeouts = Timeouts {
        read_timeout: component.ping_interval * 3,
        response_timeout: component.ping_interval * 2,
    };
    let connector = TcpServerConnector::from(DnsConfig::addr(&component.server));
    let jid = Jid::from(component.jid.clone());
    let (mut pending, _) = connector
        .connect(&jid, xmpp_parsers::ns::COMPONENT, timeouts)
        .await
        .map_err(|e| LoginError::Failed(e.to_string()))?;
    let header = pending.take_header();
    let mut stream: LinkStream = pending.skip_features();
    // A stanza is written in pieces: without this, Nagle's algorithm holds
    // each piece after the first until the server acknowledges it.
    let _ = stream.get_stream().get_ref().set_nodelay(true);
    let Some(stream_id) = header.id else {
        return Err(LoginError::Failed("the server sent no stream id".into()));
    };
    let handshake =
        Handshake::from_stream_id_and_password(stream_id.into_owned(), &component.secret);
    stream
        .send(&XmppStreamElement::ComponentHandshake(handshake))
        .await
        .map_err(|e| LoginError::Failed(e.to_string()))?;
    loop {
        match stream.next().await {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::ComponentHandshake(_)))) => {
                return Ok(stream)
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                return Err(match e.0.condition {
                    DefinedCondition::Conflict => LoginError::Taken(e.to_string()),
                    _ => LoginError::Refused(e.to_string()),
                })
            }
            Some(Ok(_)) => {
                return Err(LoginError::Refused(
                    "unexpected answer to the handshake".into(),
                ))
            }
            Some(Err(ReadError::SoftTimeout)) => {}
            Some(Err(e)) => return Err(LoginError::Failed(e.to_string())),
            None => {
                return Err(LoginError::Failed(
                    "connection closed during the handshake".into(),
                ))
            }
        }
    }
}

pub async fn send_all(stream: &mut LinkStream, stanzas: Vec<Stanza>) -> std::io::Result<()> {
    if stanzas.is_empty() {
        return Ok(());
    }
    for stanza in stanzas {
        stream.feed(&XmppStreamElement::Stanza(stanza)).await?;
    }
    SinkExt::<&XmppStreamElement>::flush(stream).await
}

/// Closes the stream politely, without waiting long.
pub async fn close(stream: &mut LinkStream) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), stream.shutdown()).await;
}
