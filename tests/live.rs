//! The live filter for real: namespaces joined by veth pairs, the ruleset `outgate rules` makes, the daemon
//! on real NFQUEUE, real clients and servers (curl and python's http.server, ping, UDP, a sendmmsg blast).
//!
//! Needs root (CI is root) plus iptables, iproute2, curl, ping, python3 and a C compiler (`.ci/run`
//! installs them). The tests share the machine's two cores, so they take turns (`serial`).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Setup, gateway_mode, host_mode, outgate_bin, queue_stats, serial, wait_for};

/// Allows HTTP, DNS and ping; rejects tcp 81; everything else is dropped by the policy.
const POLICY: &str = "\
policy loc net DROP
ACCEPT loc net 80 # HTTP
ACCEPT loc net 53 # DNS
ACCEPT loc net ICMP 8 # ping, as the article writes it
ACCEPT loc net icmp6 echo-request
REJECT loc net tcp 81 # fails at once
ACCEPT loc net udp 9000 # the blast
";

/// What a user checks: allowed ports work, blocked ports fail the way the policy says, ping and DNS pass,
/// and the log names the line behind each flow.
fn allowed_and_blocked(mut s: Setup) {
    let www = s.lab.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello through outgate\n").unwrap();
    for port in [80, 81, 8080] {
        s.lab.http_server(&s.server.clone(), port, &www);
    }
    s.lab.udp_echo(&s.server.clone(), 53);
    s.rules("--apply", "");
    s.daemon(POLICY, "--metrics 127.0.0.1:9717");

    for server in [s.server4.clone(), s.server6.clone()] {
        let (code, _, body) = s.curl(&server, 80, "/hello.txt");
        assert_eq!(
            (code, body.as_str()),
            (0, "hello through outgate\n"),
            "{} mode, HTTP to {server}",
            s.mode
        );
        let (code, secs, _) = s.curl(&server, 8080, "/hello.txt");
        assert_eq!(
            code, 28,
            "{} mode, {server}:8080 is dropped: curl times out",
            s.mode
        );
        assert!(
            secs >= 1.5,
            "a dropped connection hangs until the timeout ({secs:.2} s)"
        );
        let (code, secs, _) = s.curl(&server, 81, "/hello.txt");
        assert_eq!(
            code, 7,
            "{} mode, {server}:81 is rejected: connection refused",
            s.mode
        );
        assert!(
            secs < 1.0,
            "a rejected connection fails at once ({secs:.2} s)"
        );
    }
    let ping4 = s
        .lab
        .try_sh(&s.client, &format!("ping -c 2 -i 0.2 -W 2 {}", s.server4));
    assert!(
        ping4.status.success(),
        "ICMP 8 lets ping through: {}",
        String::from_utf8_lossy(&ping4.stdout)
    );
    let ping6 = s.lab.try_sh(
        &s.client,
        &format!("ping -6 -c 2 -i 0.2 -W 2 {}", s.server6),
    );
    assert!(
        ping6.status.success(),
        "icmp6 echo-request lets ping -6 through"
    );
    for server in [&s.server4, &s.server6] {
        let dns = s.lab.try_sh(
            &s.client,
            &format!(
                "python3 -c \"import socket;s=socket.socket(socket.AF_INET6 if ':' in '{server}' else socket.AF_INET,socket.SOCK_DGRAM);\
                 s.settimeout(2);s.sendto(b'query',('{server}',53));print(s.recv(100).decode())\""
            ),
        );
        assert_eq!(
            String::from_utf8_lossy(&dns.stdout).trim(),
            "query",
            "UDP 53 to {server} passes"
        );
    }

    let metrics = s
        .lab
        .try_sh(&s.filter, "curl -s http://127.0.0.1:9717/metrics");
    let text = String::from_utf8_lossy(&metrics.stdout);
    let value = |line: &str| common::metric(&text, line).unwrap_or(0.0) as u64;
    assert!(value("outgate_packets_total{queue=\"0\"}") > 0, "{text}");
    assert!(
        value("outgate_verdicts_total{queue=\"0\",verdict=\"reject\"}") >= 2,
        "{text}"
    );
    // New flows by the line that decided them: HTTP (line 2) and the rejected port 81 (line 6) once per
    // family, the dropped 8080 by the policy line (its SYN retries stay in their flow).
    let policy_file = s.lab.path("policy.rules").display().to_string();
    let rule_flows = |line: u32, kind: &str| {
        value(&format!(
            "outgate_rule_flows_total{{rule=\"{policy_file}:{line}\",kind=\"{kind}\"}}"
        ))
    };
    assert_eq!(rule_flows(2, "rule"), 2, "{text}");
    assert_eq!(rule_flows(6, "rule"), 2, "{text}");
    assert_eq!(rule_flows(1, "policy"), 2, "{text}");
    let counted: u64 = text
        .lines()
        .filter(|l| l.starts_with("outgate_rule_flows_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        counted as usize,
        s.flows_log().len(),
        "every logged flow is counted once, under its line: {text}"
    );
    assert_eq!(
        value("outgate_user_dropped_total{queue=\"0\"}"),
        0,
        "{text}"
    );

    let log = s.flows_log();
    let http: Vec<_> = log
        .iter()
        .filter(|f| f["dst"].as_str().is_some_and(|d| d.ends_with(":80")))
        .collect();
    assert_eq!(http.len(), 2, "one HTTP flow per family: {log:#?}");
    assert!(http.iter().all(
        |f| f["verdict"] == "accept" && f["rule"].as_str().unwrap().ends_with("policy.rules:2")
    ));
    assert!(
        log.iter()
            .any(|f| f["verdict"] == "reject" && f["dst"].as_str().unwrap().ends_with(":81"))
    );
    assert!(
        log.iter()
            .any(|f| f["verdict"] == "drop" && f["reason"] == "policy")
    );
    s.rules("--remove", "");
}

#[test]
fn host_mode_allows_blocks_and_rejects_ipv4_and_ipv6() {
    if !common::root("host_mode_allows_blocks_and_rejects_ipv4_and_ipv6") {
        return;
    }
    let _g = serial();
    allowed_and_blocked(host_mode());
}

#[test]
fn gateway_mode_allows_blocks_and_rejects_ipv4_and_ipv6() {
    if !common::root("gateway_mode_allows_blocks_and_rejects_ipv4_and_ipv6") {
        return;
    }
    let _g = serial();
    allowed_and_blocked(gateway_mode());
}

/// After the first packets, a bulk transfer on the same flow never reaches the queue.
#[test]
fn decided_flows_stay_in_the_kernel() {
    if !common::root("decided_flows_stay_in_the_kernel") {
        return;
    }
    let _g = serial();
    for mut s in [host_mode(), gateway_mode()] {
        let www = s.lab.dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("big.bin"), vec![7u8; 32 << 20]).unwrap();
        s.lab.http_server(&s.server.clone(), 80, &www);
        s.rules("--apply", "");
        s.daemon(POLICY, "");
        let before = queue_stats(&s.lab, &s.filter, 0).unwrap();
        let o = s.lab.try_sh(
            &s.client,
            &format!(
                "curl -s -o /dev/null -w '%{{size_download}}' http://{}/big.bin",
                s.server4
            ),
        );
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            (32u64 << 20).to_string(),
            "{} mode: the download completes",
            s.mode
        );
        let after = queue_stats(&s.lab, &s.filter, 0).unwrap();
        let queued = after.id_sequence - before.id_sequence;
        // 32 MiB is over 20,000 segments each way; only the handshake's packets may come up.
        assert!(
            queued <= 4,
            "{} mode: {queued} packets reached the queue during a 32 MiB transfer",
            s.mode
        );
        s.rules("--remove", "");
    }
}

/// `kill -9` the daemon: with --fail-open new connections keep working, with fail-closed they stop.
#[test]
fn fail_open_and_fail_closed_when_the_daemon_dies() {
    if !common::root("fail_open_and_fail_closed_when_the_daemon_dies") {
        return;
    }
    let _g = serial();
    let cases = [("--fail-open", true), ("--fail-closed", false)];
    for (fail, works_after, mut s) in cases
        .into_iter()
        .flat_map(|(f, w)| [(f, w, host_mode()), (f, w, gateway_mode())])
    {
        let www = s.lab.dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("x"), "x").unwrap();
        s.lab.http_server(&s.server.clone(), 80, &www);
        s.rules("--apply", fail);
        let d = s.daemon(POLICY, fail);
        assert_eq!(
            s.curl(&s.server4, 80, "/x").0,
            0,
            "{fail}: works while the daemon runs"
        );
        s.lab.child(d).kill().unwrap(); // SIGKILL
        s.lab.child(d).wait().unwrap();
        let (lab, ns) = (&s.lab, &s.filter);
        wait_for(Duration::from_secs(5), || queue_stats(lab, ns, 0).is_none())
            .expect("the queue is unbound");
        let (code, _, _) = s.curl(&s.server4, 80, "/x");
        assert_eq!(
            code == 0,
            works_after,
            "{fail}: a new connection after kill -9 gives curl exit {code}"
        );
        s.rules("--remove", fail);
    }
}

/// Many flows at full speed: every packet gets its verdict, the kernel drops none, the receiver counts all.
#[test]
fn udp_blast_of_many_flows_loses_nothing() {
    if !common::root("udp_blast_of_many_flows_loses_nothing") {
        return;
    }
    let _g = serial();
    let blast = common::udp_blast();
    for mut s in [host_mode(), gateway_mode()] {
        let out = s.lab.path("recv.txt");
        s.lab.spawn(
            &s.server.clone(),
            &format!("sh -c '{blast} recv 9000 1500 > {}'", out.display()),
        );
        s.lab.wait_listening(&s.server.clone(), "udp", 9000);
        s.rules("--apply", "");
        s.daemon(POLICY, "");
        let total = 200_000;
        let sent = s.lab.sh(
            &s.client,
            &format!("{blast} send {} 9000 64 {total} 64", s.server4),
        );
        assert!(sent.starts_with(&format!("sent {total} ")), "{sent}");
        let lab = &s.lab;
        wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(&out).is_ok_and(|t| t.contains("received"))
        })
        .expect("the receiver reports");
        let received = std::fs::read_to_string(&out).unwrap();
        let q = queue_stats(lab, &s.filter, 0).unwrap();
        assert_eq!(
            (q.queue_dropped, q.user_dropped),
            (0, 0),
            "{} mode: the kernel dropped packets: {q:?}",
            s.mode
        );
        assert_eq!(
            received.trim(),
            format!("listening\nreceived {total}"),
            "{} mode ({q:?})",
            s.mode
        );
        let flows = s
            .flows_log()
            .iter()
            .filter(|f| f["dst"].as_str().is_some_and(|d| d.ends_with(":9000")))
            .count();
        assert_eq!(flows, 64, "{} mode: one decision per flow", s.mode);
        s.rules("--remove", "");
    }
}

/// SIGTERM under traffic: the daemon answers what it holds and exits 0; `--remove` leaves the tables as
/// they were.
#[test]
fn sigterm_under_traffic_then_remove_leaves_no_trace() {
    if !common::root("sigterm_under_traffic_then_remove_leaves_no_trace") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    let save = |s: &Setup| {
        s.lab
            .sh(&s.filter, "iptables-save; ip6tables-save")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // An admin's own rules are there first; they must come through untouched.
    for t in ["iptables", "ip6tables"] {
        s.lab.sh(&s.filter, &format!("{t} -A OUTPUT -p tcp --dport 25 -j REJECT && {t} -A INPUT -p tcp --dport 22 -j ACCEPT"));
        s.lab.sh(
            &s.filter,
            &format!("{t} -t raw -A OUTPUT -p udp --dport 5353 -j CT --notrack"),
        );
    }
    let before = save(&s);
    s.lab.udp_echo(&s.server.clone(), 9000);
    s.rules("--apply", "");
    let d = s.daemon(POLICY, "");
    // A new flow every few milliseconds, so packets are in flight when the signal comes.
    let sender = s.lab.write(
        "sender.py",
        &format!(
            "import socket,time\nn=0\nend=time.time()+3\nwhile time.time()<end:\n \
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n \
             try:\n  s.sendto(b'x',('{}',9000)); n+=1\n except OSError: pass\n s.close(); time.sleep(0.002)\nprint(n)\n",
            s.server4
        ),
    );
    let client = s.client.clone();
    let traffic = std::thread::spawn(move || {
        Command::new("ip")
            .args(["netns", "exec", &client, "python3"])
            .arg(sender)
            .output()
            .expect("sender")
    });
    std::thread::sleep(Duration::from_millis(1000));
    let pid = s.lab.child(d).id();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let start = Instant::now();
    let status = s.lab.child(d).wait().unwrap();
    assert!(status.success(), "SIGTERM: exit status {status}");
    assert!(start.elapsed() < Duration::from_secs(2), "stops promptly");
    let stderr = s.lab.stderr_of(d);
    let _ = traffic.join();
    assert!(stderr.contains("stopped after"), "{stderr}");
    assert!(
        queue_stats(&s.lab, &s.filter, 0).is_none(),
        "the queue is unbound"
    );
    // Every flow the daemon decided before it stopped was logged: nothing held back.
    let decided: u64 = stderr
        .split(" packets, ")
        .nth(1)
        .and_then(|t| t.split(' ').next()?.parse().ok())
        .unwrap();
    assert!(decided > 100, "flows were decided under traffic: {stderr}");
    assert_eq!(
        s.flows_log().len() as u64,
        decided,
        "every decided flow is in the log: {stderr}"
    );
    s.rules("--remove", "");
    assert_eq!(
        save(&s),
        before,
        "outgate rules --remove leaves the tables as they were"
    );
}

/// Clear errors at start: invalid policy, queue already bound, not root.
#[test]
fn startup_errors_are_clear() {
    if !common::root("startup_errors_are_clear") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    let bad = s.lab.write("bad.rules", "ACCEPT loc lan 80\n");
    let o = s.lab.try_sh(
        &s.filter,
        &format!("{} run --policy {}", outgate_bin(), bad.display()),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad.rules:1:12: unknown zone 'lan'"));
    s.daemon(POLICY, "");
    let o = s
        .lab
        .try_sh(&s.filter, &format!("{} run --queues 0", outgate_bin()));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("NFQUEUE 0: NFQUEUE 0 is already bound by another process"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = s.lab.try_sh(
        &s.filter,
        &format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups {} run --queues 5",
            outgate_bin()
        ),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CAP_NET_ADMIN"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
