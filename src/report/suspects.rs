//! The HTTP servers the report finds suspect, with what `outgate probe` needs to test one: the
//! host, the server address and a URL clients used.
//!
//! A host is suspect when the report lists it under *Numeric-IP hosts* (kind `http`) or *Odd HTTP
//! use* (`post_only`, `odd_url`); the classification is the report's, this only gathers it by host.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

/// An HTTP host the report lists, as `outgate probe` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSuspect {
    /// The host as logged (the report's key): the request's host, maybe with a port, or
    /// `(no Host: ADDRESS)` for requests without one.
    pub host: String,
    /// The server address (`ip:port`, as logged) of the first request to the host, when logged.
    pub server: Option<String>,
    /// The URL (path and query, as logged) of that first request.
    pub url: String,
    /// Why the report lists the host, one entry per report item.
    pub why: Vec<String>,
    /// `FILE:LINE` of the first lines backing those items.
    pub cites: Vec<String>,
}

/// The suspect HTTP hosts of the logs at `paths`, in host order.
pub fn http_suspects(paths: &[PathBuf]) -> Result<Vec<HttpSuspect>, ReportError> {
    let mut suspects = listed(&report(paths)?);
    for path in paths {
        let name = path.display().to_string();
        let err = |source: std::io::Error| ReportError::Read {
            path: name.clone(),
            source,
        };
        let mut reader = BufReader::new(std::fs::File::open(Path::new(path)).map_err(err)?);
        let mut buf = Vec::new();
        while let Some(whole) = read_line(&mut reader, &mut buf).map_err(err)? {
            if let (true, Ok(text)) = (whole, std::str::from_utf8(&buf)) {
                first_request(&mut suspects, text.trim_end());
            }
        }
    }
    Ok(finish(suspects))
}

/// [`http_suspects`] of texts already read: each source is (name used in citations, text).
pub fn http_suspects_from(sources: &[(String, String)]) -> Vec<HttpSuspect> {
    let mut suspects = listed(&report_from(sources));
    for (_, text) in sources {
        for line in text.lines() {
            first_request(&mut suspects, line);
        }
    }
    finish(suspects)
}

/// The hosts the report lists, with why and where; no URL yet.
fn listed(r: &Report) -> BTreeMap<String, HttpSuspect> {
    let mut out: BTreeMap<String, HttpSuspect> = BTreeMap::new();
    let mut add = |host: &str, why: String, cites: &[String]| {
        let s = out.entry(host.to_string()).or_insert_with(|| HttpSuspect {
            host: host.to_string(),
            server: None,
            url: String::new(),
            why: Vec::new(),
            cites: Vec::new(),
        });
        s.why.push(why);
        for c in cites {
            if s.cites.len() < CITES && !s.cites.contains(c) {
                s.cites.push(c.clone());
            }
        }
    };
    for n in r.numeric_hosts.iter().filter(|n| n.kind == "http") {
        let addr = n.address.as_deref().and_then(|a| a.parse().ok());
        add(
            &n.host,
            numeric_what(n.kind, &n.host, addr, n.form),
            &n.cites,
        );
    }
    for o in &r.odd_http {
        let why = match &o.url {
            Some(url) => format!("{} ({})", clean(url), odd_what(o)),
            None => odd_what(o),
        };
        add(&o.host, why, &o.cites);
    }
    out
}

/// Notes the server and URL of `line` when it is the first request to a listed host.
fn first_request(suspects: &mut BTreeMap<String, HttpSuspect>, line: &str) {
    let Some(Parsed::Http(l)) = parse(line) else {
        return;
    };
    let server = l.server.as_deref().map_or("?", |s| split_endpoint(s).0);
    let key = host_key(l.host.as_deref(), server);
    if let Some(s) = suspects.get_mut(&key)
        && s.url.is_empty()
    {
        s.url = l.url;
        s.server = l.server;
    }
}

fn finish(suspects: BTreeMap<String, HttpSuspect>) -> Vec<HttpSuspect> {
    suspects.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(method: &str, host: &str, url: &str) -> String {
        format!(
            r#"{{"ts":"2026-01-01T00:00:00Z","client":"10.0.0.5:40000","server":"192.0.2.9:80","method":"{method}","host":{host},"url":"{url}","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}}"#
        )
    }

    #[test]
    fn suspects_are_the_reports_http_items() {
        let text = [
            line("GET", r#""192.0.2.9""#, "/first"),
            line("GET", r#""192.0.2.9""#, "/second"),
            line("POST", r#""tunnel.example""#, "/in"),
            line("POST", r#""tunnel.example""#, "/out"),
            line("GET", r#""www.example""#, "/gateway.dll?x=1"),
            line("GET", r#""fine.example""#, "/"),
            line("POST", r#""once.example""#, "/"),
            line("POST", "null", "/nohost"),
            line("PUT", "null", "/nohost2"),
        ]
        .join("\n");
        let s = http_suspects_from(&[("h.jsonl".to_string(), text)]);
        let hosts: Vec<&str> = s.iter().map(|s| s.host.as_str()).collect();
        // fine.example: GET only; once.example: one POST (post_only needs 2).
        assert_eq!(
            hosts,
            [
                "(no Host: 192.0.2.9)",
                "192.0.2.9",
                "tunnel.example",
                "www.example"
            ]
        );
        let numeric = &s[1];
        assert_eq!(numeric.url, "/first");
        assert_eq!(numeric.server.as_deref(), Some("192.0.2.9:80"));
        assert_eq!(numeric.cites, ["h.jsonl:1", "h.jsonl:2"]);
        assert_eq!(s[2].url, "/in");
        assert_eq!(s[2].why, ["only POST"]);
        assert_eq!(s[3].url, "/gateway.dll?x=1");
        assert_eq!(s[0].url, "/nohost");
    }
}
