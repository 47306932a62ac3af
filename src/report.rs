//! `outgate report`: reads outgate's JSON-lines logs and shows what an admin needs to find tunnels.
//!
//! # Input
//!
//! One JSON object per line; a file may mix kinds, and each line is recognised by its keys:
//!
//! - a **flow line** has `proto` and `packets` (it also needs `src`, `dst`, `verdict`, `bytes`;
//!   `app` and `host` are optional);
//! - an **HTTP request line** has `method` (it also needs `client`, `url`, `verdict`; `server`
//!   and `host` may be null or absent);
//! - a **TLS line** has `sni`, which may be null (it also needs `client`, `verdict`).
//!
//! Other keys are ignored. Blank lines are skipped and counted. Any other line (not JSON, not an
//! object, no recognised key, a needed key missing or of the wrong type, invalid UTF-8) is counted
//! as *not understood* and cited; it is never fatal. Lines are numbered from 1 per file and cited
//! as `FILE:LINE`, FILE being the name the caller gave (the path as typed for [`report`]).
//!
//! # What is reported
//!
//! 1. **Top destinations** (flow lines, keyed by `dst` as written): the 10 with the most flows and
//!    the 10 with the most bytes, with flows, bytes, packets and verdict counts.
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
//!    `unknown` on 80 or 443. Keyed by (app, proto, port).
//! 5. **Clients ranked by evidence**: every client (address without port) backing an item of
//!    sections 2–4, with its evidence items. A client's evidence count is the sum, over its items,
//!    of its lines backing the item (one line backing two items counts twice). Sorted by count
//!    descending, then address.
//! 6. **Input summary**: files with their line counts, lines per kind, blank lines, lines not
//!    understood (first 3 cited).
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
//!   "clients": [{"client": str, "evidence": n,
//!                "items": [{"section": "numeric_hosts"|"odd_http"|"wrong_port", "what": str,
//!                           "count": n, "cites": [str], "cites_more": n}]}],
//!   "inputs": {"files": [{"name": str, "lines": n}], "flow_lines": n, "http_lines": n,
//!              "tls_lines": n, "blank_lines": n, "not_understood": n,
//!              "not_understood_cites": [str], "not_understood_more": n}
//! }
//! Dest     = {"dst": str, "flows": n, "bytes": n, "packets": n, "verdicts": Verdicts,
//!             "cites": [str], "cites_more": n}
//! Verdicts = {"accept": n, "drop": n, ...}   // verdict as logged -> lines, keys sorted
//! ```
//!
//! `cites` holds `FILE:LINE` strings; `cites_more` is how many backing lines were not cited.
//! `clients` lists of items hold addresses without port (IPv6 without brackets).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    numeric_hosts: Vec<NumericHost>,
    odd_http: Vec<OddHttp>,
    wrong_port: Vec<WrongPort>,
    clients: Vec<Client>,
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
    http_lines: u64,
    tls_lines: u64,
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
        let mut reader = BufReader::new(std::fs::File::open(path).map_err(err)?);
        let file = b.add_file(name.clone());
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(err)? == 0 {
                break;
            }
            let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            match std::str::from_utf8(bytes) {
                Ok(text) => b.line(file, Some(text)),
                Err(_) => b.line(file, None),
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
        i.flow_lines == 0 && i.http_lines == 0 && i.tls_lines == 0
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

        heading(&mut out, "Input summary");
        let _ = writeln!(out, "  files: {}", i.files.len());
        for f in &i.files {
            let _ = writeln!(out, "    {}: {} lines", clean(&f.name), f.lines);
        }
        let _ = writeln!(out, "  flow lines: {}", i.flow_lines);
        let _ = writeln!(out, "  HTTP request lines: {}", i.http_lines);
        let _ = writeln!(out, "  TLS lines: {}", i.tls_lines);
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

// ---- reading ----

/// Where a line is: index into the builder's files, line number from 1.
#[derive(Debug, Clone, Copy)]
struct Cite {
    file: usize,
    line: u64,
}

/// The first few citations of an item, and how many lines back it in all.
#[derive(Debug, Default, Clone)]
struct Cites {
    first: Vec<Cite>,
    total: u64,
}

impl Cites {
    fn add(&mut self, cite: Cite, cap: usize) {
        self.total = self.total.saturating_add(1);
        if self.first.len() < cap {
            self.first.push(cite);
        }
    }

    fn render(&self, files: &[FileLines]) -> (Vec<String>, u64) {
        let shown: Vec<String> = self
            .first
            .iter()
            .map(|c| {
                let name = files.get(c.file).map_or("?", |f| f.name.as_str());
                format!("{name}:{}", c.line)
            })
            .collect();
        let more = self.total.saturating_sub(shown.len() as u64);
        (shown, more)
    }
}

/// Lines backing one evidence item: verdicts, citations, and the same per client.
#[derive(Debug, Default)]
struct Acc {
    count: u64,
    verdicts: BTreeMap<String, u64>,
    cites: Cites,
    clients: BTreeMap<String, Cites>,
}

impl Acc {
    fn add(&mut self, cite: Cite, client: &str, verdict: &str) {
        self.count = self.count.saturating_add(1);
        bump(&mut self.verdicts, verdict);
        self.cites.add(cite, CITES);
        match self.clients.get_mut(client) {
            Some(c) => c.add(cite, CITES),
            None => {
                let mut c = Cites::default();
                c.add(cite, CITES);
                self.clients.insert(client.to_string(), c);
            }
        }
    }

    fn client_list(&self) -> Vec<String> {
        let mut v: Vec<String> = self.clients.keys().cloned().collect();
        v.sort_by_cached_key(|c| addr_key(c));
        v
    }
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n = n.saturating_add(1),
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

#[derive(Debug, Deserialize)]
struct FlowIn {
    proto: String,
    src: String,
    dst: String,
    verdict: String,
    packets: u64,
    bytes: u64,
    app: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HttpIn {
    client: String,
    server: Option<String>,
    method: String,
    host: Option<String>,
    url: String,
    verdict: String,
}

#[derive(Debug, Deserialize)]
struct TlsIn {
    client: String,
    server: Option<String>,
    sni: Option<String>,
    verdict: String,
}

enum Parsed {
    Flow(FlowIn),
    Http(HttpIn),
    Tls(TlsIn),
}

fn parse(text: &str) -> Option<Parsed> {
    let value: Value = serde_json::from_str(text).ok()?;
    let obj = value.as_object()?;
    if obj.contains_key("proto") && obj.contains_key("packets") {
        serde_json::from_value(value).ok().map(Parsed::Flow)
    } else if obj.contains_key("method") {
        serde_json::from_value(value).ok().map(Parsed::Http)
    } else if obj.contains_key("sni") {
        serde_json::from_value(value).ok().map(Parsed::Tls)
    } else {
        None
    }
}

#[derive(Debug, Default)]
struct DestAcc {
    flows: u64,
    bytes: u64,
    packets: u64,
    verdicts: BTreeMap<String, u64>,
    cites: Cites,
}

#[derive(Debug)]
struct NumericAcc {
    address: Option<IpAddr>,
    form: Option<&'static str>,
    servers: BTreeSet<String>,
    acc: Acc,
}

/// Every request to one host, while none has been a GET or HEAD.
#[derive(Debug, Default)]
struct HostAcc {
    disqualified: bool,
    methods: BTreeSet<String>,
    acc: Acc,
}

#[derive(Debug, Default)]
struct UrlAcc {
    reasons: BTreeSet<&'static str>,
    max_query: u64,
    methods: BTreeSet<String>,
    acc: Acc,
}

#[derive(Debug, Default)]
struct PortAcc {
    expected_app: Option<&'static str>,
    app_port: Option<u16>,
    bytes: u64,
    acc: Acc,
}

#[derive(Debug, Default)]
struct Builder {
    files: Vec<FileLines>,
    flow_lines: u64,
    http_lines: u64,
    tls_lines: u64,
    blank_lines: u64,
    bad: Cites,
    dests: BTreeMap<String, DestAcc>,
    numeric: BTreeMap<(&'static str, String), NumericAcc>,
    hosts: BTreeMap<String, HostAcc>,
    urls: BTreeMap<(String, String), UrlAcc>,
    ports: BTreeMap<(String, String, u16), PortAcc>,
}

impl Builder {
    fn add_file(&mut self, name: String) -> usize {
        self.files.push(FileLines { name, lines: 0 });
        self.files.len() - 1
    }

    /// One line of `file`; `None` when it was not valid UTF-8.
    fn line(&mut self, file: usize, text: Option<&str>) {
        let Some(f) = self.files.get_mut(file) else {
            return;
        };
        f.lines = f.lines.saturating_add(1);
        let cite = Cite {
            file,
            line: f.lines,
        };
        match text {
            Some(t) if t.trim().is_empty() => self.blank_lines = self.blank_lines.saturating_add(1),
            Some(t) => match parse(t) {
                Some(Parsed::Flow(l)) => self.flow(cite, l),
                Some(Parsed::Http(l)) => self.http(cite, l),
                Some(Parsed::Tls(l)) => self.tls(cite, l),
                None => self.bad.add(cite, BAD_CITES),
            },
            None => self.bad.add(cite, BAD_CITES),
        }
    }

    fn flow(&mut self, cite: Cite, l: FlowIn) {
        self.flow_lines = self.flow_lines.saturating_add(1);
        let d = self.dests.entry(l.dst.clone()).or_default();
        d.flows = d.flows.saturating_add(1);
        d.bytes = d.bytes.saturating_add(l.bytes);
        d.packets = d.packets.saturating_add(l.packets);
        bump(&mut d.verdicts, &l.verdict);
        d.cites.add(cite, CITES);

        let Some(app) = l.app.as_deref() else {
            return;
        };
        let (_, Some(port)) = split_endpoint(&l.dst) else {
            return;
        };
        let app = app.to_ascii_lowercase();
        let proto = l.proto.to_ascii_lowercase();
        let Some((expected_app, app_port)) = misfit(&proto, port, &app) else {
            return;
        };
        let p = self.ports.entry((app, proto, port)).or_default();
        p.expected_app = expected_app;
        p.app_port = app_port;
        p.bytes = p.bytes.saturating_add(l.bytes);
        p.acc.add(cite, split_endpoint(&l.src).0, &l.verdict);
    }

    fn http(&mut self, cite: Cite, l: HttpIn) {
        self.http_lines = self.http_lines.saturating_add(1);
        let client = split_endpoint(&l.client).0;
        let server = l.server.as_deref().map_or("?", |s| split_endpoint(s).0);
        let host = match l.host.as_deref() {
            Some(h) if !h.is_empty() => h.to_string(),
            _ => format!("(no Host: {server})"),
        };

        if let Some(h) = l.host.as_deref()
            && let Some((addr, form)) = ip_literal(h)
        {
            let n = self
                .numeric
                .entry(("http", h.to_string()))
                .or_insert_with(|| NumericAcc {
                    address: Some(addr),
                    form: Some(form),
                    servers: BTreeSet::new(),
                    acc: Acc::default(),
                });
            n.servers.insert(server.to_string());
            n.acc.add(cite, client, &l.verdict);
        }

        let method = l.method.to_ascii_uppercase();
        let h = self.hosts.entry(host.clone()).or_default();
        if !h.disqualified {
            if method == "GET" || method == "HEAD" {
                *h = HostAcc {
                    disqualified: true,
                    ..HostAcc::default()
                };
            } else {
                h.methods.insert(method.clone());
                h.acc.add(cite, client, &l.verdict);
            }
        }

        let (path, query) = match l.url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (l.url.as_str(), None),
        };
        let lower = l.url.to_ascii_lowercase();
        let dll = lower.contains(".dll?") || lower.contains(".exe?");
        let qlen = query.map_or(0, |q| q.chars().count() as u64);
        let long = qlen > LONG_QUERY;
        if dll || long {
            let target = if long {
                format!("{path}?…")
            } else {
                l.url.clone()
            };
            let u = self.urls.entry((host, target)).or_default();
            if dll {
                u.reasons.insert("dll_or_exe");
            }
            if long {
                u.reasons.insert("long_query");
            }
            u.max_query = u.max_query.max(qlen);
            u.methods.insert(method);
            u.acc.add(cite, client, &l.verdict);
        }
    }

    fn tls(&mut self, cite: Cite, l: TlsIn) {
        self.tls_lines = self.tls_lines.saturating_add(1);
        let (host, literal) = match l.sni.as_deref() {
            None | Some("") => ("(no SNI)".to_string(), None),
            Some(s) => match ip_literal(s) {
                Some(lit) => (s.to_string(), Some(lit)),
                None => return,
            },
        };
        let n = self
            .numeric
            .entry(("tls", host))
            .or_insert_with(|| NumericAcc {
                address: literal.map(|lit| lit.0),
                form: literal.map(|lit| lit.1),
                servers: BTreeSet::new(),
                acc: Acc::default(),
            });
        n.servers.insert(
            l.server
                .as_deref()
                .map_or("?", |s| split_endpoint(s).0)
                .to_string(),
        );
        n.acc.add(cite, split_endpoint(&l.client).0, &l.verdict);
    }

    fn finish(self) -> Report {
        let files = self.files;
        let mut evidence: BTreeMap<String, Vec<ClientItem>> = BTreeMap::new();
        let mut note = |section: &'static str, what: &str, acc: &Acc| {
            for (client, cites) in &acc.clients {
                let (cites, cites_more) = cites.render(&files);
                evidence
                    .entry(client.clone())
                    .or_default()
                    .push(ClientItem {
                        section,
                        what: what.to_string(),
                        count: cites_more.saturating_add(cites.len() as u64),
                        cites,
                        cites_more,
                    });
            }
        };

        // 1. Top destinations.
        let dests: Vec<Dest> = self
            .dests
            .into_iter()
            .map(|(dst, d)| {
                let (cites, cites_more) = d.cites.render(&files);
                Dest {
                    dst,
                    flows: d.flows,
                    bytes: d.bytes,
                    packets: d.packets,
                    verdicts: d.verdicts,
                    cites,
                    cites_more,
                }
            })
            .collect();
        let mut by_flows = dests.clone();
        by_flows.sort_by_cached_key(|d| (std::cmp::Reverse(d.flows), addr_key(&d.dst)));
        by_flows.truncate(TOP);
        let mut by_bytes = dests;
        by_bytes.sort_by_cached_key(|d| (std::cmp::Reverse(d.bytes), addr_key(&d.dst)));
        by_bytes.truncate(TOP);

        // 2. Numeric hosts.
        let mut numeric_hosts: Vec<NumericHost> = self
            .numeric
            .into_iter()
            .map(|((kind, host), n)| {
                note(
                    "numeric_hosts",
                    &numeric_what(kind, &host, n.address, n.form),
                    &n.acc,
                );
                let (cites, cites_more) = n.acc.cites.render(&files);
                let mut servers: Vec<String> = n.servers.into_iter().collect();
                servers.sort_by_cached_key(|s| addr_key(s));
                NumericHost {
                    kind,
                    host,
                    address: n.address.map(|a| a.to_string()),
                    form: n.form,
                    requests: n.acc.count,
                    clients: n.acc.client_list(),
                    servers,
                    verdicts: n.acc.verdicts,
                    cites,
                    cites_more,
                }
            })
            .collect();
        numeric_hosts.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.host.cmp(&b.host))
                .then(a.kind.cmp(b.kind))
        });

        // 3. Odd HTTP use.
        let mut odd_http: Vec<OddHttp> = Vec::new();
        for (host, h) in self.hosts {
            if h.disqualified || h.acc.count < 2 {
                continue;
            }
            let methods: Vec<String> = h.methods.into_iter().collect();
            note(
                "odd_http",
                &format!("only {} sent to host {host}", methods.join("/")),
                &h.acc,
            );
            let (cites, cites_more) = h.acc.cites.render(&files);
            odd_http.push(OddHttp {
                kind: "post_only",
                host,
                url: None,
                reasons: Vec::new(),
                max_query_chars: 0,
                methods,
                requests: h.acc.count,
                clients: h.acc.client_list(),
                verdicts: h.acc.verdicts,
                cites,
                cites_more,
            });
        }
        for ((host, url), u) in self.urls {
            let reasons: Vec<&'static str> = u.reasons.into_iter().collect();
            let why = reasons
                .iter()
                .map(|r| reason_text(r, u.max_query))
                .collect::<Vec<_>>();
            note(
                "odd_http",
                &format!("odd URL {host} {url} ({})", why.join(", ")),
                &u.acc,
            );
            let (cites, cites_more) = u.acc.cites.render(&files);
            odd_http.push(OddHttp {
                kind: "odd_url",
                host,
                url: Some(url),
                reasons,
                max_query_chars: u.max_query,
                methods: u.methods.into_iter().collect(),
                requests: u.acc.count,
                clients: u.acc.client_list(),
                verdicts: u.acc.verdicts,
                cites,
                cites_more,
            });
        }
        odd_http.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| (a.kind != "post_only").cmp(&(b.kind != "post_only")))
                .then_with(|| a.host.cmp(&b.host))
                .then_with(|| a.url.cmp(&b.url))
        });

        // 4. Wrong ports.
        let mut wrong_port: Vec<WrongPort> = self
            .ports
            .into_iter()
            .map(|((app, proto, port), p)| {
                let what = format!(
                    "{app} on {proto}/{port} ({})",
                    expect_text(&app, p.expected_app, p.app_port)
                );
                note("wrong_port", &what, &p.acc);
                let (cites, cites_more) = p.acc.cites.render(&files);
                WrongPort {
                    clients: p.acc.client_list(),
                    app,
                    proto,
                    port,
                    expected_app: p.expected_app,
                    app_port: p.app_port,
                    flows: p.acc.count,
                    bytes: p.bytes,
                    verdicts: p.acc.verdicts,
                    cites,
                    cites_more,
                }
            })
            .collect();
        wrong_port.sort_by(|a, b| {
            b.flows
                .cmp(&a.flows)
                .then_with(|| a.app.cmp(&b.app))
                .then_with(|| a.proto.cmp(&b.proto))
                .then(a.port.cmp(&b.port))
        });

        // 5. Clients.
        let mut clients: Vec<Client> = evidence
            .into_iter()
            .map(|(client, mut items)| {
                items.sort_by(|a, b| {
                    b.count
                        .cmp(&a.count)
                        .then_with(|| section_rank(a.section).cmp(&section_rank(b.section)))
                        .then_with(|| a.what.cmp(&b.what))
                });
                let evidence = items.iter().fold(0u64, |n, i| n.saturating_add(i.count));
                Client {
                    client,
                    evidence,
                    items,
                }
            })
            .collect();
        clients.sort_by_cached_key(|c| (std::cmp::Reverse(c.evidence), addr_key(&c.client)));

        // 6. Inputs.
        let (not_understood_cites, not_understood_more) = self.bad.render(&files);
        Report {
            top_destinations_by_flows: by_flows,
            top_destinations_by_bytes: by_bytes,
            numeric_hosts,
            odd_http,
            wrong_port,
            clients,
            inputs: Inputs {
                files,
                flow_lines: self.flow_lines,
                http_lines: self.http_lines,
                tls_lines: self.tls_lines,
                blank_lines: self.blank_lines,
                not_understood: self.bad.total,
                not_understood_cites,
                not_understood_more,
            },
        }
    }
}

// ---- classification ----

/// Splits `ip:port`, `[ipv6]:port`, or a bare address into the address and the port, if any.
fn split_endpoint(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((addr, tail)) => (addr, tail.strip_prefix(':').and_then(port_number)),
            None => (s, None),
        };
    }
    if s.parse::<IpAddr>().is_ok() {
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((addr, p)) if !addr.contains(':') => match port_number(p) {
            Some(port) => (addr, Some(port)),
            None => (s, None),
        },
        _ => (s, None),
    }
}

fn port_number(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// Whether an HTTP host (maybe with a port) or an SNI is an IP literal: the address and its form
/// (`dotted`, `ipv6`, `decimal`, `hex`, `octal`, `short`).
fn ip_literal(host: &str) -> Option<(IpAddr, &'static str)> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (inner, tail) = rest.split_once(']')?;
        if !tail.is_empty() && tail.strip_prefix(':').and_then(port_number).is_none() {
            return None;
        }
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|a| (IpAddr::V6(a), "ipv6"));
    }
    if let Ok(a) = host.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(a), "ipv6"));
    }
    let name = match host.rsplit_once(':') {
        Some((name, p)) => {
            port_number(p)?;
            name
        }
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    inet_aton(name).map(|(a, form)| (IpAddr::V4(a), form))
}

/// IPv4 in every form `inet_aton` accepts: 1 to 4 parts, each decimal, `0x` hex or `0` octal,
/// the last part filling the bytes left.
fn inet_aton(s: &str) -> Option<(Ipv4Addr, &'static str)> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let (mut hex, mut octal) = (false, false);
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        let (digits, radix) = if let Some(x) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
            hex = true;
            (x, 16)
        } else if let Some(o) = part.strip_prefix('0').filter(|o| !o.is_empty()) {
            octal = true;
            (o, 8)
        } else {
            (*part, 10)
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        values.push(u64::from_str_radix(digits, radix).ok()?);
    }
    let (last, init) = values.split_last()?;
    let mut addr: u64 = 0;
    for (i, v) in init.iter().enumerate() {
        if *v > 255 {
            return None;
        }
        addr |= v << (8 * (3 - i));
    }
    let bits = 8 * (5 - values.len());
    if *last >= 1u64 << bits {
        return None;
    }
    addr |= last;
    let form = if hex {
        "hex"
    } else if octal {
        "octal"
    } else if values.len() == 4 {
        "dotted"
    } else if values.len() == 1 {
        "decimal"
    } else {
        "short"
    };
    Some((Ipv4Addr::from(u32::try_from(addr).ok()?), form))
}

/// The app a destination port is for.
fn expected_app(proto: &str, port: u16) -> Option<&'static str> {
    match (proto, port) {
        ("tcp", 80 | 8080) => Some("http"),
        ("tcp", 443) => Some("tls"),
        ("udp", 443) => Some("quic"),
        (_, 53) => Some("dns"),
        ("tcp", 21) => Some("ftp"),
        ("tcp", 22) => Some("ssh"),
        _ => None,
    }
}

/// The standard port of a tunnelling app.
fn tunnel_port(app: &str) -> Option<u16> {
    match app {
        "ssh" => Some(22),
        "openvpn" => Some(1194),
        "wireguard" => Some(51820),
        "socks" => Some(1080),
        _ => None,
    }
}

/// When `app` on `proto/port` is listed: the app the port expects and the app's own port.
#[allow(clippy::type_complexity)]
fn misfit(proto: &str, port: u16, app: &str) -> Option<(Option<&'static str>, Option<u16>)> {
    let expected = expected_app(proto, port);
    let own = tunnel_port(app);
    let listed = match own {
        Some(p) => p != port,
        None if app == "unknown" => port == 80 || port == 443,
        None => expected.is_some_and(|e| e != app),
    };
    listed.then_some((expected, own))
}

/// Sort key putting addresses (with or without port) in numeric order, anything else after.
fn addr_key(s: &str) -> (bool, Option<IpAddr>, Option<u16>, String) {
    let (addr, port) = split_endpoint(s);
    let ip = addr.parse::<IpAddr>().ok();
    (ip.is_none(), ip, port, s.to_string())
}

// ---- text ----

fn numeric_what(
    kind: &str,
    host: &str,
    addr: Option<IpAddr>,
    form: Option<&'static str>,
) -> String {
    match (kind, addr) {
        ("tls", None) => "TLS hello without SNI".to_string(),
        (_, addr) => {
            let what = if kind == "tls" {
                "TLS SNI"
            } else {
                "HTTP host"
            };
            match (addr, form) {
                (Some(a), Some(f)) if f != "dotted" && f != "ipv6" => {
                    format!("{what} is IP literal {host} (= {a}, {f})")
                }
                _ => format!("{what} is IP literal {host}"),
            }
        }
    }
}

fn reason_text(reason: &str, max_query: u64) -> String {
    match reason {
        "dll_or_exe" => ".dll?/.exe? in path".to_string(),
        "long_query" => format!("query of {max_query} chars"),
        other => other.to_string(),
    }
}

fn odd_what(o: &OddHttp) -> String {
    if o.kind == "post_only" {
        format!("only {}", o.methods.join("/"))
    } else {
        let why: Vec<String> = o
            .reasons
            .iter()
            .map(|r| reason_text(r, o.max_query_chars))
            .collect();
        format!("odd URL: {}", why.join(", "))
    }
}

fn expect_text(app: &str, expected: Option<&str>, own: Option<u16>) -> String {
    match (expected, own) {
        (Some(e), Some(p)) => format!("expected {e}; {} uses {p}", clean(app)),
        (Some(e), None) => format!("expected {e}"),
        (None, Some(p)) => format!("{} uses {p}", clean(app)),
        (None, None) => "-".to_string(),
    }
}

fn section_rank(section: &str) -> u8 {
    match section {
        "numeric_hosts" => 0,
        "odd_http" => 1,
        _ => 2,
    }
}

fn section_title(section: &str) -> &'static str {
    match section {
        "numeric_hosts" => "numeric host",
        "odd_http" => "odd HTTP",
        _ => "wrong port",
    }
}

fn heading(out: &mut String, title: &str) {
    let _ = write!(out, "\n== {title} ==\n");
}

/// Log text made safe for a terminal: control characters escaped, long text cut.
fn clean(s: &str) -> Cow<'_, str> {
    let long = s.chars().count() > CELL_MAX;
    if !long && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::new();
    for c in s.chars().take(CELL_MAX) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if long {
        out.push('…');
    }
    Cow::Owned(out)
}

fn verdict_text(verdicts: &BTreeMap<String, u64>) -> String {
    let v: Vec<String> = verdicts
        .iter()
        .map(|(k, n)| format!("{} {n}", clean(k)))
        .collect();
    v.join(", ")
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "-".to_string();
    }
    let mut v: Vec<String> = items
        .iter()
        .take(LIST_MAX)
        .map(|s| clean(s).into_owned())
        .collect();
    if items.len() > LIST_MAX {
        v.push(format!("+{} more", items.len() - LIST_MAX));
    }
    v.join(", ")
}

fn cite_list(cites: &[String], more: u64) -> String {
    let mut v: Vec<String> = cites.iter().map(|s| clean(s).into_owned()).collect();
    if more > 0 {
        v.push(format!("+{more} more"));
    }
    v.join(", ")
}

fn cite_text(cites: &[String], more: u64) -> String {
    let total = more.saturating_add(cites.len() as u64);
    format!(
        "{total} line{}: {}",
        if total == 1 { "" } else { "s" },
        cite_list(cites, more)
    )
}

struct Row {
    cells: Vec<String>,
    details: Vec<String>,
}

/// Rows under a header, columns padded (`true` = right-aligned); each row's details below it.
fn grid(out: &mut String, head: &[(&str, bool)], rows: &[Row]) {
    if rows.is_empty() {
        out.push_str("  none\n");
        return;
    }
    let mut widths: Vec<usize> = head.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(&row.cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::from(" ");
        for ((cell, (_, right)), w) in cells.zip(head).zip(&widths) {
            let pad = w.saturating_sub(cell.chars().count());
            text.push(' ');
            if *right {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad));
            }
            text.push(' ');
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(out, &mut head.iter().map(|(h, _)| *h));
    for row in rows {
        line(out, &mut row.cells.iter().map(String::as_str));
        for d in &row.details {
            let _ = writeln!(out, "      {d}");
        }
    }
}

fn dest_grid(out: &mut String, dests: &[Dest]) {
    let rows: Vec<Row> = dests
        .iter()
        .map(|d| Row {
            cells: vec![
                clean(&d.dst).into_owned(),
                d.flows.to_string(),
                d.bytes.to_string(),
                d.packets.to_string(),
                verdict_text(&d.verdicts),
            ],
            details: vec![cite_text(&d.cites, d.cites_more)],
        })
        .collect();
    grid(
        out,
        &[
            ("DESTINATION", false),
            ("FLOWS", true),
            ("BYTES", true),
            ("PACKETS", true),
            ("VERDICTS", false),
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One file mixing every kind, every section backed; line numbers in comments.
    const SAMPLE: &str = r#"{"proto":"tcp","src":"10.0.0.2:51724","dst":"192.0.2.11:80","verdict":"accept","rule":"policy.rules:4","reason":"rule","packets":9,"bytes":612,"first_ts":"2024-03-01T10:00:00.000000000Z","app":"http","host":"www.example.org"}
{"ts":"2024-03-01T10:00:00.005000000Z","client":"10.0.0.2:51724","server":"192.0.2.11:80","method":"GET","host":"www.example.org","url":"/cgi-bin/gateway.dll?AsyncPoll","user_agent":"curl/8.0","verdict":"drop","rule":"policy.rules:3","reason":"rule"}
{"proto":"tcp","src":"10.0.0.3:40000","dst":"192.0.2.11:80","verdict":"accept","rule":null,"reason":"default","packets":4,"bytes":300,"first_ts":"2024-03-01T10:00:01.000000000Z"}
{"proto":"tcp","src":"10.0.0.7:50000","dst":"198.51.100.7:443","verdict":"accept","rule":"p:9","reason":"rule","packets":100,"bytes":90000,"first_ts":"2024-03-01T10:00:02.000000000Z","app":"ssh"}
{"ts":"2024-03-01T10:00:03.000000000Z","client":"10.0.0.4:33000","server":"203.0.113.9:8080","method":"POST","host":"203.0.113.9:8080","url":"/submit","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}
{"ts":"2024-03-01T10:00:04.000000000Z","client":"10.0.0.4:33001","server":"203.0.113.9:8080","method":"POST","host":"203.0.113.9:8080","url":"/submit","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}
{"ts":"2024-03-01T10:00:05.000000000Z","client":"10.0.0.5:45811","server":"192.0.2.20:443","sni":null,"alpn":[],"verdict":"accept","rule":null,"reason":"default"}
{"ts":"2024-03-01T10:00:06.000000000Z","client":"10.0.0.5:45812","server":"192.0.2.21:443","sni":"192.0.2.21","alpn":["h2"],"verdict":"drop","rule":"p:3","reason":"rule"}
{"ts":"2024-03-01T10:00:07.000000000Z","client":"10.0.0.2:45813","server":"192.0.2.11:443","sni":"www.example.org","alpn":["h2","http/1.1"],"verdict":"accept","rule":"p:3","reason":"rule"}
{"proto":"udp","src":"10.0.0.2:5353","dst":"192.0.2.53:53","verdict":"accept","rule":null,"reason":"default","packets":2,"bytes":150,"first_ts":"2024-03-01T10:00:08.000000000Z","app":"dns"}
{"proto":"icmp","src":"10.0.0.2","dst":"192.0.2.1","icmp_type":8,"verdict":"accept","rule":null,"reason":"default","packets":1,"bytes":84,"first_ts":"2024-03-01T10:00:09.000000000Z"}
{"proto":"tcp","src":"10.0.0.6:41000","dst":"192.0.2.30:80","verdict":"accept","rule":"p:5","reason":"rule","packets":10,"bytes":2000,"first_ts":"2024-03-01T10:00:10.000000000Z","app":"tls","host":"tunnel.example.net"}
{"proto":"tcp","src":"10.0.0.6:41001","dst":"192.0.2.31:443","verdict":"drop","rule":"p:6","reason":"rule","packets":3,"bytes":180,"first_ts":"2024-03-01T10:00:11.000000000Z","app":"unknown"}
this is not json

{"ts":"2024-03-01T10:00:12.000000000Z","client":"10.0.0.8:1000","server":"192.0.2.40:80","method":"PUT","host":"drop.example.net","url":"/x","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}
{"ts":"2024-03-01T10:00:13.000000000Z","client":"10.0.0.8:1001","server":"192.0.2.40:80","method":"GET","host":"drop.example.net","url":"/y","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}
{"ts":"2024-03-01T10:00:14.000000000Z","client":"10.0.0.8:1002","server":"192.0.2.40:80","method":"POST","host":"drop.example.net","url":"/z","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}
"#;

    fn one(name: &str, text: &str) -> Report {
        report_from(&[(name.to_string(), text.to_string())])
    }

    /// Lines each ending in a newline, so that an empty last line still counts.
    fn terminated(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// The JSON with every citation removed: what must not depend on line order.
    fn uncited(mut v: Value) -> Value {
        fn strip(v: &mut Value) {
            match v {
                Value::Object(m) => {
                    m.retain(|k, _| !k.contains("cites") && !k.contains("not_understood_more"));
                    m.values_mut().for_each(strip);
                }
                Value::Array(a) => a.iter_mut().for_each(strip),
                _ => {}
            }
        }
        strip(&mut v);
        v
    }

    #[test]
    fn every_section() {
        let r = one("a.log", SAMPLE);
        let j = r.json();
        let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "top_destinations_by_flows",
                "top_destinations_by_bytes",
                "numeric_hosts",
                "odd_http",
                "wrong_port",
                "clients",
                "inputs"
            ]
        );

        // 1. Top destinations.
        let top = &j["top_destinations_by_flows"];
        assert_eq!(top[0]["dst"], "192.0.2.11:80");
        assert_eq!(top[0]["flows"], 2);
        assert_eq!(top[0]["bytes"], 912);
        assert_eq!(top[0]["packets"], 13);
        assert_eq!(top[0]["verdicts"]["accept"], 2);
        assert_eq!(top[0]["cites"], serde_json::json!(["a.log:1", "a.log:3"]));
        // Ties at one flow: address order.
        assert_eq!(top[1]["dst"], "192.0.2.1");
        assert_eq!(j["top_destinations_by_bytes"][0]["dst"], "198.51.100.7:443");

        // 2. Numeric hosts.
        let numeric = j["numeric_hosts"].as_array().unwrap();
        assert_eq!(numeric.len(), 3);
        assert_eq!(numeric[0]["host"], "203.0.113.9:8080");
        assert_eq!(numeric[0]["kind"], "http");
        assert_eq!(numeric[0]["requests"], 2);
        assert_eq!(numeric[0]["clients"], serde_json::json!(["10.0.0.4"]));
        assert_eq!(numeric[1]["host"], "(no SNI)");
        assert_eq!(numeric[1]["servers"], serde_json::json!(["192.0.2.20"]));
        assert_eq!(numeric[2]["host"], "192.0.2.21");
        assert_eq!(numeric[2]["verdicts"]["drop"], 1);

        // 3. Odd HTTP: 203.0.113.9:8080 got only POST; drop.example.net got a GET too.
        let odd = j["odd_http"].as_array().unwrap();
        assert_eq!(odd.len(), 2);
        assert_eq!(odd[0]["kind"], "post_only");
        assert_eq!(odd[0]["host"], "203.0.113.9:8080");
        assert_eq!(odd[0]["methods"], serde_json::json!(["POST"]));
        assert_eq!(odd[1]["kind"], "odd_url");
        assert_eq!(odd[1]["url"], "/cgi-bin/gateway.dll?AsyncPoll");
        assert_eq!(odd[1]["reasons"], serde_json::json!(["dll_or_exe"]));
        assert_eq!(odd[1]["cites"], serde_json::json!(["a.log:2"]));

        // 4. Wrong port: ssh on 443, tls on 80, unknown on 443; http on 80 and dns on 53 fit.
        let wrong = j["wrong_port"].as_array().unwrap();
        let got: Vec<(String, u64)> = wrong
            .iter()
            .map(|w| {
                (
                    w["app"].as_str().unwrap().to_string(),
                    w["port"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("ssh".to_string(), 443),
                ("tls".to_string(), 80),
                ("unknown".to_string(), 443)
            ]
        );
        assert_eq!(wrong[0]["expected_app"], "tls");
        assert_eq!(wrong[0]["app_port"], 22);
        assert_eq!(wrong[1]["expected_app"], "http");

        // 5. Clients: 10.0.0.4 has 2 numeric + 2 post-only lines.
        let clients = j["clients"].as_array().unwrap();
        let order: Vec<&str> = clients
            .iter()
            .map(|c| c["client"].as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.7"]
        );
        assert_eq!(clients[0]["evidence"], 4);
        assert_eq!(clients[0]["items"].as_array().unwrap().len(), 2);
        assert_eq!(clients[3]["items"][0]["section"], "odd_http");
        assert_eq!(clients[4]["items"][0]["section"], "wrong_port");
        assert_eq!(
            clients[4]["items"][0]["what"],
            "ssh on tcp/443 (expected tls; ssh uses 22)"
        );

        // 6. Inputs.
        let i = &j["inputs"];
        assert_eq!(
            i["files"],
            serde_json::json!([{"name": "a.log", "lines": 18}])
        );
        assert_eq!(i["flow_lines"], 7);
        assert_eq!(i["http_lines"], 6);
        assert_eq!(i["tls_lines"], 3);
        assert_eq!(i["blank_lines"], 1);
        assert_eq!(i["not_understood"], 1);
        assert_eq!(i["not_understood_cites"], serde_json::json!(["a.log:14"]));
        assert!(!r.is_empty());

        let t = r.table();
        for heading in [
            "== Top destinations by flows ==",
            "== Top destinations by bytes ==",
            "== Numeric-IP hosts (HTTP host or TLS SNI) ==",
            "== Odd HTTP use ==",
            "== Protocols on the wrong port ==",
            "== Clients ranked by evidence ==",
            "== Input summary ==",
        ] {
            assert!(t.contains(heading), "{heading} missing in\n{t}");
        }
        assert!(t.contains("(no SNI)"));
        assert!(t.contains("  10.0.0.4  evidence 4 (2 items)"));
        assert!(
            t.contains("[wrong port] ssh on tcp/443 (expected tls; ssh uses 22): 1 line: a.log:4")
        );
        assert!(t.contains("not understood: 1 (a.log:14)"));
        assert!(!t.contains("none"), "{t}");
        assert!(t.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn deterministic_and_independent_of_line_order() {
        let a = one("a.log", SAMPLE);
        let b = one("a.log", SAMPLE);
        assert_eq!(a.table(), b.table());
        assert_eq!(a.json().to_string(), b.json().to_string());

        let lines: Vec<&str> = SAMPLE.lines().collect();
        let mut shuffled = Vec::new();
        // A fixed permutation: stride 7 through the lines (7 is prime to their count).
        assert_ne!(lines.len() % 7, 0);
        for i in 0..lines.len() {
            shuffled.push(lines[(i * 7 + 3) % lines.len()]);
        }
        let mut reversed = lines.clone();
        reversed.reverse();
        for other in [shuffled, reversed] {
            let c = one("a.log", &terminated(&other));
            assert_eq!(uncited(c.json()), uncited(a.json()));
        }

        // Split across two files: same numbers, only citations and file list differ.
        let (x, y) = lines.split_at(9);
        let two = report_from(&[
            ("x.log".to_string(), terminated(x)),
            ("y.log".to_string(), terminated(y)),
        ]);
        let mut want = uncited(a.json());
        let mut got = uncited(two.json());
        want["inputs"]["files"] = Value::Null;
        got["inputs"]["files"] = Value::Null;
        assert_eq!(got, want);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let text = concat!(
            "not json\n",
            "{\n",
            "[]\n",
            "42\n",
            "{\"proto\":\"tcp\"}\n",
            "{\"proto\":\"tcp\",\"packets\":\"9\",\"src\":\"a\",\"dst\":\"b\",\"verdict\":\"accept\",\"bytes\":1}\n",
            "{\"method\":\"GET\"}\n",
            "{\"sni\":null}\n",
            "{\"proto\":\"tcp\",\"src\":\"x\",\"dst\":\"no port here\",\"verdict\":\"\\u001b[31m\",\"packets\":18446744073709551615,\"bytes\":18446744073709551615,\"app\":\"ssh\"}\n",
            "{\"proto\":\"tcp\",\"src\":\"x\",\"dst\":\"no port here\",\"verdict\":\"accept\",\"packets\":1,\"bytes\":18446744073709551615}\n",
            "{\"method\":\"\",\"client\":\"\",\"url\":\"\",\"verdict\":\"\",\"host\":\"[::1\"}\n",
            "{\"sni\":\"[::1]:x\",\"client\":\"]:[\",\"verdict\":\"accept\"}\n",
            "\u{7f}\u{0}\n",
        );
        let r = one("g.log", text);
        let j = r.json();
        assert_eq!(j["inputs"]["not_understood"], 9);
        assert_eq!(
            j["inputs"]["not_understood_cites"],
            serde_json::json!(["g.log:1", "g.log:2", "g.log:3"])
        );
        assert_eq!(j["inputs"]["not_understood_more"], 6);
        assert_eq!(j["inputs"]["flow_lines"], 2);
        // Byte counts saturate instead of overflowing.
        assert_eq!(j["top_destinations_by_bytes"][0]["bytes"], u64::MAX);
        let t = r.table();
        assert!(t.contains("not understood: 9 (g.log:1, g.log:2, g.log:3, +6 more)"));
        assert!(
            !t.contains('\u{1b}'),
            "control characters reach the terminal"
        );
        assert!(t.contains("\\u{1b}[31m 1"));

        // Nothing understood at all.
        let empty = one("e.log", "garbage\n\n");
        assert!(empty.is_empty());
        let t = empty.table();
        assert_eq!(t.matches("  none\n").count(), 6, "{t}");
        assert!(one("none.log", "").is_empty());
    }

    #[test]
    fn every_prefix_of_every_line_is_safe() {
        let mut text = String::new();
        for line in SAMPLE.lines() {
            for (i, _) in line.char_indices() {
                text.push_str(&line[..i]);
                text.push('\n');
            }
        }
        let r = one("cut.log", &text);
        assert!(r.json()["inputs"]["not_understood"].as_u64().unwrap() > 1000);
        assert!(!r.table().is_empty());
    }

    #[test]
    fn files_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("flows.log");
        std::fs::write(&good, SAMPLE).unwrap();
        let bad = dir.path().join("binary.log");
        let mut bytes = b"\xff\xfe not utf-8\r\n".to_vec();
        bytes.extend_from_slice(SAMPLE.lines().next().unwrap().as_bytes());
        bytes.extend_from_slice(b"\r\n");
        std::fs::write(&bad, bytes).unwrap();

        let r = report(&[good.clone(), bad.clone()]).unwrap();
        let j = r.json();
        assert_eq!(j["inputs"]["files"][1]["lines"], 2);
        assert_eq!(j["inputs"]["not_understood"], 2);
        assert_eq!(j["inputs"]["flow_lines"], 8);
        let name = bad.display().to_string();
        assert_eq!(j["inputs"]["not_understood_cites"][1], format!("{name}:1"));
        let from_text = report_from(&[(good.display().to_string(), SAMPLE.to_string())]);
        assert_eq!(report(std::slice::from_ref(&good)).unwrap(), from_text);

        let missing = dir.path().join("missing.log");
        let err = report(&[good, missing.clone()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{msg}"
        );
        assert!(report(&[dir.path().to_path_buf()]).is_err());
    }

    #[test]
    fn ipv6_endpoints() {
        let text = r#"{"proto":"tcp","src":"[2001:db8::2]:5555","dst":"[2001:db8::1]:443","verdict":"accept","rule":null,"reason":"default","packets":20,"bytes":4000,"first_ts":"2024-03-01T10:00:00.000000000Z","app":"ssh"}
{"proto":"tcp","src":"[2001:db8::2]:5556","dst":"[2001:db8::1]:443","verdict":"accept","rule":null,"reason":"default","packets":20,"bytes":4000,"first_ts":"2024-03-01T10:00:00.000000000Z","app":"tls"}
{"proto":"icmpv6","src":"2001:db8::2","dst":"2001:db8::9","icmp_type":128,"verdict":"drop","rule":null,"reason":"default","packets":1,"bytes":64,"first_ts":"2024-03-01T10:00:00.000000000Z"}
{"ts":"2024-03-01T10:00:00.000000000Z","client":"[2001:db8::3]:40000","server":"[2001:db8::1]:8080","method":"GET","host":"[2001:db8::1]:8080","url":"/","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}
{"ts":"2024-03-01T10:00:00.000000000Z","client":"[2001:db8::3]:40001","server":"[2001:db8::1]:443","sni":"2001:db8::1","alpn":[],"verdict":"accept","rule":null,"reason":"default"}
"#;
        let j = one("v6.log", text).json();
        assert_eq!(
            j["top_destinations_by_flows"][0]["dst"],
            "[2001:db8::1]:443"
        );
        assert_eq!(j["top_destinations_by_flows"][0]["flows"], 2);
        assert_eq!(j["top_destinations_by_flows"][1]["dst"], "2001:db8::9");
        assert_eq!(j["wrong_port"].as_array().unwrap().len(), 1);
        assert_eq!(
            j["wrong_port"][0]["clients"],
            serde_json::json!(["2001:db8::2"])
        );
        let numeric = j["numeric_hosts"].as_array().unwrap();
        assert_eq!(numeric.len(), 2);
        assert_eq!(numeric[0]["host"], "2001:db8::1");
        assert_eq!(numeric[0]["form"], "ipv6");
        assert_eq!(numeric[1]["host"], "[2001:db8::1]:8080");
        assert_eq!(numeric[1]["address"], "2001:db8::1");
        assert_eq!(numeric[1]["servers"], serde_json::json!(["2001:db8::1"]));
        let order: Vec<&str> = j["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client"].as_str().unwrap())
            .collect();
        assert_eq!(order, ["2001:db8::3", "2001:db8::2"]);
    }

    #[test]
    fn ssh_on_443_ranks_its_client_first() {
        let text = r#"{"proto":"tcp","src":"10.0.0.1:40000","dst":"192.0.2.11:443","verdict":"accept","rule":"p:2","reason":"rule","packets":12,"bytes":5000,"first_ts":"2024-03-01T10:00:00.000000000Z","app":"tls","host":"www.example.org"}
{"proto":"tcp","src":"10.0.0.1:40001","dst":"192.0.2.11:80","verdict":"accept","rule":"p:2","reason":"rule","packets":12,"bytes":5000,"first_ts":"2024-03-01T10:00:00.000000000Z","app":"http","host":"www.example.org"}
{"proto":"tcp","src":"10.0.0.200:50000","dst":"198.51.100.7:443","verdict":"accept","rule":"p:2","reason":"rule","packets":900,"bytes":800000,"first_ts":"2024-03-01T10:00:00.000000000Z","app":"ssh"}
{"proto":"tcp","src":"10.0.0.200:50001","dst":"198.51.100.7:443","verdict":"accept","rule":"p:2","reason":"rule","packets":900,"bytes":800000,"first_ts":"2024-03-01T10:01:00.000000000Z","app":"ssh"}
{"proto":"udp","src":"10.0.0.1:40002","dst":"192.0.2.11:443","verdict":"accept","rule":"p:2","reason":"rule","packets":12,"bytes":5000,"first_ts":"2024-03-01T10:00:00.000000000Z","app":"quic"}
{"ts":"2024-03-01T10:00:00.000000000Z","client":"10.0.0.9:1000","server":"192.0.2.5:80","method":"GET","host":"192.0.2.5","url":"/","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}
"#;
        let r = one("live.log", text);
        let j = r.json();
        assert_eq!(j["clients"][0]["client"], "10.0.0.200");
        assert_eq!(j["clients"][0]["evidence"], 2);
        assert_eq!(j["clients"][1]["client"], "10.0.0.9");
        assert_eq!(j["clients"].as_array().unwrap().len(), 2);
        assert_eq!(j["wrong_port"][0]["flows"], 2);
        let t = r.table();
        let first = t
            .split("== Clients ranked by evidence ==\n")
            .nth(1)
            .unwrap();
        assert!(
            first.starts_with("  10.0.0.200  evidence 2 (1 item)\n"),
            "{t}"
        );
        assert!(first.contains("live.log:3, live.log:4"));
    }

    #[test]
    fn numeric_hosts_in_every_form() {
        let hosts = [
            ("3232235777", "192.168.1.1", "decimal"),
            ("0x7f.0.0.1", "127.0.0.1", "hex"),
            ("0x7f000001", "127.0.0.1", "hex"),
            ("0X7F000001:8080", "127.0.0.1", "hex"),
            ("0177.0.0.1", "127.0.0.1", "octal"),
            ("127.1", "127.0.0.1", "short"),
            ("10.1.2", "10.1.0.2", "short"),
            ("192.0.2.5", "192.0.2.5", "dotted"),
            ("192.0.2.5:8080", "192.0.2.5", "dotted"),
            ("192.0.2.5.", "192.0.2.5", "dotted"),
            ("[2001:db8::1]", "2001:db8::1", "ipv6"),
            ("[2001:db8::1]:8080", "2001:db8::1", "ipv6"),
            ("0", "0.0.0.0", "decimal"),
        ];
        for (host, addr, form) in hosts {
            let (a, f) = ip_literal(host).unwrap_or_else(|| panic!("{host} not numeric"));
            assert_eq!((a.to_string().as_str(), f), (addr, form), "{host}");
        }
        for name in [
            "www.example.org",
            "1.2.3.4.example",
            "0x",
            "256.1.1.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "1.2.3.4.5",
            "08.0.0.1",
            "+1.2.3.4",
            "1..2",
            "",
            "1.2.3.4:99999",
            "[2001:db8::1]x",
            "[::1",
            "deadbeef",
            "1e100.net",
        ] {
            assert!(ip_literal(name).is_none(), "{name} taken for an address");
        }

        let mut text = String::new();
        for (i, (host, _, _)) in hosts.iter().enumerate() {
            text.push_str(&format!(
                "{{\"ts\":\"2024-03-01T10:00:00.000000000Z\",\"client\":\"10.0.0.{}:1000\",\"server\":\"192.0.2.5:80\",\"method\":\"GET\",\"host\":\"{host}\",\"url\":\"/\",\"user_agent\":null,\"verdict\":\"accept\",\"rule\":null,\"reason\":\"default\"}}\n",
                i + 1
            ));
        }
        text.push_str(r#"{"ts":"2024-03-01T10:00:00.000000000Z","client":"10.0.0.99:1000","server":"192.0.2.5:80","method":"GET","host":"www.example.org","url":"/","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}"#);
        let r = one("h.log", &text);
        let j = r.json();
        assert_eq!(j["numeric_hosts"].as_array().unwrap().len(), hosts.len());
        // Ties at one request: hosts sorted by name.
        assert_eq!(j["numeric_hosts"][0]["host"], "0");
        let t = r.table();
        assert!(t.contains("0x7f.0.0.1 = 127.0.0.1 (hex)"), "{t}");
        assert!(t.contains("3232235777 = 192.168.1.1 (decimal)"));
        assert!(!t.contains("www.example.org"));
    }

    #[test]
    fn odd_http_rules() {
        let line = |client: &str, method: &str, host: &str, url: &str| {
            format!(
                "{{\"ts\":\"2024-03-01T10:00:00.000000000Z\",\"client\":\"{client}:1000\",\"server\":\"192.0.2.5:80\",\"method\":\"{method}\",\"host\":{host},\"url\":\"{url}\",\"user_agent\":null,\"verdict\":\"accept\",\"rule\":null,\"reason\":\"default\"}}\n"
            )
        };
        let long = format!("/upload?data={}", "A".repeat(200));
        let long2 = format!("/upload?data={}", "B".repeat(300));
        let text = [
            line("10.0.0.1", "POST", "\"once.example\"", "/"),
            line("10.0.0.1", "POST", "\"c2.example\"", "/beacon"),
            line("10.0.0.2", "PUT", "\"c2.example\"", "/beacon"),
            line("10.0.0.1", "POST", "null", "/"),
            line("10.0.0.1", "POST", "null", "/"),
            line("10.0.0.3", "GET", "\"files.example\"", "/setup.EXE?x=1"),
            line("10.0.0.3", "GET", "\"files.example\"", "/setup.exe"),
            line("10.0.0.3", "GET", "\"up.example\"", &long),
            line("10.0.0.4", "GET", "\"up.example\"", &long2),
            line("10.0.0.4", "GET", "\"up.example\"", "/upload?data=short"),
        ]
        .concat();
        let j = one("o.log", &text).json();
        let odd: Vec<(String, String, u64)> = j["odd_http"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap().to_string(),
                    format!(
                        "{}{}",
                        o["host"].as_str().unwrap(),
                        o["url"].as_str().unwrap_or("")
                    ),
                    o["requests"].as_u64().unwrap(),
                )
            })
            .collect();
        let want = [
            ("post_only", "(no Host: 192.0.2.5)", 2),
            ("post_only", "c2.example", 2),
            ("odd_url", "up.example/upload?…", 2),
            ("odd_url", "files.example/setup.EXE?x=1", 1),
        ];
        let want: Vec<(String, String, u64)> = want
            .iter()
            .map(|(k, h, n)| (k.to_string(), h.to_string(), *n))
            .collect();
        assert_eq!(odd, want);
        assert_eq!(
            j["odd_http"][1]["methods"],
            serde_json::json!(["POST", "PUT"])
        );
        assert_eq!(
            j["odd_http"][1]["clients"],
            serde_json::json!(["10.0.0.1", "10.0.0.2"])
        );
        assert_eq!(
            j["odd_http"][2]["reasons"],
            serde_json::json!(["long_query"])
        );
        assert_eq!(j["odd_http"][2]["max_query_chars"], 305);
    }

    #[test]
    fn wrong_port_rules() {
        let listed = |proto, port, app| misfit(proto, port, app).is_some();
        for (proto, port, app) in [
            ("tcp", 443, "ssh"),
            ("tcp", 80, "ssh"),
            ("udp", 53, "wireguard"),
            ("tcp", 443, "openvpn"),
            ("tcp", 8080, "socks"),
            ("tcp", 443, "http"),
            ("tcp", 80, "tls"),
            ("tcp", 80, "unknown"),
            ("udp", 443, "unknown"),
            ("tcp", 53, "http"),
            ("tcp", 21, "http"),
            ("tcp", 22, "tls"),
        ] {
            assert!(listed(proto, port, app), "{app} on {proto}/{port}");
        }
        for (proto, port, app) in [
            ("tcp", 22, "ssh"),
            ("udp", 1194, "openvpn"),
            ("udp", 51820, "wireguard"),
            ("tcp", 1080, "socks"),
            ("tcp", 80, "http"),
            ("tcp", 8080, "http"),
            ("tcp", 443, "tls"),
            ("udp", 443, "quic"),
            ("udp", 53, "dns"),
            ("tcp", 53, "dns"),
            ("tcp", 21, "ftp"),
            ("tcp", 8443, "tls"),
            ("tcp", 8080, "unknown"),
            ("tcp", 5000, "http"),
        ] {
            assert!(!listed(proto, port, app), "{app} on {proto}/{port}");
        }
    }

    #[test]
    fn citations_are_capped() {
        let line = r#"{"ts":"2024-03-01T10:00:00.000000000Z","client":"10.0.0.5:1","server":"192.0.2.7:443","sni":null,"alpn":[],"verdict":"accept","rule":null,"reason":"default"}"#;
        let text = [line; 7].join("\n");
        let r = one("c.log", &text);
        let j = r.json();
        let n = &j["numeric_hosts"][0];
        assert_eq!(n["requests"], 7);
        assert_eq!(n["cites"].as_array().unwrap().len(), 5);
        assert_eq!(n["cites_more"], 2);
        assert_eq!(j["clients"][0]["items"][0]["cites_more"], 2);
        assert!(
            r.table()
                .contains("7 lines: c.log:1, c.log:2, c.log:3, c.log:4, c.log:5, +2 more")
        );
    }

    #[test]
    fn top_lists_keep_ten() {
        let mut text = String::new();
        for i in 0..15u64 {
            for _ in 0..=i % 3 {
                text.push_str(&format!(
                    "{{\"proto\":\"udp\",\"src\":\"10.0.0.1:1\",\"dst\":\"192.0.2.{i}:9\",\"verdict\":\"accept\",\"rule\":null,\"reason\":\"default\",\"packets\":1,\"bytes\":{},\"first_ts\":\"2024-03-01T10:00:00.000000000Z\"}}\n",
                    100 * i
                ));
            }
        }
        let j = one("t.log", &text).json();
        let flows: Vec<&str> = j["top_destinations_by_flows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["dst"].as_str().unwrap())
            .collect();
        assert_eq!(flows.len(), 10);
        // Three flows each, in numeric (not text) address order: .2 before .11.
        assert_eq!(
            &flows[..5],
            [
                "192.0.2.2:9",
                "192.0.2.5:9",
                "192.0.2.8:9",
                "192.0.2.11:9",
                "192.0.2.14:9"
            ]
        );
        assert_eq!(j["top_destinations_by_bytes"][0]["dst"], "192.0.2.14:9");
        assert_eq!(j["top_destinations_by_bytes"].as_array().unwrap().len(), 10);
    }
}
