//! What an answer is: a real page, a redirect, some other HTTP answer, or a failure (nothing, not
//! HTTP, a binary body, a body that never ends, an answer cut short). Pure functions of the bytes a
//! [`Fetch`] kept; any bytes are an answer, never a panic.

use std::fmt::Write as _;

use super::fetch::{End, Fetch};
use super::state::Verdict;

/// Headers read at most.
const MAX_HEADERS: usize = 64;
/// Body bytes looked at to tell text from binary and HTML from other text.
const SNIFF: usize = 4096;

/// The classes of answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// 2xx, HTML type, an HTML body, whole (or longer than the read limit).
    Page,
    /// 3xx with a Location.
    Redirect,
    /// Any other well-formed HTTP answer (404, text/plain, an empty 200).
    OtherHttp,
    NoConnection,
    /// Connected, but not a byte came.
    Silent,
    NotHttp,
    /// A body with NUL or many control bytes, or declared `application/octet-stream`.
    Binary,
    /// The answer stopped coming before it was whole, and the connection stayed open.
    Endless,
    /// The server closed before the answer was whole.
    CutShort,
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Page => "page",
            Class::Redirect => "redirect",
            Class::OtherHttp => "other_http",
            Class::NoConnection => "no_connection",
            Class::Silent => "silent",
            Class::NotHttp => "not_http",
            Class::Binary => "binary",
            Class::Endless => "endless",
            Class::CutShort => "cut_short",
        }
    }

    fn verdict(self) -> Verdict {
        match self {
            Class::Page | Class::Redirect => Verdict::Real,
            Class::OtherHttp => Verdict::Unclear,
            _ => Verdict::Fail,
        }
    }
}

/// A classified answer with its evidence in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub class: Class,
    pub evidence: String,
}

/// The probe's verdict: the answer to `GET /` decides (the logged URL's answer is evidence only:
/// a tunnel's own URL may well answer oddly on a real server).
pub fn verdict(root: &Answer) -> Verdict {
    root.class.verdict()
}

struct Head {
    len: usize,
    status: u16,
    content_type: Option<String>,
    length: Option<u64>,
    chunked: bool,
    location: bool,
    encoded: bool,
}

/// The response head: `Ok(None)` while it is incomplete, `Err` when the bytes are not one.
fn head(bytes: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut r = httparse::Response::new(&mut headers);
    let len = match r.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut h = Head {
        len,
        status: r.code.unwrap_or(0),
        content_type: None,
        length: None,
        chunked: false,
        location: false,
        encoded: false,
    };
    for header in r.headers.iter() {
        let value = String::from_utf8_lossy(header.value)
            .trim()
            .to_ascii_lowercase();
        match header.name.to_ascii_lowercase().as_str() {
            "content-type" => h.content_type = Some(value),
            "content-length" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("Content-Length {value:?}"))?;
                if h.length.is_some_and(|m| m != n) {
                    return Err("two different Content-Lengths".into());
                }
                h.length = Some(n);
            }
            "transfer-encoding" => h.chunked = value.ends_with("chunked"),
            "location" => h.location = !value.is_empty(),
            "content-encoding" => h.encoded = value != "identity",
            _ => {}
        }
    }
    Ok(Some(h))
}

/// Where an answer ends, as far as its head tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// The head is not whole yet.
    Incomplete,
    /// Not an HTTP head: nothing more will tell.
    NotHttp,
    /// At this many bytes from the start (head and Content-Length, or a head without body).
    At(usize),
    /// At the last chunk.
    Chunked,
    /// When the server closes.
    Close,
}

/// The [`Framing`] of the answer that `bytes` start.
pub fn framing(bytes: &[u8]) -> Framing {
    let h = match head(bytes) {
        Ok(Some(h)) => h,
        Ok(None) => return Framing::Incomplete,
        Err(_) => return Framing::NotHttp,
    };
    if no_body(h.status) {
        return Framing::At(h.len);
    }
    match h.length {
        _ if h.chunked => Framing::Chunked,
        Some(n) => Framing::At(
            h.len
                .saturating_add(usize::try_from(n).unwrap_or(usize::MAX)),
        ),
        None => Framing::Close,
    }
}

/// Whether `bytes`, framed by `f`, hold the whole answer: reading can stop.
pub fn ends(f: Framing, bytes: &[u8]) -> bool {
    match f {
        Framing::At(n) => bytes.len() >= n,
        Framing::Chunked => bytes.ends_with(b"0\r\n\r\n"),
        _ => false,
    }
}

/// Whether `bytes` hold a whole answer (its Content-Length, or its last chunk).
pub fn complete(bytes: &[u8]) -> bool {
    ends(framing(bytes), bytes)
}

/// 1xx, 204 and 304 answers have no body (RFC 9112 §6.3).
fn no_body(status: u16) -> bool {
    (100..200).contains(&status) || status == 204 || status == 304
}

/// NUL, or more than 1 in 20 control bytes other than tab, newlines, form feed and escape.
fn binary(body: &[u8]) -> bool {
    let control = body
        .iter()
        .filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b)) || b == 0x7f)
        .count();
    body.contains(&0) || control * 20 > body.len()
}

fn html(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    ["<html", "<!doctype html", "<head", "<body", "<title"]
        .iter()
        .any(|tag| text.contains(tag))
}

/// The first bytes, printable ASCII as it is and the rest escaped.
fn first_bytes(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(24) {
        if (0x20..0x7f).contains(&b) {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    if bytes.len() > 24 {
        s.push('…');
    }
    s
}

fn how_it_ended(end: &End) -> String {
    match end {
        End::Closed => "then the server closed".into(),
        End::Complete => "whole".into(),
        End::Limit => "read limit reached".into(),
        End::Stalled(d) => format!("then nothing until {:.1} s", d.as_secs_f64()),
        End::Error(e) => format!("then {e}"),
    }
}

/// Classifies what one request got.
pub fn classify(f: &Fetch) -> Answer {
    let answer = |class, evidence: String| Answer { class, evidence };
    if let Some(e) = &f.connect_error {
        return answer(Class::NoConnection, format!("no connection: {e}"));
    }
    let bytes = &f.bytes;
    if bytes.is_empty() {
        return answer(
            Class::Silent,
            format!("connected, no answer: {}", how_it_ended(&f.end)),
        );
    }
    let h = match head(bytes) {
        Err(e) => {
            return answer(
                Class::NotHttp,
                format!(
                    "not HTTP ({e}): {} bytes \"{}\", {}",
                    bytes.len(),
                    first_bytes(bytes),
                    how_it_ended(&f.end)
                ),
            );
        }
        Ok(None) => {
            let class = match f.end {
                End::Limit => Class::NotHttp,
                End::Stalled(_) => Class::Endless,
                _ => Class::CutShort,
            };
            return answer(
                class,
                format!(
                    "headers never ended: {} bytes \"{}\", {}",
                    bytes.len(),
                    first_bytes(bytes),
                    how_it_ended(&f.end)
                ),
            );
        }
        Ok(Some(h)) => h,
    };
    let body = bytes.get(h.len..).unwrap_or_default();
    let sniff = body.get(..SNIFF).unwrap_or(body);
    let mut evidence = format!(
        "HTTP {}, {}",
        h.status,
        h.content_type.as_deref().unwrap_or("no Content-Type")
    );
    let _ = match h.length {
        Some(n) => write!(evidence, ", {} of {n} body bytes", body.len()),
        None => write!(evidence, ", {} body bytes", body.len()),
    };
    let _ = write!(evidence, ", {}", how_it_ended(&f.end));
    let whole = match f.end {
        End::Complete => true,
        End::Closed => {
            no_body(h.status)
                || match (h.length, h.chunked) {
                    (_, true) => body.ends_with(b"0\r\n\r\n"),
                    (Some(n), false) => body.len() as u64 >= n,
                    (None, false) => true,
                }
        }
        _ => false,
    };
    let octets = h
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/octet-stream"));
    let class = if octets || (!h.encoded && binary(sniff)) {
        if !octets {
            let _ = write!(evidence, "; binary body \"{}\"", first_bytes(sniff));
        }
        Class::Binary
    } else if matches!(f.end, End::Stalled(_)) && !whole {
        Class::Endless
    } else if !whole && f.end != End::Limit {
        Class::CutShort
    } else if (300..400).contains(&h.status) && h.location {
        Class::Redirect
    } else if (200..300).contains(&h.status)
        && h.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/html") || t.starts_with("application/xhtml+xml"))
        && (h.encoded || html(sniff))
    {
        Class::Page
    } else {
        Class::OtherHttp
    };
    answer(class, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fetch(bytes: &[u8], end: End) -> Answer {
        classify(&Fetch {
            connect_error: None,
            bytes: bytes.to_vec(),
            end,
        })
    }

    const PAGE: &[u8] = b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n\
        Content-type: text/html\r\nContent-Length: 52\r\n\r\n\
        <!DOCTYPE html><html><body>Hello</body></html>\n\n\n\n\n\n";

    #[test]
    fn a_real_page_is_real() {
        assert!(complete(PAGE));
        let a = fetch(PAGE, End::Complete);
        assert_eq!(a.class, Class::Page, "{}", a.evidence);
        assert_eq!(verdict(&a), Verdict::Real);
        assert_eq!(fetch(PAGE, End::Closed).class, Class::Page);
        // A page longer than the read limit is still a page.
        let cut = PAGE.get(..PAGE.len() - 10).unwrap();
        assert_eq!(fetch(cut, End::Limit).class, Class::Page);
    }

    #[test]
    fn a_redirect_is_real_and_a_404_is_unclear() {
        let moved = b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://example.org/\r\n\
            Content-Length: 0\r\n\r\n";
        assert!(complete(moved));
        assert_eq!(fetch(moved, End::Complete).class, Class::Redirect);
        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\n\
            Content-Length: 22\r\n\r\n<html>missing</html>\r\n";
        let a = fetch(missing, End::Complete);
        assert_eq!((a.class, verdict(&a)), (Class::OtherHttp, Verdict::Unclear));
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello";
        assert_eq!(fetch(plain, End::Closed).class, Class::OtherHttp);
    }

    /// GNU httptunnel's hts (1.2.1, Debian's httptunnel) answers a GET with these headers, then
    /// sends no body byte until the tunnel has data (`curl -v` against `hts -F HOST:PORT 8888`).
    #[test]
    fn headers_then_nothing_is_endless() {
        let hts = b"HTTP/1.1 200 OK\r\nContent-Length: 102400\r\nConnection: close\r\n\
            Pragma: no-cache\r\nCache-Control: no-cache, no-store, must-revalidate\r\n\
            Expires: 0\r\nContent-Type: text/html\r\n\r\n";
        assert!(!complete(hts));
        let a = fetch(hts, End::Stalled(Duration::from_secs(5)));
        assert_eq!((a.class, verdict(&a)), (Class::Endless, Verdict::Fail));
        assert!(
            a.evidence.contains("0 of 102400 body bytes"),
            "{}",
            a.evidence
        );
        assert_eq!(fetch(hts, End::Closed).class, Class::CutShort);
    }

    #[test]
    fn binary_bodies_fail() {
        let mut bin = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n".to_vec();
        bin.extend([0x04, 0x00, 0x00, 0x01, 0x9f, 0x10]);
        assert_eq!(fetch(&bin, End::Closed).class, Class::Binary);
        let octets = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\nxyz";
        assert_eq!(fetch(octets, End::Closed).class, Class::Binary);
        // Compressed bodies are not sniffed.
        let mut gz = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\
            Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\n"
            .to_vec();
        gz.extend([0x1f, 0x8b, 0x08, 0x00]);
        assert_eq!(fetch(&gz, End::Complete).class, Class::Page);
    }

    #[test]
    fn nothing_or_garbage_fails() {
        let no = classify(&Fetch {
            connect_error: Some("Connection refused (os error 111)".into()),
            bytes: Vec::new(),
            end: End::Closed,
        });
        assert_eq!(
            (no.class, verdict(&no)),
            (Class::NoConnection, Verdict::Fail)
        );
        assert_eq!(fetch(b"", End::Closed).class, Class::Silent);
        assert_eq!(
            fetch(b"", End::Stalled(Duration::from_secs(5))).class,
            Class::Silent
        );
        let a = fetch(b"\x8f\x00garbage\xff", End::Closed);
        assert_eq!(a.class, Class::NotHttp);
        assert!(
            a.evidence.contains("\\x8f\\x00garbage\\xff"),
            "{}",
            a.evidence
        );
        assert_eq!(
            fetch(b"SSH-2.0-OpenSSH_9.2\r\n", End::Closed).class,
            Class::NotHttp
        );
        assert_eq!(
            fetch(b"HTTP/1.1 200 OK\r\nX: y", End::Limit).class,
            Class::NotHttp
        );
        assert_eq!(
            fetch(b"HTTP/1.1 200 OK\r\nX: y", End::Stalled(Duration::ZERO)).class,
            Class::Endless
        );
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
        assert_eq!(fetch(two, End::Closed).class, Class::NotHttp);
    }

    #[test]
    fn chunked_answers_end_at_the_last_chunk() {
        let body = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\
            Transfer-Encoding: chunked\r\n\r\nd\r\n<html></html>\r\n0\r\n\r\n";
        assert!(complete(body));
        assert_eq!(fetch(body, End::Complete).class, Class::Page);
        assert_eq!(framing(body), Framing::Chunked);
        assert_eq!(framing(b"\x8fgarbage\n"), Framing::NotHttp);
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\n"), Framing::Incomplete);
        assert_eq!(framing(b"HTTP/1.1 200 OK\r\n\r\n"), Framing::Close);
        let open = body.get(..body.len() - 5).unwrap();
        assert!(!complete(open));
        assert_eq!(fetch(open, End::Closed).class, Class::CutShort);
    }

    #[test]
    fn every_prefix_of_an_answer_classifies() {
        for n in 0..=PAGE.len() {
            let part = PAGE.get(..n).unwrap();
            for end in [End::Closed, End::Limit, End::Stalled(Duration::ZERO)] {
                let _ = fetch(part, end);
            }
        }
    }
}
