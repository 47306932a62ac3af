use super::*;
use crate::inspect::http::parse_request;
use crate::inspect::tls::ClientHello;

fn terms(pairs: &[(&str, &str)]) -> Terms {
    let mut t = Terms::default();
    for (k, v) in pairs {
        t.add(k, v, Path::new(".")).unwrap();
    }
    t
}

fn http(request: &str) -> Payload {
    Payload {
        app: Some(App::Http),
        http: Some(parse_request(request.as_bytes()).unwrap()),
        tls: None,
        ..Payload::default()
    }
}

fn tls(sni: Option<&str>) -> Payload {
    let hello = ClientHello {
        sni: sni.map(str::to_string),
        ..ClientHello::default()
    };
    Payload {
        app: Some(App::Tls),
        http: None,
        tls: Some(hello),
        ..Payload::default()
    }
}

const DROP: Verdict = Verdict::Drop;
const ACCEPT: Verdict = Verdict::Accept;

#[test]
fn host_terms_read_numeric_and_lists() {
    let numeric = terms(&[("host", "numeric")]);
    assert!(numeric.matches(
        &http("GET / HTTP/1.1\r\nHost: 192.0.2.80:8080\r\n\r\n"),
        DROP
    ));
    assert!(numeric.matches(&http("GET / HTTP/1.1\r\nHost: 3232235777\r\n\r\n"), DROP));
    assert!(numeric.matches(&http("GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n"), DROP));
    assert!(!numeric.matches(
        &http("GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"),
        DROP
    ));
    assert!(
        !numeric.matches(&tls(Some("192.0.2.1")), DROP),
        "host= is for HTTP only"
    );
    let list = terms(&[("host", "*.example.org,files.example.net")]);
    assert!(list.matches(
        &http("GET / HTTP/1.1\r\nHost: WWW.example.org\r\n\r\n"),
        ACCEPT
    ));
    assert!(!list.matches(&http("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"), ACCEPT));
    let not = terms(&[("host", "!numeric")]);
    assert!(not.matches(
        &http("GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"),
        ACCEPT
    ));
}

#[test]
fn ambiguous_requests_can_neither_escape_a_block_nor_enter_an_allow() {
    let two = http("GET / HTTP/1.1\r\nHost: www.example.org\r\nHost: 192.0.2.80\r\n\r\n");
    assert!(
        terms(&[("host", "numeric")]).matches(&two, DROP),
        "a DROP rule sees any host"
    );
    assert!(
        !terms(&[("host", "www.example.org")]).matches(&two, ACCEPT),
        "an ACCEPT rule needs all"
    );
    let proxy = http("GET http://198.51.100.9/tunnel HTTP/1.1\r\nHost: www.example.org\r\n\r\n");
    assert!(terms(&[("host", "numeric")]).matches(&proxy, DROP));
    assert!(!terms(&[("host", "!numeric")]).matches(&proxy, ACCEPT));
}

#[test]
fn url_method_app_and_sni() {
    let req = http("POST /cgi-bin/Gateway.DLL?AsyncPoll HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert!(terms(&[("url", "gateway.dll?")]).matches(&req, DROP));
    assert!(terms(&[("url", "/*/gateway.dll?*")]).matches(&req, DROP));
    assert!(terms(&[("method", "post,put")]).matches(&req, DROP));
    assert!(!terms(&[("method", "GET")]).matches(&req, DROP));
    assert!(terms(&[("app", "http")]).matches(&req, DROP));
    assert!(terms(&[("app", "!tls")]).matches(&req, DROP));
    assert!(terms(&[("sni", "none")]).matches(&tls(None), DROP));
    assert!(!terms(&[("sni", "none")]).matches(&tls(Some("a.example")), DROP));
    assert!(terms(&[("sni", "numeric")]).matches(&tls(Some("192.0.2.44")), DROP));
    assert!(terms(&[("sni", ".example.org")]).matches(&tls(Some("example.org")), ACCEPT));
    assert!(
        !terms(&[("sni", "numeric")]).matches(&req, DROP),
        "sni= is for TLS only"
    );
    let both = terms(&[("app", "tls"), ("sni", "a.example")]);
    assert!(
        both.matches(&tls(Some("a.example")), ACCEPT)
            && !both.matches(&tls(Some("b.example")), ACCEPT)
    );
}

/// The example hello of FoxIO's JA4 definition (technical_details/JA4.md), over TCP or QUIC.
fn ja4_example(app: App) -> Payload {
    let hex = |l: &str| -> Vec<u16> {
        l.split(',')
            .map(|s| u16::from_str_radix(s, 16).unwrap())
            .collect()
    };
    let hello = ClientHello {
        sni: Some("a.example".into()),
        alpn: vec!["h2".into()],
        alpn_first: b"h2".to_vec(),
        legacy_version: 0x0303,
        supported_versions: vec![0x0304, 0x0303],
        cipher_suites: hex(
            "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
        ),
        extensions: hex(
            "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015",
        ),
        signature_algorithms: hex("0403,0804,0401,0503,0805,0501,0806,0601"),
        ..ClientHello::default()
    };
    Payload {
        app: Some(app),
        tls: Some(hello),
        ..Payload::default()
    }
}

fn dns(name: &str, qtype: u16) -> Payload {
    Payload {
        app: Some(App::Dns),
        dns: Some(crate::inspect::dns::Query {
            id: 1,
            name: name.to_string(),
            label_lens: Vec::new(),
            qtype,
            more: Vec::new(),
        }),
        ..Payload::default()
    }
}

fn echo(size: u32) -> Payload {
    let mut e = crate::inspect::echo::Echo::new(true, 1, &[], false);
    e.size = size;
    Payload {
        echo: Some(e),
        ..Payload::default()
    }
}

#[test]
fn ja4_terms() {
    let tcp = ja4_example(App::Tls);
    let quic = ja4_example(App::Quic);
    let exact = terms(&[("ja4", "T13D1516H2_8daaf6152771_e5627efa2ab1")]);
    assert!(exact.matches(&tcp, DROP) && !exact.matches(&quic, DROP));
    let q = terms(&[("ja4", "q13d1516h2_8daaf6152771_e5627efa2ab1")]);
    assert!(q.matches(&quic, DROP) && !q.matches(&tcp, DROP));
    for glob in [
        "*_8daaf6152771_*",
        "?13d*",
        "t13d*h2_*",
        "*",
        "t13d1516h2_8daaf6152771_e5627efa2ab*",
    ] {
        let hit = !glob.contains('?');
        let t = match Ja4Pattern::parse(glob) {
            Ok(_) => terms(&[("ja4", glob)]),
            Err(_) => {
                assert!(!hit, "{glob}");
                continue;
            }
        };
        assert_eq!(t.matches(&tcp, DROP), hit, "{glob}");
    }
    assert!(!terms(&[("ja4", "*_000000000000_*")]).matches(&tcp, DROP));
    assert!(terms(&[("ja4", "!t13d1715h2_5b57614c22b0_3d5424432f57")]).matches(&tcp, ACCEPT));
    // Not a ClientHello: no fingerprint to match, negated or not.
    let req = http("GET / HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert!(!exact.matches(&req, DROP));
    assert!(!terms(&[("ja4", "!t13d1715h2_5b57614c22b0_3d5424432f57")]).matches(&req, DROP));
    for bad in [
        "t13d1516h2",
        "t13d1516h2_8daaf6152771_e5627efa2ab",
        "t13d1516h2_8daaf615277g_e5627efa2ab1",
        "a b",
        "x?",
    ] {
        assert!(
            Terms::default().add("ja4", bad, Path::new(".")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn glob_matching() {
    for (p, t, want) in [
        ("abc", "abc", true),
        ("a*c", "abbbc", true),
        ("a*c", "abbb", false),
        ("*b*", "abc", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXcYb", false),
        ("", "", true),
        ("", "a", false),
        ("**", "", true),
    ] {
        assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} {t}");
    }
}

#[test]
fn ja4_lists_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ja4.txt"),
        "# curl 8\nt13d3113h2_e8f1e7e78f70_1b3407e2c936\n\nt13d1516h2_8daaf6152771_e5627efa2ab1 # chrome\n",
    )
    .unwrap();
    let mut t = Terms::default();
    t.add("ja4", "@ja4.txt", dir.path()).unwrap();
    assert!(t.matches(&ja4_example(App::Tls), DROP));
    std::fs::write(
        dir.path().join("bad.txt"),
        "t13d1516h2_8daaf6152771_e5627efa2ab1\nnope\n",
    )
    .unwrap();
    let err = Terms::default()
        .add("ja4", "@bad.txt", dir.path())
        .unwrap_err()
        .1;
    assert!(
        err.contains("bad.txt:2: 'nope' is not a JA4 fingerprint"),
        "{err}"
    );
    let err = Terms::default()
        .add("ja4", "@missing.txt", dir.path())
        .unwrap_err()
        .1;
    assert!(err.contains("cannot read JA4 list"), "{err}");
}

#[test]
fn qname_qtype_and_size() {
    let q = terms(&[("qname", "*.t.example.org,tunnel.example.net")]);
    assert!(q.matches(&dns("paaaa.t.example.org", 1), DROP));
    assert!(q.matches(&dns("tunnel.example.net", 1), DROP));
    assert!(!q.matches(&dns("t.example.org", 1), DROP));
    // An escaped dot inside a label is not a label boundary.
    assert!(!q.matches(&dns("x\\046t.example.org", 1), DROP));
    assert!(!q.matches(
        &http("GET / HTTP/1.1\r\nHost: a.t.example.org\r\n\r\n"),
        DROP
    ));
    let t = terms(&[("qtype", "null,TXT,65")]);
    assert!(t.matches(&dns("a.example", 10), DROP));
    assert!(t.matches(&dns("a.example", 65), DROP));
    assert!(!t.matches(&dns("a.example", 1), DROP));
    let small = terms(&[("size", "..128")]);
    assert!(small.matches(&echo(56), ACCEPT) && small.matches(&echo(128), ACCEPT));
    assert!(!small.matches(&echo(129), ACCEPT));
    assert!(
        !small.matches(&echo(u32::MAX), ACCEPT),
        "a fragmented request"
    );
    assert!(terms(&[("size", "!..128")]).matches(&echo(u32::MAX), DROP));
    assert!(terms(&[("size", "56")]).matches(&echo(56), ACCEPT));
    assert!(terms(&[("size", "1000..")]).matches(&echo(1024), DROP));
    assert!(
        !small.matches(&dns("a.example", 1), ACCEPT),
        "size= is for echo only"
    );
    let mut t = Terms::default();
    for (k, v) in [
        ("size", "128..64"),
        ("size", ".."),
        ("size", "-1"),
        ("qtype", "BOGUS"),
    ] {
        assert!(t.add(k, v, Path::new(".")).is_err(), "{k}={v}");
    }
    assert!(terms(&[("qname", "a.example")]).per_message());
    assert!(!terms(&[("sni", "a.example")]).per_message());
    // A second question for the tunnel's domain: DROP sees any question, ACCEPT needs all.
    let mut two = dns("www.example.org", 1);
    if let Some(d) = two.dns.as_mut() {
        d.more.push(("x.t.example.org".to_string(), 10));
    }
    assert!(q.matches(&two, DROP));
    assert!(!terms(&[("qname", "www.example.org")]).matches(&two, ACCEPT));
    assert!(terms(&[("qtype", "NULL")]).matches(&two, DROP));
    assert!(!terms(&[("qtype", "!NULL")]).matches(&two, ACCEPT));
}

#[test]
fn host_lists_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("confederates.txt"),
        "# tunnel servers\nrelay.example.net\n\n*.tun.example\n",
    )
    .unwrap();
    let mut t = Terms::default();
    t.add("host", "@confederates.txt", dir.path()).unwrap();
    assert!(t.matches(
        &http("GET / HTTP/1.1\r\nHost: relay.example.net\r\n\r\n"),
        DROP
    ));
    assert!(t.matches(&http("GET / HTTP/1.1\r\nHost: a.tun.example\r\n\r\n"), DROP));
    assert!(!t.matches(
        &http("GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n"),
        DROP
    ));
}

#[test]
fn an_empty_host_file_matches_no_host() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.txt"), "# no confederate yet\n").unwrap();
    let request = http("GET / HTTP/1.1\r\nHost: relay.example.net\r\n\r\n");
    let mut t = Terms::default();
    t.add("host", "@none.txt", dir.path()).unwrap();
    assert!(!t.matches(&request, DROP));
    let mut not = Terms::default();
    not.add("host", "!@none.txt", dir.path()).unwrap();
    assert!(not.matches(&request, ACCEPT));
    assert!(Terms::default().add("host", ",", dir.path()).is_err());
}
