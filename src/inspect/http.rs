//! The HTTP/1.x request a client sends at the start of a TCP flow, read for the host it will
//! really reach (RFC 9112 §3.2) and the ways a request can make that host ambiguous.
//!
//! Contract: [`parse_request`] is pure and never panics, whatever the bytes; all indexing is
//! bounds-checked. `httparse` does the tokenizing; this module adds the target forms, the
//! effective host and the evasions.
//!
//! Decisions:
//! - [`HttpError::Incomplete`]: the bytes are a strict prefix of what could still be a request
//!   head; the caller waits for more (and bounds how long).
//! - [`HttpError::NotHttp`]: the first line is not an HTTP/1.x request line (TLS, SSH, a
//!   response, the HTTP/2 preface `PRI * HTTP/2.0`, ...).
//! - [`HttpError::Malformed`]: the request line is HTTP/1.x but the header section is broken
//!   (a header name with whitespace or bad bytes, a whitespace line before the first field, more
//!   than [`MAX_HEADERS`] fields). A server answers 400; a filter should not let it through.
//! - Methods are case-sensitive (RFC 9110 §9.1), so `get` is a method other than `GET`; but it is
//!   still HTTP, and a lenient server may serve it, so it is parsed and returned as sent, host
//!   checks included. Any token is a method.
//! - Empty lines before the request line are skipped, any number of them (RFC 9112 §2.2 says at
//!   least one; servers skip more).
//! - An obs-fold (a field line continued on a line starting with SP or HTAB) is unfolded into
//!   spaces, as RFC 9112 §5.2 lets a server do, and flagged [`Evasion::ObsFold`]: some servers
//!   reject it, others join it, and a filter must see what the joining ones see.
//! - The fields of [`Request`] are the best reading of what a server connects to or serves;
//!   [`Request::evasions`] says where that reading is not the only one. A filter that cares
//!   should refuse any request with an evasion.

use httparse::Status;

use super::host::{Host, parse_host};

/// Header fields read before giving up with [`HttpError::Malformed`].
pub const MAX_HEADERS: usize = 64;

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Request {
    /// As sent (case kept).
    pub method: String,
    /// The request-target as sent.
    pub target: String,
    /// The effective host: the CONNECT authority, the absolute-URI's host, or the Host header.
    /// `None` when there is none, or when it cannot be told (several Host headers, bad syntax).
    pub host: Option<Host>,
    /// The port named with the effective host, if one was named.
    pub port: Option<u16>,
    /// The origin-form target (`/path?query`); `/` for CONNECT and for an absolute-URI without a
    /// path; `*` for the asterisk-form.
    pub path_and_query: String,
    /// Every host the request names that parses: each Host field and the target's host, without
    /// repeats. More than one means the request is ambiguous (see `evasions`); a filter must not
    /// pick one of them.
    pub hosts: Vec<Host>,
    /// The first User-Agent field, trimmed, with invalid UTF-8 replaced.
    pub user_agent: Option<String>,
    /// Each irregularity at most once, in the order found.
    pub evasions: Vec<Evasion>,
}

/// Ways a request makes its host ambiguous or hides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Evasion {
    /// More than one Host field line (RFC 9112 §3.2: a server must answer 400).
    SeveralHosts,
    /// The absolute-URI (or CONNECT authority) names another host than the Host field. Only the
    /// hosts are compared, not the ports.
    HostDisagrees,
    /// An HTTP/1.1 request without a Host field, or with an empty one.
    NoHost,
    /// A host that does not parse (see [`super::host::parse_host`]), userinfo in an
    /// absolute-URI, or a CONNECT target without a port.
    BadHostSyntax,
    /// A field line folded over several lines (RFC 9112 §5.2).
    ObsFold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    Incomplete,
    NotHttp,
    Malformed,
}

/// Parses the request head at the start of `stream`, the client's TCP payload from the start of
/// the flow (the caller reassembles segments). Bytes after the head (a body, a tunnel) are ignored.
pub fn parse_request(stream: &[u8]) -> Result<Request, HttpError> {
    match parse_head(stream, false) {
        Err(ParseFail::Syntax) => recover(stream),
        other => other.map_err(ParseFail::into_error),
    }
}

enum ParseFail {
    Partial,
    TooMany,
    Syntax,
}

impl ParseFail {
    fn into_error(self) -> HttpError {
        match self {
            ParseFail::Partial => HttpError::Incomplete,
            ParseFail::TooMany | ParseFail::Syntax => HttpError::Malformed,
        }
    }
}

fn parse_head(bytes: &[u8], unfolded: bool) -> Result<Request, ParseFail> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(bytes) {
        Ok(Status::Complete(_)) => Ok(build(&req, unfolded)),
        Ok(Status::Partial) => Err(ParseFail::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(ParseFail::TooMany),
        Err(_) => Err(ParseFail::Syntax),
    }
}

/// After a syntax error: `NotHttp` if the request line itself is bad, else a second try with
/// obs-folds unfolded, else `Malformed`.
fn recover(stream: &[u8]) -> Result<Request, HttpError> {
    let Some(line_end) = request_line_end(stream) else {
        return Err(HttpError::NotHttp); // the error is in the (unfinished) request line
    };
    if !request_line_ok(stream.get(..line_end).unwrap_or_default()) {
        return Err(HttpError::NotHttp);
    }
    match unfold(stream, line_end) {
        Some(unfolded) => parse_head(&unfolded, true).map_err(ParseFail::into_error),
        None => Err(HttpError::Malformed),
    }
}

/// Index just past the LF ending the request line, after the empty lines httparse skips.
fn request_line_end(stream: &[u8]) -> Option<usize> {
    let mut start = 0;
    loop {
        match (stream.get(start), stream.get(start + 1)) {
            (Some(b'\r'), Some(b'\n')) => start += 2,
            (Some(b'\n'), _) => start += 1,
            _ => break,
        }
    }
    let rest = stream.get(start..)?;
    let lf = rest.iter().position(|&b| b == b'\n')?;
    Some(start + lf + 1)
}

/// Whether `line` (with its line end) is a valid HTTP/1.x request line, by httparse's rules.
fn request_line_ok(line: &[u8]) -> bool {
    let mut head = line.to_vec();
    head.extend_from_slice(b"\r\n");
    let mut no_headers = [httparse::EMPTY_HEADER; 0];
    let mut req = httparse::Request::new(&mut no_headers);
    matches!(req.parse(&head), Ok(Status::Complete(_)))
}

/// The head with each obs-fold (a line break followed by SP or HTAB, after a field line)
/// replaced by one SP (RFC 9112 §5.2), or `None` if there is none. A whitespace-led line right
/// after the request line is not a fold (RFC 9112 §2.2) and is kept, for httparse to reject.
fn unfold(stream: &[u8], line_end: usize) -> Option<Vec<u8>> {
    let mut out = stream.get(..line_end)?.to_vec();
    let mut rest = stream.get(line_end..)?;
    let mut first_field = true;
    let mut folded = false;
    while !rest.is_empty() {
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |lf| lf + 1);
        let (line, tail) = rest.split_at_checked(len)?;
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(rest); // the end of the head, and what follows
            break;
        }
        if !first_field && matches!(line.first(), Some(b' ' | b'\t')) {
            // Drop the previous line's CRLF (or LF), leaving one SP in its place.
            if out.last() == Some(&b'\n') {
                out.pop();
            }
            if out.last() == Some(&b'\r') {
                out.pop();
            }
            out.push(b' ');
            folded = true;
        }
        out.extend_from_slice(line);
        first_field = false;
        rest = tail;
    }
    folded.then_some(out)
}

/// What the Host field lines say.
enum HeaderHost {
    Absent,
    Several,
    /// Present with an empty value (RFC 9110 §7.2 allows it for a target without authority).
    Empty,
    Bad,
    Good(Host, Option<u16>),
}

fn build(req: &httparse::Request<'_, '_>, unfolded: bool) -> Request {
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let mut evasions = Vec::new();
    if unfolded {
        evasions.push(Evasion::ObsFold);
    }
    let flag = |e: Evasion, evasions: &mut Vec<Evasion>| {
        if !evasions.contains(&e) {
            evasions.push(e);
        }
    };

    let mut host_values = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| trim_ows(h.value));
    let header_host = match (host_values.next(), host_values.next()) {
        (None, _) => HeaderHost::Absent,
        (Some(_), Some(_)) => HeaderHost::Several,
        (Some([]), None) => HeaderHost::Empty,
        (Some(value), None) => match std::str::from_utf8(value).ok().and_then(parse_host) {
            Some((host, port)) => HeaderHost::Good(host, port),
            None => HeaderHost::Bad,
        },
    };
    match header_host {
        HeaderHost::Several => flag(Evasion::SeveralHosts, &mut evasions),
        HeaderHost::Bad => flag(Evasion::BadHostSyntax, &mut evasions),
        // RFC 9112 §3.2: an HTTP/1.1 client must send Host, even with an absolute-form target.
        HeaderHost::Absent | HeaderHost::Empty if req.version == Some(1) => {
            flag(Evasion::NoHost, &mut evasions);
        }
        _ => {}
    }

    let (host, port, path_and_query) = if method == "CONNECT" {
        // RFC 9112 §3.2.3: CONNECT takes the authority-form, host and port.
        let (host, port) = match parse_host(&target) {
            Some((host, Some(port))) => (Some(host), Some(port)),
            Some((host, None)) => {
                flag(Evasion::BadHostSyntax, &mut evasions);
                (Some(host), None)
            }
            None => {
                flag(Evasion::BadHostSyntax, &mut evasions);
                (None, None)
            }
        };
        (host, port, "/".to_string())
    } else if target.starts_with('/') || target == "*" {
        // Origin-form and asterisk-form: the Host field names the host.
        match &header_host {
            HeaderHost::Good(host, port) => (Some(host.clone()), *port, target.clone()),
            _ => (None, None, target.clone()),
        }
    } else if let Some(after_scheme) = strip_scheme(&target) {
        // RFC 9112 §3.2.2: absolute-form; the server ignores Host and uses the URI's authority.
        let (authority, path) = split_authority(after_scheme);
        let authority = match authority.and_then(|a| a.rsplit_once('@')) {
            // RFC 9110 §4.2.4: userinfo must not be sent; the host is after the last '@'.
            Some((_userinfo, host)) => {
                flag(Evasion::BadHostSyntax, &mut evasions);
                Some(host)
            }
            None => authority,
        };
        let (host, port) = match authority.and_then(parse_host) {
            Some((host, port)) => (Some(host), port),
            None => {
                flag(Evasion::BadHostSyntax, &mut evasions);
                (None, None)
            }
        };
        (host, port, path)
    } else {
        // Not a request-target form RFC 9112 §3.2 knows; only the Host field can name a host.
        match &header_host {
            HeaderHost::Good(host, port) => (Some(host.clone()), *port, target.clone()),
            _ => (None, None, target.clone()),
        }
    };

    if let (Some(named), HeaderHost::Good(field_host, _)) = (&host, &header_host)
        && named != field_host
    {
        flag(Evasion::HostDisagrees, &mut evasions);
    }

    let mut hosts: Vec<Host> = Vec::new();
    let field_hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .filter_map(|h| {
            std::str::from_utf8(trim_ows(h.value))
                .ok()
                .and_then(parse_host)
        });
    for named in field_hosts.map(|(h, _)| h).chain(host.clone()) {
        if !hosts.contains(&named) {
            hosts.push(named);
        }
    }

    let user_agent = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("user-agent"))
        .map(|h| String::from_utf8_lossy(trim_ows(h.value)).into_owned());

    Request {
        method,
        target,
        host,
        port,
        hosts,
        path_and_query,
        user_agent,
        evasions,
    }
}

/// RFC 9110 §5.6.3: OWS is SP and HTAB.
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// The rest of an absolute-URI after `scheme:` (RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" /
/// "-" / "." ) ":"), or `None` if `target` does not start with a scheme.
fn strip_scheme(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once(':')?;
    let mut chars = scheme.bytes();
    let first_ok = chars.next().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (first_ok && rest_ok).then_some(rest)
}

/// Splits `//authority/path?query#fragment` into the authority (`None` without `//`) and the
/// path and query, which is `/` when empty and loses the fragment.
fn split_authority(hier: &str) -> (Option<&str>, String) {
    let (authority, rest) = match hier.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (after.get(..end), after.get(end..).unwrap_or_default())
        }
        None => (None, hier),
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let path = if rest.is_empty() {
        "/".to_string()
    } else if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    (authority, path)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn name(s: &str) -> Option<Host> {
        Some(Host::Name(s.to_string()))
    }

    fn ok(bytes: &[u8]) -> Request {
        parse_request(bytes).unwrap()
    }

    #[test]
    fn origin_form_with_host() {
        let r = ok(
            b"GET /index.html?q=1 HTTP/1.1\r\nHost: Example.ORG\r\nUser-Agent: curl/8.0\r\n\r\n",
        );
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                target: "/index.html?q=1".into(),
                host: name("example.org"),
                port: None,
                path_and_query: "/index.html?q=1".into(),
                hosts: vec![Host::Name("example.org".into())],
                user_agent: Some("curl/8.0".into()),
                evasions: vec![],
            }
        );
    }

    #[test]
    fn every_named_host_is_listed_once() {
        let r =
            ok(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: 192.0.2.80\r\nHost: a.example\r\n\r\n");
        assert_eq!(r.host, None);
        let ip = Host::Ip("192.0.2.80".parse().unwrap());
        assert_eq!(r.hosts, vec![Host::Name("a.example".into()), ip.clone()]);
        let r = ok(b"GET http://192.0.2.80/x HTTP/1.1\r\nHost: a.example\r\n\r\n");
        assert_eq!(r.hosts, vec![Host::Name("a.example".into()), ip]);
    }

    #[test]
    fn host_field_name_case_and_ows() {
        let r = ok(b"GET / HTTP/1.1\r\nhOsT: \t example.org:8080 \t\r\n\r\n");
        assert_eq!((r.host, r.port), (name("example.org"), Some(8080)));
        assert!(r.evasions.is_empty());
    }

    #[test]
    fn ipv6_literal_and_decimal_hosts() {
        let r = ok(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n");
        assert_eq!(r.host, Some(Host::Ip("2001:db8::1".parse().unwrap())));
        assert_eq!(r.port, Some(8080));
        let r = ok(b"GET / HTTP/1.1\r\nHost: 3232235777\r\n\r\n");
        assert_eq!(
            r.host,
            Some(Host::Ip(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1))))
        );
        let r = ok(b"CONNECT [2001:db8::1]:8080 HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n");
        assert_eq!(r.host, Some(Host::Ip("2001:db8::1".parse().unwrap())));
        assert_eq!((r.port, r.path_and_query.as_str()), (Some(8080), "/"));
        assert!(r.evasions.is_empty());
    }

    #[test]
    fn connect_authority_form() {
        let r = ok(b"CONNECT apache.org:443 HTTP/1.1\r\nHost: apache.org:443\r\n\r\n");
        assert_eq!((r.host, r.port), (name("apache.org"), Some(443)));
        assert_eq!(
            (r.target.as_str(), r.path_and_query.as_str()),
            ("apache.org:443", "/")
        );
        assert!(r.evasions.is_empty());
        // The tunnel goes where the target says; a different Host field is flagged.
        let r = ok(b"CONNECT evil.example:443 HTTP/1.1\r\nHost: good.example\r\n\r\n");
        assert_eq!(r.host, name("evil.example"));
        assert_eq!(r.evasions, vec![Evasion::HostDisagrees]);
        // No Host field in HTTP/1.1: flagged, the target still names the host.
        let r = ok(b"CONNECT abc:443 HTTP/1.1\r\nUser-Agent: Victor/1.0\r\n\r\n");
        assert_eq!((r.host, r.port), (name("abc"), Some(443)));
        assert_eq!(r.evasions, vec![Evasion::NoHost]);
        // RFC 9112 §3.2.3: the port is required.
        let r = ok(b"CONNECT abc HTTP/1.0\r\n\r\n");
        assert_eq!((r.host, r.port), (name("abc"), None));
        assert_eq!(r.evasions, vec![Evasion::BadHostSyntax]);
        let r = ok(b"CONNECT http://abc/ HTTP/1.0\r\n\r\n");
        assert_eq!(r.host, None);
        assert_eq!(r.evasions, vec![Evasion::BadHostSyntax]);
    }

    #[test]
    fn absolute_form() {
        let r = ok(b"GET http://Example.org:8080/a/b?c HTTP/1.1\r\nHost: example.org:8080\r\n\r\n");
        assert_eq!((r.host, r.port), (name("example.org"), Some(8080)));
        assert_eq!(r.path_and_query, "/a/b?c");
        assert!(r.evasions.is_empty());
        // The URI wins (RFC 9112 §3.2.2), and the disagreement is flagged.
        let r = ok(b"GET http://evil.example/x HTTP/1.1\r\nHost: good.example\r\n\r\n");
        assert_eq!(r.host, name("evil.example"));
        assert_eq!(r.evasions, vec![Evasion::HostDisagrees]);
        // Port differences alone are not a disagreement.
        let r = ok(b"GET http://example.org:81/ HTTP/1.1\r\nHost: example.org\r\n\r\n");
        assert!(r.evasions.is_empty());
        // No path, a query without a path, a fragment, upper-case scheme.
        let r = ok(b"GET HTTP://X.example HTTP/1.1\r\nHost: x.example\r\n\r\n");
        assert_eq!(
            (r.host, r.path_and_query.as_str()),
            (name("x.example"), "/")
        );
        let r = ok(b"GET http://x.example?q=1 HTTP/1.1\r\nHost: x.example\r\n\r\n");
        assert_eq!(r.path_and_query, "/?q=1");
        let r = ok(b"GET http://x.example/p#frag HTTP/1.1\r\nHost: x.example\r\n\r\n");
        assert_eq!(r.path_and_query, "/p");
        // Absolute-form without a Host field in HTTP/1.1 is still NoHost.
        let r = ok(b"GET http://x.example/ HTTP/1.1\r\n\r\n");
        assert_eq!(
            (r.host, r.evasions),
            (name("x.example"), vec![Evasion::NoHost])
        );
        // Userinfo: the host is after the last '@', and flagged.
        let r = ok(b"GET http://good.example@evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n");
        assert_eq!(
            (r.host, r.evasions),
            (name("evil.example"), vec![Evasion::BadHostSyntax])
        );
        // No authority, empty authority, bad authority.
        for target in [
            "http:/x",
            "http:///x",
            "http://exa mple/",
            "http://a..b/",
            "urn:x",
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: x.example\r\n\r\n");
            match parse_request(req.as_bytes()) {
                Ok(r) => {
                    assert_eq!(r.host, None, "{target}");
                    assert_eq!(r.evasions, vec![Evasion::BadHostSyntax], "{target}");
                }
                Err(e) => assert_eq!(e, HttpError::NotHttp, "{target}"), // a space in the target
            }
        }
    }

    #[test]
    fn several_hosts() {
        let r = ok(b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n");
        assert_eq!((r.host, r.evasions), (None, vec![Evasion::SeveralHosts]));
        // Even when they agree: a filter must not pick one.
        let r = ok(b"GET / HTTP/1.1\r\nHost: a.example\r\nX: y\r\nHOST: a.example\r\n\r\n");
        assert_eq!((r.host, r.evasions), (None, vec![Evasion::SeveralHosts]));
        // With an absolute-URI the URI still names the host.
        let r = ok(b"GET http://c.example/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
        assert_eq!(
            (r.host, r.evasions),
            (name("c.example"), vec![Evasion::SeveralHosts])
        );
    }

    #[test]
    fn no_host_and_bad_host() {
        let r = ok(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n");
        assert_eq!((r.host, r.evasions), (None, vec![Evasion::NoHost]));
        let r = ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n");
        assert_eq!((r.host, r.evasions), (None, vec![Evasion::NoHost]));
        let r = ok(b"GET / HTTP/1.1\r\nHost:   \r\n\r\n");
        assert_eq!((r.host, r.evasions), (None, vec![Evasion::NoHost]));
        // HTTP/1.0 needs no Host.
        let r = ok(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!((r.host, r.evasions), (None, vec![]));
        for value in [
            &b"a.example, b.example"[..],
            b"user@evil.example",
            b"exa mple.org",
            b"example.org:http",
            b"\xc3\xa4.example",
            b"\xff",
            b"1.2.3.4.5",
            b"[fe80::1%25eth0]",
        ] {
            let mut req = b"GET / HTTP/1.1\r\nHost: ".to_vec();
            req.extend_from_slice(value);
            req.extend_from_slice(b"\r\n\r\n");
            let r = ok(&req);
            assert_eq!(
                (r.host, r.evasions),
                (None, vec![Evasion::BadHostSyntax]),
                "{value:?}"
            );
        }
    }

    #[test]
    fn obs_fold_is_unfolded_and_flagged() {
        let r = ok(b"GET / HTTP/1.1\r\nHost: example.org\r\nUser-Agent: a\r\n  b\r\n\tc\r\n\r\n");
        assert_eq!(r.host, name("example.org"));
        assert_eq!(r.user_agent.as_deref(), Some("a   b \tc"));
        assert_eq!(r.evasions, vec![Evasion::ObsFold]);
        // A folded Host value joins into one with spaces: bad syntax.
        let r = ok(b"GET / HTTP/1.1\r\nHost: exam\r\n ple.org\r\n\r\n");
        assert_eq!(r.host, None);
        assert_eq!(r.evasions, vec![Evasion::ObsFold, Evasion::BadHostSyntax]);
        // Bare LF line ends fold too.
        let r = ok(b"GET / HTTP/1.1\nHost: example.org\nX: a\n b\n\n");
        assert_eq!(
            (r.host, r.evasions),
            (name("example.org"), vec![Evasion::ObsFold])
        );
        // Whitespace before the first field is not a fold (RFC 9112 §2.2).
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n Host: evil.example\r\nHost: a\r\n\r\n"),
            Err(HttpError::Malformed)
        );
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let requests: [&[u8]; 6] = [
            b"GET /a?b HTTP/1.1\r\nHost: example.org\r\nUser-Agent: x\r\n\r\n",
            b"CONNECT [2001:db8::1]:8080 HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
            b"\r\n\r\nPOST http://x.example/ HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\nHost: example.org\n\n",
            b"GET / HTTP/1.1\r\nHost: example.org\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ];
        for full in requests {
            assert!(
                parse_request(full).is_ok(),
                "{:?}",
                String::from_utf8_lossy(full)
            );
            for cut in 0..full.len() {
                assert_eq!(
                    parse_request(&full[..cut]),
                    Err(HttpError::Incomplete),
                    "{:?}",
                    String::from_utf8_lossy(&full[..cut])
                );
            }
        }
    }

    #[test]
    fn body_and_tunnel_bytes_after_the_head_are_ignored() {
        let r =
            ok(b"POST /hi.php HTTP/1.1\r\nHost: 192.168.235.101\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(r.path_and_query, "/hi.php");
        let r = ok(b"CONNECT abc:443 HTTP/1.1\r\n\r\n\x16\x03\x01\x02\x00\x01");
        assert_eq!(r.host, name("abc"));
    }

    #[test]
    fn leading_empty_lines_and_method_case() {
        let r = ok(b"\r\n\r\n\nGET / HTTP/1.1\r\nHost: example.org\r\n\r\n");
        assert_eq!((r.method.as_str(), r.host), ("GET", name("example.org")));
        // Methods are case-sensitive, but "get" is still an HTTP request to inspect.
        let r = ok(b"get / HTTP/1.1\r\nHost: example.org\r\n\r\n");
        assert_eq!((r.method.as_str(), r.host), ("get", name("example.org")));
        let r = ok(b"OPTIONS * HTTP/1.1\r\nHost: example.org\r\n\r\n");
        assert_eq!(r.path_and_query, "*");
    }

    #[test]
    fn not_http() {
        for bytes in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
            b"GET\r\n\r\n",
            b"\r\r\n",
            b"\x00\x00\x00\x00",
            b"220 ftp.example ready\r\n",
        ] {
            assert_eq!(
                parse_request(bytes),
                Err(HttpError::NotHttp),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // Decided from the first bytes already, before a whole line arrives.
        assert_eq!(parse_request(b"\x16\x03"), Err(HttpError::NotHttp));
    }

    #[test]
    fn malformed() {
        for bytes in [
            &b"GET / HTTP/1.1\r\nHost : example.org\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost\r\n\r\n",
            b"GET / HTTP/1.1\r\nHo(st: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\n\tHost: a\r\n\r\n",
        ] {
            assert_eq!(
                parse_request(bytes),
                Err(HttpError::Malformed),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many), Err(HttpError::Malformed));
    }

    #[test]
    fn never_panics_on_mutations() {
        let base = b"GET http://a@[::1]:80/x HTTP/1.1\r\nHost: a\r\n b\r\nUser-Agent: \xff\r\n\r\n";
        let specials = [
            0u8, b' ', b'\t', b'\r', b'\n', b':', b'@', b'[', b']', b'%', 0x80, 0xff,
        ];
        for i in 0..base.len() {
            for &s in &specials {
                let mut m = base.to_vec();
                m[i] = s;
                let _ = parse_request(&m);
                let _ = parse_request(&m[..i]);
                m.insert(i, s);
                let _ = parse_request(&m);
            }
        }
    }
}
