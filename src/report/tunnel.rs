//! Sections 5 and 6 of the report: DNS tunnel suspects (from DNS log lines) and ICMP tunnel suspects
//! (from ICMP log lines). See the module docs of `report` for the thresholds; they are the constants
//! below.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize, Serializer};

use super::read::{Acc, Cite};
use super::text::{Row, cite_text, clean, grid, heading, list, verdict_text};
use super::{FileLines, addr_key, split_endpoint};

/// A DNS tunnel suspect has at least this many unique subdomains under its registered domain (RITA
/// ranks domains by the same count)...
pub(super) const DNS_UNIQUE_MIN: usize = 50;
/// ...and one of: a mean longest subdomain label of at least this many octets,
pub(super) const DNS_LABEL_MIN: u64 = 24;
/// subdomain text of at least this entropy (bits per character, hundredths),
pub(super) const DNS_ENTROPY_MIN: u64 = 400;
/// or at least this share of NULL (10) and TXT (16) queries (percent).
pub(super) const DNS_NULL_TXT_MIN: u64 = 50;
/// Unique subdomains remembered per domain; past it the count stops (and says so with `+`).
const DNS_UNIQUE_CAP: usize = 100_000;

/// An echo request's data beyond this is larger than ping's default (56 bytes; Windows: 32).
pub(super) const ECHO_PING_SIZE: u32 = 56;
/// An ICMP tunnel suspect (per client and server) has at least half its requests without ping's
/// fill, or a reply that does not echo its request, or at least this many requests in one second,
pub(super) const ECHO_RATE_MIN: u64 = 10;
/// or at least this many requests larger than ping's default.
pub(super) const ECHO_OVERSIZE_MIN: u64 = 10;
/// Distinct request digests remembered per pair.
const ECHO_DIGEST_CAP: usize = 100_000;

#[derive(Debug, Deserialize)]
pub(super) struct DnsIn {
    client: String,
    qname: String,
    qtype_code: u16,
    #[serde(default)]
    labels: Vec<u8>,
    verdict: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct IcmpIn {
    ts: String,
    client: String,
    server: String,
    echo: String,
    ident: u16,
    size: Option<u32>,
    entropy: f64,
    ping_fill: bool,
    digest: String,
    verdict: String,
}

/// A number with two decimals, kept exact (hundredths) so the report stays `Eq` and deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hundredths(u64);

impl Serialize for Hundredths {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 100.0)
    }
}

impl std::fmt::Display for Hundredths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct DnsTunnel {
    domain: String,
    queries: u64,
    unique_subdomains: u64,
    /// The count stopped at its cap: there are more.
    unique_capped: bool,
    mean_longest_label: Hundredths,
    max_label: u8,
    entropy: Hundredths,
    null_txt_percent: u64,
    reasons: Vec<&'static str>,
    clients: Vec<String>,
    verdicts: BTreeMap<String, u64>,
    cites: Vec<String>,
    cites_more: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct IcmpTunnel {
    client: String,
    server: String,
    requests: u64,
    replies: u64,
    /// Requests larger than ping's default, or of unknown size (fragmented).
    oversize: u64,
    max_size: Option<u32>,
    not_ping_fill: u64,
    max_entropy: Hundredths,
    replies_not_echoed: u64,
    max_per_second: u64,
    reasons: Vec<&'static str>,
    verdicts: BTreeMap<String, u64>,
    cites: Vec<String>,
    cites_more: u64,
}

#[derive(Debug, Default)]
struct DomainAcc {
    subdomains: BTreeSet<String>,
    capped: bool,
    queries: u64,
    null_txt: u64,
    /// Queries with a subdomain, and the sum of their longest subdomain labels.
    sub_queries: u64,
    longest_sum: u64,
    max_label: u8,
    chars: BTreeMap<char, u64>,
    acc: Acc,
}

#[derive(Debug, Default)]
struct PairAcc {
    requests: u64,
    replies: u64,
    oversize: u64,
    max_size: Option<u32>,
    unknown_size: bool,
    not_fill: u64,
    max_entropy: u64,
    sent: BTreeSet<(u16, String)>,
    echoed: BTreeMap<(u16, String), u64>,
    per_second: BTreeMap<String, u64>,
    acc: Acc,
}

/// The suspects of both sections, each with the lines behind it.
pub(super) type Suspects = (Vec<(DnsTunnel, Acc)>, Vec<(IcmpTunnel, Acc)>);

/// The DNS and ICMP lines read so far.
#[derive(Debug, Default)]
pub(super) struct Tunnels {
    pub(super) dns_lines: u64,
    pub(super) icmp_lines: u64,
    domains: BTreeMap<String, DomainAcc>,
    pairs: BTreeMap<(String, String), PairAcc>,
}

/// The registered domain of a query name (the public suffix list's registrable domain; the name
/// itself when it has none, as `localhost` or a bare TLD).
fn registered(qname: &str) -> &str {
    psl::domain_str(qname).unwrap_or(qname)
}

impl Tunnels {
    pub(super) fn dns(&mut self, cite: Cite, l: DnsIn) {
        self.dns_lines = self.dns_lines.saturating_add(1);
        let qname = l.qname.to_ascii_lowercase();
        let domain = registered(&qname).to_string();
        let d = self.domains.entry(domain.clone()).or_default();
        d.queries = d.queries.saturating_add(1);
        if matches!(l.qtype_code, 10 | 16) {
            d.null_txt = d.null_txt.saturating_add(1);
        }
        d.acc.add(cite, split_endpoint(&l.client).0, &l.verdict);
        let Some(sub) = qname
            .strip_suffix(domain.as_str())
            .and_then(|s| s.strip_suffix('.'))
        else {
            return;
        };
        // The subdomain's labels are the log's first ones (the domain's are the last).
        let sub_labels = sub.split('.').count();
        let longest = l.labels.iter().take(sub_labels).copied().max().unwrap_or(0);
        d.sub_queries = d.sub_queries.saturating_add(1);
        d.longest_sum = d.longest_sum.saturating_add(u64::from(longest));
        d.max_label = d.max_label.max(longest);
        for c in sub.chars().filter(|&c| c != '.') {
            *d.chars.entry(c).or_default() += 1;
        }
        if d.subdomains.len() < DNS_UNIQUE_CAP {
            d.subdomains.insert(sub.to_string());
        } else if !d.subdomains.contains(sub) {
            d.capped = true;
        }
    }

    pub(super) fn icmp(&mut self, cite: Cite, l: IcmpIn) {
        self.icmp_lines = self.icmp_lines.saturating_add(1);
        let key = (l.client.clone(), l.server.clone());
        let p = self.pairs.entry(key).or_default();
        if l.echo == "reply" {
            p.replies = p.replies.saturating_add(1);
            *p.echoed.entry((l.ident, l.digest)).or_default() += 1;
            return;
        }
        p.requests = p.requests.saturating_add(1);
        p.acc.add(cite, &l.client, &l.verdict);
        match l.size {
            Some(n) => p.max_size = Some(p.max_size.map_or(n, |m| m.max(n))),
            None => p.unknown_size = true,
        }
        if l.size.is_none_or(|n| n > ECHO_PING_SIZE) {
            p.oversize = p.oversize.saturating_add(1);
        }
        if !l.ping_fill {
            p.not_fill = p.not_fill.saturating_add(1);
        }
        let entropy = (l.entropy.clamp(0.0, 8.0) * 100.0).round() as u64;
        p.max_entropy = p.max_entropy.max(entropy);
        if p.sent.len() < ECHO_DIGEST_CAP {
            p.sent.insert((l.ident, l.digest));
        }
        // RFC 3339 up to the second: `YYYY-MM-DDTHH:MM:SS`.
        let second = l.ts.get(..19).unwrap_or(&l.ts).to_string();
        *p.per_second.entry(second).or_default() += 1;
    }

    /// The suspects, each with the lines behind it (for the clients section).
    pub(super) fn finish(self, files: &[FileLines]) -> Suspects {
        let mut dns: Vec<(DnsTunnel, Acc)> = self
            .domains
            .into_iter()
            .filter_map(|(domain, d)| dns_suspect(domain, d, files))
            .collect();
        dns.sort_by(|(a, _), (b, _)| {
            b.unique_subdomains
                .cmp(&a.unique_subdomains)
                .then_with(|| a.domain.cmp(&b.domain))
        });
        let mut icmp: Vec<(IcmpTunnel, Acc)> = self
            .pairs
            .into_iter()
            .filter_map(|(pair, p)| icmp_suspect(pair, p, files))
            .collect();
        icmp.sort_by(|(a, _), (b, _)| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| addr_key(&a.client).cmp(&addr_key(&b.client)))
                .then_with(|| addr_key(&a.server).cmp(&addr_key(&b.server)))
        });
        (dns, icmp)
    }
}

/// Shannon entropy of a character count, in hundredths of a bit per character.
fn entropy(chars: &BTreeMap<char, u64>) -> u64 {
    let n: u64 = chars.values().sum();
    if n == 0 {
        return 0;
    }
    let bits: f64 = chars
        .values()
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.log2()
        })
        .sum();
    (bits * 100.0).round() as u64
}

fn dns_suspect(domain: String, d: DomainAcc, files: &[FileLines]) -> Option<(DnsTunnel, Acc)> {
    let unique = d.subdomains.len();
    if unique < DNS_UNIQUE_MIN {
        return None;
    }
    let mean_longest = d.longest_sum.saturating_mul(100) / d.sub_queries.max(1);
    let entropy = entropy(&d.chars);
    let null_txt_percent = d.null_txt.saturating_mul(100) / d.queries.max(1);
    let mut reasons = Vec::new();
    if mean_longest >= DNS_LABEL_MIN * 100 {
        reasons.push("long_labels");
    }
    if entropy >= DNS_ENTROPY_MIN {
        reasons.push("high_entropy");
    }
    if null_txt_percent >= DNS_NULL_TXT_MIN {
        reasons.push("null_txt");
    }
    if reasons.is_empty() {
        return None;
    }
    let (cites, cites_more) = d.acc.cites.render(files);
    let tunnel = DnsTunnel {
        domain,
        queries: d.queries,
        unique_subdomains: unique as u64,
        unique_capped: d.capped,
        mean_longest_label: Hundredths(mean_longest),
        max_label: d.max_label,
        entropy: Hundredths(entropy),
        null_txt_percent,
        reasons,
        clients: d.acc.client_list(),
        verdicts: d.acc.verdicts.clone(),
        cites,
        cites_more,
    };
    Some((tunnel, d.acc))
}

fn icmp_suspect(
    (client, server): (String, String),
    p: PairAcc,
    files: &[FileLines],
) -> Option<(IcmpTunnel, Acc)> {
    let replies_not_echoed: u64 = p
        .echoed
        .iter()
        .filter(|(k, _)| !p.sent.contains(k))
        .map(|(_, n)| *n)
        .sum();
    let max_per_second = p.per_second.values().copied().max().unwrap_or(0);
    let mut reasons = Vec::new();
    if p.requests > 0 && p.not_fill.saturating_mul(2) >= p.requests {
        reasons.push("not_ping_data");
    }
    if replies_not_echoed > 0 {
        reasons.push("reply_not_echoed");
    }
    if max_per_second >= ECHO_RATE_MIN {
        reasons.push("rate");
    }
    if p.oversize >= ECHO_OVERSIZE_MIN {
        reasons.push("oversize");
    }
    if reasons.is_empty() {
        return None;
    }
    let (cites, cites_more) = p.acc.cites.render(files);
    let tunnel = IcmpTunnel {
        client,
        server,
        requests: p.requests,
        replies: p.replies,
        oversize: p.oversize,
        max_size: if p.unknown_size { None } else { p.max_size },
        not_ping_fill: p.not_fill,
        max_entropy: Hundredths(p.max_entropy),
        replies_not_echoed,
        max_per_second,
        reasons,
        verdicts: p.acc.verdicts.clone(),
        cites,
        cites_more,
    };
    Some((tunnel, p.acc))
}

impl DnsTunnel {
    pub(super) fn what(&self) -> String {
        self.domain.clone()
    }
}

impl IcmpTunnel {
    pub(super) fn what(&self) -> String {
        format!("{} -> {}", self.client, self.server)
    }
}

/// The two sections as text.
pub(super) fn tunnels_text(out: &mut String, dns: &[DnsTunnel], icmp: &[IcmpTunnel]) {
    heading(
        out,
        &format!(
            "DNS tunnel suspects (>= {DNS_UNIQUE_MIN} unique subdomains, and longest label >= \
             {DNS_LABEL_MIN} on average, entropy >= {}.{:02} bits/char, or >= {DNS_NULL_TXT_MIN}% \
             NULL/TXT)",
            DNS_ENTROPY_MIN / 100,
            DNS_ENTROPY_MIN % 100
        ),
    );
    let rows: Vec<Row> = dns
        .iter()
        .map(|d| Row {
            cells: vec![
                clean(&d.domain).into_owned(),
                format!(
                    "{}{}",
                    d.unique_subdomains,
                    if d.unique_capped { "+" } else { "" }
                ),
                d.queries.to_string(),
                d.mean_longest_label.to_string(),
                d.entropy.to_string(),
                format!("{}%", d.null_txt_percent),
                verdict_text(&d.verdicts),
            ],
            details: vec![
                format!("why: {}", d.reasons.join(", ")),
                format!("clients: {}", list(&d.clients)),
                cite_text(&d.cites, d.cites_more),
            ],
        })
        .collect();
    grid(
        out,
        &[
            ("DOMAIN", false),
            ("SUBDOMAINS", true),
            ("QUERIES", true),
            ("LABEL", true),
            ("ENTROPY", true),
            ("NULL/TXT", true),
            ("VERDICTS", false),
        ],
        &rows,
    );
    heading(
        out,
        &format!(
            "ICMP tunnel suspects (half the echo requests not ping's data, a reply not echoing its \
             request, >= {ECHO_RATE_MIN} requests in a second, or >= {ECHO_OVERSIZE_MIN} over \
             {ECHO_PING_SIZE} bytes)"
        ),
    );
    let rows: Vec<Row> = icmp
        .iter()
        .map(|t| {
            let mut details = vec![format!("why: {}", t.reasons.join(", "))];
            let _ = write!(details[0], "; max entropy {} bits/byte", t.max_entropy);
            details.push(cite_text(&t.cites, t.cites_more));
            Row {
                cells: vec![
                    clean(&t.what()).into_owned(),
                    t.requests.to_string(),
                    t.replies.to_string(),
                    t.max_size
                        .map_or_else(|| "fragmented".to_string(), |n| n.to_string()),
                    t.not_ping_fill.to_string(),
                    t.replies_not_echoed.to_string(),
                    t.max_per_second.to_string(),
                    verdict_text(&t.verdicts),
                ],
                details,
            }
        })
        .collect();
    grid(
        out,
        &[
            ("CLIENT -> SERVER", false),
            ("REQUESTS", true),
            ("REPLIES", true),
            ("MAX SIZE", true),
            ("NOT PING", true),
            ("NOT ECHOED", true),
            ("MAX/S", true),
            ("VERDICTS", false),
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::super::{Report, report_from};

    fn report(lines: &[String]) -> Report {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        report_from(&[("t.log".to_string(), text)])
    }

    fn dns(client: &str, qname: &str, qtype: u16) -> String {
        let labels: Vec<usize> = qname.split('.').map(str::len).collect();
        format!(
            r#"{{"client":"{client}:5353","server":"192.0.2.53:53","qname":"{qname}","qtype_code":{qtype},"labels":{labels:?},"verdict":"accept"}}"#
        )
    }

    /// A base32-looking label of `len` characters, different for each `i`.
    fn noise(i: usize, len: usize) -> String {
        const B32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(B32[(x % 32) as usize])
            })
            .collect()
    }

    #[test]
    fn unique_subdomains_with_long_labels_make_a_suspect() {
        let tunnel: Vec<String> = (0..super::DNS_UNIQUE_MIN)
            .map(|i| dns("10.0.0.9", &format!("{}.t.example.co.uk", noise(i, 60)), 10))
            .collect();
        let j = report(&tunnel).json();
        let t = &j["dns_tunnels"][0];
        // The public suffix list makes co.uk a suffix: the registered domain is example.co.uk.
        assert_eq!(t["domain"], "example.co.uk");
        assert_eq!(t["unique_subdomains"], super::DNS_UNIQUE_MIN);
        assert_eq!(t["max_label"], 60);
        assert_eq!(t["mean_longest_label"], 60.0);
        assert_eq!(t["null_txt_percent"], 100);
        assert_eq!(
            t["reasons"],
            serde_json::json!(["long_labels", "high_entropy", "null_txt"])
        );
        assert_eq!(t["cites"][0], "t.log:1");
        assert_eq!(j["clients"][0]["items"][0]["section"], "dns_tunnels");
        // One subdomain fewer is under the threshold.
        assert_eq!(
            report(&tunnel[1..]).json()["dns_tunnels"],
            serde_json::json!([])
        );
    }

    #[test]
    fn many_short_names_are_not_a_tunnel() {
        // A CDN's or a mail server's many hosts: short, low-entropy labels, type A.
        let hosts: Vec<String> = (0..200)
            .map(|i| dns("10.0.0.9", &format!("host{i}.example.org"), 1))
            .collect();
        assert_eq!(report(&hosts).json()["dns_tunnels"], serde_json::json!([]));
    }

    fn echo(ts: &str, kind: &str, size: u32, fill: bool, digest: &str) -> String {
        format!(
            r#"{{"ts":"{ts}","client":"10.0.0.9","server":"192.0.2.1","echo":"{kind}","ident":7,"size":{size},"entropy":5.5,"ping_fill":{fill},"digest":"{digest}","verdict":"accept"}}"#
        )
    }

    #[test]
    fn ping_is_not_a_tunnel_and_its_tricks_are() {
        let ping: Vec<String> = (0..30)
            .flat_map(|i| {
                let ts = format!("2026-01-01T00:00:{i:02}.5Z");
                let digest = format!("{i:016x}");
                [
                    echo(&ts, "request", 56, true, &digest),
                    echo(&ts, "reply", 56, true, &digest),
                ]
            })
            .collect();
        assert_eq!(report(&ping).json()["icmp_tunnels"], serde_json::json!([]));
        // The same, but one reply does not echo its request.
        let mut changed = ping.clone();
        changed[1] = echo("2026-01-01T00:00:00.5Z", "reply", 56, true, "ffff");
        let j = report(&changed).json();
        assert_eq!(
            j["icmp_tunnels"][0]["reasons"],
            serde_json::json!(["reply_not_echoed"])
        );
        assert_eq!(j["icmp_tunnels"][0]["replies_not_echoed"], 1);
        // Ten requests in one second.
        let flood: Vec<String> = (0..super::ECHO_RATE_MIN)
            .map(|i| {
                echo(
                    "2026-01-01T00:00:00.1Z",
                    "request",
                    56,
                    true,
                    &format!("{i}"),
                )
            })
            .collect();
        let j = report(&flood).json();
        assert_eq!(j["icmp_tunnels"][0]["reasons"], serde_json::json!(["rate"]));
        assert_eq!(
            report(&flood[1..]).json()["icmp_tunnels"],
            serde_json::json!([])
        );
        // Data that is not ping's, larger than ping's.
        let big: Vec<String> = (0..super::ECHO_OVERSIZE_MIN)
            .map(|i| {
                echo(
                    &format!("2026-01-01T00:00:{i:02}Z"),
                    "request",
                    1024,
                    false,
                    "1",
                )
            })
            .collect();
        let j = report(&big).json();
        assert_eq!(
            j["icmp_tunnels"][0]["reasons"],
            serde_json::json!(["not_ping_data", "oversize"])
        );
        assert_eq!(j["icmp_tunnels"][0]["max_size"], 1024);
    }
}
