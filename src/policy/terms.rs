//! Payload match terms: `key=value` after a rule's port column, decided on a flow's first payload.
//!
//! ```text
//! app=tls | app=http,ssh | app=!tls      the protocol actually spoken (see inspect::detect)
//! host=numeric | host=NAME,*.SUFFIX,.DOMAIN | host=@FILE | host=!...
//!                                        HTTP: the request's host (Host header, absolute URI, CONNECT)
//! url=PATTERN[,PATTERN]                  HTTP: path and query, case-insensitive substring, or glob with *
//! method=POST[,PUT]                      HTTP: the request method
//! sni=none | sni=numeric | sni=NAME,...  TLS: the ClientHello's server name
//! ```
//!
//! A value list matches any of its entries; a leading `!` inverts the term. `host`, `url` and `method`
//! only ever match HTTP requests and `sni` only TLS ClientHellos, so `DROP loc net tcp 80 host=numeric`
//! leaves flows that are not HTTP to later rules. A rule matches when every term does. `@FILE` reads one
//! host pattern a line (`#` comments), relative to the policy file's folder.

use std::path::Path;

use crate::inspect::detect::App;
use crate::inspect::host::{Host, HostPattern, UrlPattern, parse_host};
use crate::inspect::http::Request;
use crate::inspect::tls::ClientHello;

/// What the first payload of a flow showed.
#[derive(Clone, Debug, Default)]
pub struct Payload {
    pub app: Option<App>,
    pub http: Option<Request>,
    pub tls: Option<ClientHello>,
}

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
#[derive(Clone, Debug, Default)]
pub struct Terms {
    app: Option<Term<Vec<App>>>,
    host: Option<Term<HostSel>>,
    url: Option<Term<Vec<UrlPattern>>>,
    method: Option<Term<Vec<String>>>,
    sni: Option<Term<HostSel>>,
}

/// The keys a rule may carry, for error messages.
pub const KEYS: &str = "app, host, url, method, sni";

impl Terms {
    /// True for a rule with no payload term.
    pub fn is_empty(&self) -> bool {
        self.app.is_none()
            && self.host.is_none()
            && self.url.is_none()
            && self.method.is_none()
            && self.sni.is_none()
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
                            (offset, format!("unknown app '{name}' (expected one of: {})", known.join(", ")))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                set(&mut self.app, Term { negated, value: apps }).map_err(|_| duplicate())
            }
            "host" => {
                let sel = host_sel(value, dir, false).map_err(|m| (offset, m))?;
                set(&mut self.host, Term { negated, value: sel }).map_err(|_| duplicate())
            }
            "sni" => {
                let sel = host_sel(value, dir, true).map_err(|m| (offset, m))?;
                set(&mut self.sni, Term { negated, value: sel }).map_err(|_| duplicate())
            }
            "url" => {
                let patterns = list()
                    .map(|p| UrlPattern::parse(p).map_err(|m| (offset, m)))
                    .collect::<Result<Vec<_>, _>>()?;
                set(&mut self.url, Term { negated, value: patterns }).map_err(|_| duplicate())
            }
            "method" => {
                let methods: Vec<String> = list().map(|m| m.to_ascii_uppercase()).collect();
                if let Some(bad) = methods.iter().find(|m| !m.bytes().all(|b| b.is_ascii_alphabetic())) {
                    return Err((offset, format!("'{bad}' is not an HTTP method")));
                }
                set(&mut self.method, Term { negated, value: methods }).map_err(|_| duplicate())
            }
            _ => Err((0, format!("unknown match term '{key}=' (expected one of: {KEYS})"))),
        }
    }

    /// Whether the payload satisfies every term.
    pub fn matches(&self, p: &Payload) -> bool {
        let app_ok = self.app.as_ref().is_none_or(|t| {
            t.negated != p.app.is_some_and(|a| t.value.contains(&a))
        });
        let http = p.http.as_ref();
        let host_ok = self.host.as_ref().is_none_or(|t| {
            http.is_some_and(|r| t.negated != host_matches(&t.value, r.host.as_ref()))
        });
        let url_ok = self.url.as_ref().is_none_or(|t| {
            http.is_some_and(|r| t.negated != t.value.iter().any(|u| u.matches(&r.path_and_query)))
        });
        let method_ok = self.method.as_ref().is_none_or(|t| {
            http.is_some_and(|r| t.negated != t.value.iter().any(|m| *m == r.method))
        });
        let sni_ok = self.sni.as_ref().is_none_or(|t| {
            p.tls.as_ref().is_some_and(|hello| {
                let sni = hello.sni.as_deref().and_then(|s| parse_host(s).map(|(h, _)| h));
                let hit = match (&t.value, &hello.sni) {
                    (HostSel::Absent, None) => true,
                    (HostSel::Absent, Some(_)) => false,
                    (sel, _) => host_matches(sel, sni.as_ref()),
                };
                t.negated != hit
            })
        });
        app_ok && host_ok && url_ok && method_ok && sni_ok
    }
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
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read host list {}: {e}", path.display()))?;
            text.lines()
                .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        }
        None => value.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
    };
    if names.is_empty() {
        return Err(format!("'{value}' names no host"));
    }
    names.iter().map(|n| HostPattern::parse(n)).collect::<Result<Vec<_>, _>>().map(HostSel::Names)
}
