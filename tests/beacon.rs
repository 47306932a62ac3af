//! Flow ends and beacons end to end: a capture built here with a client that connects every 10 s is
//! replayed by the real binary, whose flow log `outgate report` reads and ranks the timer first; live,
//! a client polling a server every 2 s through the daemon is ranked as a beacon from the daemon's log.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use serde_json::Value;

const BEACON: [u8; 4] = [10, 0, 0, 9];
const NOISE: [u8; 4] = [10, 0, 0, 20];
const C2: [u8; 4] = [198, 51, 100, 50];
const WEB: [u8; 4] = [203, 0, 113, 7];
const T0: u64 = 1_700_000_000;

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: &str, data: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, 1, 1000);
    for f in flags.chars() {
        b = match f {
            'S' => b.syn(),
            'A' => b.ack(1),
            'R' => b.rst(),
            _ => b,
        };
    }
    let mut out = Vec::new();
    b.write(&mut out, data).expect("build a packet");
    out
}

/// One connection at `at` (ms since T0): SYN, SYN-ACK, the client's request of `sent` bytes, the
/// server's answer of `answer` bytes, the client's RST.
fn connection(
    packets: &mut Vec<(u64, Vec<u8>)>,
    at: u64,
    (client, sport): ([u8; 4], u16),
    server: [u8; 4],
    sent: usize,
    answer: usize,
) {
    let c = (client, sport);
    packets.push((at, tcp(c.0, c.1, server, 443, "S", &[])));
    packets.push((at + 10, tcp(server, 443, c.0, c.1, "SA", &[])));
    packets.push((at + 20, tcp(c.0, c.1, server, 443, "A", &vec![b'q'; sent])));
    packets.push((
        at + 30,
        tcp(server, 443, c.0, c.1, "A", &vec![b'r'; answer]),
    ));
    packets.push((at + 40, tcp(c.0, c.1, server, 443, "R", &[])));
}

fn write_capture(path: &Path) {
    let mut packets = Vec::new();
    // The beacon: 25 connections 10 s apart, the same 50-byte request each time.
    for i in 0..25u64 {
        connection(
            &mut packets,
            i * 10_000,
            (BEACON, 40_000 + i as u16),
            C2,
            50,
            500,
        );
    }
    // Browsing: 21 connections at uneven times inside the beacon's 240 s, requests of many sizes.
    let gaps = [
        7, 1, 19, 3, 31, 2, 11, 5, 23, 1, 13, 4, 17, 2, 29, 6, 3, 37, 8, 2,
    ];
    let mut at = 500;
    for (i, gap) in std::iter::once(&0).chain(gaps.iter()).enumerate() {
        at += gap * 1000;
        connection(
            &mut packets,
            at,
            (NOISE, 50_000 + i as u16),
            WEB,
            40 + 97 * i,
            3000,
        );
    }
    packets.sort_by_key(|(at, _)| *at);
    let file = std::fs::File::create(path).expect("create the capture");
    let header = PcapHeader {
        datalink: DataLink::RAW,
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    for (at, data) in &packets {
        let ts = Duration::from_secs(T0) + Duration::from_millis(*at);
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, data))
            .expect("write a packet");
    }
}

fn run(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_outgate"))
        .args(args)
        .output()
        .expect("run outgate");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn replay_writes_flow_ends_and_report_ranks_the_beacon() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cap, flows) = (dir.path().join("b.pcap"), dir.path().join("flows.jsonl"));
    write_capture(&cap);
    let (cap, flows) = (cap.to_str().unwrap(), flows.to_str().unwrap());
    run(&["replay", "--format", "json", "--flows", flows, cap]);

    let text = std::fs::read_to_string(flows).expect("read the flow log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 46);
    let first = lines
        .iter()
        .find(|l| l["src"] == "10.0.0.9:40000")
        .expect("the beacon's first flow");
    // SYN, request (40 + 50), RST from the client: 40 + 90 + 40; SYN-ACK and the answer (40 + 500).
    assert_eq!(
        [
            &first["orig_packets"],
            &first["orig_bytes"],
            &first["resp_packets"],
            &first["resp_bytes"]
        ],
        [3, 170, 2, 580]
    );
    assert_eq!(first["duration"], 0.04);
    assert_eq!(first["first_ts"], "2023-11-14T22:13:20.000000000Z");
    assert_eq!(first["last_ts"], "2023-11-14T22:13:20.040000000Z");

    let report: Value =
        serde_json::from_str(&run(&["report", "--format", "json", flows])).expect("report JSON");
    let beacons = report["beacons"].as_array().expect("beacons");
    assert_eq!(beacons.len(), 2);
    // The timer: intervals all 10 s (skew 0, MADM 0), count 25/24 -> 1, coverage 240/240; sizes all
    // 170 (skew 0, MADM 0, smallness 1 - 170/65535): (4 + 2.997406) / 7 = 0.99963 -> 1.000.
    assert_eq!(
        (
            &beacons[0]["client"],
            &beacons[0]["server"],
            &beacons[0]["score"]
        ),
        (
            &Value::from("10.0.0.9"),
            &Value::from("198.51.100.50"),
            &Value::from(1.0)
        )
    );
    // Browsing, at whole seconds 0 7 8 27 30 61 63 74 79 102 103 116 120 137 139 168 174 177 214 222
    // 224: intervals sorted 1 1 2 2 2 3 3 4 5 6 7 8 11 13 17 19 23 29 31 37, Q1 3, Q2 7, Q3 17
    // (indices 5, 10, 14): skew 6/14, score 0.571429; deviations from 7 sorted 0 1 1 2 3 4 4 4 5 5 5
    // ...: MADM 5, score 0.833333; count 21/24 = 0.875; coverage 224/240 = 0.933333. Sizes
    // 160 + 97 i (i = 0..20): symmetric (skew 0), MADM 485 (score 0), mode 160: 0.997559.
    // (3.213095 + 1.997559) / 7 = 0.744379 -> 0.745: below 0.8, no reason for suspicion.
    assert_eq!(beacons[1]["client"], "10.0.0.20");
    assert_eq!(beacons[1]["score"], 0.745);
    let suspects = report["suspects"].as_array().expect("suspects");
    assert_eq!(suspects.len(), 1, "browsing is no reason: {suspects:?}");
    assert_eq!(suspects[0]["client"], "10.0.0.9");
    assert_eq!(suspects[0]["reasons"][0]["kind"], "beacon");
    assert!(
        suspects[0]["reasons"][0]["cites"][0]
            .as_str()
            .is_some_and(|c| c.ends_with("flows.jsonl:1"))
    );
}

/// Live (root, namespaces): a client fetches a page every 2 s, 22 times, through the daemon in host
/// mode. The daemon's flow log has a decision line for each poll and, once the kernel ended it, an
/// end line with the kernel's counts; `outgate report` lists the pair as a beacon of 22 connections
/// (each poll once, by its end line) scoring 0.8 or more, and the client as a suspect.
#[test]
fn a_client_polling_every_two_seconds_is_ranked_as_a_beacon() {
    if !common::root("a_client_polling_every_two_seconds_is_ranked_as_a_beacon") {
        return;
    }
    let _g = common::serial();
    let mut s = common::host_mode();
    let www = s.lab.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("task"), "nothing to do\n").unwrap();
    s.lab.http_server(&s.server.clone(), 80, &www);
    s.rules("--apply", "");
    s.lab.sh(
        &s.filter,
        "sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
    );
    s.daemon("policy loc net DROP\nACCEPT loc net 80\n", "");
    s.lab.sh(
        &s.client,
        &format!(
            "for i in $(seq 22); do curl -s -o /dev/null --max-time 1 http://{}/task; sleep 2; done",
            s.server4
        ),
    );
    assert!(
        common::wait_for(Duration::from_secs(10), || s.flows_log().len() >= 22).is_some(),
        "the daemon logged {} flows",
        s.flows_log().len()
    );
    // The kernel ends each entry after TIME_WAIT (set to 1 s above) when it reaps it, which a dump
    // does at once.
    assert!(
        common::wait_for(Duration::from_secs(20), || {
            s.lab.try_sh(&s.filter, "conntrack -L >/dev/null 2>&1");
            s.end_lines().len() >= 22
        })
        .is_some(),
        "the daemon logged {} flow ends",
        s.end_lines().len()
    );
    let log = s.lab.path("flows.jsonl");
    let report: Value =
        serde_json::from_str(&run(&["report", "--format", "json", log.to_str().unwrap()]))
            .expect("report JSON");
    s.rules("--remove", "");
    let b = &report["beacons"][0];
    assert_eq!(b["server"], s.server4.as_str(), "{report}");
    assert_eq!(b["connections"], 22, "{b}");
    assert!(b["score"].as_f64() >= Some(0.8), "{b}");
    // Sized by what the client sent (the request, not just its SYN), and cited at the end lines.
    assert!(b["ds_mode"].as_u64() > Some(100), "{b}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for cite in b["cites"].as_array().unwrap() {
        let n: usize = cite
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            lines[n - 1].starts_with(r#"{"end":true"#),
            "{cite}: {}",
            lines[n - 1]
        );
    }
    assert_eq!(report["suspects"][0]["client"], b["client"], "{report}");
    assert_eq!(report["suspects"][0]["reasons"][0]["kind"], "beacon");
}
