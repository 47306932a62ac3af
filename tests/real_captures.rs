//! Captures written by others (`../shared/pcaps-real`, read in place): outgate's flows agree with tshark's,
//! the default policy's verdicts are what its port list says, the worker count changes nothing, and no
//! prefix of any packet panics the engine.

mod common;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use common::{captures, real_dir};
use outgate::log::{FlowEnd, FlowLine};
use outgate::policy::DEFAULT_POLICY;
use outgate::replay::capture::CaptureReader;
use outgate::replay::link::network_layer;
use outgate::replay::{ReplayConfig, ReplayReport, replay};
use outgate::{Engine, Policy, Timestamp};

fn run(engine: &Engine, file: &Path, workers: usize) -> ReplayReport {
    let cfg = ReplayConfig {
        captures: vec![file.to_path_buf()],
        workers,
        keep_flows: true,
        ..Default::default()
    };
    replay(engine, &cfg).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn flow_lines(engine: &Engine, report: &ReplayReport) -> Vec<String> {
    report
        .flows
        .iter()
        .map(|r| serde_json::to_string(&FlowLine::new(engine.policy(), r)).unwrap())
        .collect()
}

/// The article's port list, written out again here so the test does not trust the policy compiler.
const DEFAULT_OPEN: [u16; 19] = [
    13, 21, 22, 23, 25, 43, 53, 63, 70, 79, 80, 109, 110, 113, 119, 123, 143, 443, 443,
];

/// One TCP/UDP flow of tshark's list, endpoints as tshark writes them (`2001:db8::1:443`, no brackets).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TruthFlow {
    proto: String,
    src: String,
    dst: String,
    packets: u64,
    /// Packets sent by `src` and by `dst` (tshark's `pkts=A+B`; outgate's `orig_packets`,
    /// `resp_packets`).
    split: (u64, u64),
}

struct Truth {
    flows: Vec<TruthFlow>,
    /// The truth file lists the first flows only and says how many it left out (`... N more flows`).
    omitted: usize,
    /// Flows tshark lists with a protocol but no ports (a transport header too short to hold them).
    portless: usize,
    /// tshark saw tunnelled flows (it lists the innermost); outgate filters the outer packets.
    tunnelled: bool,
    fragmented: bool,
    /// Data-connection endpoints tshark read from FTP control connections (`passive=`, `active=`).
    ftp_endpoints: BTreeSet<String>,
}

/// outgate's endpoint in tshark's spelling.
fn tshark_style(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(sa) => format!("{}:{}", sa.ip(), sa.port()),
        Err(_) => addr.to_string(),
    }
}

fn truth(file: &Path) -> Truth {
    let name = file.file_name().unwrap().to_string_lossy();
    let path = real_dir().join("truth").join(format!("{name}.txt"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let section = |title: &str| -> Vec<&str> {
        text.lines()
            .skip_while(|l| !l.starts_with(title))
            .skip(1)
            .take_while(|l| !l.starts_with("##"))
            .filter(|l| !l.trim().is_empty() && l.trim() != "(none)")
            .collect()
    };
    let mut t = Truth {
        flows: Vec::new(),
        omitted: 0,
        portless: 0,
        tunnelled: false,
        fragmented: false,
        ftp_endpoints: BTreeSet::new(),
    };
    for line in section("## FTP control") {
        if let Some((_, endpoint)) = line
            .rsplit('|')
            .next()
            .and_then(|e| e.trim().split_once('='))
        {
            t.ftp_endpoints.insert(endpoint.to_string());
        }
    }
    for line in section("## flows") {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["...", n, "more", "flows"] = words.as_slice() {
            t.omitted = n.parse().unwrap();
        }
        t.tunnelled |= line.contains("outer=[");
        let (Some(&proto), Some(&src), Some(&"->"), Some(&dst)) =
            (words.first(), words.get(1), words.get(2), words.get(3))
        else {
            continue;
        };
        if !matches!(proto, "TCP" | "UDP") || line.contains("outer=[") {
            continue;
        }
        // IPv4 without a port has no colon; an IPv6 endpoint that is a whole address may still end in a
        // port, so such lines are settled against the malformed count below.
        if src.parse::<IpAddr>().is_ok() && dst.parse::<IpAddr>().is_ok() {
            t.portless += 1;
            if src.parse::<std::net::Ipv4Addr>().is_ok() {
                continue;
            }
        }
        let pkts = words
            .iter()
            .find_map(|w| w.strip_prefix("pkts="))
            .unwrap_or("0+0");
        let counts: Vec<u64> = pkts
            .split('+')
            .filter_map(|n| n.parse::<u64>().ok())
            .collect();
        let split = match counts.as_slice() {
            [a, b] => (*a, *b),
            _ => (0, 0),
        };
        t.flows.push(TruthFlow {
            proto: proto.to_lowercase(),
            src: src.to_string(),
            dst: dst.to_string(),
            packets: counts.iter().sum(),
            split,
        });
    }
    t.fragmented =
        !section("## IPv4 fragments").is_empty() || !section("## IPv6 fragment headers").is_empty();
    t
}

/// The default policy's rules, with idle timeouts longer than any capture: tshark's conversation list
/// has no timeouts, while outgate (like conntrack) would start a new flow after a long silence.
fn default_without_timeouts() -> Engine {
    let text = format!(
        "{DEFAULT_POLICY}{}",
        ["tcp", "tcp-closed", "udp", "icmp", "other"]
            .map(|p| format!("option timeout {p} 999999999\n"))
            .concat()
    );
    Engine::new(Policy::compile("<default>", &text).unwrap())
}

#[test]
fn flows_agree_with_tshark_and_verdicts_follow_the_port_list() {
    if !common::shared("flows_agree_with_tshark_and_verdicts_follow_the_port_list") {
        return;
    }
    let engine = default_without_timeouts();
    let mut checked = 0;
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let report = run(&engine, &file, 1);
        let ours: Vec<TruthFlow> = report
            .flows
            .iter()
            .map(|r| (FlowLine::new(engine.policy(), r), FlowEnd::of(r)))
            .filter(|(l, _)| l.proto == "tcp" || l.proto == "udp")
            .map(|(l, end)| TruthFlow {
                proto: l.proto.to_string(),
                src: tshark_style(&l.src),
                dst: tshark_style(&l.dst),
                packets: l.packets,
                split: (end.orig_packets, end.resp_packets),
            })
            .collect();
        let t = truth(&file);
        let key = |f: &TruthFlow| (f.proto.clone(), f.src.clone(), f.dst.clone());
        let their_keys: BTreeSet<_> = t.flows.iter().map(key).collect();
        // tshark names the sender of a flow's first packet first; for a TCP flow the capture holds from
        // its middle outgate names the client it infers, which may be the other end.
        let ours: Vec<TruthFlow> = ours
            .into_iter()
            .zip(
                report
                    .flows
                    .iter()
                    .filter(|r| matches!(r.key.proto(), 6 | 17)),
            )
            .map(|(f, r)| {
                let reversed = (f.proto.clone(), f.dst.clone(), f.src.clone());
                if r.flow.midstream()
                    && !their_keys.contains(&key(&f))
                    && their_keys.contains(&reversed)
                {
                    TruthFlow {
                        src: f.dst,
                        dst: f.src,
                        split: (f.split.1, f.split.0),
                        ..f
                    }
                } else {
                    f
                }
            })
            .collect();
        let our_keys: BTreeSet<_> = ours.iter().map(key).collect();
        // Every flow of ours is one of tshark's (of those the truth file lists) ...
        if !t.tunnelled {
            let extra: Vec<_> = our_keys.difference(&their_keys).collect();
            assert!(
                extra.len() <= t.omitted,
                "{name}: flows tshark does not list: {extra:?}"
            );
        }
        // ... and every flow of tshark's is ours, but for those without ports, which outgate counts as
        // malformed (outgate sees the outer packets of tunnels, tshark lists the inner flows).
        let missing: Vec<_> = their_keys.difference(&our_keys).collect();
        let truncated = report
            .counters
            .malformed
            .get("truncated-transport")
            .copied()
            .unwrap_or(0);
        assert!(
            missing.len() <= t.portless && t.portless as u64 <= truncated,
            "{name}: tshark flows outgate lacks: {missing:?} ({} portless, {truncated} truncated)",
            t.portless
        );
        if !t.fragmented && !t.tunnelled && t.portless == 0 && t.omitted == 0 {
            // With fragments tshark counts the reassembled datagram on its last fragment; outgate on its
            // first (which carries the ports), so only unfragmented captures compare packet counts,
            // in all and per direction (the replay flow log's `orig_packets` and `resp_packets`).
            let mut a: Vec<_> = ours.iter().map(|f| (key(f), f.packets, f.split)).collect();
            let mut b: Vec<_> = t
                .flows
                .iter()
                .map(|f| (key(f), f.packets, f.split))
                .collect();
            a.sort();
            b.sort();
            assert_eq!(a, b, "{name}: packets per flow differ from tshark's");
        }
        for rec in &report.flows {
            let line = FlowLine::new(engine.policy(), rec);
            let expected = match (line.proto.as_ref(), line.icmp_type) {
                // A data connection tshark saw announced on an (accepted) FTP control connection.
                ("tcp", _) if t.ftp_endpoints.contains(&tshark_style(&line.dst)) => {
                    assert_eq!(line.outcome.reason, "ftp-data", "{name}: {line:?}");
                    "accept"
                }
                ("tcp" | "udp", _) => {
                    let dport = line.dst.parse::<SocketAddr>().unwrap().port();
                    if DEFAULT_OPEN.contains(&dport) {
                        "accept"
                    } else {
                        "drop"
                    }
                }
                ("icmp", Some(8)) => "accept",
                _ => "drop",
            };
            assert_eq!(
                line.outcome.verdict,
                expected,
                "{name}: {}",
                serde_json::to_string(&line).unwrap()
            );
            assert!(
                line.outcome.rule.is_some() || line.outcome.reason == "ftp-data",
                "{name}: the default policy cites a line for every flow but FTP data channels"
            );
        }
        checked += 1;
    }
    assert!(checked >= 30);
}

#[test]
fn worker_count_does_not_change_verdicts() {
    if !common::shared("worker_count_does_not_change_verdicts") {
        return;
    }
    for engine in [Engine::new(Policy::builtin()), payload_engine()] {
        worker_count_does_not_change_verdicts_of(&engine);
    }
}

fn worker_count_does_not_change_verdicts_of(engine: &Engine) {
    for file in captures() {
        let one = run(engine, &file, 1);
        let four = run(engine, &file, 4);
        assert_eq!(
            flow_lines(engine, &one),
            flow_lines(engine, &four),
            "{}",
            file.display()
        );
        assert_eq!(
            one.counters.packets,
            four.counters.packets,
            "{}",
            file.display()
        );
        assert_eq!(
            one.counters.malformed,
            four.counters.malformed,
            "{}",
            file.display()
        );
    }
}

#[test]
fn corrupt_capture_reports_its_record_and_keeps_what_was_read() {
    if !common::shared("corrupt_capture_reports_its_record_and_keeps_what_was_read") {
        return;
    }
    let engine = Engine::new(Policy::builtin());
    let report = run(
        &engine,
        &real_dir().join("truncated_file_mid_packet.pcap"),
        2,
    );
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].contains("record 2"),
        "{}",
        report.errors[0]
    );
}

#[test]
fn every_prefix_of_every_packet_is_decided_without_panic() {
    if !common::shared("every_prefix_of_every_packet_is_decided_without_panic") {
        return;
    }
    for engine in [Engine::new(Policy::builtin()), payload_engine()] {
        feed_every_prefix(&engine);
    }
}

/// A policy whose rules read the first payload, so that inspection sees every capture too.
fn payload_engine() -> Engine {
    let text = "policy loc net ACCEPT\n\
                DROP loc net tcp 80,8080 host=numeric\n\
                DROP loc net tcp 80 url=gateway.dll? method=POST\n\
                ACCEPT loc net tcp 443 app=tls sni=!numeric\n\
                DROP loc net tcp 443\n\
                DROP loc net all app=ssh,openvpn,wireguard,socks\n\
                ACCEPT loc net udp 443 app=quic\n\
                option inspect-packets 6\n";
    Engine::new(Policy::compile("payload.rules", text).unwrap())
}

fn feed_every_prefix(engine: &Engine) {
    let mut fed = 0u64;
    for file in captures() {
        let mut table = engine.new_flow_table();
        let mut reader = CaptureReader::open(&file).unwrap();
        while let Some(Ok(record)) = reader.next_record() {
            let Ok(ip) = network_layer(record.link, record.data) else {
                continue;
            };
            for n in 0..=ip.len() {
                engine.decide(&mut table, &ip[..n], Timestamp::from_nanos(fed), fed);
                fed += 1;
            }
        }
    }
    assert!(fed > 100_000, "fed {fed} prefixes");
}

/// The payload policy above reads what tshark read: the SNI of a real TLS session, the host of a real
/// numeric-host HTTP request, SSH where it was spoken.
#[test]
fn payload_rules_read_the_real_captures() {
    if !common::shared("payload_rules_read_the_real_captures") {
        return;
    }
    let engine = payload_engine();
    let first_line = |name: &str| {
        let report = run(&engine, &real_dir().join(name), 2);
        report
            .flows
            .iter()
            .map(|r| FlowLine::new(engine.policy(), r))
            .find(|l| l.app.is_some())
            .unwrap()
    };
    let tls = first_line("tls12_sni_curl.pcap");
    assert_eq!(
        (tls.app, tls.host.as_deref(), tls.outcome.verdict),
        (Some("tls"), Some("www.ntop.org"), "accept")
    );
    let http = first_line("http_post_numeric_host.pcap");
    assert_eq!(
        (http.app, http.host.as_deref(), http.outcome.verdict),
        (Some("http"), Some("192.168.235.101"), "drop")
    );
    let ssh = first_line("ssh_port22.pcap");
    assert_eq!(
        (ssh.app, ssh.outcome.verdict, ssh.outcome.rule.as_deref()),
        (Some("ssh"), "drop", Some("payload.rules:6"))
    );
}
