//! When things go wrong, live: a worker that dies or hangs, another firewall that pushes outgate's jump
//! down, and other software's marks in outgate's bits. Each ends the way the README says.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{gateway_mode, host_mode, metric, outgate_bin, queue_stats, serial, wait_for};

const WEB: &str = "\
policy loc net DROP
DROP   loc net tcp 80 host=numeric
ACCEPT loc net tcp 80
";

/// A worker that panics (a test build's injected fault) ends the daemon with an error, so the fail mode
/// applies, for every queue: fail-closed stops new flows, fail-open lets them pass.
#[test]
fn a_dead_worker_ends_the_daemon_and_the_fail_mode_applies() {
    if !common::root("a_dead_worker_ends_the_daemon_and_the_fail_mode_applies") {
        return;
    }
    let _g = serial();
    for (fail, passes_after) in [("--fail-closed", false), ("--fail-open", true)] {
        let mut s = gateway_mode();
        s.www();
        s.rules("--apply", fail);
        // The fault is armed through the daemon's environment: its queue's worker panics at the first packet.
        let err = s.lab.path("daemon.err");
        let d = s.lab.spawn(
            &s.filter.clone(),
            &format!(
                "env OUTGATE_TEST_FAULT=panic:0 {} run --policy {} --queues 0 {fail} 2>{}",
                outgate_bin(),
                s.lab.write("policy.rules", WEB).display(),
                err.display()
            ),
        );
        let (lab, ns) = (&s.lab, &s.filter);
        wait_for(Duration::from_secs(10), || {
            queue_stats(lab, ns, 0).is_some()
        })
        .unwrap();
        let _ = s.curl(&s.server4, 80, "/x");
        let status = wait_for(Duration::from_secs(5), || {
            s.lab.child(d).try_wait().unwrap().is_some()
        });
        assert!(
            status.is_some(),
            "{fail}: the daemon ends when a worker dies"
        );
        let code = s.lab.child(d).wait().unwrap().code();
        assert_eq!(
            code,
            Some(1),
            "{fail}: it ends with an error, so systemd restarts it"
        );
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        assert!(
            text.contains("the worker of NFQUEUE 0 failed") && text.contains("fault injected"),
            "{fail}: {text}"
        );
        assert!(
            queue_stats(&s.lab, &s.filter, 0).is_none(),
            "{fail}: the queue is let go"
        );
        let (code, _, _) = s.curl(&s.server4, 80, "/x");
        assert_eq!(
            code == 0,
            passes_after,
            "{fail}: a new flow after the worker died (curl {code})"
        );
        s.rules("--remove", fail);
    }
}

/// A worker that hangs stops feeding systemd's watchdog (and the metrics say it is down), so systemd
/// kills and restarts the daemon.
#[test]
fn a_stuck_worker_starves_the_watchdog() {
    if !common::root("a_stuck_worker_starves_the_watchdog") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    s.www();
    s.rules("--apply", "");
    let notify = s.lab.path("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let cmd = format!(
        "env NOTIFY_SOCKET={} WATCHDOG_USEC=400000 OUTGATE_TEST_FAULT=hang:0 {} run --policy {} --queues 0 --metrics 127.0.0.1:9717",
        notify.display(),
        outgate_bin(),
        s.lab.write("policy.rules", WEB).display()
    );
    s.lab.spawn(&s.filter.clone(), &cmd);
    let mut seen = Vec::new();
    let heard = |seen: &mut Vec<String>, within: Duration| {
        let until = Instant::now() + within;
        let mut buf = [0u8; 256];
        while Instant::now() < until {
            if let Ok(n) = listener.recv(&mut buf) {
                // One state per line (`sd_notify(3)`): "READY=1\n".
                seen.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_owned());
            }
        }
    };
    heard(&mut seen, Duration::from_secs(2));
    assert!(seen.iter().any(|m| m == "READY=1"), "{seen:?}");
    assert!(
        seen.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
        "fed while the worker answers: {seen:?}"
    );
    // One packet, and the worker hangs.
    let _ = s.lab.try_sh(
        &s.client,
        &format!("curl -s --max-time 1 http://{}/x", s.server4),
    );
    std::thread::sleep(Duration::from_secs(4));
    // What was sent before the worker counted as stuck waits in the socket: read it away first.
    let mut buf = [0u8; 256];
    while listener.recv(&mut buf).is_ok() {}
    seen.clear();
    heard(&mut seen, Duration::from_secs(2));
    assert!(
        !seen.iter().any(|m| m == "WATCHDOG=1"),
        "a stuck worker must starve the watchdog: {seen:?}"
    );
    let m = s.metrics();
    assert_eq!(
        metric(&m, "outgate_worker_up{queue=\"0\"}"),
        Some(0.0),
        "{m}"
    );
}

/// Another firewall puts an ESTABLISHED accept above outgate's jump (ufw, firewalld and Docker do so on
/// every reload): the daemon puts its jump back first within seconds, logs and counts it, and the flows
/// it reads are still read.
#[test]
fn the_jump_is_kept_first() {
    if !common::root("the_jump_is_kept_first") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    s.www();
    s.rules("--apply", "");
    s.daemon_logged(WEB, "--metrics 127.0.0.1:9717");
    s.lab.sh(
        &s.filter,
        "iptables -I FORWARD 1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    );
    let first = || s.lab.sh(&s.filter, "iptables -S FORWARD 1");
    wait_for(Duration::from_secs(8), || first().contains("-j OUTGATE"))
        .unwrap_or_else(|| panic!("the jump is put back first: {}", first()));
    // Both families are checked before the repairs are reported.
    wait_for(Duration::from_secs(2), || {
        s.daemon_err().contains("ruleset:")
    })
    .unwrap_or_else(|| panic!("the repair is logged: {}", s.daemon_err()));
    let m = s.metrics();
    assert!(
        metric(&m, "outgate_ruleset_repairs_total").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    // The admin's accept still stands (second now), and a numeric host is still read and dropped.
    let forward = s.lab.sh(&s.filter, "iptables -S FORWARD");
    assert!(
        forward.contains("--ctstate RELATED,ESTABLISHED -j ACCEPT"),
        "{forward}"
    );
    let (code, _, _) = s.curl(&s.server4, 80, "/x");
    assert_eq!(
        code, 28,
        "the request to a numeric host is read, and dropped"
    );
}

/// Another program's mark bits inside outgate's (mwan3's 0x100/0x3f00) would read as "accept": `rules
/// --apply` refuses and names the rule; with outgate's bits moved (`--mark-mask 0xf000` on both
/// commands) the filter works beside it.
#[test]
fn foreign_marks_are_refused_and_a_free_mask_works() {
    if !common::root("foreign_marks_are_refused_and_a_free_mask_works") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    s.www();
    let dir = s.lab.dir.path().join("www");
    s.lab.http_server(&s.server.clone(), 8080, &dir);
    s.lab.sh(
        &s.filter,
        "iptables -t mangle -A FORWARD -j MARK --set-xmark 0x100/0x3f00",
    );
    let apply = |extra: &str| {
        s.lab.try_sh(
            &s.filter,
            &format!(
                "{} rules --mode gateway {} --queues 0 {extra} --apply",
                outgate_bin(),
                s.extra
            ),
        )
    };
    let o = apply("");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "apply refuses: {err}");
    assert!(
        err.contains("--set-xmark 0x100/0x3f00") && err.contains("mangle"),
        "the error names the rule: {err}"
    );
    assert!(
        !s.lab.sh(&s.filter, "iptables-save").contains("OUTGATE"),
        "nothing was applied"
    );
    let o = apply("--mark-mask 0xf000");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.daemon(
        "policy loc net DROP\nACCEPT loc net tcp 80\n",
        "--mark-mask 0xf000",
    );
    assert_eq!(s.curl(&s.server4, 80, "/x").0, 0, "80 is open");
    assert_eq!(
        s.curl(&s.server4, 8080, "/x").0,
        28,
        "8080 is dropped, mwan3's mark or not"
    );
}
