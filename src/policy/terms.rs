//! Payload match terms: `key=value` after a rule's port column, decided on a flow's first payload.
//!
//! ```text
//! app=tls | app=http,ssh | app=!tls      the protocol actually spoken (see inspect::detect)
//! host=numeric | host=NAME,*.SUFFIX,.DOMAIN | host=@FILE | host=!...
//!                                        HTTP: the request's host (Host header, absolute URI, CONNECT)
//! url=PATTERN[,PATTERN]                  HTTP: path and query, case-insensitive substring, or glob with *
//! method=POST[,PUT]                      HTTP: the request method
//! sni=none | sni=numeric | sni=NAME,...  TLS: the ClientHello's server name, over TCP or in QUIC's
//!                                        Initial packets (app=quic; see inspect::quic)
//! ja4=FP[,FP] | ja4=@FILE                TLS and QUIC: the ClientHello's JA4 fingerprint (see inspect::ja4),
//!                                        exact or a glob with * (t13d*_8daaf6152771_*)
//! qname=NAME,*.SUFFIX,.DOMAIN | qname=@FILE
//!                                        DNS: the query's name, matched as host= matches
//! qtype=NULL,TXT | qtype=10,TYPE65      DNS: the query's type, by mnemonic or number
//! size=..128 | size=64.. | size=0..1472 | size=56
//!                                        ICMP echo request: bytes of data after the ICMP header
//! ```
//!
//! `qname` and `qtype` only match DNS queries and `size` only ICMP echo requests (an echo request cut
//! into IP fragments has no known size and matches no range). A rule with one of these three is
//! decided per message: each DNS query over UDP and each echo request is decided on its own, instead
//! of its flow being decided once (a DNS client may send every query from one socket, and ptunnel's
//! first echo request is small, its later ones large). Over TCP, DNS's first query decides the flow.
//!
//! A value list matches any of its entries; a leading `!` inverts the term. `host`, `url` and `method`
//! only ever match HTTP requests and `sni` and `ja4` only TLS ClientHellos (TLS over TCP, and QUIC v1/v2
//! whose Initial packets are decrypted: `ACCEPT loc net udp 443 sni=*.example.org`), so `DROP loc net
//! tcp 80 host=numeric` leaves flows that are not HTTP to later rules. A rule matches when every term
//! does. `@FILE` reads one host pattern (or, for `ja4`, one fingerprint) a line (`#` comments),
//! relative to the policy file's folder.
//!
//! A request that names several hosts (two Host headers, an absolute URI that disagrees with Host) is
//! read the way that cannot be abused: an ACCEPT rule's host term must hold for every host it names, a
//! DROP or REJECT rule's for any of them. Such a request neither slips past a block nor into an allow.
//! A DNS query of several questions is read the same way by `qname` and `qtype`.

use std::path::Path;

use crate::decision::Verdict;
use crate::inspect::Payload;
use crate::inspect::detect::App;
use crate::inspect::dns;
use crate::inspect::host::{Host, HostPattern, UrlPattern, parse_host};
use crate::inspect::ja4::ja4;

/// Hosts a `host=` or `sni=` term names.
#[derive(Clone, Debug)]
enum HostSel {
    Numeric,
    /// `sni=none`: no server_name extension.
    Absent,
    Names(Vec<HostPattern>),
}

#[derive(Clone, Debug)]
struct Term<T> {
    negated: bool,
    value: T,
}

/// The payload terms of one rule; all `None` for a rule decided on its first packet.
#[derive(Clone, Default)]
pub struct Terms {
    app: Option<Term<Vec<App>>>,
    host: Option<Term<HostSel>>,
    url: Option<Term<Vec<UrlPattern>>>,
    method: Option<Term<Vec<String>>>,
    sni: Option<Term<HostSel>>,
    ja4: Option<Term<Vec<Ja4Pattern>>>,
    qname: Option<Term<HostSel>>,
    qtype: Option<Term<Vec<u16>>>,
    /// Inclusive bounds on an echo request's data size.
    size: Option<Term<(u32, u32)>>,
}

/// The keys a rule may carry, for error messages.
const KEYS: &str = "app, host, url, method, sni, ja4, qname, qtype, size";

impl Terms {
    /// True for a rule with no payload term.
    pub fn is_empty(&self) -> bool {
        self.app.is_none()
            && self.host.is_none()
            && self.url.is_none()
            && self.method.is_none()
            && self.sni.is_none()
            && self.ja4.is_none()
            && !self.per_message()
    }

    /// Whether the rule is decided per message: it has a `qname`, `qtype` or `size` term.
    pub fn per_message(&self) -> bool {
        self.qname.is_some() || self.qtype.is_some() || self.size.is_some()
    }

    /// Adds `key=value`; `dir` resolves `@FILE`. The error is (column offset into the token, message).
    pub fn add(&mut self, key: &str, value: &str, dir: &Path) -> Result<(), (usize, String)> {
        let offset = key.len() + 1;
        let (negated, value) = match value.strip_prefix('!') {
            Some(v) => (true, v),
            None => (false, value),
        };
        if value.is_empty() {
            return Err((offset, format!("'{key}=' needs a value")));
        }
        let duplicate = || (0, format!("'{key}=' appears twice in this rule"));
        let list = || value.split(',').filter(|s| !s.is_empty());
        match key.to_ascii_lowercase().as_str() {
            "app" => {
                let apps = list()
                    .map(|name| {
                        App::from_name(&name.to_ascii_lowercase()).ok_or_else(|| {
                            let known: Vec<&str> = App::ALL.iter().map(|a| a.name()).collect();
                            (
                                offset,
                                format!(
                                    "unknown app '{name}' (expected one of: {})",
                                    known.join(", ")
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                set(
                    &mut self.app,
                    Term {
                        negated,
                        value: apps,
                    },
                )
                .map_err(|_| duplicate())
            }
            "host" => {
                let sel = host_sel(value, dir, false).map_err(|m| (offset, m))?;
                set(
                    &mut self.host,
                    Term {
                        negated,
                        value: sel,
                    },
                )
                .map_err(|_| duplicate())
            }
            "sni" => {
                let sel = host_sel(value, dir, true).map_err(|m| (offset, m))?;
                set(
                    &mut self.sni,
                    Term {
                        negated,
                        value: sel,
                    },
                )
                .map_err(|_| duplicate())
            }
            "ja4" => {
                let patterns = ja4_patterns(value, dir).map_err(|m| (offset, m))?;
                set(
                    &mut self.ja4,
                    Term {
                        negated,
                        value: patterns,
                    },
                )
                .map_err(|_| duplicate())
            }
            "qname" => {
                let sel = host_sel(value, dir, false).map_err(|m| (offset, m))?;
                set(
                    &mut self.qname,
                    Term {
                        negated,
                        value: sel,
                    },
                )
                .map_err(|_| duplicate())
            }
            "qtype" => {
                let types = list()
                    .map(|t| {
                        dns::parse_type(t).ok_or_else(|| {
                            (
                                offset,
                                format!(
                                    "'{t}' is not a DNS type (a name such as A, TXT, NULL, or a number 0-65535)"
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                set(
                    &mut self.qtype,
                    Term {
                        negated,
                        value: types,
                    },
                )
                .map_err(|_| duplicate())
            }
            "size" => {
                let range = parse_size(value).ok_or_else(|| {
                    (
                        offset,
                        format!(
                            "'{value}' is not a size range (expected N, LO..HI, ..HI or LO.., in bytes)"
                        ),
                    )
                })?;
                set(
                    &mut self.size,
                    Term {
                        negated,
                        value: range,
                    },
                )
                .map_err(|_| duplicate())
            }
            "url" => {
                let patterns = list()
                    .map(|p| UrlPattern::parse(p).map_err(|m| (offset, m)))
                    .collect::<Result<Vec<_>, _>>()?;
                set(
                    &mut self.url,
                    Term {
                        negated,
                        value: patterns,
                    },
                )
                .map_err(|_| duplicate())
            }
            "method" => {
                let methods: Vec<String> = list().map(|m| m.to_ascii_uppercase()).collect();
                if let Some(bad) = methods
                    .iter()
                    .find(|m| !m.bytes().all(|b| b.is_ascii_alphabetic()))
                {
                    return Err((offset, format!("'{bad}' is not an HTTP method")));
                }
                set(
                    &mut self.method,
                    Term {
                        negated,
                        value: methods,
                    },
                )
                .map_err(|_| duplicate())
            }
            _ => Err((
                0,
                format!("unknown match term '{key}=' (expected one of: {KEYS})"),
            )),
        }
    }

    /// Whether the payload satisfies every term, for a rule whose action is `verdict`.
    pub fn matches(&self, p: &Payload, verdict: Verdict) -> bool {
        let app_ok = self
            .app
            .as_ref()
            .is_none_or(|t| t.negated != p.app.is_some_and(|a| t.value.contains(&a)));
        let http = p.http.as_ref();
        let host_ok = self.host.as_ref().is_none_or(|t| {
            http.is_some_and(|r| {
                let hit = |h: &Host| host_matches(&t.value, Some(h));
                let any = r.hosts.iter().any(hit);
                let all = !r.hosts.is_empty() && r.hosts.iter().all(hit);
                // ACCEPT must hold for every named host, DROP/REJECT for any (see the module docs).
                match (t.negated, verdict == Verdict::Accept) {
                    (false, true) => all,
                    (false, false) => any,
                    (true, true) => !any,
                    (true, false) => !all,
                }
            })
        });
        let url_ok = self.url.as_ref().is_none_or(|t| {
            http.is_some_and(|r| t.negated != t.value.iter().any(|u| u.matches(&r.path_and_query)))
        });
        let method_ok = self.method.as_ref().is_none_or(|t| {
            http.is_some_and(|r| {
                t.negated != t.value.iter().any(|m| m.eq_ignore_ascii_case(&r.method))
            })
        });
        let sni_ok = self.sni.as_ref().is_none_or(|t| {
            p.tls.as_ref().is_some_and(|hello| {
                let hit = match (&t.value, &hello.sni) {
                    (HostSel::Absent, sni) => sni.is_none(),
                    (sel, Some(sni)) => host_matches(sel, parse_host(sni).map(|(h, _)| h).as_ref()),
                    (_, None) => false,
                };
                t.negated != hit
            })
        });
        let ja4_ok = self.ja4.as_ref().is_none_or(|t| {
            p.tls.as_ref().is_some_and(|hello| {
                let fp = ja4(hello, p.app == Some(App::Quic));
                t.negated != t.value.iter().any(|pat| pat.matches(&fp))
            })
        });
        // Every question of a query counts, the way every host of a request does (module docs).
        let question_term = |negated: bool, hit: &dyn Fn(&str, u16) -> bool| {
            p.dns.as_ref().is_some_and(|q| {
                let mut all = std::iter::once((q.name.as_str(), q.qtype))
                    .chain(q.more.iter().map(|(n, t)| (n.as_str(), *t)));
                let (any, every) = all.by_ref().fold((false, true), |(any, every), (n, t)| {
                    let h = hit(n, t);
                    (any || h, every && h)
                });
                match (negated, verdict == Verdict::Accept) {
                    (false, true) => every,
                    (false, false) => any,
                    (true, true) => !any,
                    (true, false) => !every,
                }
            })
        };
        let qname_ok = self.qname.as_ref().is_none_or(|t| {
            question_term(t.negated, &|name, _| {
                let host = parse_host(name)
                    .map(|(h, _)| h)
                    .unwrap_or_else(|| Host::Name(name.to_string()));
                host_matches(&t.value, Some(&host))
            })
        });
        let qtype_ok = self
            .qtype
            .as_ref()
            .is_none_or(|t| question_term(t.negated, &|_, qtype| t.value.contains(&qtype)));
        let size_ok = self.size.as_ref().is_none_or(|t| {
            p.echo.as_ref().is_some_and(|e| {
                let (lo, hi) = t.value;
                // A fragmented request (size unknown) is in no range, and out of every one.
                let inside = e.size != u32::MAX && (lo..=hi).contains(&e.size);
                e.request && t.negated != inside
            })
        });
        app_ok
            && host_ok
            && url_ok
            && method_ok
            && sni_ok
            && ja4_ok
            && qname_ok
            && qtype_ok
            && size_ok
    }
}

/// `N`, `LO..HI`, `..HI` or `LO..`: inclusive bounds in bytes.
fn parse_size(value: &str) -> Option<(u32, u32)> {
    let num = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (lo, hi) = match value.split_once("..") {
        None => {
            let n = num(value)?;
            (n, n)
        }
        Some(("", "")) => return None,
        Some((lo, hi)) => (
            if lo.is_empty() { 0 } else { num(lo)? },
            if hi.is_empty() {
                u32::MAX - 1
            } else {
                num(hi)?
            },
        ),
    };
    (lo <= hi).then_some((lo, hi))
}

/// The policy's hash is taken over the parsed policy's `Debug` text: terms added later show only when
/// a rule has them, so a policy without them keeps the hash it had.
impl std::fmt::Debug for Terms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Terms");
        d.field("app", &self.app)
            .field("host", &self.host)
            .field("url", &self.url)
            .field("method", &self.method)
            .field("sni", &self.sni);
        if let Some(t) = &self.ja4 {
            d.field("ja4", t);
        }
        if let Some(t) = &self.qname {
            d.field("qname", t);
        }
        if let Some(t) = &self.qtype {
            d.field("qtype", t);
        }
        if let Some(t) = &self.size {
            d.field("size", t);
        }
        d.finish()
    }
}

/// A JA4 fingerprint, or a glob of one with `*` for any run of characters; lower-case.
#[derive(Clone, Debug)]
struct Ja4Pattern(String);

impl Ja4Pattern {
    /// Checks the shape: a whole fingerprint (`t13d1516h2_8daaf6152771_e5627efa2ab1`: 10 characters,
    /// `_`, 12 hex digits, `_`, 12 hex digits), or a glob of letters, digits, `_` and `*`.
    fn parse(text: &str) -> Result<Ja4Pattern, String> {
        let p = text.to_ascii_lowercase();
        let chars_ok = p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'*');
        let whole = |p: &str| {
            let parts: Vec<&str> = p.split('_').collect();
            matches!(parts.as_slice(), [a, b, c]
                if a.len() == 10
                    && [b, c].iter().all(|h| h.len() == 12 && h.bytes().all(|x| x.is_ascii_hexdigit())))
        };
        if !chars_ok || (!p.contains('*') && !whole(&p)) {
            return Err(format!(
                "'{text}' is not a JA4 fingerprint (like t13d1516h2_8daaf6152771_e5627efa2ab1; * \
                 matches any characters)"
            ));
        }
        Ok(Ja4Pattern(p))
    }

    fn matches(&self, fp: &str) -> bool {
        glob(self.0.as_bytes(), fp.as_bytes())
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of bytes (greedy with backtracking
/// to the last `*`: linear in practice, quadratic at worst on these 36-byte strings).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match (pattern.get(p), text.get(t)) {
            (Some(b'*'), _) => {
                star = Some((p, t));
                p += 1;
            }
            (Some(a), Some(b)) if a == b => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|&b| b == b'*')
}

/// A comma list of fingerprints, or `@FILE` with one a line (`#` comments).
fn ja4_patterns(value: &str, dir: &Path) -> Result<Vec<Ja4Pattern>, String> {
    let entries: Vec<Ja4Pattern> = match value.strip_prefix('@') {
        Some(file) => {
            let path = dir.join(file);
            let text = super::read_bounded(&path)
                .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
                .map_err(|e| format!("cannot read JA4 list {}: {e}", path.display()))?;
            let mut patterns = Vec::new();
            for (n, line) in text.lines().enumerate() {
                let entry = line.split('#').next().unwrap_or("").trim();
                if !entry.is_empty() {
                    let p = Ja4Pattern::parse(entry)
                        .map_err(|m| format!("{}:{}: {m}", path.display(), n + 1))?;
                    patterns.push(p);
                }
            }
            patterns
        }
        None => value
            .split(',')
            .filter(|s| !s.is_empty())
            .map(Ja4Pattern::parse)
            .collect::<Result<_, _>>()?,
    };
    if entries.is_empty() {
        return Err(format!("'{value}' names no JA4 fingerprint"));
    }
    Ok(entries)
}

fn set<T>(slot: &mut Option<T>, value: T) -> Result<(), ()> {
    if slot.is_some() {
        return Err(());
    }
    *slot = Some(value);
    Ok(())
}

fn host_matches(sel: &HostSel, host: Option<&Host>) -> bool {
    match (sel, host) {
        (HostSel::Numeric, Some(Host::Ip(_))) => true,
        (HostSel::Names(patterns), Some(h)) => patterns.iter().any(|p| p.matches(h)),
        _ => false,
    }
}

/// `numeric`, `none` (sni only), `@FILE`, or a comma list of host patterns.
fn host_sel(value: &str, dir: &Path, sni: bool) -> Result<HostSel, String> {
    match value.to_ascii_lowercase().as_str() {
        "numeric" => return Ok(HostSel::Numeric),
        "none" if sni => return Ok(HostSel::Absent),
        _ => {}
    }
    let names: Vec<String> = match value.strip_prefix('@') {
        Some(file) => {
            let path = dir.join(file);
            let text = super::read_bounded(&path)
                .and_then(|b| String::from_utf8(b).map_err(std::io::Error::other))
                .map_err(|e| format!("cannot read host list {}: {e}", path.display()))?;
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        }
        None => value
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    };
    // An empty `@FILE` is a list that names no host yet (`outgate probe` writes one): it matches
    // nothing. Written inline, an empty list is a mistake.
    if names.is_empty() && !value.starts_with('@') {
        return Err(format!("'{value}' names no host"));
    }
    names
        .iter()
        .map(|n| HostPattern::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map(HostSel::Names)
}

#[cfg(test)]
mod tests;
