//! One `GET` over a plain TCP connection, within hard limits.
//!
//! Why not an HTTP client crate: the probe's evidence is the raw answer, also when it is not HTTP,
//! and "headers, then nothing" or "an endless stream" must be told apart from a slow page. A client
//! such as ureq turns those into errors, and follows redirects and decodes bodies we do not want
//! followed or decoded. So this writes one HTTP/1.1 request with `Connection: close` to an address
//! already checked (DNS cannot swap it) and keeps the first [`Limits::max_bytes`] bytes, with a
//! connect timeout, a timeout per read and a deadline for the whole exchange. No TLS, no
//! redirects, no cookies, no body sent.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::answer::{self, Framing};

/// The limits of one request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connect: Duration,
    /// The longest wait for the next bytes.
    pub read: Duration,
    /// The longest the whole exchange may take.
    pub total: Duration,
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(5),
            total: Duration::from_secs(10),
            max_bytes: 64 << 10,
        }
    }
}

/// How reading the answer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection.
    Closed,
    /// The answer was whole (its Content-Length, or the last chunk, read); we closed.
    Complete,
    /// [`Limits::max_bytes`] read; we closed.
    Limit,
    /// No bytes for [`Limits::read`], or [`Limits::total`] passed.
    Stalled(Duration),
    /// A connection error (reset) while reading.
    Error(String),
}

/// What one request got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// Why the connection failed, if it did (then nothing else was tried).
    pub connect_error: Option<String>,
    /// The first bytes of the answer.
    pub bytes: Vec<u8>,
    pub end: End,
}

/// The request, as sent: `target` and `host` must be checked printable ASCII by the caller.
pub fn request_text(host: &str, target: &str, user_agent: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n\
         Accept: text/html, */*;q=0.1\r\nConnection: close\r\n\r\n"
    )
}

/// Sends `request` to `addr` and reads the answer within `limits`.
pub fn get(addr: SocketAddr, request: &str, limits: Limits) -> Fetch {
    let start = Instant::now();
    let fail = |e: std::io::Error| Fetch {
        connect_error: Some(e.to_string()),
        bytes: Vec::new(),
        end: End::Closed,
    };
    let mut stream = match TcpStream::connect_timeout(&addr, limits.connect) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Err(e) = stream
        .set_write_timeout(Some(limits.read))
        .and_then(|()| stream.write_all(request.as_bytes()))
    {
        return Fetch {
            connect_error: None,
            bytes: Vec::new(),
            end: End::Error(format!("sending the request: {e}")),
        };
    }
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    // The head is parsed again only when a line ends, so a server sending a byte at a time
    // cannot make us parse the same bytes over and over.
    let mut framing = Framing::Incomplete;
    let end = loop {
        let left = limits.total.saturating_sub(start.elapsed());
        let wait = left.min(limits.read);
        if wait.is_zero() {
            break End::Stalled(start.elapsed());
        }
        if let Err(e) = stream.set_read_timeout(Some(wait)) {
            break End::Error(e.to_string());
        }
        let room = limits.max_bytes.saturating_sub(bytes.len()).min(buf.len());
        let Some(chunk) = buf.get_mut(..room) else {
            break End::Limit;
        };
        match stream.read(chunk) {
            Ok(0) => break End::Closed,
            Ok(n) => {
                let got = chunk.get(..n).unwrap_or_default();
                bytes.extend_from_slice(got);
                if framing == Framing::Incomplete && got.contains(&b'\n') {
                    framing = answer::framing(&bytes);
                }
                if answer::ends(framing, &bytes) {
                    break End::Complete;
                }
                if bytes.len() >= limits.max_bytes {
                    break End::Limit;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break End::Stalled(start.elapsed());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break End::Error(e.to_string()),
        }
    };
    Fetch {
        connect_error: None,
        bytes,
        end,
    }
}
