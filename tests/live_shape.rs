//! SHAPE end to end: the daemon decides, the kernel shapes. `outgate rules --apply --policy FILE` sets up
//! the classes, `outgate run` writes each shaped flow's class beside its verdict, and real transfers
//! through the gateway run at the class's rate while accepted ones run at full speed; a reload that
//! changes a flow's class changes its speed mid-transfer. And `run --audit`: a port the policy drops
//! passes, logged `"enforced":false`.
//!
//! Root only: without root each test says it was skipped (in CI it fails).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::shape::*;
use common::{Setup, gateway_mode, host_mode, metric, outgate_bin, serial, wait_for};

/// 8001 slow (2mbit), 8002 bulk (500kbit) when the request is HTTP (a payload term: its packets are
/// held until the request is read, then shaped), 8003 at full speed.
const SHAPED: &str = "\
option shape-rate 2mbit
class bulk 500kbit
policy loc net DROP
SHAPE loc net tcp 8001
SHAPE(bulk) loc net tcp 8002 app=http
ACCEPT loc net tcp 8003
";

fn start(s: &mut Setup, policy: &str) -> usize {
    let www = files(&s.lab);
    serve(s, &www);
    let file = s.lab.write("policy.rules", policy);
    let o = s.lab.try_sh(
        &s.filter,
        &format!(
            "{} rules --apply --mode {} {} --policy {}",
            outgate_bin(),
            s.mode,
            s.extra,
            file.display()
        ),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.daemon_logged(policy, "--metrics 127.0.0.1:9717")
}

#[test]
fn the_daemon_shapes_flows_through_their_class_both_ways() {
    if !common::root("the_daemon_shapes_flows_through_their_class_both_ways") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let (lan, wan) = devices(&s);
    let lan = lan.expect("gateway mode has --lan");
    start(&mut s, SHAPED);
    let upload = s.lab.dir.path().join("www/slow").display().to_string();
    let server = s.server4.clone();
    shaped(
        &s,
        "download, slow",
        &url(&server, SLOW_PORT, "slow"),
        None,
        &lan,
        "1:11",
        SLOW,
    );
    shaped(
        &s,
        "upload, slow",
        &url(&server, SLOW_PORT, "up"),
        Some(&upload),
        &wan,
        "1:11",
        SLOW,
    );
    shaped(
        &s,
        "download, bulk (decided by its request)",
        &url(&server, BULK_PORT, "bulk"),
        None,
        &lan,
        "1:12",
        BULK,
    );
    unshaped(
        &s,
        "download, accepted",
        &url(&server, ACCEPT_PORT, "big"),
        None,
        &lan,
        "1:11",
    );
    let server6 = s.server6.clone();
    shaped(
        &s,
        "download over IPv6, slow",
        &url(&server6, SLOW_PORT, "slow"),
        None,
        &lan,
        "1:11",
        SLOW,
    );

    // What the admin sees: the flow log names the class, the metrics count shaped flows by class.
    let log = s.flows_log();
    let slow = log
        .iter()
        .filter(|f| f["verdict"] == "shape" && f["class"] == "slow")
        .count();
    let bulk = log
        .iter()
        .filter(|f| f["verdict"] == "shape" && f["class"] == "bulk")
        .count();
    assert_eq!((slow, bulk), (3, 1), "{log:#?}");
    let m = s.metrics();
    assert_eq!(
        metric(
            &m,
            "outgate_shaped_flows_total{class=\"slow\",rate=\"2mbit\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "outgate_shaped_flows_total{class=\"bulk\",rate=\"500kbit\"}"
        ),
        Some(1.0),
        "{m}"
    );
}

/// A reload that moves an open flow out of its class, or into one, changes its speed at once: the
/// class bits are held to the policy like the verdict.
#[test]
fn a_reload_moves_open_flows_between_classes() {
    if !common::root("a_reload_moves_open_flows_between_classes") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let d = start(&mut s, SHAPED);
    let pid = s.lab.child(d).id();
    let reload = |s: &Setup, policy: &str| {
        std::fs::write(s.lab.path("policy.rules"), policy).unwrap();
        let before = s.daemon_err().matches("reload: policy").count();
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        wait_for(Duration::from_secs(5), || {
            s.daemon_err().matches("reload: policy").count() > before
        })
        .unwrap_or_else(|| panic!("{}", s.daemon_err()));
    };
    // 20 MB: 80 s at 2mbit, a fraction of a second unshaped.
    let big = |port| {
        Command::new("ip")
            .args(["netns", "exec", &s.client, "curl", "-sS", "-o", "/dev/null"])
            .args(["--max-time", "20", "-w", "%{size_download}"])
            .arg(url(&s.server4, port, "big"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Shaped, then accepted: the rest of the download runs at full speed.
    let slow = big(SLOW_PORT);
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    reload(
        &s,
        &SHAPED.replace("SHAPE loc net tcp 8001", "ACCEPT loc net tcp 8001"),
    );
    let o = slow.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the download finished once its flow was no longer shaped"
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "20000000");
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "{:?} after the reload",
        t.elapsed()
    );

    // Accepted, then shaped: the rest of the download crawls.
    let fast_then_slow = SHAPED.replace("ACCEPT loc net tcp 8003", "SHAPE loc net tcp 8003");
    let www = s.lab.dir.path().join("www");
    std::fs::write(www.join("bigger"), vec![b'x'; 400_000_000]).unwrap();
    let mut accepted = Command::new("ip")
        .args(["netns", "exec", &s.client, "curl", "-sS", "-o", "/dev/null"])
        .args(["--max-time", "12", "-w", "%{size_download}"])
        .arg(url(&s.server4, ACCEPT_PORT, "bigger"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    reload(&s, &fast_then_slow);
    let before = class_bytes(&s.lab, &s.filter, &devices(&s).0.unwrap(), "1:11");
    std::thread::sleep(Duration::from_secs(3));
    let after = class_bytes(&s.lab, &s.filter, &devices(&s).0.unwrap(), "1:11");
    let rate = (after - before) as f64 / 3.0;
    assert!(
        (0.7 * SLOW..=1.3 * SLOW).contains(&rate),
        "after the reload the open download goes through the slow class: {rate:.0} B/s"
    );
    let _ = accepted.kill();
    let _ = accepted.wait();

    // A class the ruleset's traffic control does not have: the reload says so (its flows would pass
    // at full speed until `rules --apply --policy` is run again).
    reload(
        &s,
        &fast_then_slow.replace(
            "class bulk 500kbit",
            "class bulk 500kbit\nclass video 4mbit",
        ),
    );
    let err = s.daemon_err();
    assert!(
        err.contains("reload: warning: the installed ruleset shapes traffic classes slow 2mbit, bulk 500kbit and the policy has slow 2mbit, bulk 500kbit, video 4mbit"),
        "{err}"
    );
}

/// Host mode: the host's own upload through a SHAPE rule leaves at the class's rate.
#[test]
fn the_daemon_shapes_a_hosts_uploads() {
    if !common::root("the_daemon_shapes_a_hosts_uploads") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    let dev = host_device(&s);
    s.extra = format!("--wan {dev}");
    start(&mut s, SHAPED);
    let upload = s.lab.dir.path().join("www/slow").display().to_string();
    let server = s.server4.clone();
    shaped(
        &s,
        "host upload, slow",
        &url(&server, SLOW_PORT, "up"),
        Some(&upload),
        &dev,
        "1:11",
        SLOW,
    );
    unshaped(
        &s,
        "host upload, accepted",
        &url(&server, ACCEPT_PORT, "up"),
        Some(&upload),
        &dev,
        "1:11",
    );
}

/// `rules --apply --audit` and `run --audit`: a port the policy drops passes, its flow logged with the
/// drop and `"enforced":false`; the ruleset, the first log line and the metrics say audit, and a daemon
/// that would enforce refuses that ruleset.
#[test]
fn audit_passes_what_the_policy_drops_and_says_so() {
    if !common::root("audit_passes_what_the_policy_drops_and_says_so") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let www = files(&s.lab);
    serve(&mut s, &www);
    s.rules("--apply", "--audit");
    assert!(
        s.lab
            .sh(&s.filter, "iptables -S OUTGATE")
            .contains("audit=yes"),
        "the ruleset says it is for an audit"
    );
    let policy = "policy loc net DROP\nACCEPT loc net tcp 8003\n";
    let enforcing = s.lab.try_sh(
        &s.filter,
        &format!(
            "{} run --policy {} --queues 0",
            outgate_bin(),
            s.lab.write("p.rules", policy).display()
        ),
    );
    assert!(!enforcing.status.success());
    assert!(
        String::from_utf8_lossy(&enforcing.stderr)
            .contains("mode: the ruleset was applied to audit"),
        "{}",
        String::from_utf8_lossy(&enforcing.stderr)
    );
    s.daemon_logged(policy, "--audit --metrics 127.0.0.1:9717");
    let (code, _, body) = s.curl(&s.server4, SLOW_PORT, "/bulk");
    assert_eq!(code, 0, "the dropped port passes under --audit");
    assert_eq!(body.len(), 250_000);
    let log = s.flows_log();
    let line = log
        .iter()
        .find(|f| f["dst"].as_str().is_some_and(|d| d.ends_with(":8001")))
        .unwrap_or_else(|| panic!("{log:#?}"));
    assert_eq!(line["verdict"], "drop", "{line}");
    assert_eq!(line["enforced"], false, "{line}");
    assert_eq!(line["applied"], "accept", "{line}");
    let m = s.metrics();
    assert_eq!(metric(&m, "outgate_mode{mode=\"audit\"}"), Some(1.0), "{m}");
    assert!(s.daemon_err().contains("AUDIT mode"), "{}", s.daemon_err());
}

/// A firewall reload that flushes the mangle table (as `iptables -t mangle -F` or a tool that rewrites
/// it does) takes away the jump to OUTGATE-SHAPE and its CLASSIFY rules: shaped flows would then pass
/// at full speed. The daemon puts them back, as it does the filter and raw jumps, and says so.
#[test]
fn a_flushed_mangle_table_is_put_back() {
    if !common::root("a_flushed_mangle_table_is_put_back") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let (lan, _) = devices(&s);
    let lan = lan.expect("gateway mode has --lan");
    start(&mut s, SHAPED);
    for tool in ["iptables", "ip6tables"] {
        s.lab.sh(
            &s.filter,
            &format!("{tool} -t mangle -F POSTROUTING && {tool} -t mangle -F OUTGATE-SHAPE"),
        );
        s.lab.sh(
            &s.filter,
            &format!("{tool} -t mangle -I POSTROUTING 1 -j ACCEPT"),
        );
    }
    let first = || s.lab.sh(&s.filter, "iptables -t mangle -S POSTROUTING 1");
    wait_for(Duration::from_secs(8), || {
        first().contains("-j OUTGATE-SHAPE")
    })
    .unwrap_or_else(|| panic!("the jump to OUTGATE-SHAPE is put back first: {}", first()));
    wait_for(Duration::from_secs(2), || {
        s.daemon_err().contains("OUTGATE-SHAPE")
    })
    .unwrap_or_else(|| panic!("the repair is logged: {}", s.daemon_err()));
    let server = s.server4.clone();
    shaped(
        &s,
        "download, slow, after the mangle table was flushed",
        &url(&server, SLOW_PORT, "slow"),
        None,
        &lan,
        "1:11",
        SLOW,
    );
    let server6 = s.server6.clone();
    shaped(
        &s,
        "download over IPv6, slow, after the mangle table was flushed",
        &url(&server6, SLOW_PORT, "slow"),
        None,
        &lan,
        "1:11",
        SLOW,
    );
    // The admin's own rule stays, after outgate's jumps.
    let mangle = s.lab.sh(&s.filter, "iptables -t mangle -S POSTROUTING");
    assert!(mangle.contains("-A POSTROUTING -j ACCEPT"), "{mangle}");
}
