//! QUIC decided by its server name, live, through the gateway: a real QUIC client and server (aioquic,
//! `tests/tools/quic_echo.py`) on UDP 443. The policy allows `sni=good.test` and drops other names, so
//! the handshake to good.test completes and the one to evil.test does not; the TLS log and the flow log
//! show both names. The client's ClientHello is made to span two Initial datagrams, as a browser's
//! with a post-quantum key share does, and also sent in one.
//!
//! Needs root, openssl, and a python3 with aioquic: `.ci/run` makes a venv in /opt/outgate-ci/aioquic
//! (`OUTGATE_AIOQUIC_PYTHON` names another interpreter).

mod common;

use std::path::Path;

use common::{gateway_mode, serial};

const POLICY: &str = "\
policy loc net DROP
ACCEPT loc net udp 443 sni=good.test
DROP   loc net udp 443
";

/// A python3 that can import aioquic, or `None` (the test is then skipped, and fails in CI).
fn aioquic_python(test: &str) -> Option<String> {
    let python = std::env::var("OUTGATE_AIOQUIC_PYTHON")
        .unwrap_or_else(|_| "/opt/outgate-ci/aioquic/bin/python3".into());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import aioquic"])
        .output()
        .is_ok_and(|o| o.status.success());
    common::can_run(
        test,
        ok,
        &format!(
            "aioquic for {python} (.ci/run installs it; OUTGATE_AIOQUIC_PYTHON names another)"
        ),
    )
    .then_some(python)
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn quic_is_decided_by_its_server_name() {
    let test = "quic_is_decided_by_its_server_name";
    if !common::root(test) || !common::tool(test, "openssl") {
        return;
    }
    let Some(python) = aioquic_python(test) else {
        return;
    };
    let _g = serial();
    let mut s = gateway_mode();
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/quic_echo.py");
    let (cert, key) = (s.lab.path("cert.pem"), s.lab.path("key.pem"));
    common::run(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
         -subj /CN=good.test -keyout {} -out {} 2>/dev/null",
        key.display(),
        cert.display()
    ));
    let server = s.server.clone();
    s.lab.spawn(
        &server,
        &format!(
            "{python} {} serve {} {} 443",
            tool.display(),
            cert.display(),
            key.display()
        ),
    );
    s.lab.wait_listening(&server, "udp", 443);
    s.rules("--apply", "");
    let tls_log = s.lab.path("tls.jsonl");
    s.daemon(POLICY, &format!("--tls-log {}", tls_log.display()));

    let send = |sni: &str, pad: u32| {
        let o = s.lab.try_sh(
            &s.client,
            &format!(
                "{python} {} send {} 443 {sni} {pad}",
                tool.display(),
                s.server4
            ),
        );
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    // 8 ALPN names of 200 bytes: a ClientHello of some 1,900 bytes, in two Initial datagrams.
    let (code, out, err) = send("good.test", 8);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "ping"),
        "good.test in two datagrams: {err}"
    );
    let (code, out, err) = send("good.test", 0);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "ping"),
        "good.test in one: {err}"
    );
    let (code, out, _) = send("evil.test", 8);
    assert_eq!(
        (code, out.as_str()),
        (Some(1), ""),
        "evil.test is dropped: no handshake"
    );

    // The logs are written as flows are decided; give the writer a moment.
    let names = |lines: &[serde_json::Value], key: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l[key].is_string())
            .map(|l| {
                format!(
                    "{} {} {}",
                    l[key].as_str().unwrap(),
                    l["verdict"].as_str().unwrap_or("-"),
                    l["rule"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    let want = |n: &[String]| {
        n.iter()
            .filter(|l| l.starts_with("good.test accept"))
            .count()
            == 2
            && n.iter().any(|l| l.starts_with("evil.test drop"))
    };
    common::wait_for(std::time::Duration::from_secs(5), || {
        want(&names(&read_lines(&tls_log), "sni"))
    });
    let tls = read_lines(&tls_log);
    let by_sni = names(&tls, "sni");
    assert!(want(&by_sni), "TLS log: {by_sni:?}");
    assert!(
        by_sni
            .iter()
            .all(|l| !l.contains(" accept ") || l.ends_with("policy.rules:2")),
        "{by_sni:?}"
    );
    assert!(
        by_sni
            .iter()
            .all(|l| !l.contains(" drop ") || l.ends_with("policy.rules:3")),
        "{by_sni:?}"
    );
    assert!(
        tls.iter().all(|l| l["alpn"][0] == "echo"),
        "the ALPN list is read: {tls:?}"
    );
    let flows = s.flows_log();
    let quic: Vec<&serde_json::Value> = flows
        .iter()
        .filter(|f| f["proto"] == "udp" && f["dst"].as_str().is_some_and(|d| d.ends_with(":443")))
        .collect();
    assert!(
        quic.iter().all(|f| f["app"] == "quic"),
        "flow log: {quic:?}"
    );
    let by_host = names(&flows, "host");
    assert!(want(&by_host), "flow log: {by_host:?}");
    s.rules("--remove", "");
}
