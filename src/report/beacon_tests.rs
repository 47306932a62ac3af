//! RITA's beacon score on constructed timelines, each expected value worked by hand from the
//! formulas in the module docs (the arithmetic is in the comments).

use super::*;

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// Start times from a first time and the intervals after it.
fn timeline(start: u64, intervals: &[u64]) -> Vec<u64> {
    let mut t = vec![start];
    for d in intervals {
        t.push(t[t.len() - 1] + d);
    }
    t
}

#[test]
fn a_perfect_ten_second_beacon_scores_one() {
    // 30 connections 10 s apart, 100 bytes each; the input spans the beacon's 290 s.
    let ts = timeline(1_000, &[10; 29]);
    let s = score(&ts, &[100; 30], 290).unwrap();
    // Intervals all 10: Q1 = Q2 = Q3, skew 0 (score 1); MADM 0 (score 1). Count 30 / (290 / 10)
    // > 1, so 1; coverage 290 / 290 = 1. Sizes: skew 0, MADM 0, mode 100: 1 - 100/65535 = 0.998474.
    assert_eq!((s.ts_skew, s.ts_dispersion, s.ts_mode), (0.0, 0, 10));
    assert_eq!((s.conn_count_score, s.coverage), (1.0, 1.0));
    assert_eq!((s.ds_skew, s.ds_dispersion, s.ds_mode), (0.0, 0, 100));
    // ts 4/4 = 1; ds 2.998474/3 = 0.999491 -> 1.000 (rounded up); all (4 + 2.998474)/7 = 0.99978.
    assert_eq!(
        (s.ts_score, s.ds_score, s.score),
        (Milli(1000), Milli(1000), Milli(1000))
    );
}

#[test]
fn a_beacon_in_a_longer_input_loses_count_and_coverage() {
    // The same beacon in an input spanning 2900 s: count 30 / 290 = 0.103448, coverage 0.1.
    let ts = timeline(1_000, &[10; 29]);
    let s = score(&ts, &[100; 30], 2_900).unwrap();
    assert!(near(s.conn_count_score, 30.0 / 290.0));
    assert!(near(s.coverage, 0.1));
    // ts (1 + 1 + 0.103448 + 0.1) / 4 = 0.550862 -> 0.551;
    // all (2.203448 + 2.998474) / 7 = 0.743132 -> 0.744.
    assert_eq!((s.ts_score, s.score), (Milli(551), Milli(744)));
}

#[test]
fn random_intervals_and_sizes_score_low() {
    // 21 connections; the 20 intervals, sorted: 1 1 2 2 3 5 8 13 20 30 40 60 90 120 150 200 300 400
    // 500 600 (sum 2545 s, the input's span). Quartile indices round(q * 19): 5, 10, 14, so
    // Q1 = 5, Q2 = 40, Q3 = 150: skew (5 + 150 - 80) / 145 = 0.517241. Deviations from 40, sorted:
    // 0 10 20 20 27 32 35 37 38 38 39 ...: MADM (index 10) 39 s > 30, score 0.
    // Count 21 / 254.5 = 0.082515; coverage 1.
    let intervals = [
        40, 1, 600, 8, 150, 2, 90, 300, 13, 1, 500, 5, 30, 200, 3, 60, 400, 20, 120, 2,
    ];
    let ts = timeline(5_000, &intervals);
    // 21 sizes, sorted: 40 60 80 100 150 200 300 400 500 700 1000 1500 2000 3000 5000 8000 10000
    // 20000 30000 50000 60000. Indices round(q * 20): 5, 10, 15: Q1 = 200, Q2 = 1000, Q3 = 8000:
    // skew (200 + 8000 - 2000) / 7800 = 0.794872. Deviations from 1000, sorted: 0 300 500 500 600
    // 700 800 850 900 920 940 ...: MADM 940 > 32, score 0. All sizes differ: mode the smallest, 40:
    // smallness 1 - 40/65535 = 0.999390.
    let sizes = [
        5000, 40, 60000, 300, 1000, 80, 20000, 150, 700, 3000, 60, 50000, 200, 10000, 400, 1500,
        100, 30000, 500, 8000, 2000,
    ];
    let s = score(&ts, &sizes, 2_545).unwrap();
    assert!(near(s.ts_skew, 75.0 / 145.0));
    assert_eq!((s.ts_dispersion, s.ds_dispersion, s.ds_mode), (39, 940, 40));
    assert!(near(s.ds_skew, 6200.0 / 7800.0));
    assert!(near(s.conn_count_score, 21.0 / 254.5));
    assert_eq!(s.coverage, 1.0);
    // ts (0.482759 + 0 + 0.082515 + 1) / 4 = 0.391318 -> 0.392;
    // ds (0.205128 + 0 + 0.999390) / 3 = 0.401506 -> 0.402;
    // all (1.565274 + 1.204518) / 7 = 0.395685 -> 0.396.
    assert_eq!(
        (s.ts_score, s.ds_score, s.score),
        (Milli(392), Milli(402), Milli(396))
    );
}

#[test]
fn a_jittered_beacon_keeps_a_high_score() {
    // 24 intervals: 9 10 11 repeated 8 times, in that order; sizes 300 and 302 alternating (25).
    // Sorted intervals: 8 x 9, 8 x 10, 8 x 11. Indices round(q * 23): 6, 12, 17: Q1 = 9, Q2 = 10,
    // Q3 = 11: skew (9 + 11 - 20) / 2 = 0. Deviations: 16 x 1 and 8 x 0; sorted, index 12 is 1:
    // MADM 1, score 1 - 1/30 = 0.966667. The 240 s input is the beacon's: count 25/24 -> 1,
    // coverage 1. Sizes: 302 at the 13 even positions, 300 at the 12 odd ones; sorted 12 x 300, 13 x 302.
    // Indices round(q * 24): 6, 12, 18: Q1 = 300, Q2 = 302 (index 12 is the 13th value),
    // Q3 = 302: Q2 = Q3, skew taken as 0. Deviations from 302: 12 x 2, 13 x 0: index 12 is 0, MADM 0.
    // Mode 302 (13 times): smallness 1 - 302/65535 = 0.995392.
    let intervals: Vec<u64> = [9, 10, 11].repeat(8);
    let ts = timeline(0, &intervals);
    let sizes: Vec<u64> = (0..25)
        .map(|i| if i % 2 == 0 { 302 } else { 300 })
        .collect();
    let s = score(&ts, &sizes, 240).unwrap();
    assert_eq!((s.ts_skew, s.ts_dispersion), (0.0, 1));
    assert_eq!((s.ds_skew, s.ds_dispersion, s.ds_mode), (0.0, 0, 302));
    // ts (1 + 0.966667 + 1 + 1) / 4 = 0.991667 -> 0.992;
    // ds (1 + 1 + 0.995392) / 3 = 0.998464 -> 0.999;
    // all (3.966667 + 2.995392) / 7 = 0.994580 -> 0.995.
    assert_eq!(
        (s.ts_score, s.ds_score, s.score),
        (Milli(992), Milli(999), Milli(995))
    );
}

#[test]
fn fewer_than_twenty_connections_are_not_scored() {
    let ts = timeline(0, &[10; 18]);
    assert_eq!(score(&ts, &[100; 19], 180), None);
    let ts = timeline(0, &[10; 19]);
    assert!(score(&ts, &[100; 20], 190).is_some());
}

#[test]
fn scores_are_rounded_up_to_thousandths() {
    assert_eq!(milli(0.3950001), Milli(396));
    assert_eq!(milli(0.395), Milli(395));
    assert_eq!(milli(0.0), Milli(0));
    assert_eq!(Milli(744).to_string(), "0.744");
    assert_eq!(Milli(1000).to_string(), "1.000");
}

/// A log with a 10 s beacon (lines 1-25), a two-hour connection (26) and SSH on 443 from the
/// beacon's client (27).
fn beacon_log() -> String {
    let mut out = String::new();
    for i in 0..25u64 {
        let t = i * 10;
        out.push_str(&format!(
            r#"{{"proto":"tcp","src":"10.0.0.9:{}","dst":"198.51.100.50:443","verdict":"accept","rule":null,"reason":"default","packets":10,"bytes":900,"first_ts":"2024-03-01T10:{:02}:{:02}.250000000Z","last_ts":"2024-03-01T10:{:02}:{:02}.750000000Z","duration":0.5,"orig_packets":5,"orig_bytes":300,"resp_packets":5,"resp_bytes":600}}"#,
            40_000 + i,
            t / 60,
            t % 60,
            t / 60,
            t % 60
        ));
        out.push('\n');
    }
    out.push_str(r#"{"proto":"tcp","src":"10.0.0.11:50000","dst":"203.0.113.5:22","verdict":"accept","rule":null,"reason":"default","packets":4000,"bytes":900000,"first_ts":"2024-03-01T10:00:30.000000000Z","duration":7200.0,"orig_bytes":400000}"#);
    out.push('\n');
    out.push_str(r#"{"proto":"tcp","src":"10.0.0.9:51000","dst":"192.0.2.99:443","verdict":"accept","rule":null,"reason":"default","packets":40,"bytes":9000,"first_ts":"2024-03-01T10:01:00.000000000Z","app":"ssh"}"#);
    out.push('\n');
    out
}

#[test]
fn the_report_ranks_the_beacon_and_cites_its_lines() {
    let r = super::super::report_from(&[("t".to_string(), beacon_log())]);
    assert_eq!(
        r.beacons.len(),
        1,
        "the other pairs have too few connections"
    );
    let b = &r.beacons[0];
    assert_eq!(
        (b.client.as_str(), b.server.as_str()),
        ("10.0.0.9", "198.51.100.50")
    );
    assert_eq!(b.connections, 25);
    // The input spans 240 s, the beacon's own: intervals 10 s (1, 1), count 25/24 -> 1, coverage
    // 1; sizes 300 (orig_bytes, not bytes): smallness 1 - 300/65535 = 0.995422, ds 0.998474 ->
    // 0.999; all (4 + 2.995422)/7 = 0.999346 -> 1.000.
    assert_eq!(b.scores.ds_mode, 300);
    assert_eq!(
        (b.scores.ds_score, b.scores.score),
        (Milli(999), Milli(1000))
    );
    assert_eq!(b.cites, ["t:1", "t:2", "t:3", "t:4", "t:5"]);
    assert_eq!(b.cites_more, 20);

    assert_eq!(r.long_connections.len(), 1);
    let l = &r.long_connections[0];
    assert_eq!(
        (l.client.as_str(), l.duration, l.cite.as_str()),
        ("10.0.0.11", 7200.0, "t:26")
    );

    let who: Vec<(&str, Milli)> = r
        .suspects
        .iter()
        .map(|s| (s.client.as_str(), s.score))
        .collect();
    // 10.0.0.9: the beacon (1.000) and a wrong-port item (0.25); 10.0.0.11: a long connection (0.5).
    assert_eq!(who, [("10.0.0.9", Milli(1250)), ("10.0.0.11", Milli(500))]);
    let top = &r.suspects[0].reasons;
    assert_eq!((top[0].kind, top[0].cites[0].as_str()), ("beacon", "t:1"));
    assert_eq!(
        (top[1].kind, top[1].cites.as_slice()),
        ("wrong_port", &["t:27".to_string()][..])
    );
    assert_eq!(r.suspects[1].reasons[0].cites, ["t:26"]);

    let json = r.json();
    assert_eq!(json["beacons"][0]["score"], 1.0);
    assert_eq!(json["suspects"][0]["score"], 1.25);
    assert_eq!(json["long_connections"][0]["cite"], "t:26");
    let table = r.table();
    assert!(table.contains(
        "+1.000 beacon to 198.51.100.50 (score 1.000, 25 connections): 25 lines: t:1, t:2"
    ));
    assert!(table.contains("+0.500 long connection to 203.0.113.5:22 (7200 s): 1 line: t:26"));
}

#[test]
fn the_new_sections_do_not_depend_on_line_order() {
    let log = beacon_log();
    let mut lines: Vec<&str> = log.lines().collect();
    lines.reverse();
    let reversed = lines.join("\n");
    let a = super::super::report_from(&[("t".to_string(), log.clone())]);
    let b = super::super::report_from(&[("t".to_string(), reversed)]);
    let strip = |r: &super::super::Report| {
        let j = r.json();
        (
            j["beacons"][0]["score"].clone(),
            j["beacons"][0]["ts_mode"].clone(),
            j["suspects"]
                .as_array()
                .map(|v| v.iter().map(|s| s["client"].clone()).collect::<Vec<_>>()),
            j["suspects"]
                .as_array()
                .map(|v| v.iter().map(|s| s["score"].clone()).collect::<Vec<_>>()),
        )
    };
    assert_eq!(strip(&a), strip(&b));
    // The same input gives the same bytes.
    assert_eq!(
        a.table(),
        super::super::report_from(&[("t".to_string(), log)]).table()
    );
}

#[test]
fn long_connections_count_once_per_destination() {
    let line = |src: &str, dst: &str, d: f64| {
        format!(
            r#"{{"proto":"tcp","src":"{src}","dst":"{dst}","verdict":"accept","rule":null,"reason":"default","packets":9,"bytes":900,"duration":{d}}}"#
        )
    };
    let log = [
        line("10.0.0.1:1000", "192.0.2.7:22", 3600.0),
        line("10.0.0.1:1001", "192.0.2.8:22", 4000.0),
        line("10.0.0.1:1002", "192.0.2.7:22", 7200.0),
        line("10.0.0.2:1000", "192.0.2.7:22", 3599.9),
    ]
    .join("\n");
    let r = super::super::report_from(&[("l".to_string(), log)]);
    let cites: Vec<&str> = r.long_connections.iter().map(|l| l.cite.as_str()).collect();
    assert_eq!(
        cites,
        ["l:3", "l:2", "l:1"],
        "longest first; 3599.9 s is not long"
    );
    assert_eq!(r.suspects.len(), 1);
    let s = &r.suspects[0];
    // Two destinations, 0.5 each, however many connections to each.
    assert_eq!((s.client.as_str(), s.score), ("10.0.0.1", Milli(1000)));
    let what: Vec<(&str, &[String])> = s
        .reasons
        .iter()
        .map(|r| (r.what.as_str(), r.cites.as_slice()))
        .collect();
    assert_eq!(
        what,
        [
            (
                "2 long connections to 192.0.2.7:22 (longest 7200 s)",
                &["l:3".to_string(), "l:1".to_string()][..]
            ),
            (
                "long connection to 192.0.2.8:22 (4000 s)",
                &["l:2".to_string()][..]
            ),
        ]
    );
}

/// A live log: 22 polls 2 s apart, each a decision line written at its first packet (the SYN's 60
/// bytes) and, interleaved as the kernel ends them, its end line with the kernel's counts. `ends`
/// says how many of the polls have their end line yet.
fn live_log(ends: usize) -> String {
    let mut out = Vec::new();
    for i in 0..22u64 {
        let (port, t) = (40_000 + i, 2 * i);
        out.push(format!(
            r#"{{"proto":"tcp","src":"10.0.0.9:{port}","dst":"198.51.100.50:80","verdict":"accept","rule":"p:2","reason":"rule","packets":1,"bytes":60,"first_ts":"2024-03-01T10:00:{t:02}.100000000Z","ts":"2024-03-01T10:00:{t:02}.100000000Z"}}"#
        ));
        if (i as usize) < ends {
            out.push(format!(
                r#"{{"end":true,"ts":"2024-03-01T10:01:{t:02}.000000000Z","proto":"tcp","src":"10.0.0.9:{port}","dst":"198.51.100.50:80","verdict":"accept","packets":12,"bytes":1400,"first_ts":"2024-03-01T10:00:{t:02}.100000000Z","last_ts":"2024-03-01T10:00:{:02}.900000000Z","duration":1.8,"orig_packets":6,"orig_bytes":420,"resp_packets":6,"resp_bytes":980}}"#,
                t + 1
            ));
        }
    }
    out.join("\n")
}

#[test]
fn a_live_flow_counts_once_though_logged_at_its_decision_and_its_end() {
    let r = super::super::report_from(&[("f".to_string(), live_log(22))]);
    let j = r.json();
    assert_eq!(
        (&j["inputs"]["flow_lines"], &j["inputs"]["end_lines"]),
        (&serde_json::json!(22), &serde_json::json!(22))
    );
    // The destinations count decisions: 22 flows, not 44.
    assert_eq!(j["top_destinations_by_flows"][0]["flows"], 22);
    let b = &r.beacons[0];
    assert_eq!(b.connections, 22, "each poll once");
    // Sized by the end lines' orig_bytes (420), cited at the end lines (the even lines).
    assert_eq!(b.scores.ds_mode, 420);
    assert_eq!(b.cites, ["f:2", "f:4", "f:6", "f:8", "f:10"]);

    // Before any end line is in, the decision lines make the beacon (sized by the SYN's bytes).
    let r = super::super::report_from(&[("f".to_string(), live_log(0))]);
    let b = &r.beacons[0];
    assert_eq!((b.connections, b.scores.ds_mode), (22, 60));
    assert_eq!(b.cites[0], "f:1");

    // With the last 12 ends still to come, the 10 ended polls count by their end lines and the
    // others by their decisions: 22 still. Lines 1-20 alternate; 21-32 are decisions.
    let r = super::super::report_from(&[("f".to_string(), live_log(10))]);
    let b = &r.beacons[0];
    assert_eq!(b.connections, 22);
    assert_eq!(b.cites, ["f:2", "f:4", "f:6", "f:8", "f:10"]);
    assert_eq!(b.cites_more, 17);

    // An end line with the kernel's counts and times left out (accounting off) is still read.
    let bare = r#"{"end":true,"ts":"2024-03-01T10:01:00.000000000Z","proto":"udp","src":"10.0.0.9:5000","dst":"198.51.100.50:53","verdict":"accept"}"#;
    let r = super::super::report_from(&[("b".to_string(), bare.to_string())]);
    let i = &r.json()["inputs"];
    assert_eq!(
        (&i["end_lines"], &i["not_understood"]),
        (&serde_json::json!(1), &serde_json::json!(0))
    );
    assert!(r.beacons.is_empty() && !r.is_empty());
}

#[test]
fn each_end_line_takes_one_decision_line_of_its_flow() {
    // Echo flows between two hosts carry no ports: 22 decisions, each 2 s after the other, and the
    // ends of the first 10, stamped 3 s late (the kernel stamps a flow held for inspection when it
    // is let go). Each end takes one decision; the 12 others count on their own: 22 in all.
    let mut out = Vec::new();
    for i in 0..22u64 {
        out.push(format!(
            r#"{{"proto":"icmp","src":"10.0.0.9","dst":"198.51.100.50","icmp_type":8,"verdict":"accept","rule":null,"reason":"default","packets":1,"bytes":84,"first_ts":"2024-03-01T10:00:{:02}.000000000Z"}}"#,
            2 * i
        ));
    }
    for i in 0..10u64 {
        out.push(format!(
            r#"{{"end":true,"ts":"2024-03-01T10:05:00Z","proto":"icmp","src":"10.0.0.9","dst":"198.51.100.50","icmp_type":8,"verdict":"accept","packets":2,"bytes":168,"first_ts":"2024-03-01T10:00:{:02}.000000000Z","duration":30.0,"orig_bytes":84}}"#,
            2 * i + 3
        ));
    }
    let r = super::super::report_from(&[("e".to_string(), out.join("\n"))]);
    assert_eq!(r.beacons[0].connections, 22);
    // The ends first, then the decisions no end took (lines 11 to 22).
    assert_eq!(r.beacons[0].cites, ["e:23", "e:24", "e:25", "e:26", "e:27"]);
    assert_eq!(r.beacons[0].cites_more, 17);
}
