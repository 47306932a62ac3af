//! Learn's inputs: which file is a capture and which a log, and the log lines read into flows.
//!
//! A log line is recognised by its keys, as `outgate report` does: a flow line has `proto` (and needs
//! `src`, `dst`, `first_ts`; `icmp_type` for ICMP; `reason`, `host`, `midstream`, `verdict`,
//! `enforced` are read when present), an HTTP line `method`, a TLS line `sni` (both need `client`; `server`, `host`/`sni` may
//! be null). Any other line is not understood: cited as `FILE:LINE: why`, counted, skipped. Lines
//! are read with a bounded buffer, so a file without newlines costs no more memory than one line.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde_json::{Map, Value};

use super::{LearnError, Seen};
use crate::log::proto_name;
use crate::packet::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// Lines cited one by one; the rest are counted.
const BAD_CITES: usize = 10;
/// A longer line is not understood (a flow line is a few hundred bytes; an HTTP line's URL is bounded
/// by what inspection reads).
const MAX_LINE: usize = 1 << 20;

pub(super) enum Kind {
    Capture,
    Log,
}

fn read_error(path: &Path) -> impl Fn(std::io::Error) -> LearnError + '_ {
    move |source| LearnError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// A capture starts with a pcap magic number (either byte order, micro- or nanoseconds) or a pcapng
/// section header, as replay reads them; anything else is taken for a log.
pub(super) fn sniff(path: &Path) -> Result<Kind, LearnError> {
    let mut head = Vec::with_capacity(4);
    File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut head))
        .map_err(read_error(path))?;
    Ok(match head[..] {
        [0xa1, 0xb2, 0xc3 | 0x3c, 0xd4 | 0x4d]
        | [0xd4 | 0x4d, 0xc3 | 0x3c, 0xb2, 0xa1]
        | [0x0a, 0x0d, 0x0d, 0x0a] => Kind::Capture,
        _ => Kind::Log,
    })
}

/// An HTTP request's host or a TLS server name, for the flow between `client` and `server`.
#[derive(Clone, Debug)]
struct HostLine {
    client: SocketAddr,
    server: Option<SocketAddr>,
    host: Option<String>,
}

enum Line {
    Flow(Seen),
    Host(HostLine),
    /// A live flow end line: its flow was seen at its decision line.
    End,
}

/// What the logs held.
#[derive(Default)]
pub(super) struct Logs {
    pub(super) flows: Vec<Seen>,
    hosts: Vec<HostLine>,
    /// The first lines not understood, `FILE:LINE: why`.
    pub(super) bad: Vec<String>,
    pub(super) bad_total: u64,
    pub(super) notes: Vec<String>,
}

impl Logs {
    /// Reads one log; returns how many lines it has. A file of which no line could be read is not a
    /// log: an error that cites its first line.
    pub(super) fn read_file(&mut self, path: &Path) -> Result<u64, LearnError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(read_error(path))?;
        let mut input = BufReader::with_capacity(64 * 1024, file);
        let mut buf = Vec::new();
        let (mut number, mut understood) = (0u64, 0u64);
        let mut first_bad: Option<(u64, String)> = None;
        while let Some(whole) = next_line(&mut input, &mut buf).map_err(read_error(path))? {
            number += 1;
            let parsed = if whole {
                let text = buf.strip_suffix(b"\r").unwrap_or(&buf);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                parse_line(text)
            } else {
                Err(format!("longer than {MAX_LINE} bytes"))
            };
            match parsed {
                Ok(Line::Flow(s)) => self.flows.push(s),
                Ok(Line::Host(h)) => self.hosts.push(h),
                Ok(Line::End) => {}
                Err(why) => {
                    if first_bad.is_none() {
                        first_bad = Some((number, why.clone()));
                    }
                    self.bad_total += 1;
                    if self.bad.len() < BAD_CITES {
                        self.bad.push(format!("{name}:{number}: {why}"));
                    }
                    continue;
                }
            }
            understood += 1;
        }
        match first_bad {
            Some((line, detail)) if understood == 0 => {
                return Err(LearnError::NotAnInput {
                    path: name,
                    line,
                    detail,
                });
            }
            _ if number == 0 => self.notes.push(format!("note: {name} is empty")),
            _ => {}
        }
        Ok(number)
    }

    /// Gives each TCP or UDP flow (QUIC's ClientHello is in the TLS log too) without a host the one an
    /// HTTP or TLS line names for the same connection (client and server address and port). Returns
    /// how many of those lines named no flow.
    pub(super) fn lend_hosts(&self, flows: &mut [Seen]) -> u64 {
        type Ends = (SocketAddr, SocketAddr);
        let mut named: HashMap<Ends, (Option<&str>, bool)> = HashMap::new();
        let mut unmatched = 0u64;
        for h in &self.hosts {
            match h.server {
                // The first line about a connection counts; a keep-alive connection's later requests
                // are not separate flows.
                Some(server) => {
                    named
                        .entry((h.client, server))
                        .or_insert((h.host.as_deref(), false));
                }
                None => unmatched += 1,
            }
        }
        for f in flows
            .iter_mut()
            .filter(|f| matches!(f.proto, PROTO_TCP | PROTO_UDP))
        {
            let ends = (
                SocketAddr::new(f.client, f.client_port),
                SocketAddr::new(f.server, f.selector),
            );
            if let Some((host, used)) = named.get_mut(&ends) {
                *used = true;
                if f.host.is_none() {
                    f.host = host.map(str::to_string);
                }
            }
        }
        let unused = named.values().filter(|(_, used)| !used).count() as u64;
        unmatched + unused
    }
}

/// Reads one line into `buf` (without its newline). `Some(false)`: the line was longer than
/// [`MAX_LINE`] and was skipped to its end. `None`: the end of the file.
fn next_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let (mut started, mut fits) = (false, true);
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(started.then_some(fits));
        }
        started = true;
        let (part, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1),
            None => (chunk, chunk.len()),
        };
        let ends = done > part.len();
        if fits && buf.len() + part.len() <= MAX_LINE {
            buf.extend_from_slice(part);
        } else {
            fits = false;
            buf.clear();
        }
        input.consume(done);
        if ends {
            return Ok(Some(fits));
        }
    }
}

fn parse_line(bytes: &[u8]) -> Result<Line, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("not UTF-8 text (byte {})", e.valid_up_to() + 1))?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // serde says where in the line; FILE:LINE already says which line.
        let message = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&at).unwrap_or(&message);
        if e.is_eof() {
            format!("cut short: {message} (column {})", e.column())
        } else {
            format!("not JSON: {message} (column {})", e.column())
        }
    })?;
    let Value::Object(obj) = value else {
        return Err("JSON, but not an object".into());
    };
    if crate::log::is_end_line(&obj) {
        Ok(Line::End)
    } else if obj.contains_key("proto") {
        flow_line(&obj).map(Line::Flow)
    } else if obj.contains_key("method") {
        host_line(&obj, "host").map(Line::Host)
    } else if obj.contains_key("sni") {
        host_line(&obj, "sni").map(Line::Host)
    } else {
        Err(
            "a JSON object, but not a flow line (proto), an HTTP line (method) or a TLS line (sni)"
                .into(),
        )
    }
}

fn text<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("'{key}' is not a string")),
        None => Err(format!("'{key}' is missing")),
    }
}

/// A key that may be absent or null.
fn optional<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("'{key}' is not a string")),
    }
}

/// `ip:port`, `[ip6]:port`, or an address alone (ICMP and other protocols).
fn endpoint(obj: &Map<String, Value>, key: &str) -> Result<(IpAddr, Option<u16>), String> {
    let s = text(obj, key)?;
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    s.parse::<IpAddr>()
        .map(|a| (a, None))
        .map_err(|_| format!("'{key}' is not an address ('{s}')"))
}

/// The inverse of [`proto_name`]: `tcp`, `gre`, `ip-99`...
fn proto_number(name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase();
    if let Some(n) = name.strip_prefix("ip-") {
        return n.parse().ok();
    }
    if name == "icmpv6" || name == "ipv6-icmp" {
        return Some(PROTO_ICMPV6);
    }
    (0..=u8::MAX).find(|&n| proto_name(n) == name.as_str())
}

fn flow_line(obj: &Map<String, Value>) -> Result<Seen, String> {
    let proto_text = text(obj, "proto")?;
    let proto =
        proto_number(proto_text).ok_or_else(|| format!("unknown protocol '{proto_text}'"))?;
    let (client, client_port) = endpoint(obj, "src")?;
    let (server, server_port) = endpoint(obj, "dst")?;
    let selector = match proto {
        PROTO_TCP | PROTO_UDP => server_port.ok_or("'dst' has no port")?,
        PROTO_ICMP | PROTO_ICMPV6 => obj
            .get("icmp_type")
            .and_then(Value::as_u64)
            .and_then(|t| u8::try_from(t).ok())
            .map(u16::from)
            .ok_or("an ICMP flow needs 'icmp_type', 0 to 255")?,
        _ => 0,
    };
    let first = text(obj, "first_ts")?;
    let first_ts = crate::calendar::parse_rfc3339(first).ok_or_else(|| {
        format!("'first_ts' is not a UTC time like 2024-03-01T09:00:00Z ('{first}')")
    })?;
    let midstream = match obj.get("midstream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("'midstream' is not true or false".into()),
    };
    Ok(Seen {
        proto,
        client,
        client_port: client_port.unwrap_or(0),
        server,
        selector,
        first_ts,
        host: optional(obj, "host")?
            .filter(|h| !h.is_empty())
            .map(str::to_string),
        midstream,
        ftp_data: optional(obj, "reason")? == Some("ftp-data"),
        blocked: matches!(optional(obj, "verdict")?, Some("drop" | "reject"))
            && obj.get("enforced") != Some(&Value::Bool(false)),
    })
}

fn host_line(obj: &Map<String, Value>, key: &str) -> Result<HostLine, String> {
    let client = text(obj, "client")?;
    let client = client
        .parse::<SocketAddr>()
        .map_err(|_| format!("'client' is not an address and port ('{client}')"))?;
    let server = match optional(obj, "server")? {
        None => None,
        Some(s) => Some(
            s.parse::<SocketAddr>()
                .map_err(|_| format!("'server' is not an address and port ('{s}')"))?,
        ),
    };
    let host = optional(obj, key)?
        .map(without_port)
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    Ok(HostLine {
        client,
        server,
        host,
    })
}

/// The HTTP log writes a request's port after its host (`192.0.2.80:8080`, `[2001:db8::1]:8080`);
/// the flow log does not. Evidence is by host.
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, port))
            if !h.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            h
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_read_back() {
        for n in 0..=u8::MAX {
            assert_eq!(proto_number(&proto_name(n)), Some(n));
        }
        assert_eq!(proto_number("TCP"), Some(PROTO_TCP));
        assert_eq!(proto_number("ipv6-icmp"), Some(PROTO_ICMPV6));
        assert_eq!(proto_number("ip-300"), None);
        assert_eq!(proto_number("carrier-pigeon"), None);
    }

    #[test]
    fn ports_come_off_http_hosts_only() {
        assert_eq!(without_port("192.0.2.80:8080"), "192.0.2.80");
        assert_eq!(without_port("[2001:db8::80]:8080"), "[2001:db8::80]");
        assert_eq!(without_port("[2001:db8::80]"), "[2001:db8::80]");
        assert_eq!(without_port("www.example.org"), "www.example.org");
        assert_eq!(without_port("2001:db8::1"), "2001:db8::1");
        assert_eq!(without_port("host:"), "host:");
    }

    #[test]
    fn lines_are_read_whole_or_skipped_when_too_long() {
        let mut data = b"one\r\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        data.extend_from_slice(b"\nlast");
        let mut input = std::io::BufReader::with_capacity(1000, &data[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(fits) = next_line(&mut input, &mut buf).unwrap() {
            got.push((fits, String::from_utf8_lossy(&buf).into_owned()));
        }
        assert_eq!(
            got,
            [
                (true, "one\r".to_string()),
                (false, String::new()),
                (true, "last".to_string())
            ]
        );
    }

    #[test]
    fn a_quic_hello_in_the_tls_log_names_its_udp_flow() {
        let flow = r#"{"proto":"udp","src":"10.0.0.2:50000","dst":"192.0.2.10:443","first_ts":"2024-03-01T09:00:00Z","app":"quic"}"#;
        let tls = r#"{"ts":"2024-03-01T09:00:00Z","client":"10.0.0.2:50000","server":"192.0.2.10:443","sni":"www.example.org","alpn":["h3"],"ja4":"q13d0310h3_55b375c5d22e_cd85d2d88918","verdict":"accept","rule":null,"reason":"default"}"#;
        let (Ok(Line::Flow(seen)), Ok(Line::Host(host))) =
            (parse_line(flow.as_bytes()), parse_line(tls.as_bytes()))
        else {
            panic!("a flow line and a TLS line");
        };
        let logs = Logs {
            hosts: vec![host],
            ..Logs::default()
        };
        let mut flows = vec![seen];
        assert_eq!(logs.lend_hosts(&mut flows), 0, "the line named its flow");
        assert_eq!(flows[0].host.as_deref(), Some("www.example.org"));
    }

    #[test]
    fn a_live_end_line_is_not_a_flow_of_its_own() {
        let end = r#"{"end":true,"ts":"2024-03-01T09:01:00Z","proto":"tcp","src":"10.0.0.2:40001","dst":"192.0.2.10:443","verdict":"accept","packets":9,"bytes":900}"#;
        assert!(matches!(parse_line(end.as_bytes()), Ok(Line::End)));
    }

    #[test]
    fn flow_lines_need_their_keys_and_say_what_is_wrong() {
        let line = r#"{"proto":"tcp","src":"10.0.0.2:40001","dst":"192.0.2.10:443","first_ts":"2024-03-01T09:00:00.030000000Z","reason":"ftp-data","host":"www.example.org"}"#;
        let Ok(Line::Flow(s)) = parse_line(line.as_bytes()) else {
            panic!("a flow line");
        };
        assert_eq!(
            (s.proto, s.selector, s.client_port),
            (PROTO_TCP, 443, 40001)
        );
        assert!(s.ftp_data && !s.midstream);
        assert_eq!(s.host.as_deref(), Some("www.example.org"));
        let why = |l: &str| match parse_line(l.as_bytes()) {
            Err(w) => w,
            Ok(_) => panic!("{l} was read"),
        };
        assert!(
            why(&line[..40]).starts_with("cut short"),
            "{}",
            why(&line[..40])
        );
        assert!(why("\u{1}garbage").starts_with("not JSON"));
        assert!(why("[1,2]").contains("not an object"));
        assert!(why(r#"{"a":1}"#).contains("not a flow line"));
        assert!(why(&line.replace("192.0.2.10:443", "192.0.2.10")).contains("no port"));
        assert!(why(&line.replace("2024-03-01T", "yesterday ")).contains("first_ts"));
        assert!(why(r#"{"proto":"icmp","src":"10.0.0.2","dst":"192.0.2.1","first_ts":"2024-03-01T09:00:00Z"}"#).contains("icmp_type"));
        assert!(matches!(parse_line(b"{\xff}"), Err(w) if w.contains("UTF-8")));
    }
}
