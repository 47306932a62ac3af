//! DNS and ICMP tunnels through the filter, live, with Debian's real tools: an iodine tunnel (iodined
//! as the authoritative server of a test domain) and a ptunnel tunnel (TCP in ICMP echo) are reported
//! by `outgate report` from the daemon's DNS and ICMP logs; a `qname=` rule stops iodine, and a
//! `size=` term on `ICMP 8` stops ptunnel while ping still works.
//!
//! Needs root plus iodine (iodine, iodined), ptunnel, ping, curl and python3 (`.ci/run` installs them).

mod common;

use std::time::Duration;

use common::{Setup, gateway_mode, host_mode, serial, wait_for};

/// The tunnel's domain: delegated to iodined, which runs on the server.
const TOPDOMAIN: &str = "t.tunnel.test";

fn report(s: &Setup, log: &str) -> serde_json::Value {
    let o = std::process::Command::new(common::outgate_bin())
        .args(["report", "--format", "json"])
        .arg(s.lab.path(log))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn log_lines(s: &Setup, log: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(s.lab.path(log))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Stops the daemon (its queue is unbound when it exits) so that the next can start.
fn stop(s: &mut Setup, daemon: usize) {
    let _ = s.lab.child(daemon).kill();
    let _ = s.lab.child(daemon).wait();
}

/// Runs the iodine client against the server for at most `secs` seconds; whether the tunnel came
/// up (it then pings the server's tunnel address through it), and what iodine said.
fn iodine(s: &Setup, secs: u32) -> (bool, String) {
    let out = s.lab.path("iodine.out");
    let cmd = format!(
        "timeout {secs} iodine -f -r -P outgate-test {} {TOPDOMAIN} >{} 2>&1 & p=$!; \
         for i in $(seq 1 {secs}); do \
           if ip link show dns0 >/dev/null 2>&1 && ping -c 20 -i 0.2 -W 2 10.53.0.1 >/dev/null; then \
             echo up; break; fi; sleep 1; done; kill $p 2>/dev/null; wait $p",
        s.server4,
        out.display()
    );
    let o = s.lab.try_sh(&s.client, &cmd);
    let up = String::from_utf8_lossy(&o.stdout).contains("up");
    (up, std::fs::read_to_string(out).unwrap_or_default())
}

#[test]
fn an_iodine_tunnel_is_reported_and_a_qname_rule_stops_it() {
    let test = "an_iodine_tunnel_is_reported_and_a_qname_rule_stops_it";
    if !common::root(test) || !common::tool(test, "iodine") || !common::tool(test, "iodined") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    let server = s.server.clone();
    let iodined = format!(
        "iodined -f -c -P outgate-test -l {} 10.53.0.1/24 {TOPDOMAIN}",
        s.server4
    );
    s.lab.spawn(&server, &iodined);
    s.lab.wait_listening(&server, "udp", 53);
    s.rules("--apply", "");

    // Allowed, and logged: the tunnel works, and the report names its domain.
    let dns_log = format!("--dns-log {}", s.lab.path("dns.jsonl").display());
    let d = s.daemon("policy loc net ACCEPT\n", &dns_log);
    let (up, said) = iodine(&s, 30);
    assert!(up, "the tunnel did not come up through the filter: {said}");
    assert!(
        wait_for(Duration::from_secs(5), || log_lines(&s, "dns.jsonl").len()
            >= 50)
        .is_some(),
        "the DNS log has {} lines",
        log_lines(&s, "dns.jsonl").len()
    );
    stop(&mut s, d);
    let r = report(&s, "dns.jsonl");
    let suspects = r["dns_tunnels"].as_array().unwrap();
    assert_eq!(suspects.len(), 1, "{r}");
    eprintln!("iodine's suspect: {}", suspects[0]);
    // iodined's domain under the public suffix list's `*` rule for the unlisted TLD `test`.
    assert_eq!(suspects[0]["domain"], "tunnel.test");
    assert!(
        suspects[0]["cites"][0]
            .as_str()
            .unwrap()
            .contains("dns.jsonl:")
    );

    // A qname= rule: iodine cannot even start its handshake.
    let policy = format!("DROP loc net udp 53 qname=*.{TOPDOMAIN}\npolicy loc net ACCEPT\n");
    let dns_log = format!("--dns-log {}", s.lab.path("dns2.jsonl").display());
    s.daemon(&policy, &dns_log);
    let (up, said) = iodine(&s, 10);
    assert!(!up, "the tunnel came up past the rule: {said}");
    let lines = log_lines(&s, "dns2.jsonl");
    assert!(!lines.is_empty());
    for l in &lines {
        assert_eq!(l["verdict"], "drop", "{l}");
        assert!(
            l["rule"].as_str().unwrap().ends_with("policy.rules:1"),
            "{l}"
        );
    }
}

#[test]
fn a_ptunnel_tunnel_is_reported_and_a_size_term_stops_it() {
    let test = "a_ptunnel_tunnel_is_reported_and_a_size_term_stops_it";
    if !common::root(test) || !common::tool(test, "ptunnel") || !common::tool(test, "curl") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let server = s.server.clone();
    s.www();
    s.lab.spawn(&server, "ptunnel -v -1");
    s.rules("--apply", "");
    let fetch = |s: &Setup| {
        // The client end of the tunnel: TCP 8000 on the client, through the proxy to the web server.
        // The request waits a second after the connection, which starts the session: a packet sent
        // right behind a new ICMP flow's first one, while that waits in the queue, is lost (the
        // kernel's conntrack drops the second of two unconfirmed entries for one ICMP flow), and
        // ptunnel does not recover from losing its first data packet. The request is 1 kB: the size
        // term limits what the client sends (echo requests), not the replies.
        let get = "import socket,time\n\
                   s=socket.create_connection(('127.0.0.1',8000),timeout=8)\n\
                   time.sleep(1)\n\
                   s.sendall(b'GET /x HTTP/1.0\\r\\nX-Pad: '+b'a'*1000+b'\\r\\n\\r\\n')\n\
                   print(s.recv(12)[9:12].decode())";
        let cmd = format!(
            "timeout 15 ptunnel -v -1 -p {0} -lp 8000 -da {0} -dp 80 & p=$!; sleep 1; \
             timeout 10 python3 -c \"{get}\"; kill $p; wait $p",
            s.server4
        );
        let o = s.lab.try_sh(&s.client, &cmd);
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let ping = |s: &Setup| {
        s.lab
            .try_sh(&s.client, &format!("ping -c 2 -i 0.3 -W 2 {}", s.server4))
            .status
            .success()
    };

    // ICMP 8 as the article's policy has it: the tunnel works, and the report finds it.
    let icmp_log = format!("--icmp-log {}", s.lab.path("icmp.jsonl").display());
    let d = s.daemon(
        "policy loc net DROP\nACCEPT loc net ICMP 8\nACCEPT loc net tcp 80\n",
        &icmp_log,
    );
    assert_eq!(
        fetch(&s),
        "200",
        "the page did not come through the tunnel: {:?}",
        s.flows_log()
    );
    assert!(ping(&s));
    assert!(
        wait_for(Duration::from_secs(5), || !log_lines(&s, "icmp.jsonl")
            .is_empty())
        .is_some()
    );
    stop(&mut s, d);
    let r = report(&s, "icmp.jsonl");
    let suspects = r["icmp_tunnels"].as_array().unwrap();
    assert_eq!(suspects.len(), 1, "{r}");
    eprintln!("ptunnel's suspect: {}", suspects[0]);
    assert_eq!(suspects[0]["server"], s.server4.as_str());
    assert!(
        suspects[0]["reasons"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("not_ping_data")),
        "{r}"
    );

    // The size term: ping's 56 bytes pass, ptunnel's data does not.
    let policy = "policy loc net DROP\nACCEPT loc net ICMP 8 size=..128\nACCEPT loc net tcp 80\n";
    let icmp_log = format!("--icmp-log {}", s.lab.path("icmp2.jsonl").display());
    s.daemon(policy, &icmp_log);
    assert!(ping(&s), "ping's echo requests are within the size");
    assert_ne!(
        fetch(&s),
        "200",
        "the page came through the tunnel past the size term"
    );
    let dropped = log_lines(&s, "icmp2.jsonl")
        .into_iter()
        .filter(|l| l["verdict"] == "drop")
        .count();
    eprintln!("ptunnel's echo requests dropped: {dropped}");
    assert!(dropped > 0);
}
