//! `outgate learn`, run as a user would: the proposal passes `check`; replaying the capture under it
//! accepts exactly the flows whose port got a rule and drops the ones listed as seen; its comments
//! name the evidence; flows from their middle and inbound flows never make a rule. Its inputs (logs,
//! broken files, the command line) are tested in `learn_inputs.rs`.

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::learn::*;
use serde_json::Value;

/// The flows (FTP data connections included) that the comments after `marker` count.
fn flows_counted(text: &str, marker: &str) -> u64 {
    let mut total = 0;
    for line in text.lines() {
        let Some((_, comment)) = line.split_once(marker) else {
            continue;
        };
        for item in comment.split([',', ';']).map(str::trim) {
            let Some((n, what)) = item.split_once(' ') else {
                continue;
            };
            if [
                "flow",
                "flows",
                "FTP data connection",
                "FTP data connections",
            ]
            .contains(&what)
            {
                total += n.parse::<u64>().expect("a count");
            }
        }
    }
    total
}

/// Whether `a` is in the network `cidr` (`10.0.0.0/24`, `fd00::/64`); IPv4 sits in the top 32 bits.
fn within(cidr: &str, a: IpAddr) -> bool {
    let (net, len) = cidr.split_once('/').expect("a CIDR");
    let (net, len): (IpAddr, u32) = (net.parse().unwrap(), len.parse().unwrap());
    let bits = |a: IpAddr| match a {
        IpAddr::V4(v) => (u128::from(v.to_bits()) << 96, true),
        IpAddr::V6(v) => (v.to_bits(), false),
    };
    let ((n, v4), (x, xv4)) = (bits(net), bits(a));
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    v4 == xv4 && n & mask == x & mask
}

fn address(endpoint: &str) -> IpAddr {
    endpoint
        .parse::<std::net::SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| endpoint.parse())
        .unwrap_or_else(|_| panic!("not an address: {endpoint}"))
}

fn flow_lines(file: &Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a flow line"))
        .collect()
}

/// The acceptance test: learns from `capture`, checks the proposal with `outgate check`, replays the
/// capture under it, and asserts the split. A flow the proposal was learned from is accepted exactly
/// when its port (or ICMP type) got a rule, or it is an FTP data connection its control connection
/// opened; the accepted ones are the flows the rules' comments count, the dropped ones those the
/// seen lines count. Flows from their middle, and with `--lan` inbound and LAN-internal flows, are
/// not learned from and not judged. Returns the proposal.
fn round_trip(capture: &str, flags: &[&str], lan: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let o = outgate(&learn_args(flags, lan, &[capture]));
    // A capture cut short still gives a proposal, from what came before its bad record.
    let cut_short = o.status.code() == Some(1) && stderr(&o).contains(": record ");
    assert!(o.status.success() || cut_short, "{capture}: {}", stderr(&o));
    let text = stdout(&o);
    let policy = dir.path().join("learned.rules");
    std::fs::write(&policy, &text).unwrap();

    let check = outgate(&["check", "--policy", path(&policy)]);
    assert!(
        check.status.success(),
        "{capture}: check refused the proposal: {}\n{text}",
        stderr(&check)
    );

    let flows = dir.path().join("flows.jsonl");
    let mut args = vec![
        "replay",
        "--policy",
        path(&policy),
        "--flows",
        path(&flows),
        "--workers",
        "2",
    ];
    for net in lan {
        args.extend(["--lan", net]);
    }
    args.push(capture);
    let replayed = outgate(&args);
    assert!(
        replayed.status.success() || cut_short,
        "{capture}: {}",
        stderr(&replayed)
    );

    let proposed = rules(&text, false);
    let (mut accepted, mut dropped) = (0, 0);
    for f in flow_lines(&flows) {
        if f["midstream"] == true {
            continue;
        }
        let (src, dst) = (
            address(f["src"].as_str().unwrap()),
            address(f["dst"].as_str().unwrap()),
        );
        let local = |a| lan.iter().any(|n| within(n, a));
        if !lan.is_empty() && (!local(src) || local(dst)) {
            continue;
        }
        let proto = f["proto"].as_str().unwrap();
        let key = match proto {
            "tcp" | "udp" => {
                let port = f["dst"].as_str().unwrap().rsplit(':').next().unwrap();
                Some((proto.to_string(), port.parse::<u16>().unwrap()))
            }
            "icmp" | "icmp6" => Some((proto.to_string(), f["icmp_type"].as_u64().unwrap() as u16)),
            _ => None,
        };
        let opened = key.is_some_and(|k| proposed.contains(&k)) || f["reason"] == "ftp-data";
        assert_eq!(
            f["verdict"] == "accept",
            opened,
            "{capture} {flags:?}: {f}\n{text}"
        );
        if opened {
            accepted += 1;
        } else {
            dropped += 1;
        }
    }
    assert_eq!(
        accepted,
        flows_counted(&text, "# learned: "),
        "{capture} {flags:?}: accepted flows against the rules' counts\n{text}"
    );
    assert_eq!(
        dropped,
        flows_counted(&text, "# seen: "),
        "{capture} {flags:?}: dropped flows against the seen lines' counts\n{text}"
    );
    text
}

#[test]
fn round_trip_on_the_bundled_captures() {
    let text = round_trip(&fixture("office_mix.pcap"), &[], &[]);
    assert!(
        rules(&text, false).is_empty(),
        "one client: no rule\n{text}"
    );
    let text = round_trip(&fixture("office_mix.pcap"), &EVERY_PORT, &[]);
    assert_eq!(
        rules(&text, false),
        set(&[
            ("tcp", 80),
            ("tcp", 443),
            ("tcp", 2222),
            ("tcp", 6881),
            ("tcp", 8080),
            ("udp", 53),
            ("udp", 123),
            ("udp", 1194),
            ("icmp", 8)
        ]),
        "{text}"
    );
    assert_eq!(rules(&text, true), set(&[("icmp", 13)]), "{text}");

    let text = round_trip(&fixture("learn_lan.pcap"), &[], &[]);
    assert_eq!(rules(&text, false).len(), 6, "{text}");
    let text = round_trip(&fixture("learn_lan.pcap"), &[], &LAN);
    assert_eq!(rules(&text, false).len(), 4, "{text}");
    round_trip(&fixture("learn_lan.pcap"), &EVERY_PORT, &LAN);

    // FTP: the data connections are accepted through the rule for 21, or dropped without it.
    let text = round_trip(&fixture("ftp_passive.pcap"), &EVERY_PORT, &[]);
    assert!(
        line_of(&text, "tcp", 21).contains("3 flows, 2 clients, 3 FTP data connections"),
        "{text}"
    );
    assert_eq!(
        rules(&text, false),
        set(&[("tcp", 21), ("tcp", 50002)]),
        "the announced data ports get no rule\n{text}"
    );
    let text = round_trip(&fixture("ftp_passive.pcap"), &["--min-flows", "4"], &[]);
    assert!(rules(&text, false).is_empty(), "{text}");

    for capture in [
        "midstream.pcap",
        "tls_hellos.pcap",
        "http_hosts.pcap",
        "zones.pcap",
    ] {
        round_trip(&fixture(capture), &[], &[]);
        round_trip(&fixture(capture), &EVERY_PORT, &[]);
    }
}

#[test]
fn round_trip_on_the_real_captures() {
    if !common::shared("round_trip_on_the_real_captures") {
        return;
    }
    let mut with_rules = 0;
    for capture in common::captures() {
        let capture = path(&capture).to_string();
        round_trip(&capture, &[], &[]);
        let text = round_trip(&capture, &EVERY_PORT, &[]);
        if !rules(&text, false).is_empty() {
            with_rules += 1;
        }
    }
    assert!(
        with_rules >= 25,
        "only {with_rules} real captures gave a rule"
    );
}

#[test]
fn the_rules_name_the_hosts_and_names_they_were_learned_from() {
    let text = learn(&[], &[], &[&fixture("tls_hellos.pcap")]);
    let https = line_of(&text, "tcp", 443);
    assert!(
        https.starts_with("ACCEPT loc net tcp 443    # learned: https, 6 flows, 2 clients, first 2024-03-01T10:00Z, last 2024-03-01T10:00Z, top: "),
        "{https}"
    );
    // The hello without a name counts for its server's address.
    assert!(
        https.ends_with("top: www.example.org (3), 192.0.2.43 (1), 192.0.2.44 (1) and 1 more"),
        "{https}"
    );

    let text = learn(&[], &[], &[&fixture("http_hosts.pcap")]);
    let http = line_of(&text, "tcp", 80);
    assert!(
        http.contains("# learned: http, 9 flows, 2 clients, ")
            && http.contains("top: www.example.org (3), "),
        "{http}"
    );

    // An answered hello names its SNI; a SYN nobody answered, its address.
    let text = learn(&[], &[], &[&fixture("learn_lan.pcap")]);
    assert!(
        line_of(&text, "tcp", 443).ends_with(
            "https, 5 flows, 4 clients, first 2024-03-01T09:00Z, last 2024-03-01T09:01Z, top: www.example.org (3), 192.0.2.7 (1), cdn.example.net (1)"
        ),
        "{text}"
    );
    assert!(
        line_of(&text, "tcp", 80).contains("top: www.example.org (2), 198.51.100.80 (1)"),
        "{text}"
    );
}

#[test]
fn ports_used_too_seldom_are_listed_not_proposed() {
    let capture = fixture("learn_lan.pcap");
    let text = learn(&[], &[], &[&capture]);
    assert!(
        line_of(&text, "tcp", 8443)
            .starts_with("# ACCEPT loc net tcp 8443 # seen: https-alt, 1 flow, 1 client, ")
            && line_of(&text, "tcp", 8443)
                .ends_with("; not proposed: fewer than 3 flows (--min-flows)"),
        "{text}"
    );
    assert!(
        line_of(&text, "tcp", 5222)
            .ends_with("; not proposed: one client only, fewer than 2 (--min-clients)"),
        "{text}"
    );
    assert_eq!(
        rules(&text, true),
        set(&[("tcp", 5222), ("tcp", 8443), ("icmp", 13)]),
        "{text}"
    );
    assert!(
        text.contains("\n# ACCEPT loc net:198.51.100.30 all # seen: gre, 1 flow, 1 client, "),
        "GRE is listed, narrowed to its far end\n{text}"
    );

    let text = learn(&["--min-flows", "1"], &[], &[&capture]);
    assert!(
        line_of(&text, "tcp", 8443)
            .ends_with("not proposed: one client only, fewer than 2 (--min-clients)"),
        "{text}"
    );
    let text = learn(&EVERY_PORT, &[], &[&capture]);
    assert!(rules(&text, false).is_superset(&set(&[("tcp", 5222), ("tcp", 8443)])));
    assert_eq!(
        rules(&text, true),
        set(&[("icmp", 13)]),
        "only echo requests\n{text}"
    );

    let text = learn(&["--min-flows", "4"], &[], &[&capture]);
    assert_eq!(
        rules(&text, false),
        set(&[("tcp", 443), ("tcp", 445)]),
        "{text}"
    );
    assert!(
        rules(&text, true).is_superset(&set(&[("tcp", 22), ("tcp", 80), ("udp", 53), ("icmp", 8)])),
        "{text}"
    );
    assert!(
        text.contains("at least 4 flows from at least 2 clients"),
        "{text}"
    );
}

#[test]
fn flows_from_their_middle_and_inbound_flows_never_make_a_rule() {
    // midstream.pcap: four flows from their middle (to 443, 22, 80, and a peer's 40000); one new SSH
    // connection.
    for lan in [&[][..], &["10.0.0.0/8"][..]] {
        let text = learn(&EVERY_PORT, lan, &[&fixture("midstream.pcap")]);
        assert_eq!(rules(&text, false), set(&[("tcp", 22)]), "{text}");
        assert!(rules(&text, true).is_empty(), "{text}");
        assert!(
            text.contains("\n# 4 flows from their middle and 0 inbound flows were not used.\n"),
            "{text}"
        );
        assert!(
            line_of(&text, "tcp", 22).contains("ssh, 1 flow, 1 client"),
            "{text}"
        );
    }

    let capture = fixture("learn_lan.pcap");
    // Without --lan every initiator is local: the SSH from outside and SMB inside the LAN are rules.
    let text = learn(&[], &[], &[&capture]);
    assert_eq!(
        rules(&text, false),
        set(&[
            ("tcp", 22),
            ("tcp", 80),
            ("tcp", 443),
            ("tcp", 445),
            ("udp", 53),
            ("icmp", 8)
        ]),
        "{text}"
    );
    assert!(
        !text.contains(" 993 "),
        "the IMAPS sessions began before the capture\n{text}"
    );
    assert!(text.contains("\n# 3 flows from their middle and 0 inbound flows were not used.\n"));

    // With --lan, they are inbound and LAN-internal, whatever the thresholds.
    for flags in [&[][..], &EVERY_PORT[..]] {
        let text = learn(flags, &LAN, &[&capture]);
        let all = rules(&text, false);
        for port in [22, 445, 993] {
            assert!(!all.contains(&("tcp".to_string(), port)), "{port}\n{text}");
            assert!(
                !rules(&text, true).contains(&("tcp".to_string(), port)),
                "{port}\n{text}"
            );
        }
        assert!(
            text.contains("\n# 3 flows from their middle and 3 inbound flows were not used.\n")
                && text.contains(
                    "\n# 4 flows between two LAN addresses were not used either (nothing here opens loc to loc:\n"
                )
                && text.contains("\nzone loc 10.0.0.0/24,fd00::/64 "),
            "{text}"
        );
    }
}

#[test]
fn rules_come_in_a_stable_order_whatever_the_worker_count() {
    let capture = fixture("learn_lan.pcap");
    let one = learn(&["--workers", "1"], &[], &[&capture]);
    assert_eq!(learn(&["--workers", "3"], &[], &[&capture]), one);
    let order: Vec<&str> = one
        .lines()
        .filter_map(|l| l.strip_prefix("ACCEPT loc net "))
        .map(|l| l.split("  ").next().unwrap_or(l).trim())
        .collect();
    assert_eq!(
        order,
        ["tcp 22", "tcp 80", "tcp 443", "tcp 445", "udp 53", "icmp 8"],
        "by protocol, then port\n{one}"
    );
}
