//! Faults from the kernel's side, live: the queue's netlink socket closed under the daemon, ENOBUFS
//! storms, a full queue, and SIGHUP storms under traffic. Each ends the way the README's "When things
//! go wrong" says, with nothing stranded in the kernel's queue.

mod common;

use std::time::Duration;

use common::{Setup, gateway_mode, host_mode, outgate_bin, queue_stats, serial, wait_for};

/// Closes a descriptor inside another process (ptrace; see the script).
const CLOSE_FD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/close_fd.py");

const WEB: &str = "\
policy loc net DROP
DROP   loc net tcp 80 host=blocked.example
ACCEPT loc net tcp 80
ACCEPT loc net udp 9000
";

/// The file descriptor, in process `pid`, of the netlink socket bound to NFQUEUE `queue` in `ns`: the
/// queue's peer port id (`/proc/net/netfilter/nfnetlink_queue`) names the socket in `/proc/net/netlink`,
/// whose inode names the descriptor.
fn queue_fd(s: &Setup, pid: u32, queue: u16) -> u32 {
    let queues = s
        .lab
        .sh(&s.filter, "cat /proc/net/netfilter/nfnetlink_queue");
    let portid = queues
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&queue.to_string().as_str()))
        .and_then(|f| f.get(1).map(|p| p.to_string()))
        .expect("the queue is bound");
    let sockets = s.lab.sh(&s.filter, "cat /proc/net/netlink");
    let inode = sockets
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&"12") && f.get(2) == Some(&portid.as_str()))
        .and_then(|f| f.get(9).map(|i| i.to_string()))
        .expect("the queue's socket is listed");
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == want))
        .and_then(|e| e.file_name().to_string_lossy().parse().ok())
        .expect("the daemon holds the queue's socket")
}

/// The queue's netlink socket closed under the daemon (by `tests/tools/close_fd.py`, through ptrace, as
/// a bug elsewhere in the process could): the kernel lets the queue go, so the daemon ends with an error naming the queue,
/// for systemd to restart it, instead of running on with no queue, and the fail mode applies meanwhile.
#[test]
fn a_queue_socket_closed_under_the_daemon_ends_it() {
    if !common::root("a_queue_socket_closed_under_the_daemon_ends_it") {
        return;
    }
    let _g = serial();
    for (fail, passes_after) in [("--fail-closed", false), ("--fail-open", true)] {
        let mut s = gateway_mode();
        s.www();
        s.rules("--apply", fail);
        let d = s.daemon_logged(WEB, fail);
        let (code, _, _) = s.curl(&s.server4, 80, "/x");
        assert_eq!(code, 0, "{fail}: HTTP passes before the fault");
        let pid = s.lab.child(d).id();
        let fd = queue_fd(&s, pid, 0);
        let closed = common::run(&format!("python3 {CLOSE_FD} {pid} {fd} 2>&1"));
        assert!(
            closed.contains(&format!("close({fd}) = 0")),
            "closed fd {fd}: {closed}"
        );
        let ended = wait_for(Duration::from_secs(5), || {
            s.lab.child(d).try_wait().unwrap().is_some()
        });
        if ended.is_none() {
            let _ = s.lab.child(d).kill();
        }
        assert!(
            ended.is_some(),
            "{fail}: the daemon ends when its queue's socket is gone: {}",
            s.daemon_err()
        );
        let code = s.lab.child(d).wait().unwrap().code();
        assert_eq!(
            code,
            Some(1),
            "{fail}: it ends with an error, so systemd restarts it: {}",
            s.daemon_err()
        );
        let err = s.daemon_err();
        assert!(
            err.contains("the worker of NFQUEUE 0 failed"),
            "{fail}: stderr names the queue: {err}"
        );
        let (code, _, _) = s.curl(&s.server4, 80, "/x");
        assert_eq!(
            code == 0,
            passes_after,
            "{fail}: a new flow once the socket is gone (curl {code})"
        );
        s.rules("--remove", fail);
    }
}

/// A receiver of UDP on port 9000 in the server namespace; its count is in `file` once it is idle.
fn receiver(s: &mut Setup, file: &str) -> std::path::PathBuf {
    let out = s.lab.path(file);
    let blast = common::udp_blast();
    s.lab.spawn(
        &s.server.clone(),
        &format!("sh -c '{blast} recv 9000 1500 > {}'", out.display()),
    );
    s.lab.wait_listening(&s.server.clone(), "udp", 9000);
    out
}

fn received(out: &std::path::Path) -> u64 {
    wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(out).is_ok_and(|t| t.contains("received"))
    })
    .expect("the receiver reports");
    let text = std::fs::read_to_string(out).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("received ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("receiver: {text}"))
}

/// The daemon stopped (SIGSTOP) while a blast arrives, with a small socket buffer (ENOBUFS) or a short
/// queue (queue full): the kernel drops what does not fit, or passes it with --fail-open, and counts it;
/// once the daemon runs again it counts the overrun, answers every packet it was handed (nothing is left
/// in the queue) and decides new flows; its packet count is what the kernel handed it.
#[test]
fn enobufs_storms_and_a_full_queue_end_as_documented() {
    if !common::root("enobufs_storms_and_a_full_queue_end_as_documented") {
        return;
    }
    let _g = serial();
    let blast = common::udp_blast();
    // (what, daemon options, fail mode)
    let cases = [
        ("ENOBUFS", "--rcvbuf-mib 1", "--fail-closed"),
        ("ENOBUFS", "--rcvbuf-mib 1", "--fail-open"),
        ("queue full", "--queue-maxlen 300", "--fail-closed"),
        ("queue full", "--queue-maxlen 300", "--fail-open"),
    ];
    for (what, opts, fail) in cases {
        let case = format!("{what} {fail}");
        let mut s = host_mode();
        s.www();
        let out = receiver(&mut s, "recv.txt");
        s.rules("--apply", fail);
        let d = s.daemon_logged(WEB, &format!("{opts} {fail} --metrics 127.0.0.1:9717"));
        let pid = s.lab.child(d).id();
        common::run(&format!("kill -STOP {pid}"));
        let sent_total = 20_000;
        let sent = s.lab.sh(
            &s.client,
            &format!("{blast} send {} 9000 2000 {sent_total} 64", s.server4),
        );
        assert!(sent.starts_with(&format!("sent {sent_total} ")), "{sent}");
        let stalled = queue_stats(&s.lab, &s.filter, 0).unwrap();
        common::run(&format!("kill -CONT {pid}"));
        let got = received(&out);
        let (lab, ns) = (&s.lab, &s.filter);
        wait_for(Duration::from_secs(10), || {
            queue_stats(lab, ns, 0).is_some_and(|q| q.queue_total == 0)
        })
        .unwrap_or_else(|| panic!("{case}: packets left in the queue: {stalled:?}"));
        let q = queue_stats(&s.lab, &s.filter, 0).unwrap();
        let m = s.metrics();
        let seen = common::total(&m, "outgate_packets_total") as u64;
        if what == "ENOBUFS" {
            assert!(
                common::total(&m, "outgate_enobufs_total") >= 1.0,
                "{case}: the overrun is counted ({q:?})\n{m}"
            );
        }
        if fail == "--fail-open" {
            // The kernel passes what did not fit and counts none of it: the daemon saw fewer.
            assert!(seen < sent_total, "{case}: the daemon saw {seen} ({q:?})");
            assert_eq!(
                got, sent_total,
                "{case}: fail-open passes what did not fit ({q:?})"
            );
        } else {
            let lost = q.user_dropped + q.queue_dropped;
            assert!(
                lost > 0,
                "{case}: the kernel counts what did not fit: {q:?}"
            );
            assert_eq!(
                seen,
                q.id_sequence - q.user_dropped,
                "{case}: the daemon counts every packet the kernel handed it ({q:?})\n{m}"
            );
            assert_eq!(
                got,
                sent_total - lost,
                "{case}: fail-closed drops exactly what the kernel counts ({q:?})"
            );
        }
        let (code, _, _) = s.curl(&s.server4, 80, "/x");
        assert_eq!(code, 0, "{case}: new flows are decided again");
        s.rules("--remove", fail);
    }
}

/// `kill -9` under load, while the daemon holds a blocked request's first bytes (the Host header not
/// complete yet) and new flows pour in: the kernel lets the queue go and drops what it held, so the
/// blocked request never reaches the server, not even when the client retransmits it to the restarted
/// daemon (which sees it from its middle); fail-closed stops new flows meanwhile; the restarted daemon
/// decides again, and nothing is left in the queue.
#[test]
fn kill_9_under_load_strands_and_leaks_nothing() {
    if !common::root("kill_9_under_load_strands_and_leaks_nothing") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    s.any_net();
    let www = s.www_dir();
    let served = s.lab.path("server.log");
    s.lab.spawn(
        &s.server.clone(),
        &format!(
            "sh -c 'python3 -u -m http.server 80 --bind :: --directory {} 2> {}'",
            www.display(),
            served.display()
        ),
    );
    s.lab.wait_listening(&s.server.clone(), "tcp", 80);
    s.rules("--apply", "");
    let policy = "\
policy loc net DROP
ACCEPT loc net udp 53
REJECT loc net tcp 80 host=blocked.example
ACCEPT loc net tcp 80
";
    let d = s.daemon_logged(policy, "");
    // A client that sends the request in two parts, 3 s apart: the daemon holds the first.
    let slow = s.lab.write(
        "slow.py",
        &format!(
            "import socket, time\n\
             c = socket.create_connection(('{}', 80), timeout=20)\n\
             c.sendall(b'GET /blocked HTTP/1.1\\r\\nHost: blocked.exa')\n\
             time.sleep(3)\n\
             try:\n    c.sendall(b'mple\\r\\n\\r\\n'); print(c.recv(100))\n\
             except OSError as e:\n    print('error', e)\n",
            s.server4
        ),
    );
    let said = s.lab.path("slow.out");
    let client = s.lab.spawn(
        &s.client.clone(),
        &format!(
            "sh -c 'python3 {} > {} 2>&1'",
            slow.display(),
            said.display()
        ),
    );
    let agent = format!("{} bench-agent udp --flows 200000", outgate_bin());
    s.lab.spawn(&s.client.clone(), &agent);
    let (lab, ns) = (&s.lab, &s.filter);
    wait_for(Duration::from_secs(5), || {
        queue_stats(lab, ns, 0).is_some_and(|q| q.id_sequence > 2_000)
    })
    .expect("the blast is under way");
    s.lab.child(d).kill().unwrap(); // SIGKILL
    s.lab.child(d).wait().unwrap();
    let (lab, ns) = (&s.lab, &s.filter);
    wait_for(Duration::from_secs(5), || queue_stats(lab, ns, 0).is_none())
        .expect("the queue is let go");
    let (code, _, _) = s.curl(&s.server4, 80, "/x");
    assert_ne!(code, 0, "fail-closed: no new flow while no daemon runs");
    s.daemon_logged(policy, "");
    let ended = wait_for(Duration::from_secs(40), || {
        s.lab.child(client).try_wait().unwrap().is_some()
    });
    let out = std::fs::read_to_string(&said).unwrap_or_default();
    assert!(ended.is_some(), "the slow client ends: {out}");
    eprintln!("the slow client: {out}");
    let (code, _, _) = s.curl(&s.server4, 80, "/x");
    assert_eq!(code, 0, "the restarted daemon decides new flows");
    let (lab, ns) = (&s.lab, &s.filter);
    wait_for(Duration::from_secs(20), || {
        queue_stats(lab, ns, 0).is_some_and(|q| q.queue_total == 0)
    })
    .expect("nothing is left in the queue");
    let log = std::fs::read_to_string(&served).unwrap_or_default();
    assert!(log.contains("GET /x"), "the server log works: {log}");
    assert!(
        !log.contains("/blocked"),
        "the blocked request leaked: {log}"
    );
}
