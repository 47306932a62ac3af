//! `outgate bench --live` for real (root): a short run gives every figure, and nothing of it is left
//! behind, neither after a run nor after a signal (SIGINT, SIGHUP, SIGTERM) at any moment of one.

mod common;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{outgate_bin, serial};

/// The bench's namespaces of process `pid` that still exist.
fn namespaces_of(pid: u32) -> Vec<String> {
    let list = common::run("ip netns list");
    let prefix = format!("outgate-bench-{pid}-");
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_short_live_bench_reports_every_figure_and_leaves_nothing() {
    if !common::root("a_short_live_bench_reports_every_figure_and_leaves_nothing") {
        return;
    }
    let _g = serial();
    let child = Command::new(outgate_bin())
        .args([
            "bench",
            "--live",
            "--queues",
            "1",
            "--flows",
            "5000",
            "--tcp-secs",
            "0.3",
            "--samples",
            "50",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn outgate bench");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench --live failed: {stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let rows = report["rows"].as_array().expect("rows");
    let cases: Vec<&str> = rows.iter().map(|r| r["case"].as_str().unwrap()).collect();
    assert_eq!(cases, ["kernel", "outgate"], "{report:#}");
    for row in rows {
        assert_eq!(row["queues"], 1, "{row:#}");
        for field in [
            "udp_sent",
            "udp_delivered",
            "udp_delivered_per_s",
            "udp_delivered_fraction",
            "tcp_connections_per_s",
            "bulk_mb_per_s",
            "connect_median_us",
            "connect_p99_us",
        ] {
            let v = row[field].as_f64();
            assert!(v.is_some_and(|v| v > 0.0), "{field} in {row:#}");
        }
        assert_eq!(row["udp_sent"], 5000, "{row:#}");
        for field in ["queue_dropped", "user_dropped", "ratio"] {
            assert!(row.get(field).is_some(), "{field} in {row:#}");
        }
    }
    let outgate = &rows[1];
    assert!(outgate["queue_dropped"].is_u64(), "{outgate:#}");
    assert!(outgate["user_dropped"].is_u64(), "{outgate:#}");
    assert!(
        outgate["ratio"]["udp_delivered_per_s"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{outgate:#}"
    );
    assert!(report.get("recommended_queues").is_some(), "{report:#}");
    assert!(report["why"].as_str().is_some_and(|w| !w.is_empty()));
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

/// Sends SIG`signal` to the bench and waits at most 20 s for it to end (`when` completes the message).
fn signal_and_wait(child: &mut Child, signal: &str, when: &str) -> ExitStatus {
    common::run(&format!("kill -{signal} {}", child.id()));
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the bench did not stop on SIG{signal}{when}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigint_in_the_middle_removes_the_namespaces() {
    if !common::root("sigint_in_the_middle_removes_the_namespaces") {
        return;
    }
    signal_in_the_middle("INT");
}

/// A closed terminal or SSH session (SIGHUP) cleans up as Ctrl-C does; before, the bench died and
/// left its namespaces, with a daemon still bound to its queue in one of them.
#[test]
fn sighup_in_the_middle_removes_the_namespaces() {
    if !common::root("sighup_in_the_middle_removes_the_namespaces") {
        return;
    }
    signal_in_the_middle("HUP");
}

fn signal_in_the_middle(signal: &str) {
    let _g = serial();
    let mut child = Command::new(outgate_bin())
        .args(["bench", "--live", "--queues", "1", "--tcp-secs", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn outgate bench");
    let pid = child.id();
    // The second case is outgate's: its daemon runs in the client namespace.
    let outgate_ns = format!("outgate-bench-{pid}-2c");
    let start = Instant::now();
    while !namespaces_of(pid).contains(&outgate_ns) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the bench never reached its outgate case"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the bench ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let status = signal_and_wait(&mut child, signal, "");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(namespaces_of(pid), Vec::<String>::new());
}

/// SIGTERM at any moment of the start, also while a namespace is being made or a process started in
/// one: nothing is left. (The race this guards, a namespace made or a daemon started just after the
/// handler's sweep, was found by reading the code; it is narrow, and this test did not catch it on the
/// code before the fix in three runs.)
#[test]
fn sigterm_at_any_moment_leaves_no_namespace() {
    if !common::root("sigterm_at_any_moment_leaves_no_namespace") {
        return;
    }
    let _g = serial();
    for delay in [
        0u64, 20, 40, 60, 80, 100, 130, 160, 200, 250, 300, 400, 600, 900,
    ] {
        let mut child = Command::new(outgate_bin())
            .args([
                "bench",
                "--live",
                "--queues",
                "1",
                "--flows",
                "2000",
                "--tcp-secs",
                "0.2",
                "--samples",
                "20",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn outgate bench");
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(delay));
        signal_and_wait(&mut child, "TERM", &format!(" {delay} ms in"));
        // What a leak would leave: a namespace of this bench, or a process of it still running.
        std::thread::sleep(Duration::from_millis(300));
        let left = namespaces_of(pid);
        for ns in &left {
            let _ = common::kill_all_in(ns);
            common::run(&format!("ip netns del {ns}"));
        }
        assert_eq!(left, Vec::<String>::new(), "SIGTERM {delay} ms in");
    }
}
