//! Faults on the daemon's own side, live: the log's disk full or stalled, and SIGHUP storms under
//! traffic. In each, every packet still gets its verdict at once (workers never wait on the log or on a
//! reload), lines that cannot be written are counted, and nothing is left in the kernel's queue.

mod common;

use std::time::Duration;

use common::{Setup, host_mode, outgate_bin, queue_stats, serial, total, wait_for};

const POLICY: &str = "\
policy loc net DROP
ACCEPT loc net udp 53
REJECT loc net tcp 80 host=blocked.example
ACCEPT loc net tcp 80
";

/// The kernel handed every packet over and got every verdict: nothing dropped, nothing left waiting, and
/// the daemon counted each one.
fn every_packet_verdicted(s: &Setup, case: &str) {
    let (lab, ns) = (&s.lab, &s.filter);
    wait_for(Duration::from_secs(10), || {
        queue_stats(lab, ns, 0).is_some_and(|q| q.queue_total == 0)
    })
    .unwrap_or_else(|| panic!("{case}: packets left in the queue"));
    let q = queue_stats(&s.lab, &s.filter, 0).unwrap();
    assert_eq!((q.queue_dropped, q.user_dropped), (0, 0), "{case}: {q:?}");
    let m = s.metrics();
    assert_eq!(
        total(&m, "outgate_packets_total") as u64,
        q.id_sequence,
        "{case}: the daemon counted every packet ({q:?})"
    );
}

fn lines(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count() as u64)
}

/// The flow log on a full disk (a 64 KiB tmpfs): traffic goes on, every packet is answered, the lines
/// that could not be written are counted and said once on stderr, and once there is room again the log
/// goes on.
#[test]
fn a_full_log_disk_drops_and_counts_lines_and_never_blocks() {
    if !common::root("a_full_log_disk_drops_and_counts_lines_and_never_blocks") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    s.any_net();
    let disk = s.lab.path("disk");
    std::fs::create_dir_all(&disk).unwrap();
    common::run(&format!(
        "mount -t tmpfs -o size=64k tmpfs {}",
        disk.display()
    ));
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.display().to_string());
    let log = disk.join("flows.jsonl");
    s.rules("--apply", "");
    let policy = s.lab.write("full.rules", POLICY);
    let err = s.lab.path("daemon.err");
    let d = s.lab.spawn(
        &s.filter.clone(),
        &format!(
            "{} run --policy {} --queues 0 --log {} --metrics 127.0.0.1:9717 2>{}",
            outgate_bin(),
            policy.display(),
            log.display(),
            err.display()
        ),
    );
    let (lab, ns) = (&s.lab, &s.filter);
    wait_for(Duration::from_secs(10), || {
        queue_stats(lab, ns, 0).is_some()
    })
    .unwrap();
    let flows = 5_000;
    s.udp_flows(flows);
    every_packet_verdicted(&s, "disk full");
    let m = s.metrics();
    let decided = total(&m, "outgate_flows_offloaded_total") as u64;
    let dropped = wait_for(Duration::from_secs(5), || {
        total(&s.metrics(), "outgate_log_lines_dropped_total") > 0.0
    });
    let m = s.metrics();
    let dropped_lines = total(&m, "outgate_log_lines_dropped_total") as u64;
    assert!(
        dropped.is_some(),
        "lines that cannot be written are counted\n{m}"
    );
    assert!(
        decided >= u64::from(flows),
        "one decision per flow: {decided}\n{m}"
    );
    let written = lines(&log);
    assert!(
        written > 0 && written < decided,
        "{written} lines on the small disk"
    );
    let said = std::fs::read_to_string(&err).unwrap_or_default();
    assert_eq!(
        said.matches("No space left on device").count(),
        1,
        "the full disk is said once, not once a line: {said}"
    );
    // Room again: the log goes on, and says so.
    std::fs::write(&log, "").unwrap();
    s.udp_flows(10);
    wait_for(Duration::from_secs(5), || lines(&log) > 0).expect("the log goes on");
    let said = std::fs::read_to_string(&err).unwrap_or_default();
    assert!(said.contains("written again"), "{said}");
    let m = s.metrics();
    assert_eq!(
        total(&m, "outgate_log_lines_dropped_total") as u64,
        dropped_lines,
        "no line dropped once there is room\n{m}"
    );
    assert!(
        s.lab.child(d).try_wait().unwrap().is_none(),
        "the daemon runs on"
    );
    drop(s);
}

/// The flow log stalled (a pipe nobody reads, as a hung disk or a stuck `tail` would): workers never
/// wait for it, every packet is answered, and what the backlog cannot hold is counted; once the log
/// moves again, lines written plus lines counted as dropped are the flows decided.
#[test]
fn a_stalled_log_never_blocks_the_workers() {
    if !common::root("a_stalled_log_never_blocks_the_workers") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    s.any_net();
    let fifo = s.lab.path("flows.fifo");
    common::run(&format!("mkfifo {}", fifo.display()));
    // Holds the pipe open for reading without reading from it.
    let stall = s.lab.spawn(
        &s.filter.clone(),
        &format!("sleep 600 <> {}", fifo.display()),
    );
    s.rules("--apply", "");
    let policy = s.lab.write("stall.rules", POLICY);
    s.lab.spawn(
        &s.filter.clone(),
        &format!(
            "{} run --policy {} --queues 0 --log {} --metrics 127.0.0.1:9717",
            outgate_bin(),
            policy.display(),
            fifo.display()
        ),
    );
    let (lab, ns) = (&s.lab, &s.filter);
    wait_for(Duration::from_secs(10), || {
        queue_stats(lab, ns, 0).is_some()
    })
    .unwrap();
    // More flows than the logger's backlog (65,536 lines) and the pipe hold.
    let flows = 80_000;
    s.udp_flows(flows);
    every_packet_verdicted(&s, "log stalled");
    let m = s.metrics();
    let decided = total(&m, "outgate_flows_offloaded_total") as u64;
    let dropped = total(&m, "outgate_log_lines_dropped_total") as u64;
    assert!(
        decided >= u64::from(flows),
        "one decision per flow: {decided}\n{m}"
    );
    assert!(dropped > 0, "the backlog overflowed and was counted\n{m}");
    // The log moves again (a reader, then the stalled one goes): every line not dropped arrives.
    let copy = s.lab.path("flows.jsonl");
    s.lab.spawn(
        &s.filter.clone(),
        &format!("sh -c 'cat {} > {}'", fifo.display(), copy.display()),
    );
    wait_for(Duration::from_secs(10), || lines(&copy) > 0).expect("the reader gets lines");
    let _ = s.lab.child(stall).kill();
    // One line per flow decided, by any line of the policy.
    let logged = total(&m, "outgate_rule_flows_total") as u64;
    let settled = wait_for(Duration::from_secs(20), || {
        lines(&copy) + total(&s.metrics(), "outgate_log_lines_dropped_total") as u64 >= logged
    });
    let m = s.metrics();
    assert!(
        settled.is_some(),
        "written {} + dropped = flows {logged}\n{m}",
        lines(&copy)
    );
    assert_eq!(
        lines(&copy) + total(&m, "outgate_log_lines_dropped_total") as u64,
        logged,
        "every line is written or counted as dropped"
    );
}

/// A storm of SIGHUPs (reload and reopen the logs) while flows come: the daemon keeps answering every
/// packet, decides each HTTP request by its host, holds its file descriptors steady, and is still
/// running with the policy in force.
#[test]
fn a_sighup_storm_under_traffic_loses_nothing() {
    if !common::root("a_sighup_storm_under_traffic_loses_nothing") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    s.any_net();
    s.www();
    s.rules("--apply", "");
    let d = s.daemon_logged(POLICY, "--metrics 127.0.0.1:9717 --http-log /dev/null");
    let pid = s.lab.child(d).id();
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    // Warm up: the metrics listener and the logs are open.
    s.udp_flows(10);
    let _ = s.metrics();
    let fds_before = fds();
    let storm = std::thread::spawn(move || {
        for _ in 0..200 {
            let _ = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let requests = 20;
    let url = format!("http://{}/x", s.server4);
    let client = s.lab.try_sh(
        &s.client,
        &format!(
            "for i in $(seq {requests}); do \
               curl -s -o /dev/null -w '%{{http_code}} ' --max-time 4 {url}; \
               curl -s -o /dev/null -w '%{{http_code}}\\n' --max-time 4 -H 'Host: blocked.example' {url}; \
             done"
        ),
    );
    let client = String::from_utf8_lossy(&client.stdout).into_owned();
    s.udp_flows(20_000);
    storm.join().unwrap();
    let answers: Vec<&str> = client.lines().collect();
    assert_eq!(answers.len(), requests, "{client}");
    assert!(
        answers.iter().all(|a| *a == "200 000"),
        "allowed requests get 200, blocked ones are reset, in every reload: {client}"
    );
    every_packet_verdicted(&s, "SIGHUP storm");
    let m = s.metrics();
    assert!(
        total(&m, "outgate_reloads_total{result=\"ok\"}") >= 1.0,
        "{m}"
    );
    assert_eq!(
        total(&m, "outgate_reloads_total{result=\"refused\"}"),
        0.0,
        "{m}"
    );
    let _ = s.metrics();
    assert_eq!(fds(), fds_before, "no descriptor leaks across the reopens");
    assert!(
        s.lab.child(d).try_wait().unwrap().is_none(),
        "the daemon runs on"
    );
}
