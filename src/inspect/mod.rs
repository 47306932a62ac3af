//! What a flow's first payload says: the protocol spoken, the HTTP request, the TLS ClientHello, the FTP
//! data channels. Pure functions over bytes: no IO, no state, and no panic on any input.

pub mod detect;
pub mod dns;
pub mod echo;
pub mod ftp;
pub mod host;
pub mod http;
pub mod tls;

use detect::{App, Detection, Transport};

/// What the first payload of a flow showed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payload {
    pub app: Option<App>,
    pub http: Option<http::Request>,
    pub tls: Option<tls::ClientHello>,
    /// A DNS query's first question (UDP: each datagram to port 53 is one; TCP: the stream's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<dns::Query>,
    /// An ICMP echo request's data: what the `size=` term and the ICMP log read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<echo::Echo>,
}

/// Reads the initiator's payload so far (TCP: the stream from its start; UDP: one datagram).
/// `None` while more bytes could still change the answer.
pub fn read_payload(t: Transport, client: &[u8]) -> Option<Payload> {
    let app = match detect::detect(t, client, None) {
        Detection::NeedMore => return None,
        Detection::App(app) => app,
    };
    let mut payload = Payload {
        app: Some(app),
        ..Payload::default()
    };
    // A flow that starts like HTTP or TLS but does not go on as a request or a ClientHello is not
    // that protocol: `app=tls` must not be had for a record header followed by anything.
    match app {
        App::Http => match http::parse_request(client) {
            Ok(request) => payload.http = Some(request),
            Err(http::HttpError::Incomplete) => return None,
            Err(_) => payload.app = Some(App::Unknown),
        },
        App::Tls if t == Transport::Tcp => match tls::parse_client_hello(client) {
            Ok(hello) => payload.tls = Some(hello),
            Err(tls::TlsError::Incomplete) => return None,
            Err(_) => payload.app = Some(App::Unknown),
        },
        // A message that looks like DNS but has no question we can read keeps `app=dns` and no
        // `dns`: a `qname=` or `qtype=` term then never matches it (see policy::terms).
        App::Dns => {
            payload.dns = match t {
                Transport::Tcp => match dns::parse_tcp_query(client) {
                    Err(dns::DnsError::Incomplete) => return None,
                    q => q.ok(),
                },
                Transport::Udp => dns::parse_query(client).ok(),
            }
        }
        _ => {}
    }
    Some(payload)
}
