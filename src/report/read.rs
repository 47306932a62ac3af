//! Reading the logs: each line recognised by its keys, and the counts built from them.

use std::io::{self, BufRead};

use super::*;

/// A line this long or longer is read past, and counted as not understood.
pub(super) const MAX_LINE: usize = 4 << 20;

/// Reads the next line into `buf` (replacing what it held): `None` at the end of the input, else
/// whether the line was read whole. Of a longer line `buf` holds a piece at the end, and the rest
/// was read past, so a file without newlines never makes us hold more than [`MAX_LINE`] bytes.
pub(super) fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    let mut piece = |buf: &mut Vec<u8>| {
        buf.clear();
        io::Read::take(&mut *input, MAX_LINE as u64).read_until(b'\n', buf)
    };
    if piece(buf)? == 0 {
        return Ok(None);
    }
    let mut whole = true;
    while buf.len() == MAX_LINE && !buf.ends_with(b"\n") {
        if piece(buf)? == 0 {
            // MAX_LINE bytes exactly, then the end of the file: that was the whole line.
            break;
        }
        whole = false;
    }
    Ok(Some(whole))
}

/// Where a line is: index into the builder's files, line number from 1.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cite {
    pub(super) file: usize,
    pub(super) line: u64,
}

/// The first few citations of an item, and how many lines back it in all.
#[derive(Debug, Default, Clone)]
pub(super) struct Cites {
    pub(super) first: Vec<Cite>,
    pub(super) total: u64,
}

impl Cites {
    pub(super) fn add(&mut self, cite: Cite, cap: usize) {
        self.total = self.total.saturating_add(1);
        if self.first.len() < cap {
            self.first.push(cite);
        }
    }

    pub(super) fn render(&self, files: &[FileLines]) -> (Vec<String>, u64) {
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
pub(super) struct Acc {
    pub(super) count: u64,
    pub(super) verdicts: BTreeMap<String, u64>,
    pub(super) cites: Cites,
    pub(super) clients: BTreeMap<String, Cites>,
}

impl Acc {
    pub(super) fn add(&mut self, cite: Cite, client: &str, verdict: &str) {
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

    pub(super) fn client_list(&self) -> Vec<String> {
        let mut v: Vec<String> = self.clients.keys().cloned().collect();
        v.sort_by_cached_key(|c| addr_key(c));
        v
    }
}

pub(super) fn bump(map: &mut BTreeMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n = n.saturating_add(1),
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct DestAcc {
    pub(super) flows: u64,
    pub(super) bytes: u64,
    pub(super) packets: u64,
    pub(super) verdicts: BTreeMap<String, u64>,
    pub(super) cites: Cites,
}

#[derive(Debug)]
pub(super) struct NumericAcc {
    pub(super) address: Option<IpAddr>,
    pub(super) form: Option<&'static str>,
    pub(super) servers: BTreeSet<String>,
    pub(super) acc: Acc,
}

/// Every request to one host, while none has been a GET or HEAD.
#[derive(Debug, Default)]
pub(super) struct HostAcc {
    pub(super) disqualified: bool,
    pub(super) methods: BTreeSet<String>,
    pub(super) acc: Acc,
}

#[derive(Debug, Default)]
pub(super) struct UrlAcc {
    pub(super) reasons: BTreeSet<&'static str>,
    pub(super) max_query: u64,
    pub(super) methods: BTreeSet<String>,
    pub(super) acc: Acc,
}

#[derive(Debug, Default)]
pub(super) struct PortAcc {
    pub(super) expected_app: Option<&'static str>,
    pub(super) app_port: Option<u16>,
    pub(super) bytes: u64,
    pub(super) acc: Acc,
}

#[derive(Debug, Default)]
pub(super) struct Builder {
    pub(super) files: Vec<FileLines>,
    pub(super) flow_lines: u64,
    pub(super) end_lines: u64,
    pub(super) http_lines: u64,
    pub(super) tls_lines: u64,
    pub(super) blank_lines: u64,
    pub(super) bad: Cites,
    pub(super) dests: BTreeMap<String, DestAcc>,
    pub(super) numeric: BTreeMap<(&'static str, String), NumericAcc>,
    pub(super) hosts: BTreeMap<String, HostAcc>,
    pub(super) urls: BTreeMap<(String, String), UrlAcc>,
    pub(super) ports: BTreeMap<(String, String, u16), PortAcc>,
    pub(super) shaped: BTreeMap<(String, Option<String>), LaneAcc>,
    pub(super) would_block: BTreeMap<(String, Option<String>), LaneAcc>,
    pub(super) timing: Timing,
    pub(super) tunnels: Tunnels,
}

impl Builder {
    pub(super) fn add_file(&mut self, name: String) -> usize {
        self.files.push(FileLines { name, lines: 0 });
        self.files.len() - 1
    }

    /// One line of `file`; `None` when it was not valid UTF-8.
    pub(super) fn line(&mut self, file: usize, text: Option<&str>) {
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
                Some(Parsed::End(l)) => {
                    self.end_lines = self.end_lines.saturating_add(1);
                    self.timing.flow(cite, &l.timing());
                }
                Some(Parsed::Http(l)) => self.http(cite, l),
                Some(Parsed::Tls(l)) => self.tls(cite, l),
                Some(Parsed::Dns(l)) => self.tunnels.dns(cite, l),
                Some(Parsed::Icmp(l)) => self.tunnels.icmp(cite, l),
                None => self.bad.add(cite, BAD_CITES),
            },
            None => self.bad.add(cite, BAD_CITES),
        }
    }

    pub(super) fn flow(&mut self, cite: Cite, l: FlowIn) {
        self.flow_lines = self.flow_lines.saturating_add(1);
        let d = self.dests.entry(l.dst.clone()).or_default();
        d.flows = d.flows.saturating_add(1);
        d.bytes = d.bytes.saturating_add(l.bytes);
        d.packets = d.packets.saturating_add(l.packets);
        bump(&mut d.verdicts, &l.verdict);
        d.cites.add(cite, CITES);
        if let Some(class) = shaped_class(&l) {
            self.shaped.entry((class, None)).or_default().add(cite, &l);
        }
        if let Some((rule, verdict)) = would_block(&l) {
            self.would_block
                .entry((rule, Some(verdict)))
                .or_default()
                .add(cite, &l);
        }
        self.timing.flow(cite, &l.timing());

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

    pub(super) fn http(&mut self, cite: Cite, l: HttpIn) {
        self.http_lines = self.http_lines.saturating_add(1);
        let client = split_endpoint(&l.client).0;
        let server = l.server.as_deref().map_or("?", |s| split_endpoint(s).0);
        let host = host_key(l.host.as_deref(), server);

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

    pub(super) fn tls(&mut self, cite: Cite, l: TlsIn) {
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

    pub(super) fn finish(self) -> Report {
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

        // DNS and ICMP tunnel suspects.
        let (dns_lines, icmp_lines) = (self.tunnels.dns_lines, self.tunnels.icmp_lines);
        let (dns, icmp) = self.tunnels.finish(&files);
        for (t, acc) in &dns {
            note("dns_tunnels", &t.what(), acc);
        }
        for (t, acc) in &icmp {
            note("icmp_tunnels", &t.what(), acc);
        }
        let dns_tunnels = dns.into_iter().map(|(t, _)| t).collect();
        let icmp_tunnels = icmp.into_iter().map(|(t, _)| t).collect();

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
        let (beacons, long_connections, reasons) = self.timing.finish(&files);
        let suspects = suspects(&clients, reasons);

        // 6. Inputs.
        let (not_understood_cites, not_understood_more) = self.bad.render(&files);
        Report {
            shaped: lanes(self.shaped, &files),
            would_block: lanes(self.would_block, &files),
            top_destinations_by_flows: by_flows,
            top_destinations_by_bytes: by_bytes,
            numeric_hosts,
            odd_http,
            wrong_port,
            dns_tunnels,
            icmp_tunnels,
            clients,
            beacons,
            long_connections,
            suspects,
            inputs: Inputs {
                files,
                flow_lines: self.flow_lines,
                end_lines: self.end_lines,
                http_lines: self.http_lines,
                tls_lines: self.tls_lines,
                dns_lines,
                icmp_lines,
                blank_lines: self.blank_lines,
                not_understood: self.bad.total,
                not_understood_cites,
                not_understood_more,
            },
        }
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn lines_are_read_up_to_the_limit() {
        let mut text = b"a\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 3 * MAX_LINE + 10));
        text.extend_from_slice(b"\nb");
        let (mut input, mut buf) = (io::Cursor::new(text), Vec::new());
        let mut next = || {
            read_line(&mut input, &mut buf)
                .unwrap()
                .map(|w| (w, buf.clone()))
        };
        assert_eq!(next(), Some((true, b"a\n".to_vec())));
        assert_eq!(next().map(|(whole, _)| whole), Some(false));
        assert_eq!(next(), Some((true, b"b".to_vec())));
        assert_eq!(next(), None);
    }
}
