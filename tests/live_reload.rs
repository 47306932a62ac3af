//! Policy changes, live: SIGHUP swaps the policy in without a gap, the flows already open are held to
//! the new policy (cut when it no longer allows them, untouched when it still does), a broken file is
//! refused and the old policy keeps working; a new daemon holds the flows it finds to its own policy.
//!
//! Long-lived connections come from `tests/tools/stream.py`: a numbered line every 50 ms, recorded with
//! its arrival time by the server, so "cut within 5 s" and "no packet lost" are the server's and the
//! client kernel's word (`tcpi_total_retrans`).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Setup, gateway_mode, metric, serial, wait_for};

const STREAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/stream.py");

/// Both ports open; port 80 only for HTTP to named hosts (so its flows are decided by their payload).
const BOTH_OPEN: &str = "\
policy loc net DROP
DROP   loc net tcp 80 host=numeric
ACCEPT loc net tcp 80
ACCEPT loc net tcp 8080
";

/// 8080 closed; 80 as before.
const CLOSED_8080: &str = "\
policy loc net DROP
DROP   loc net tcp 80 host=numeric
ACCEPT loc net tcp 80
DROP   loc net tcp 8080
";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The arrival times of the lines the server got, by port.
fn arrivals(s: &Setup) -> BTreeMap<u16, Vec<f64>> {
    let mut by_port: BTreeMap<u16, Vec<f64>> = BTreeMap::new();
    let text = std::fs::read_to_string(s.lab.path("arrivals.txt")).unwrap_or_default();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if let [port, _, at] = w[..] {
            by_port
                .entry(port.parse().unwrap())
                .or_default()
                .push(at.parse().unwrap());
        }
    }
    by_port
}

fn serve(s: &mut Setup) {
    let log = s.lab.path("arrivals.txt");
    s.lab.spawn(
        &s.server.clone(),
        &format!("python3 {STREAM} serve {} 80 8080", log.display()),
    );
    s.lab.wait_listening(&s.server.clone(), "tcp", 8080);
}

/// The stream to port 80: a request to a named host first, so its flow is decided by that payload.
const WEB: &str = "80:GET / HTTP/1.1\\r\\nHost: www.example.org\\r\\n\\r\\n";

/// Starts the client's long-lived connections in the background, one per spec (see stream.py).
fn stream(s: &Setup, seconds: u32, specs: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &s.client, "python3", STREAM, "send"])
        .arg(&s.server4)
        .arg(seconds.to_string())
        .args(specs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What the client says at the end: lines sent and retransmissions, by port.
fn finish(client: Child) -> serde_json::Value {
    let o = client.wait_with_output().unwrap();
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn sighup(s: &mut Setup, daemon: usize) {
    let pid = s.lab.child(daemon).id();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
}

#[test]
fn reload_holds_open_connections_to_the_new_policy() {
    if !common::root("reload_holds_open_connections_to_the_new_policy") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    serve(&mut s);
    s.rules("--apply", "");
    let d = s.daemon_logged(BOTH_OPEN, "--metrics 127.0.0.1:9717");
    let pid = s.lab.child(d).id();
    let hash_before = s.metrics();
    let client = stream(&s, 12, &[WEB, "8080"]);
    std::thread::sleep(Duration::from_secs(3));

    // 8080 is closed by the new policy: SIGHUP, and the connection already open is cut. logrotate has
    // moved the flow log away just before: the reload reopens it.
    std::fs::write(s.lab.path("policy.rules"), CLOSED_8080).unwrap();
    std::fs::rename(s.lab.path("flows.jsonl"), s.lab.path("flows.jsonl.1")).unwrap();
    let hup = now();
    sighup(&mut s, d);
    wait_for(Duration::from_secs(5), || {
        s.daemon_err().contains("reload: policy")
    })
    .unwrap_or_else(|| panic!("the reload is reported: {}", s.daemon_err()));
    let err = s.daemon_err();
    assert!(
        err.contains("1 decided again, 1 cut"),
        "the open 8080 connection is the one flow cut: {err}"
    );
    let (code, _, _) = s.curl(&s.server4, 8080, "/");
    assert_eq!(code, 28, "a new connection to 8080 is dropped");
    let rotated = s.flows_log();
    assert!(
        rotated
            .iter()
            .any(|f| f["dst"].as_str().is_some_and(|d| d.ends_with(":8080"))
                && f["verdict"] == "drop"),
        "after the reload the flow log is written to the new file: {rotated:#?}"
    );
    assert!(
        std::fs::read_to_string(s.lab.path("flows.jsonl.1"))
            .unwrap()
            .contains(":80\""),
        "the rotated file kept the lines before"
    );
    let result = finish(client);
    let got = arrivals(&s);
    let last_8080 = got[&8080].iter().cloned().fold(0.0, f64::max);
    assert!(
        last_8080 < hup + 5.0,
        "the open connection to 8080 is cut within 5 s of the reload (last line {:.1} s after)",
        last_8080 - hup
    );
    assert!(last_8080 > hup - 1.0, "it was running until the reload");
    let after = got[&8080].iter().filter(|t| **t > hup + 5.0).count();
    assert_eq!(after, 0, "nothing of it arrives later");
    // Port 80, allowed by both policies (by its payload): every line, no retransmission.
    assert_eq!(
        got[&80].len() as u64,
        result["80"]["sent"].as_u64().unwrap(),
        "every line on port 80 arrived: {result}"
    );
    assert_eq!(
        result["80"]["retrans"], 0,
        "not one packet of the port 80 connection was lost: {result}"
    );
    assert!(
        s.lab.child(d).try_wait().unwrap().is_none(),
        "same daemon, pid {pid}"
    );
    let m = s.metrics();
    assert_eq!(
        metric(&m, "outgate_reloads_total{result=\"ok\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "outgate_reload_flows{what=\"cut\"}"),
        Some(1.0),
        "{m}"
    );
    assert_ne!(
        policy_hash(&m),
        policy_hash(&hash_before),
        "the metrics show the new policy's hash"
    );

    // A broken file is refused with FILE:LINE:COL; the policy in force stays.
    std::fs::write(
        s.lab.path("policy.rules"),
        "policy loc net DROP\nACCEPT loc lan 80\n",
    )
    .unwrap();
    sighup(&mut s, d);
    wait_for(Duration::from_secs(5), || {
        s.daemon_err().contains("reload refused")
    })
    .unwrap();
    let err = s.daemon_err();
    assert!(
        err.contains("policy.rules:2:12: unknown zone 'lan'"),
        "{err}"
    );
    let m = s.metrics();
    assert_eq!(
        metric(&m, "outgate_reloads_total{result=\"refused\"}"),
        Some(1.0),
        "{m}"
    );
    assert!(
        m.contains("outgate_reload_last_error_info{error=\"")
            && metric(&m, "outgate_reload_last_error_info") == Some(1.0),
        "{m}"
    );
    let (code, _, _) = s.curl(&s.server4, 8080, "/");
    assert_eq!(code, 28, "8080 is still closed: the old policy works");

    // A rule on the payload closes port 80 for one host: the open connection to it is cut too, on what
    // its first payload showed.
    std::fs::write(
        s.lab.path("policy.rules"),
        format!("DROP loc net tcp 80 host=www.example.org\n{CLOSED_8080}"),
    )
    .unwrap();
    let client = stream(&s, 6, &[WEB]);
    std::thread::sleep(Duration::from_secs(2));
    let hup = now();
    sighup(&mut s, d);
    let _ = finish(client);
    let late = arrivals(&s)[&80].iter().filter(|t| **t > hup + 5.0).count();
    assert_eq!(late, 0, "the named host's open connection is cut");
    assert!(
        s.lab.child(d).try_wait().unwrap().is_none(),
        "still the same daemon"
    );
}

fn policy_hash(metrics: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with("outgate_policy_info{"))
        .and_then(|l| {
            l.split("hash=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// A daemon that starts finds connections an earlier one let through: they are held to its policy.
#[test]
fn a_start_holds_open_connections_to_the_policy() {
    if !common::root("a_start_holds_open_connections_to_the_policy") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    serve(&mut s);
    s.rules("--apply", "");
    let state = s.lab.path("state");
    let state_arg = format!("--state {}", state.display());
    let first = s.daemon_logged(BOTH_OPEN, &state_arg);
    let client = stream(&s, 10, &[WEB, "8080"]);
    std::thread::sleep(Duration::from_secs(2));
    let pid = s.lab.child(first).id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    s.lab.child(first).wait().unwrap();
    // The same policy again: the payload-decided connection to 80 keeps going (the state file says this
    // policy decided it), 8080 too.
    let second = s.daemon_logged(BOTH_OPEN, &state_arg);
    std::thread::sleep(Duration::from_secs(1));
    let pid = s.lab.child(second).id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    s.lab.child(second).wait().unwrap();
    // A policy that closes 8080: that connection is cut at the start; 80 goes on.
    let start = now();
    s.daemon_logged(CLOSED_8080, &state_arg);
    let result = finish(client);
    let got = arrivals(&s);
    let err = s.daemon_err();
    assert!(err.contains("start: policy"), "{err}");
    assert_eq!(
        got[&8080].iter().filter(|t| **t > start + 5.0).count(),
        0,
        "8080 is cut at the start: {err}"
    );
    assert_eq!(
        got[&80].len() as u64,
        result["80"]["sent"].as_u64().unwrap(),
        "every line on port 80 arrived across both restarts: {result}\n{err}"
    );
}

/// `until=`: when a line expires, the flows it passed are held to the policy as it stands then (cut
/// when no other line allows them), not only new ones: an exception that ends at 18:00 ends at 18:00.
#[test]
fn a_rule_that_expires_cuts_the_flows_it_passed() {
    if !common::root("a_rule_that_expires_cuts_the_flows_it_passed") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    serve(&mut s);
    s.rules("--apply", "");
    // 8080 open for the next 6 seconds.
    let expiry = now().ceil() as u64 + 6;
    let date = Command::new("date")
        .args(["-u", "-d", &format!("@{expiry}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    let until = String::from_utf8(date.stdout).unwrap();
    let policy = BOTH_OPEN.replace(
        "ACCEPT loc net tcp 8080",
        &format!("ACCEPT loc net tcp 8080 until={}", until.trim()),
    );
    s.daemon_logged(&policy, "");
    let client = stream(&s, 12, &[WEB, "8080"]);
    let _ = finish(client);
    let got = arrivals(&s);
    let expiry = expiry as f64;
    let last_8080 = got[&8080].iter().cloned().fold(0.0, f64::max);
    assert!(
        last_8080 > expiry - 1.0,
        "8080 ran until its line expired ({:.1} s before)",
        expiry - last_8080
    );
    assert!(
        last_8080 < expiry + 3.0,
        "the open connection to 8080 is cut within 3 s of the expiry (last line {:.1} s after)",
        last_8080 - expiry
    );
    let err = s.daemon_err();
    assert!(err.contains("expired"), "{err}");
    let (code, _, _) = s.curl(&s.server4, 8080, "/");
    assert_eq!(code, 28, "a new connection to 8080 is dropped");
    assert!(
        got[&80].iter().any(|t| *t > expiry + 4.0),
        "port 80 runs on: {got:?}"
    );
}
