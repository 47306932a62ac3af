//! Fingerprints and encrypted-looking first payloads, live, through the gateway:
//! - random bytes (what Shadowsocks, obfs4 and their kind send first) are dropped by an
//!   `app=encrypted` rule on TCP and UDP, while plain text to the same port passes;
//! - a `ja4=` rule with curl's fingerprint, as the TLS log wrote it, stops curl and lets another
//!   TLS client (openssl s_client) through to the same server.
//!
//! Needs root plus python3, curl and openssl (`.ci/run` installs them).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Setup, gateway_mode, serial, wait_for};
use outgate::inspect::detect::looks_encrypted;

const ECHO_PORT: u16 = 8388; // Shadowsocks' customary port; any port would do

const ENCRYPTED_POLICY: &str = "\
policy loc net DROP
DROP   loc net tcp 8388 app=encrypted
ACCEPT loc net tcp 8388
DROP   loc net udp 8388 app=encrypted
ACCEPT loc net udp 8388
";

/// A TCP echo server on `port` (both families), one thread a connection.
const TCP_ECHO: &str = "\
import socket, sys, threading
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::', int(sys.argv[1])))
s.listen(16)
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
";

/// Sends hex bytes over tcp or udp and says whether they came back within 3 seconds.
const SEND: &str = "\
import socket, sys
proto, host, port, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])
got = b''
try:
    if proto == 'tcp':
        s = socket.create_connection((host, port), timeout=3)
        s.sendall(data)
        while len(got) < len(data):
            b = s.recv(65536)
            if not b:
                break
            got += b
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.sendto(data, (host, port))
        got = s.recv(65536)
except OSError as e:
    print('error', e)
print('echoed' if got == data else 'silent')
";

/// `n` bytes of a seeded xorshift generator.
fn random(seed: u64, n: usize) -> Vec<u8> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `data` sent from the client to the server's echo port comes back.
fn echoed(s: &Setup, proto: &str, data: &[u8]) -> bool {
    let script = s.lab.path("send.py");
    let out = s.lab.sh(
        &s.client,
        &format!(
            "python3 {} {proto} {} {ECHO_PORT} {}",
            script.display(),
            s.server4,
            hex(data)
        ),
    );
    out.contains("echoed")
}

#[test]
fn random_first_bytes_are_dropped_as_encrypted_and_plain_text_passes() {
    if !common::root("random_first_bytes_are_dropped_as_encrypted_and_plain_text_passes") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let server = s.server.clone();
    let echo = s.lab.write("tcp_echo.py", TCP_ECHO);
    s.lab
        .spawn(&server, &format!("python3 {} {ECHO_PORT}", echo.display()));
    s.lab.wait_listening(&server, "tcp", ECHO_PORT);
    s.lab.udp_echo(&server, ECHO_PORT);
    s.lab.write("send.py", SEND);
    s.rules("--apply", "");
    s.daemon(ENCRYPTED_POLICY, "");

    // A Shadowsocks-like first packet: 32 bytes of salt, a sealed length and a sealed chunk.
    let sealed = random(0x5eed, 32 + 18 + 250);
    assert!(
        looks_encrypted(&sealed),
        "the test's bytes must look random"
    );
    let plain = b"hello from a plain text protocol on the same port\n";
    for proto in ["tcp", "udp"] {
        assert!(echoed(&s, proto, plain), "{proto}: plain text passes");
        assert!(
            !echoed(&s, proto, &sealed),
            "{proto}: random bytes are dropped"
        );
    }

    // proto, app, verdict, and the rule's file and line, as the flow log writes them.
    let log = s.flows_log();
    let on_port: Vec<String> = log
        .iter()
        .filter(|f| {
            f["dst"]
                .as_str()
                .is_some_and(|d| d.ends_with(&format!(":{ECHO_PORT}")))
        })
        .map(|f| {
            let rule = f["rule"].as_str().unwrap_or("-");
            format!(
                "{} {} {} {}",
                f["proto"].as_str().unwrap_or("?"),
                f["app"].as_str().unwrap_or("-"),
                f["verdict"].as_str().unwrap_or("?"),
                rule.rsplit('/').next().unwrap_or(rule)
            )
        })
        .collect();
    for want in [
        "tcp encrypted drop policy.rules:2",
        "tcp unknown accept policy.rules:3",
        "udp encrypted drop policy.rules:4",
        "udp unknown accept policy.rules:5",
    ] {
        assert!(on_port.iter().any(|l| l == want), "{want}: {on_port:?}");
    }
    s.rules("--remove", "");
}

/// The JA4 fingerprints in the daemon's TLS log so far.
fn logged_ja4(s: &Setup) -> Vec<String> {
    std::fs::read_to_string(s.lab.path("tls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["ja4"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_ja4_rule_stops_one_tls_client_and_not_another() {
    if !common::root("a_ja4_rule_stops_one_tls_client_and_not_another")
        || !common::tool("a_ja4_rule_stops_one_tls_client_and_not_another", "openssl")
        || !common::tool("a_ja4_rule_stops_one_tls_client_and_not_another", "curl")
    {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let server = s.server.clone();
    let cert = s.lab.dir.path().join("cert.pem");
    let key = s.lab.dir.path().join("key.pem");
    common::run(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
         -subj /CN=www.example.org -keyout {} -out {} 2>/dev/null",
        key.display(),
        cert.display()
    ));
    let s_server = format!(
        "openssl s_server -quiet -accept 443 -www -cert {} -key {}",
        cert.display(),
        key.display()
    );
    let tls_server = s.lab.spawn(&server, &s_server);
    s.lab.wait_listening(&server, "tcp", 443);
    s.rules("--apply", "");
    let tls_log = format!("--tls-log {}", s.lab.path("tls.jsonl").display());
    let open = "policy loc net DROP\nACCEPT loc net tcp 443 app=tls\n";
    let daemon = s.daemon(open, &tls_log);

    let curl = format!(
        "curl -sk --max-time 4 --resolve www.example.org:443:{} https://www.example.org/",
        s.server4
    );
    let s_client = format!(
        "echo | timeout 4 openssl s_client -connect {}:443 -servername www.example.org",
        s.server4
    );
    assert_eq!(s.lab.try_sh(&s.client, &curl).status.code(), Some(0));
    wait_for(Duration::from_secs(5), || logged_ja4(&s).len() == 1).expect("curl's hello logged");
    let curl_ja4 = logged_ja4(&s)[0].clone();
    assert!(curl_ja4.starts_with("t13d"), "{curl_ja4}");
    assert_eq!(s.lab.try_sh(&s.client, &s_client).status.code(), Some(0));
    wait_for(Duration::from_secs(5), || logged_ja4(&s).len() == 2).expect("s_client's logged");
    let other = logged_ja4(&s)[1].clone();
    assert_ne!(curl_ja4, other, "the two clients' hellos differ");

    // The admin blocks curl's fingerprint: SIGHUP loads the new policy.
    let ja4_policy = format!(
        "policy loc net DROP\nDROP loc net tcp 443 ja4={curl_ja4}\nACCEPT loc net tcp 443 app=tls\n"
    );
    s.lab.write("policy.rules", &ja4_policy);
    let pid = s.lab.child(daemon).id();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    // Stopped by the new line 2 (the flow log says so), not only timed out: the reload takes a moment.
    let dropped_by_ja4 = |log: &[serde_json::Value]| {
        log.iter().any(|f| {
            f["verdict"] == "drop"
                && f["rule"]
                    .as_str()
                    .is_some_and(|r| r.ends_with("policy.rules:2"))
        })
    };
    let blocked = || {
        s.lab.try_sh(&s.client, &curl).status.code() == Some(28)
            && wait_for(Duration::from_secs(2), || dropped_by_ja4(&s.flows_log())).is_some()
    };
    wait_for(Duration::from_secs(20), blocked).expect("curl is stopped by ja4=");
    // s_server serves one connection at a time and still waits for the hello that was dropped:
    // a fresh one serves the next client.
    let _ = s.lab.child(tls_server).kill();
    let _ = s.lab.child(tls_server).wait();
    s.lab.spawn(&server, &s_server);
    s.lab.wait_listening(&server, "tcp", 443);
    assert_eq!(
        s.lab.try_sh(&s.client, &s_client).status.code(),
        Some(0),
        "openssl s_client still passes"
    );

    s.rules("--remove", "");
}
