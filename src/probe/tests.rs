use super::*;
use crate::policy::Cidr;

fn suspect(host: &str, server: Option<&str>, url: &str) -> HttpSuspect {
    HttpSuspect {
        host: host.into(),
        server: server.map(str::to_string),
        url: url.into(),
        why: vec!["why".into()],
        cites: vec!["h:1".into()],
    }
}

fn allow(nets: &[&str]) -> Allow {
    Allow(nets.iter().map(|n| Cidr::parse(n).unwrap()).collect())
}

#[test]
fn targets_take_the_port_from_the_host_then_the_server() {
    let t = target(&suspect("192.0.2.9:8888", Some("192.0.2.9:8888"), "/x")).unwrap();
    assert_eq!(
        (t.key.as_str(), t.header.as_str(), t.host.as_str(), t.port),
        ("192.0.2.9:8888", "192.0.2.9:8888", "192.0.2.9", 8888)
    );
    let t = target(&suspect("3221226121", Some("192.0.2.9:80"), "/x")).unwrap();
    assert_eq!(
        (t.key.as_str(), t.header.as_str()),
        ("192.0.2.137:80", "192.0.2.137")
    );
    let t = target(&suspect("[2001:db8::1]", Some("[2001:db8::1]:8080"), "/")).unwrap();
    assert_eq!(
        (t.key.as_str(), t.header.as_str(), t.host.as_str()),
        ("[2001:db8::1]:8080", "[2001:db8::1]:8080", "2001:db8::1")
    );
    let t = target(&suspect("Tunnel.Example.", None, "/")).unwrap();
    assert_eq!(
        (t.key.as_str(), t.name.as_deref()),
        ("tunnel.example:80", Some("tunnel.example"))
    );
    let t = target(&suspect("(no Host: 192.0.2.9)", Some("192.0.2.9:81"), "/")).unwrap();
    assert_eq!(t.key, "192.0.2.9:81");
    assert!(target(&suspect("(no Host: ?)", None, "/")).is_err());
    assert!(target(&suspect("bad host\r\nX: y", None, "/")).is_err());
}

#[test]
fn only_safe_urls_are_requested() {
    assert_eq!(url_to_request("/index.html?a=1"), Some("/index.html?a=1"));
    assert_eq!(url_to_request("/"), None);
    assert_eq!(url_to_request("http://x/"), None);
    assert_eq!(url_to_request("/a b"), None);
    assert_eq!(url_to_request("/a\r\nCookie: x"), None);
    assert_eq!(url_to_request(&format!("/{}", "a".repeat(MAX_URL))), None);
}

#[test]
fn names_are_resolved_and_the_address_rules_apply_to_the_result() {
    let t = target(&suspect("tunnel.example", Some("198.51.100.7:80"), "/")).unwrap();
    let to = |addrs: &'static [&'static str]| {
        move |_: &str, port: u16| -> std::io::Result<Vec<SocketAddr>> {
            Ok(addrs
                .iter()
                .map(|a| SocketAddr::new(a.parse().unwrap(), port))
                .collect())
        }
    };
    // A name that resolves to loopback (DNS rebinding) is not probed.
    let err = choose(&t, &allow(&[]), &to(&["127.0.0.1"])).unwrap_err();
    assert!(err.contains("127.0.0.1 is loopback"), "{err}");
    // The first allowed address, skipping refused ones...
    let a = choose(&t, &allow(&[]), &to(&["10.0.0.1", "8.8.8.8", "1.1.1.1"])).unwrap();
    assert_eq!(a, "8.8.8.8:80".parse().unwrap());
    // ...but the one the client reached when it is among them and allowed.
    let a = choose(
        &t,
        &allow(&["198.51.100.0/24"]),
        &to(&["8.8.8.8", "198.51.100.7"]),
    )
    .unwrap();
    assert_eq!(a, "198.51.100.7:80".parse().unwrap());
    let fail = |_: &str, _: u16| -> std::io::Result<Vec<SocketAddr>> {
        Err(std::io::Error::other("no such name"))
    };
    assert!(
        choose(&t, &allow(&[]), &fail)
            .unwrap_err()
            .contains("cannot resolve")
    );
    let ip = target(&suspect("10.200.1.2:8888", None, "/")).unwrap();
    assert!(choose(&ip, &allow(&[]), &fail).is_err());
    assert_eq!(
        choose(&ip, &allow(&["10.200.1.0/24"]), &fail),
        Ok("10.200.1.2:8888".parse().unwrap())
    );
}

fn http_line(host: &str, url: &str) -> String {
    format!(
        r#"{{"ts":"2026-12-01T00:00:00Z","client":"10.0.0.5:40000","server":"{host}","method":"POST","host":"{host}","url":"{url}","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}}"#
    )
}

#[test]
fn a_dry_run_plans_within_the_limits_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("http.jsonl");
    let lines: Vec<String> = ["10.0.0.9:80", "8.8.8.8:80", "9.9.9.9:8080", "1.1.1.1:80"]
        .iter()
        .map(|h| http_line(h, "/in?x=1"))
        .collect();
    std::fs::write(&log, lines.join("\n")).unwrap();
    let state_path = dir.path().join("state.json");
    let mut state = State::default();
    let t0 = Time(1_800_000_000);
    state.record(
        "1.1.1.1:80",
        "1.1.1.1",
        80,
        Probe {
            at: t0,
            address: "1.1.1.1:80".into(),
            requests: Vec::new(),
            verdict: state::Verdict::Fail,
            why: Vec::new(),
            cites: Vec::new(),
        },
    );
    std::fs::write(&state_path, state.text()).unwrap();
    let cfg = ProbeConfig {
        logs: vec![log],
        state: state_path.clone(),
        confederates: Some(dir.path().join("conf.txt")),
        dry_run: true,
        allow: Allow::default(),
        now: Some(t0.plus(3600)),
        max_servers: 1,
        interval: Duration::ZERO,
        contact: None,
        limits: Limits::default(),
    };
    let mut out = Vec::new();
    let no_dns = |_: &str, _: u16| -> std::io::Result<Vec<SocketAddr>> { unreachable!() };
    run_with(&cfg, &mut out, &no_dns).unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("4 suspect HTTP host(s) in 1 log(s); dry run"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("skip 1.1.1.1:80: probed at 2027-01-15T08:00:00Z"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("skip 10.0.0.9:80: not probed: 10.0.0.9 is private"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("would probe 8.8.8.8:80 at 8.8.8.8:80: GET /in?x=1, then GET /"),
        "{out}"
    );
    assert!(
        lines[4].starts_with("skip 9.9.9.9:8080: 1 servers probed this run"),
        "{out}"
    );
    assert_eq!(lines[5], "confederates: none");
    assert_eq!(lines.len(), 6, "{out}");
    assert_eq!(std::fs::read_to_string(&state_path).unwrap(), state.text());
    assert!(!dir.path().join("conf.txt").exists());
}

#[test]
fn the_user_agent_names_outgate() {
    assert!(user_agent(None).starts_with("outgate-probe/"));
    assert!(user_agent(Some("admin@example.org")).contains("contact: admin@example.org"));
}

#[test]
fn a_suspect_gets_its_second_round_without_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("http.jsonl");
    std::fs::write(&log, "").unwrap();
    let state_path = dir.path().join("state.json");
    let mut state = State::default();
    let t0 = Time(1_800_000_000);
    let probe = |at, verdict| Probe {
        at,
        address: "8.8.8.8:8888".into(),
        requests: vec![Request {
            request: "GET /index.html?crap=1".into(),
            answer: "endless".into(),
            evidence: String::new(),
        }],
        verdict,
        why: Vec::new(),
        cites: Vec::new(),
    };
    state.record(
        "8.8.8.8:8888",
        "8.8.8.8",
        8888,
        probe(t0, state::Verdict::Fail),
    );
    state.record("9.9.9.9:80", "9.9.9.9", 80, probe(t0, state::Verdict::Real));
    std::fs::write(&state_path, state.text()).unwrap();
    let cfg = ProbeConfig {
        logs: vec![log],
        state: state_path,
        confederates: None,
        dry_run: true,
        allow: Allow::default(),
        now: Some(t0.plus(MIN_GAP)),
        max_servers: 10,
        interval: Duration::ZERO,
        contact: None,
        limits: Limits::default(),
    };
    let mut out = Vec::new();
    run_with(&cfg, &mut out, &|_: &str, _: u16| unreachable!()).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(
            "would probe 8.8.8.8:8888 at 8.8.8.8:8888: GET /index.html?crap=1, then GET / \
             (suspect since 2027-01-15T08:00:00Z, not in these logs: second round)"
        ),
        "{out}"
    );
    // Cleared servers are probed again only when the logs name them.
    assert!(!out.contains("9.9.9.9"), "{out}");
}

#[test]
fn a_second_probe_on_the_same_state_waits_its_turn() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("http.jsonl");
    std::fs::write(&log, http_line("10.0.0.9:80", "/in?x=1")).unwrap();
    let state_path = dir.path().join("state.json");
    let cfg = ProbeConfig {
        logs: vec![log],
        state: state_path.clone(),
        confederates: None,
        dry_run: false,
        allow: Allow::default(),
        now: Some(Time(1_800_000_000)),
        max_servers: 1,
        interval: Duration::ZERO,
        contact: None,
        limits: Limits::default(),
    };
    // Another run holds the lock.
    let held = lock(&state_path).unwrap();
    let mut out = Vec::new();
    let err = run_with(&cfg, &mut out, &|_, _| Ok(Vec::new())).unwrap_err();
    assert!(err.contains("another outgate probe is running"), "{err}");
    assert!(!state_path.exists(), "nothing written");
    drop(held);
    // Once it ends, the next run goes ahead (the suspect is private and not allowed: not probed).
    run_with(&cfg, &mut out, &|_, _| Ok(Vec::new())).unwrap();
    assert!(state_path.exists());
}
