//! The HTTP request reader, and the host and URL matchers on what it returns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outgate::inspect::host::{HostPattern, UrlPattern, parse_host};
use outgate::inspect::http::parse_request;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = parse_request(data) {
        let host_pat = HostPattern::parse(".example.org");
        let url_pat = UrlPattern::parse("gateway.dll?");
        for h in &req.hosts {
            if let Ok(p) = &host_pat {
                let _ = p.matches(h);
            }
        }
        if let Ok(u) = &url_pat {
            let _ = u.matches(&req.path_and_query);
        }
    }
    // The host syntax on its own, and the patterns as a policy line would give them.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_host(s);
        let _ = HostPattern::parse(s);
        let _ = UrlPattern::parse(s);
    }
});
