//! `outgate report`: reads outgate's JSON-lines logs and shows what an admin needs to find tunnels.
//!
//! # Input
//!
//! One JSON object per line; a file may mix kinds, and each line is recognised by its keys:
//!
//! - a **flow line** has `proto` and `packets` (it also needs `src`, `dst`, `verdict`, `bytes`;
//!   `app`, `host`, `class`, `enforced`, `rule`, and the times and end keys `first_ts`, `duration`
//!   and `orig_bytes` are optional);
//! - a **flow end line** (the live flow log's, see `crate::log::EndLine`) has `"end": true` (it also
//!   needs `proto`, `src`, `dst`; `bytes`, `first_ts`, `duration` and `orig_bytes` are optional). It is
//!   read by sections 6 to 8 only: its flow was counted at its decision line;
//! - an **HTTP request line** has `method` (it also needs `client`, `url`, `verdict`; `server`
//!   and `host` may be null or absent);
//! - a **TLS line** has `sni`, which may be null (it also needs `client`, `verdict`);
//! - a **DNS line** has `qname` (it also needs `client`, `qtype_code`, `verdict`; `labels` is optional);
//! - an **ICMP line** has `echo` (it also needs `ts`, `client`, `server`, `ident`, `size` (may be null),
//!   `entropy`, `ping_fill`, `digest`, `verdict`).
//!
//! Other keys are ignored. Blank lines are skipped and counted. Any other line (not JSON, not an
//! object, no recognised key, a needed key missing or of the wrong type, a number beyond u64,
//! invalid UTF-8, 4 MiB or longer: no more of a line is ever held) is counted
//! as *not understood* and cited; it is never fatal. Lines are numbered from 1 per file and cited
//! as `FILE:LINE`, FILE being the name the caller gave (the path as typed for [`report`]).
//!
//! # What is reported
//!
//! 1. **Top destinations** (flow lines, keyed by `dst` as written): the 10 with the most flows and
//!    the 10 with the most bytes, with flows, bytes, packets and verdict counts.
//!
//!    Then **shaped flows** (flow lines with verdict `shape`), by `class` (`slow` when absent), and
//!    **what enforcing would block** (flow lines with `"enforced":false` and verdict `drop` or
//!    `reject`: audit mode or an `AUDIT(...)` line), by `rule` and verdict: flows, bytes, packets,
//!    clients, the 5 destinations with the most bytes. Sorted by bytes descending, then name.
//! 2. **Numeric-IP hosts**: HTTP requests whose `host` is an IP literal and TLS hellos whose `sni`
//!    is an IP literal or absent (shown as `(no SNI)`). IP literals: dotted IPv4, IPv6 (bracketed
//!    or bare), each with or without a port, and the forms `inet_aton` accepts: decimal
//!    (`3232235777`), hex (`0x7f000001`, `0x7f.0.0.1`), octal (`0177.0.0.1`) and short (`127.1`).
//!    Keyed by (kind, host as written).
//! 3. **Odd HTTP use**: `post_only` hosts, whose requests (at least 2) never used GET or HEAD; and
//!    `odd_url` requests, whose URL contains `.dll?` or `.exe?` (case-insensitive) or whose query
//!    string is longer than 200 characters. Odd URLs are keyed by (host, URL); URLs with a long
//!    query are keyed by (host, path) and shown as `PATH?…`. An HTTP request without a host is
//!    keyed as `(no Host: SERVER-ADDRESS)`.
//! 4. **Protocols on the wrong port**: flow lines with `app` where the destination port does not
//!    fit. Expected apps: tcp 80/8080 http, tcp 443 tls, udp 443 quic, 53 dns, tcp 21 ftp, tcp 22
//!    ssh. Listed: ssh, openvpn, wireguard or socks on any port but their own (22, 1194, 51820,
//!    1080); any other app on a port that expects a different one (so http on 443 and tls on 80);
//!    `unknown` on 80 or 443; `encrypted` (a first payload that looks uniformly random) on any port.
//!    Keyed by (app, proto, port).
//! 5. **DNS and ICMP tunnel suspects** (DNS and ICMP lines; the thresholds are the constants of
//!    `tunnel`, printed in the section titles): per registered domain (the public suffix list's, from
//!    the `psl` crate), at least 50 unique subdomains and one of: a mean longest subdomain label of
//!    24 octets or more, subdomain characters of 4.00 bits of entropy or more, 50% or more NULL/TXT
//!    queries; per client and server, at least half the echo requests without ping's fill, a reply
//!    whose data is no request's, 10 or more requests in one second, or 10 or more requests over 56
//!    bytes. Sorted by unique subdomains (requests) descending, then name (addresses).
//!
//!    **Clients ranked by evidence**: every client (address without port) backing an item of
//!    sections 2–5, with its evidence items. A client's evidence count is the sum, over its items,
//!    of its lines backing the item (one line backing two items counts twice). Sorted by count
//!    descending, then address.
//! 6. **Beacons**: a connection per flow line and end line with `first_ts`. A live flow that ended
//!    has two lines, its decision and its end: each end line (or line with a `duration`) takes at
//!    most one decision line of the same `proto`, `src` and `dst` whose `first_ts` is from 2 s after
//!    its own to 30 s before it, the earliest first, and a decision line none took counts on its own,
//!    so each flow counts once, by its end when the log has it. Grouped by (client address, server
//!    address), ports aside; pairs with 20 or more connections get RITA's beacon score from their
//!    start times (whole seconds) and the bytes the client sent (`orig_bytes`, else `bytes`): see
//!    `src/report/beacon.rs` for the formulas. The 20 best, by score descending, then client and
//!    server address; a pair cites its lines with an end first.
//! 7. **Long connections**: flow and end lines whose `duration` is an hour or more; the 20 longest,
//!    ties by source, destination, protocol, then citation. Live, a duration runs to the kernel's end
//!    of the entry: a closed TCP connection's TIME_WAIT (120 s by default), a UDP flow's timeout
//!    after its last packet.
//! 8. **Suspicion by client**: one score per client, the sum of its reasons' weights: each beacon
//!    scoring 0.8 or more (its score), each destination it held long connections to (0.5, however
//!    many), and each evidence item of section 5 (0.25); beacons and long connections count
//!    whether or not they are among the 20 shown. Every reason cites its lines. Sorted by score
//!    descending, then address.
//! 9. **Input summary**: files with their line counts, lines per kind (flow end lines apart),
//!    blank lines, lines not understood (first 3 cited).
//!
//! Every list is sorted by its count descending with ties broken by name or address (addresses in
//! numeric order; in `odd_http`, `post_only` before `odd_url`), every map has sorted keys, and every item cites at most 5 lines (the first
//! read) then counts the rest, so the same logs always give the same bytes in both formats; the
//! same lines in another order give the same report but for the citations.
//!
//! # JSON schema ([`Report::json`])
//!
//! ```text
//! {
//!   "top_destinations_by_flows": [Dest],   // at most 10
//!   "top_destinations_by_bytes": [Dest],   // at most 10
//!   "shaped": [Lane],                      // "what": the class
//!   "would_block": [Lane],                 // "what": the rule (FILE:LINE), with "verdict"
//!   "numeric_hosts": [{"kind": "http"|"tls", "host": str, "address": str|null,
//!                      "form": "dotted"|"ipv6"|"decimal"|"hex"|"octal"|"short"|null,
//!                      "requests": n, "clients": [str], "servers": [str], "verdicts": Verdicts,
//!                      "cites": [str], "cites_more": n}],
//!   "odd_http": [{"kind": "post_only"|"odd_url", "host": str, "url": str|null,
//!                 "reasons": ["dll_or_exe"|"long_query"], "max_query_chars": n,
//!                 "methods": [str], "requests": n, "clients": [str], "verdicts": Verdicts,
//!                 "cites": [str], "cites_more": n}],
//!   "wrong_port": [{"app": str, "proto": str, "port": n, "expected_app": str|null,
//!                   "app_port": n|null, "flows": n, "bytes": n, "clients": [str],
//!                   "verdicts": Verdicts, "cites": [str], "cites_more": n}],
//!   "dns_tunnels": [{"domain": str, "queries": n, "unique_subdomains": n, "unique_capped": bool,
//!                    "mean_longest_label": f, "max_label": n, "entropy": f, "null_txt_percent": n,
//!                    "reasons": ["long_labels"|"high_entropy"|"null_txt"], "clients": [str],
//!                    "verdicts": Verdicts, "cites": [str], "cites_more": n}],
//!   "icmp_tunnels": [{"client": str, "server": str, "requests": n, "replies": n, "oversize": n,
//!                     "max_size": n|null, "not_ping_fill": n, "max_entropy": f,
//!                     "replies_not_echoed": n, "max_per_second": n,
//!                     "reasons": ["not_ping_data"|"reply_not_echoed"|"rate"|"oversize"],
//!                     "verdicts": Verdicts, "cites": [str], "cites_more": n}],
//!   "clients": [{"client": str, "evidence": n,
//!                "items": [{"section": "numeric_hosts"|"odd_http"|"wrong_port"|"dns_tunnels"|"icmp_tunnels", "what": str,
//!                           "count": n, "cites": [str], "cites_more": n}]}],
//!   "beacons": [{"client": str, "server": str, "connections": n, "score": x, "ts_score": x,
//!                "ds_score": x, "ts_skew": x, "ts_dispersion": n, "ts_mode": n,
//!                "conn_count_score": x, "coverage": x, "ds_skew": x, "ds_dispersion": n,
//!                "ds_mode": n, "cites": [str], "cites_more": n}],   // at most 20
//!   "long_connections": [{"client": str, "src": str, "dst": str, "proto": str, "duration": x,
//!                         "bytes": n, "cite": str}],              // at most 20
//!   "suspects": [{"client": str, "score": x,
//!                 "reasons": [{"kind": "beacon"|"long_connection"|SECTION, "what": str,
//!                              "weight": x, "cites": [str], "cites_more": n}]}],
//!   "inputs": {"files": [{"name": str, "lines": n}], "flow_lines": n, "end_lines": n, "http_lines": n,
//!              "tls_lines": n, "dns_lines": n, "icmp_lines": n, "blank_lines": n, "not_understood": n,
//!              "not_understood_cites": [str], "not_understood_more": n}
//! }
//! Dest     = {"dst": str, "flows": n, "bytes": n, "packets": n, "verdicts": Verdicts,
//!             "cites": [str], "cites_more": n}
//! Verdicts = {"accept": n, "drop": n, ...}   // verdict as logged -> lines, keys sorted
//! Lane     = {"what": str, "verdict": str (would_block only), "flows": n, "bytes": n, "packets": n,
//!             "clients": [str], "top": [[dst, bytes]], "cites": [str], "cites_more": n}
//! ```
//!
//! `x` is a number with a fraction (scores and weights have 3 decimals; durations and skews are
//! as computed); `ts_dispersion`, `ts_mode` are seconds, `ds_dispersion`, `ds_mode` bytes.
//! `cites` holds `FILE:LINE` strings; `cites_more` is how many backing lines were not cited.
//! `clients` lists of items hold addresses without port (IPv6 without brackets).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::BufReader;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod beacon;
mod classify;
mod input;
mod read;
mod rollout;
mod suspects;
#[cfg(test)]
mod tests;
mod text;
mod tunnel;

use beacon::*;
use classify::*;
use input::*;
use read::*;
use rollout::*;
use text::*;
use tunnel::{DnsIn, DnsTunnel, IcmpIn, IcmpTunnel, Tunnels, tunnels_text};

pub use suspects::{HttpSuspect, http_suspects, http_suspects_from};

/// Items per top-destinations list.
const TOP: usize = 10;
/// Citations per item.
const CITES: usize = 5;
/// Citations of lines not understood.
const BAD_CITES: usize = 3;
/// A query string longer than this many characters is odd.
const LONG_QUERY: u64 = 200;
/// Cells of the text table are cut to this many characters.
const CELL_MAX: usize = 80;
/// Clients or servers listed under an item of the text table.
const LIST_MAX: usize = 5;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// The analysis of a set of logs; see the module docs for what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    top_destinations_by_flows: Vec<Dest>,
    top_destinations_by_bytes: Vec<Dest>,
    shaped: Vec<Lane>,
    would_block: Vec<Lane>,
    numeric_hosts: Vec<NumericHost>,
    odd_http: Vec<OddHttp>,
    wrong_port: Vec<WrongPort>,
    dns_tunnels: Vec<DnsTunnel>,
    icmp_tunnels: Vec<IcmpTunnel>,
    clients: Vec<Client>,
    beacons: Vec<Beacon>,
    long_connections: Vec<LongConn>,
    suspects: Vec<Suspect>,
    inputs: Inputs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Dest {
    dst: String,
    flows: u64,
    bytes: u64,
    packets: u64,
    verdicts: BTreeMap<String, u64>,
    cites: Vec<String>,
    cites_more: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct NumericHost {
    kind: &'static str,
    host: String,
    address: Option<String>,
    form: Option<&'static str>,
    requests: u64,
    clients: Vec<String>,
    servers: Vec<String>,
    verdicts: BTreeMap<String, u64>,
    cites: Vec<String>,
    cites_more: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct OddHttp {
    kind: &'static str,
    host: String,
    url: Option<String>,
    reasons: Vec<&'static str>,
    max_query_chars: u64,
    methods: Vec<String>,
    requests: u64,
    clients: Vec<String>,
    verdicts: BTreeMap<String, u64>,
    cites: Vec<String>,
    cites_more: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct WrongPort {
    app: String,
    proto: String,
    port: u16,
    expected_app: Option<&'static str>,
    app_port: Option<u16>,
    flows: u64,
    bytes: u64,
    clients: Vec<String>,
    verdicts: BTreeMap<String, u64>,
    cites: Vec<String>,
    cites_more: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Client {
    client: String,
    evidence: u64,
    items: Vec<ClientItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ClientItem {
    section: &'static str,
    what: String,
    count: u64,
    cites: Vec<String>,
    cites_more: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Inputs {
    files: Vec<FileLines>,
    flow_lines: u64,
    end_lines: u64,
    http_lines: u64,
    tls_lines: u64,
    dns_lines: u64,
    icmp_lines: u64,
    blank_lines: u64,
    not_understood: u64,
    not_understood_cites: Vec<String>,
    not_understood_more: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct FileLines {
    name: String,
    lines: u64,
}

/// Reads the logs at `paths` and analyses them. A file that cannot be opened or read is an error;
/// lines that cannot be understood are counted in the report.
pub fn report(paths: &[PathBuf]) -> Result<Report, ReportError> {
    let mut b = Builder::default();
    for path in paths {
        let name = path.display().to_string();
        let err = |source: std::io::Error| ReportError::Read {
            path: name.clone(),
            source,
        };
        let mut reader =
            BufReader::with_capacity(64 << 10, std::fs::File::open(path).map_err(err)?);
        let file = b.add_file(name.clone());
        let mut buf = Vec::new();
        while let Some(whole) = read_line(&mut reader, &mut buf).map_err(err)? {
            let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            match std::str::from_utf8(bytes) {
                Ok(text) if whole => b.line(file, Some(text)),
                _ => b.line(file, None),
            }
        }
    }
    Ok(b.finish())
}

/// [`report`] on texts already read: each source is (name used in citations, text).
pub fn report_from(sources: &[(String, String)]) -> Report {
    let mut b = Builder::default();
    for (name, text) in sources {
        let file = b.add_file(name.clone());
        for line in text.lines() {
            b.line(file, Some(line));
        }
    }
    b.finish()
}

impl Report {
    /// True when no line of any kind was understood: there is nothing to report.
    pub fn is_empty(&self) -> bool {
        let i = &self.inputs;
        i.flow_lines == 0
            && i.end_lines == 0
            && i.http_lines == 0
            && i.tls_lines == 0
            && i.dns_lines == 0
            && i.icmp_lines == 0
    }

    /// The report as JSON, with the schema in the module docs.
    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The report as readable text, one section after another; empty sections say "none".
    pub fn table(&self) -> String {
        let mut out = String::new();
        let i = &self.inputs;
        let _ = writeln!(
            out,
            "outgate report: {} file(s); {} flow, {} HTTP, {} TLS lines; {} not understood",
            i.files.len(),
            i.flow_lines,
            i.http_lines,
            i.tls_lines,
            i.not_understood
        );

        heading(&mut out, "Top destinations by flows");
        dest_grid(&mut out, &self.top_destinations_by_flows);
        heading(&mut out, "Top destinations by bytes");
        dest_grid(&mut out, &self.top_destinations_by_bytes);
        lanes_text(&mut out, &self.shaped, &self.would_block);

        heading(&mut out, "Numeric-IP hosts (HTTP host or TLS SNI)");
        let rows: Vec<Row> = self
            .numeric_hosts
            .iter()
            .map(|n| {
                let mut host = clean(&n.host).into_owned();
                if let (Some(addr), Some(form)) = (&n.address, n.form)
                    && form != "dotted"
                    && form != "ipv6"
                {
                    let _ = write!(host, " = {addr} ({form})");
                }
                let mut details = vec![format!("clients: {}", list(&n.clients))];
                if !n.servers.is_empty() {
                    details.push(format!("servers: {}", list(&n.servers)));
                }
                details.push(cite_text(&n.cites, n.cites_more));
                Row {
                    cells: vec![
                        host,
                        n.kind.to_ascii_uppercase(),
                        n.requests.to_string(),
                        n.clients.len().to_string(),
                        verdict_text(&n.verdicts),
                    ],
                    details,
                }
            })
            .collect();
        grid(
            &mut out,
            &[
                ("HOST", false),
                ("KIND", false),
                ("LINES", true),
                ("CLIENTS", true),
                ("VERDICTS", false),
            ],
            &rows,
        );

        heading(&mut out, "Odd HTTP use");
        let rows: Vec<Row> = self
            .odd_http
            .iter()
            .map(|o| Row {
                cells: vec![
                    odd_what(o),
                    clean(&o.host).into_owned(),
                    o.url
                        .as_deref()
                        .map_or_else(|| "-".to_string(), |u| clean(u).into_owned()),
                    o.requests.to_string(),
                    o.clients.len().to_string(),
                    verdict_text(&o.verdicts),
                ],
                details: vec![
                    format!("clients: {}", list(&o.clients)),
                    format!("methods: {}", list(&o.methods)),
                    cite_text(&o.cites, o.cites_more),
                ],
            })
            .collect();
        grid(
            &mut out,
            &[
                ("WHAT", false),
                ("HOST", false),
                ("URL", false),
                ("REQUESTS", true),
                ("CLIENTS", true),
                ("VERDICTS", false),
            ],
            &rows,
        );

        heading(&mut out, "Protocols on the wrong port");
        let rows: Vec<Row> = self
            .wrong_port
            .iter()
            .map(|w| Row {
                cells: vec![
                    clean(&w.app).into_owned(),
                    format!("{}/{}", clean(&w.proto), w.port),
                    expect_text(&w.app, w.expected_app, w.app_port),
                    w.flows.to_string(),
                    w.bytes.to_string(),
                    w.clients.len().to_string(),
                    verdict_text(&w.verdicts),
                ],
                details: vec![
                    format!("clients: {}", list(&w.clients)),
                    cite_text(&w.cites, w.cites_more),
                ],
            })
            .collect();
        grid(
            &mut out,
            &[
                ("APP", false),
                ("PORT", false),
                ("EXPECTED", false),
                ("FLOWS", true),
                ("BYTES", true),
                ("CLIENTS", true),
                ("VERDICTS", false),
            ],
            &rows,
        );

        tunnels_text(&mut out, &self.dns_tunnels, &self.icmp_tunnels);

        heading(&mut out, "Clients ranked by evidence");
        if self.clients.is_empty() {
            out.push_str("  none\n");
        }
        for c in &self.clients {
            let _ = writeln!(
                out,
                "  {}  evidence {} ({} item{})",
                clean(&c.client),
                c.evidence,
                c.items.len(),
                if c.items.len() == 1 { "" } else { "s" }
            );
            for item in &c.items {
                let _ = writeln!(
                    out,
                    "      [{}] {}: {}",
                    section_title(item.section),
                    clean(&item.what),
                    cite_text(&item.cites, item.cites_more)
                );
            }
        }

        beacon::table(
            &mut out,
            &self.beacons,
            &self.long_connections,
            &self.suspects,
        );

        heading(&mut out, "Input summary");
        let _ = writeln!(out, "  files: {}", i.files.len());
        for f in &i.files {
            let _ = writeln!(out, "    {}: {} lines", clean(&f.name), f.lines);
        }
        let _ = writeln!(out, "  flow lines: {}", i.flow_lines);
        let _ = writeln!(out, "  flow end lines: {}", i.end_lines);
        let _ = writeln!(out, "  HTTP request lines: {}", i.http_lines);
        let _ = writeln!(out, "  TLS lines: {}", i.tls_lines);
        let _ = writeln!(out, "  DNS lines: {}", i.dns_lines);
        let _ = writeln!(out, "  ICMP lines: {}", i.icmp_lines);
        let _ = writeln!(out, "  blank lines: {}", i.blank_lines);
        let _ = write!(out, "  not understood: {}", i.not_understood);
        if i.not_understood > 0 {
            let _ = write!(
                out,
                " ({})",
                cite_list(&i.not_understood_cites, i.not_understood_more)
            );
        }
        out.push('\n');
        out
    }
}
