//! What a flow's first payload says: the protocol spoken, the HTTP request, the TLS ClientHello (over TCP,
//! or in QUIC's Initial packets), the FTP data channels. Pure functions over bytes: no IO, no state, and no
//! panic on any input.

pub mod detect;
pub mod dns;
pub mod echo;
pub mod ftp;
pub mod host;
pub mod http;
pub mod ja4;
pub mod quic;
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

/// The initiator's payload collected while its flow waits for a decision.
#[derive(Clone, Copy, Debug)]
pub enum Collected<'a> {
    /// TCP: the byte stream from its start, in sequence order.
    Stream(&'a [u8]),
    /// UDP: the datagrams so far, in arrival order.
    Datagrams(&'a [Vec<u8>]),
}

/// Reads what a waiting flow's initiator sent so far: [`read_payload`] for a TCP stream,
/// [`read_datagrams`] for UDP.
pub fn read_collected(c: Collected<'_>) -> Option<Payload> {
    match c {
        Collected::Stream(s) => read_payload(Transport::Tcp, s),
        Collected::Datagrams(d) => read_datagrams(d),
    }
}

/// Reads a UDP flow's first datagrams, in arrival order. The first decides the protocol; a QUIC flow
/// is read on until its ClientHello is complete (it may span several datagrams, see [`quic`]).
/// `None` while more datagrams could still change the answer.
pub fn read_datagrams<D: AsRef<[u8]>>(datagrams: &[D]) -> Option<Payload> {
    let first = datagrams.first()?.as_ref();
    let (app, mut payload) = detected(Transport::Udp, first)?;
    // As for TLS over TCP: what looks like a QUIC v1/v2 Initial but does not decrypt to a ClientHello
    // is not QUIC. Other versions stay `quic`, unread.
    match app {
        App::Quic => match quic::parse_client_hello(datagrams) {
            Ok(hello) => payload.tls = Some(hello),
            Err(quic::QuicError::Incomplete) => return None,
            Err(quic::QuicError::NotInitial) => {}
            Err(quic::QuicError::Malformed) => payload.app = Some(App::Unknown),
        },
        // A message that looks like DNS but has no question we can read keeps `app=dns` and no
        // `dns`: a `qname=` or `qtype=` term then never matches it (see policy::terms).
        App::Dns => payload.dns = dns::parse_query(first).ok(),
        _ => {}
    }
    Some(payload)
}

/// The protocol the first bytes speak, and a payload naming it; `None` while more bytes are needed.
fn detected(t: Transport, first: &[u8]) -> Option<(App, Payload)> {
    let app = match detect::detect(t, first, None) {
        Detection::NeedMore => return None,
        Detection::App(app) => app,
    };
    let payload = Payload {
        app: Some(app),
        ..Payload::default()
    };
    Some((app, payload))
}

/// Reads the initiator's payload so far (TCP: the stream from its start; UDP: one datagram, as
/// [`read_datagrams`] reads a flow's first).
/// `None` while more bytes could still change the answer.
pub fn read_payload(t: Transport, client: &[u8]) -> Option<Payload> {
    if t == Transport::Udp {
        return read_datagrams(&[client]);
    }
    let (app, mut payload) = detected(t, client)?;
    // A flow that starts like HTTP or TLS but does not go on as a request or a ClientHello is not
    // that protocol: `app=tls` must not be had for a record header followed by anything.
    match app {
        App::Http => match http::parse_request(client) {
            Ok(request) => payload.http = Some(request),
            Err(http::HttpError::Incomplete) => return None,
            Err(_) => payload.app = Some(App::Unknown),
        },
        App::Tls => match tls::parse_client_hello(client) {
            Ok(hello) => payload.tls = Some(hello),
            Err(tls::TlsError::Incomplete) => return None,
            Err(_) => payload.app = Some(App::Unknown),
        },
        // DNS over TCP: the stream's first query, after its length (UDP is read above).
        App::Dns => match dns::parse_tcp_query(client) {
            Err(dns::DnsError::Incomplete) => return None,
            q => payload.dns = q.ok(),
        },
        _ => {}
    }
    Some(payload)
}
