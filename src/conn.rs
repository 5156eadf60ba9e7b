//! What is known about one client connection, made once when it is
//! accepted and shared by every request on it.

use std::net::SocketAddr;

use http::HeaderValue;

/// How the client reached portero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Transport {
    Plain,
    /// TLS, with the server name the client asked for (SNI), lowercased.
    Tls {
        sni: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub transport: Transport,
    /// The peer's IP as a header value, made once per connection for
    /// `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// The local port as a header value, for `X-Forwarded-Port`.
    pub local_port: HeaderValue,
}

impl Conn {
    pub(crate) fn new(peer: SocketAddr, local: SocketAddr, transport: Transport) -> Conn {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .expect("an IP address is a valid header value");
        Conn {
            peer,
            local,
            transport,
            peer_ip,
            local_port: HeaderValue::from(local.port()),
        }
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.transport, Transport::Tls { .. })
    }

    pub(crate) fn sni(&self) -> Option<&str> {
        match &self.transport {
            Transport::Tls { sni } => sni.as_deref(),
            Transport::Plain => None,
        }
    }

    /// The scheme the client used.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }
}
