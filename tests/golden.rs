//! Golden replays of the project's own captures (`pcaps/`, made by `examples/gen_fixtures/`).
//!
//! Each `pcaps/NAME.{pcap,pcapng}` replays under `pcaps/NAME.rules` (or the built-in policy) and must give
//! exactly `pcaps/NAME.flows.jsonl` and `pcaps/NAME.summary.json`, with 1 and 3 workers. After an intended
//! change, `UPDATE_GOLDEN=1 cargo test --test golden` rewrites them; review the diff. The expectations a
//! user would check are also asserted by name below, so a wrong golden file cannot pass unnoticed.

use std::path::{Path, PathBuf};

use outgate::log::FlowLine;
use outgate::replay::{ReplayConfig, replay};
use outgate::{Engine, Policy};
use serde_json::{Value, json};

fn pcaps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps")
}

fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(pcaps())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    files
}

fn engine_for(capture: &Path) -> Engine {
    let rules = capture.with_extension("rules");
    if rules.exists() {
        // Cite the policy by its file name, so golden files do not depend on where the project lives.
        let text = std::fs::read_to_string(&rules).unwrap();
        let name = rules.file_name().unwrap().to_string_lossy();
        Engine::new(Policy::compile(&name, &text).unwrap_or_else(|e| panic!("{e:?}")))
    } else {
        Engine::new(Policy::builtin())
    }
}

/// Flow lines and the JSON summary without what varies between runs (time, worker count, paths).
fn run(capture: &Path, workers: usize) -> (Vec<Value>, Value) {
    let engine = engine_for(capture);
    let cfg = ReplayConfig {
        captures: vec![capture.to_path_buf()],
        workers,
        keep_flows: true,
        ..Default::default()
    };
    let report = replay(&engine, &cfg).unwrap();
    let flows = report
        .flows
        .iter()
        .map(|r| serde_json::to_value(FlowLine::new(engine.policy(), r)).unwrap())
        .collect();
    let mut summary = report.json(engine.policy());
    for key in ["elapsed_s", "packets_per_s", "workers", "captures"] {
        summary.as_object_mut().unwrap().remove(key);
    }
    (flows, summary)
}

fn golden_paths(capture: &Path) -> (PathBuf, PathBuf) {
    let stem = capture.file_stem().unwrap().to_string_lossy().to_string();
    (
        pcaps().join(format!("{stem}.flows.jsonl")),
        pcaps().join(format!("{stem}.summary.json")),
    )
}

#[test]
fn replays_match_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for capture in fixtures() {
        let (flows_path, summary_path) = golden_paths(&capture);
        for workers in [1, 3] {
            let (flows, summary) = run(&capture, workers);
            let flows_text: String = flows.iter().map(|f| format!("{f}\n")).collect();
            let summary_text = format!("{}\n", serde_json::to_string_pretty(&summary).unwrap());
            if update && workers == 1 {
                std::fs::write(&flows_path, &flows_text).unwrap();
                std::fs::write(&summary_path, &summary_text).unwrap();
            }
            let name = capture.display();
            let want = std::fs::read_to_string(&flows_path)
                .unwrap_or_else(|e| panic!("{}: {e}", flows_path.display()));
            assert_eq!(
                flows_text,
                want,
                "{name} with {workers} workers: flows differ from {}",
                flows_path.display()
            );
            let want = std::fs::read_to_string(&summary_path).unwrap();
            assert_eq!(
                summary_text, want,
                "{name} with {workers} workers: summary differs"
            );
        }
    }
}

/// The flow whose initiator and responder are `src` and `dst`.
fn flow<'a>(flows: &'a [Value], src: &str, dst: &str) -> &'a Value {
    flows
        .iter()
        .find(|f| f["src"] == src && f["dst"] == dst)
        .unwrap_or_else(|| panic!("no flow {src} -> {dst} in {flows:#?}"))
}

fn verdict_rule(f: &Value) -> (&str, &str) {
    (
        f["verdict"].as_str().unwrap(),
        f["rule"].as_str().unwrap_or("-"),
    )
}

#[test]
fn office_mix_under_the_default_policy() {
    let (flows, summary) = run(&pcaps().join("office_mix.pcap"), 2);
    assert_eq!(
        verdict_rule(flow(&flows, "10.0.0.2:40001", "192.0.2.10:443")),
        ("accept", "<default>:20")
    );
    assert_eq!(
        flow(&flows, "10.0.0.2:40001", "192.0.2.10:443")["packets"],
        10,
        "replies belong to the flow"
    );
    assert_eq!(
        verdict_rule(flow(&flows, "10.0.0.2:40002", "192.0.2.11:80")),
        ("accept", "<default>:13")
    );
    assert_eq!(
        verdict_rule(flow(&flows, "10.0.0.2:40003", "198.51.100.7:8080")),
        ("drop", "<default>:1")
    );
    assert_eq!(
        flow(&flows, "10.0.0.2:40003", "198.51.100.7:8080")["packets"],
        3,
        "retransmitted SYNs: one flow"
    );
    assert_eq!(
        verdict_rule(flow(&flows, "10.0.0.2:40004", "198.51.100.8:6881")),
        ("drop", "<default>:1")
    );
    assert_eq!(
        verdict_rule(flow(&flows, "10.0.0.2:50001", "192.0.2.53:53")),
        ("accept", "<default>:9")
    );
    assert_eq!(
        verdict_rule(flow(&flows, "10.0.0.2:50002", "192.0.2.123:123")),
        ("accept", "<default>:18")
    );
    assert_eq!(
        verdict_rule(flow(&flows, "10.0.0.2:50003", "203.0.113.9:1194")),
        ("drop", "<default>:1")
    );
    assert_eq!(
        verdict_rule(flow(&flows, "[fd00::2]:40010", "[2001:db8::10]:443")),
        ("accept", "<default>:20")
    );
    assert_eq!(
        verdict_rule(flow(&flows, "[fd00::2]:40011", "[2001:db8::22]:2222")),
        ("drop", "<default>:1")
    );
    let icmp: Vec<&Value> = flows.iter().filter(|f| f["proto"] == "icmp").collect();
    assert_eq!(icmp.len(), 2, "ping and timestamp are two exchanges");
    assert_eq!(
        (
            icmp[0]["icmp_type"].as_u64(),
            icmp[0]["verdict"].as_str(),
            icmp[0]["packets"].as_u64()
        ),
        (Some(8), Some("accept"), Some(6))
    );
    assert_eq!(
        (icmp[1]["icmp_type"].as_u64(), icmp[1]["verdict"].as_str()),
        (Some(13), Some("drop"))
    );
    assert_eq!(summary["unsupported"]["not-ip"], 1, "the ARP request");
    assert_eq!(summary["records"], 49);
}

#[test]
fn fragments_follow_their_first_fragment() {
    let (flows, summary) = run(&pcaps().join("fragments.pcap"), 3);
    assert_eq!(
        flow(&flows, "10.0.0.2:50020", "192.0.2.53:53")["packets"],
        3,
        "query + two fragments of the answer"
    );
    assert_eq!(
        flow(&flows, "[fd00::2]:50021", "[2001:db8::53]:53")["packets"],
        3
    );
    let blocked = flow(&flows, "10.0.0.2:50022", "198.51.100.5:9999");
    assert_eq!(
        (blocked["verdict"].as_str(), blocked["packets"].as_u64()),
        (Some("drop"), Some(2))
    );
    assert_eq!(summary["malformed"]["orphan-fragment"], 1);
    assert_eq!(
        summary["packets"]["drop"], 3,
        "the 9999 datagram's two fragments and the orphan"
    );
}

#[test]
fn malformed_packets_are_decisions_not_errors() {
    let (flows, summary) = run(&pcaps().join("malformed.pcap"), 1);
    assert_eq!(summary["records"], 7);
    assert_eq!(summary["malformed"]["total"], 5);
    assert_eq!(summary["malformed"]["bad-ip-header"], 3);
    assert_eq!(summary["malformed"]["truncated-transport"], 2);
    assert_eq!(summary["errors"], serde_json::json!([]));
    // The SYN cut short by the capture is still decided on its ports, and counted at its wire length.
    let cut = flow(&flows, "10.0.0.2:40032", "192.0.2.25:25");
    assert_eq!(
        (cut["verdict"].as_str(), cut["bytes"].as_u64()),
        (Some("accept"), Some(52))
    );
}

#[test]
fn every_link_type_and_timestamp_resolution() {
    let (flows, summary) = run(&pcaps().join("links.pcapng"), 2);
    assert_eq!(summary["unsupported"]["not-ip"], 1, "the LLDP frame");
    assert_eq!(flows.len(), 4);
    assert_eq!(
        flow(&flows, "10.0.0.2:40040", "192.0.2.10:443")["packets"],
        2,
        "VLAN and QinQ frames meet"
    );
    assert_eq!(
        flow(&flows, "10.0.0.2:40040", "192.0.2.10:443")["first_ts"],
        "2024-03-01T09:00:00.000000123Z"
    );
    assert_eq!(
        flow(&flows, "10.0.0.2:50040", "192.0.2.53:53")["first_ts"],
        "2024-03-01T09:00:00.030000000Z"
    );
    let (flows, _) = run(&pcaps().join("sll2_bigendian_nsec.pcap"), 1);
    assert_eq!(
        flow(&flows, "10.0.0.2:40050", "192.0.2.10:22")["first_ts"],
        "2024-03-01T09:00:00.000000101Z"
    );
    assert_eq!(
        flow(&flows, "10.0.0.2:50050", "192.0.2.10:5060")["verdict"],
        "drop"
    );
}

#[test]
fn zones_narrowing_and_macros() {
    let (flows, _) = run(&pcaps().join("zones.pcap"), 2);
    let vr = |s, d| verdict_rule(flow(&flows, s, d));
    assert_eq!(
        vr("10.0.0.2:40060", "172.16.0.5:22"),
        ("accept", "zones.rules:12")
    );
    assert_eq!(
        vr("10.0.0.2:40062", "192.0.2.66:80"),
        ("drop", "zones.rules:10"),
        "host rule before port rule"
    );
    assert_eq!(
        vr("10.0.0.2:40063", "198.51.100.20:80"),
        ("accept", "zones.rules:11")
    );
    assert_eq!(
        vr("10.0.0.2:40064", "198.51.100.20:25"),
        ("drop", "zones.rules:6"),
        "lan->net policy"
    );
    assert_eq!(
        vr("10.0.0.2:50060", "198.51.100.20:53"),
        ("accept", "zones.rules:13"),
        "DNS macro"
    );
    assert_eq!(
        vr("10.0.0.2", "198.51.100.20"),
        ("accept", "zones.rules:14"),
        "Ping macro, ICMP"
    );
    assert_eq!(
        vr("fd00::2", "2001:db8::1"),
        ("accept", "zones.rules:14"),
        "Ping macro, ICMPv6"
    );
    assert_eq!(
        vr("10.0.0.2", "198.51.100.30"),
        ("accept", "zones.rules:15"),
        "GRE to the tunnel endpoint"
    );
    assert_eq!(
        vr("192.0.2.77:40065", "10.0.0.2:22"),
        ("drop", "zones.rules:8"),
        "inbound: net->lan"
    );
}

#[test]
fn idle_and_closed_flows_expire() {
    let (flows, summary) = run(&pcaps().join("expiry.pcap"), 1);
    let udp: Vec<u64> = flows
        .iter()
        .filter(|f| f["proto"] == "udp")
        .map(|f| f["packets"].as_u64().unwrap())
        .collect();
    assert_eq!(
        udp,
        [2, 1],
        "60 s UDP timeout: packets at 0 s and 10 s share a flow, the one at 200 s starts anew"
    );
    let tcp: Vec<u64> = flows
        .iter()
        .filter(|f| f["proto"] == "tcp")
        .map(|f| f["packets"].as_u64().unwrap())
        .collect();
    assert_eq!(
        tcp,
        [5, 1],
        "the late ACK stays in the reset flow; the fresh SYN starts a new one"
    );
    assert_eq!(summary["flows"]["expired"], 2);
}

/// (verdict, rule or reason) of every flow, in first-packet order.
fn outcomes(flows: &[Value]) -> Vec<(String, String)> {
    flows
        .iter()
        .map(|f| {
            let why = f["rule"]
                .as_str()
                .map_or_else(|| f["reason"].as_str().unwrap().to_string(), str::to_string);
            (f["verdict"].as_str().unwrap().to_string(), why)
        })
        .collect()
}

fn expect(flows: &[Value], want: &[(&str, &str)]) {
    let got = outcomes(flows);
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(v, r)| (v.to_string(), r.to_string()))
        .collect();
    assert_eq!(got, want, "{flows:#?}");
}

#[test]
fn http_hosts_urls_and_methods() {
    let (flows, _) = run(&pcaps().join("http_hosts.pcap"), 2);
    let (pass, numeric) = (
        ("accept", "http_hosts.rules:2"),
        ("drop", "http_hosts.rules:3"),
    );
    expect(
        &flows,
        &[
            pass,                             // a: Host www.example.org
            numeric,                          // b: Host 192.0.2.80
            numeric,                          // c: Host 192.0.2.80:8080, to 8080
            numeric,                          // d: Host [2001:db8::80]
            numeric,                          // e: Host 3232235777 (decimal)
            numeric,                          // f: Host 0x7f.0.0.1 (hex)
            numeric, // g: absolute URI http://198.51.100.9/ with a named Host
            numeric, // h: CONNECT 203.0.113.7:443
            ("drop", "http_hosts.rules:4"), // i: /cgi-bin/gateway.dll?AsyncPoll
            ("reject", "http_hosts.rules:5"), // j: POST to files.example.org
            pass,    // k: hOsT:   WWW.Example.ORG
        ],
    );
}

#[test]
fn http_evasions_are_read_through() {
    let (flows, _) = run(&pcaps().join("http_evasions.pcap"), 1);
    // Split Host, two Host headers, payload after an empty ACK, a retransmission, a leading CRLF, two
    // segments in reverse order.
    let numeric = ("drop", "http_evasions.rules:3");
    expect(&flows[..6], &[numeric; 6]);
    // A retransmission whose bytes differ from the first copy: no rule can trust either.
    assert_eq!(
        (&flows[6]["verdict"], &flows[6]["reason"]),
        (&json!("drop"), &json!("ambiguous-stream")),
        "{:#}",
        flows[6]
    );
    assert_eq!(flows.len(), 7);
}

/// TCP flows that began before the capture: decided by their ports, or `option midstream` where a payload
/// rule would decide; marked, and kept out of the verdict counts.
#[test]
fn flows_seen_from_their_middle() {
    let (flows, summary) = run(&pcaps().join("midstream.pcap"), 2);
    let line = |i: usize| {
        (
            flows[i]["src"].as_str().unwrap().to_string(),
            flows[i]["verdict"].as_str().unwrap(),
            flows[i]["reason"].as_str().unwrap(),
            flows[i]["midstream"] == true,
        )
    };
    assert_eq!(
        line(0),
        ("10.0.0.2:50412".into(), "reject", "midstream", true),
        "HTTPS: 443 needs the first payload"
    );
    assert_eq!(
        line(1),
        ("10.0.0.2:47120".into(), "drop", "policy", true),
        "SSH already running"
    );
    assert_eq!(
        line(2),
        ("10.0.0.2:47121".into(), "drop", "policy", false),
        "a new SSH connection"
    );
    assert_eq!(
        line(3),
        ("10.0.0.2:39900".into(), "accept", "rule", true),
        "HTTP, the server's data first"
    );
    assert_eq!(
        line(4).0,
        "198.51.100.7:40000",
        "by the ports alone the peer looks like the client"
    );
    assert_eq!(
        summary["flows"]["drop"], 1,
        "only the new connection would be blocked: {summary:#}"
    );
    assert_eq!(summary["flows"]["midstream"], 4);
    assert_eq!(summary["packets"]["decided"], 11);
}

#[test]
fn tls_server_names() {
    let (flows, _) = run(&pcaps().join("tls_hellos.pcap"), 2);
    let named = ("accept", "tls_hellos.rules:3");
    expect(
        &flows,
        &[
            named,                            // a: SNI www.example.org
            ("drop", "tls_hellos.rules:4"),   // b: no SNI
            ("drop", "tls_hellos.rules:5"),   // c: SNI 192.0.2.44
            named,                            // d: the hello split over two TLS records
            named,                            // e: the hello split over three TCP segments
            ("reject", "tls_hellos.rules:6"), // f: SNI tunnel.example.net, IPv6
        ],
    );
}

#[test]
fn the_protocol_spoken_on_each_port() {
    let (flows, _) = run(&pcaps().join("ports_apps.pcap"), 2);
    let named = ("drop", "ports_apps.rules:7");
    let policy = ("drop", "ports_apps.rules:2");
    expect(
        &flows,
        &[
            named,                            // SSH on 443
            named,                            // OpenVPN on tcp 443
            policy,                           // HTTP on 443: not TLS
            policy,                           // TLS on 80: not HTTP
            named,                            // SOCKS5 on 1080
            named,                            // WireGuard on udp 51820
            named,                            // WireGuard on udp 443
            ("accept", "ports_apps.rules:5"), // QUIC on udp 443
            ("accept", "ports_apps.rules:6"), // DNS
            ("accept", "ports_apps.rules:3"), // TLS on 443
        ],
    );
}

#[test]
fn ftp_data_channels_exactly_as_announced() {
    let (flows, _) = run(&pcaps().join("ftp_passive.pcap"), 2);
    let control = ("accept", "<default>:4");
    let data = ("accept", "ftp-data");
    expect(
        &flows,
        &[
            control,
            data, // PASV (227) and its data connection to :50000
            control,
            data,                    // EPSV (229) over IPv6, data to :50001
            ("drop", "<default>:1"), // a connection to :50002 nobody announced
            control,
            data, // PORT: the server connects back from port 20
        ],
    );
}
