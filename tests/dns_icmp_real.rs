//! The DNS and ICMP logs and the report's tunnel sections on captures written by others
//! (`../shared/pcaps-real`): the queries are the ones tshark lists in its truth files, the echo
//! messages are as many as tshark counts, and of the two ICMP captures only the ptunnel-style tunnel
//! (nDPI's icmp-tunnel.pcap, an SSH session in echo payloads) is a suspect.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{outgate_bin, real_dir};

/// Replays `capture` with the default policy, writing the DNS and ICMP logs into `dir`.
fn replay(capture: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let (dns, icmp) = (dir.join("dns.jsonl"), dir.join("icmp.jsonl"));
    let o = Command::new(outgate_bin())
        .args(["replay", "--workers", "2", "--dns-log"])
        .arg(&dns)
        .arg("--icmp-log")
        .arg(&icmp)
        .arg(real_dir().join(capture))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (dns, icmp)
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn report(logs: &[&Path]) -> serde_json::Value {
    let o = Command::new(outgate_bin())
        .args(["report", "--format", "json"])
        .args(logs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// An address as tshark writes it: without port, IPv6 without brackets.
fn addr(endpoint: &str) -> String {
    match endpoint.parse::<std::net::SocketAddr>() {
        Ok(s) => s.ip().to_string(),
        Err(_) => endpoint.to_string(),
    }
}

/// The truth file's DNS queries (transport, src, dst, qname, qtype) and whether it left some out.
fn truth_queries(capture: &str) -> (Vec<[String; 5]>, bool) {
    let path = real_dir().join("truth").join(format!("{capture}.txt"));
    let text = std::fs::read_to_string(&path).unwrap();
    let section = text
        .split("## DNS messages")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or("");
    let mut out = Vec::new();
    for line in section.lines().skip(1) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 7 && cells[2] == "Q" {
            let [t, s, d, q, ty] = [cells[1], cells[3], cells[4], cells[5], cells[6]];
            out.push([t, s, d, q, ty].map(|c| c.to_ascii_lowercase()));
        }
    }
    (out, section.contains("more"))
}

#[test]
fn dns_queries_are_the_ones_tshark_lists() {
    if !common::shared("dns_queries_are_the_ones_tshark_lists") {
        return;
    }
    for capture in [
        "dns_udp.pcap",
        "dns_tcp.pcap",
        "dns_malformed_long_name.pcap",
        "dns_fragmented_v4_v6.pcap",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (dns, _) = replay(capture, dir.path());
        let mut ours: Vec<[String; 5]> = lines(&dns)
            .iter()
            .map(|l| {
                [
                    l["transport"].as_str().unwrap().to_string(),
                    addr(l["client"].as_str().unwrap()),
                    addr(l["server"].as_str().unwrap()),
                    l["qname"].as_str().unwrap().to_string(),
                    l["qtype_code"].to_string(),
                ]
            })
            .collect();
        let (mut truth, omitted) = truth_queries(capture);
        assert!(!truth.is_empty(), "{capture}: no query in the truth file");
        if omitted {
            // The truth lists the first messages only: each of them is ours.
            for q in &truth {
                let at = ours.iter().position(|o| o == q);
                assert!(at.is_some(), "{capture}: {q:?} missing in {ours:?}");
                ours.remove(at.unwrap_or(0));
            }
        } else {
            ours.sort();
            truth.sort();
            assert_eq!(ours, truth, "{capture}");
        }
        // Plain names make no tunnel.
        assert_eq!(report(&[&dns])["dns_tunnels"], serde_json::json!([]));
    }
}

/// tshark's count of ICMPv4 messages of `ty` in the truth file.
fn truth_icmp(capture: &str, ty: u8) -> u64 {
    let path = real_dir().join("truth").join(format!("{capture}.txt"));
    let text = std::fs::read_to_string(&path).unwrap();
    let key = format!("ICMPv4 type={ty} code=0: ");
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn echo_messages_and_the_icmp_tunnel() {
    if !common::shared("echo_messages_and_the_icmp_tunnel") {
        return;
    }
    let mut suspects = Vec::new();
    for capture in ["icmpv4_echo.pcap", "icmp_tunnel_ssh.pcap"] {
        let dir = tempfile::tempdir().unwrap();
        let (_, icmp) = replay(capture, dir.path());
        let logged = lines(&icmp);
        let count = |kind: &str| logged.iter().filter(|l| l["echo"] == kind).count() as u64;
        assert_eq!(count("request"), truth_icmp(capture, 8), "{capture}");
        assert_eq!(count("reply"), truth_icmp(capture, 0), "{capture}");
        let r = report(&[&icmp]);
        for s in r["icmp_tunnels"].as_array().unwrap() {
            suspects.push((
                capture,
                s["client"].as_str().unwrap().to_string(),
                s["server"].as_str().unwrap().to_string(),
            ));
            assert!(
                s["cites"][0]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{}:", icmp.display())),
                "{s}"
            );
        }
    }
    // nDPI's tunnel capture: tshark's one ICMP flow, 192.168.154.131 -> 192.168.154.132.
    assert_eq!(
        suspects,
        [(
            "icmp_tunnel_ssh.pcap",
            "192.168.154.131".to_string(),
            "192.168.154.132".to_string()
        )]
    );
}

#[test]
fn a_size_term_drops_the_tunnels_echo_requests_and_not_pings() {
    if !common::shared("a_size_term_drops_the_tunnels_echo_requests_and_not_pings") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.rules");
    std::fs::write(
        &policy,
        "policy loc net DROP\nACCEPT loc net icmp 8 size=..64\nACCEPT loc net icmp 0\n",
    )
    .unwrap();
    for (capture, dropped) in [("icmpv4_echo.pcap", false), ("icmp_tunnel_ssh.pcap", true)] {
        let icmp = dir.path().join("icmp.jsonl");
        let o = Command::new(outgate_bin())
            .args(["replay", "--policy"])
            .arg(&policy)
            .arg("--icmp-log")
            .arg(&icmp)
            .arg(real_dir().join(capture))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let requests: Vec<serde_json::Value> = lines(&icmp)
            .into_iter()
            .filter(|l| l["echo"] == "request")
            .collect();
        assert!(!requests.is_empty(), "{capture}");
        let big = |l: &serde_json::Value| l["size"].as_u64().is_none_or(|n| n > 64);
        for l in &requests {
            let (verdict, reason) = if big(l) {
                ("drop", "policy")
            } else {
                ("accept", "rule")
            };
            assert_eq!(
                (l["verdict"].as_str(), l["reason"].as_str()),
                (Some(verdict), Some(reason)),
                "{capture}: {l}"
            );
        }
        assert_eq!(requests.iter().any(big), dropped, "{capture}");
    }
}
