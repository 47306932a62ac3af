//! `outgate learn`'s inputs, run as a user would: a flow log gives the rules its capture gives, HTTP
//! and TLS logs lend their names, lines that cannot be read are cited as FILE:LINE and skipped, files
//! that cannot be read fail with one line, and the command line teaches.

mod common;

use common::learn::*;

#[test]
fn a_flow_log_gives_the_rules_its_capture_gives() {
    let dir = tempfile::tempdir().unwrap();
    // The policy learn replays captures under: a log written under it names the same hosts.
    let inspecting = dir.path().join("inspect.rules");
    std::fs::write(&inspecting, outgate::learn::READ_EVERY_PAYLOAD).unwrap();
    let cases: [(&str, &[&str]); 5] = [
        ("learn_lan.pcap", &[]),
        ("learn_lan.pcap", &LAN),
        ("office_mix.pcap", &[]),
        ("ftp_passive.pcap", &[]),
        ("midstream.pcap", &[]),
    ];
    for (name, lan) in cases {
        let capture = fixture(name);
        let plain = replayed_log(dir.path(), "plain.jsonl", &capture, None, lan);
        let read = replayed_log(dir.path(), "read.jsonl", &capture, Some(&inspecting), lan);
        for flags in [&[][..], &EVERY_PORT[..]] {
            let from_capture = learn(flags, lan, &[&capture]);
            let from_read = learn(flags, lan, &[path(&read)]);
            assert_eq!(body(&from_read), body(&from_capture), "{name} {flags:?}");
            // A log written under a policy that read no payload has addresses for evidence.
            let from_plain = learn(flags, lan, &[path(&plain)]);
            let strip = |t: &str| body(t).into_iter().map(without_top).collect::<Vec<_>>();
            assert_eq!(strip(&from_plain), strip(&from_capture), "{name} {flags:?}");
            assert!(
                from_plain.contains(&format!("# Learned from: {} (log, ", path(&plain))),
                "{from_plain}"
            );
        }
    }
}

/// A log of an enforcing policy: a port it blocked every time is an attempt that failed (maybe a
/// tunnel retrying), never a rule; one it let through is learned, its blocked flows counted.
#[test]
fn flows_the_policy_in_force_blocked_are_not_learned() {
    let dir = tempfile::tempdir().unwrap();
    let capture = fixture("learn_lan.pcap");
    let policy = dir.path().join("enforced.rules");
    std::fs::write(
        &policy,
        "policy loc net ACCEPT\nDROP loc net tcp 445\nREJECT loc net tcp 22 host=numeric\n",
    )
    .unwrap();
    let log = dir.path().join("enforced.jsonl");
    let o = outgate(&[
        "replay",
        "--flows",
        path(&log),
        "--policy",
        path(&policy),
        &capture,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let learned = learn(&EVERY_PORT, &[], &[path(&log)]);
    let smb = line_of(&learned, "tcp", 445);
    assert!(smb.starts_with("# ACCEPT"), "{smb}");
    assert!(smb.contains("4 blocked when logged"), "{smb}");
    assert!(
        smb.contains("the policy in force blocked every one"),
        "{smb}"
    );
    assert!(line_of(&learned, "tcp", 443).starts_with("ACCEPT"));
    // The same log, audited: the flows were only logged as blocked, so they are learned.
    let audited = replayed_log(dir.path(), "audited.jsonl", &capture, Some(&policy), &[]);
    let learned = learn(&EVERY_PORT, &[], &[path(&audited)]);
    assert!(
        line_of(&learned, "tcp", 445).starts_with("ACCEPT"),
        "{learned}"
    );
}

#[test]
fn tls_and_http_logs_lend_their_names_to_the_flows() {
    let dir = tempfile::tempdir().unwrap();
    let capture = fixture("tls_hellos.pcap");
    let flows = replayed_log(dir.path(), "flows.jsonl", &capture, None, &[]);
    let tls = dir.path().join("tls.jsonl");
    let o = outgate(&[
        "replay",
        "--policy",
        &fixture("tls_hellos.rules"),
        "--tls-log",
        path(&tls),
        &capture,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));

    let from_capture = learn(&[], &[], &[&capture]);
    let from_logs = learn(&[], &[], &[path(&tls), path(&flows)]);
    assert_eq!(
        line_of(&from_logs, "tcp", 443),
        line_of(&from_capture, "tcp", 443)
    );
    assert!(!from_logs.contains("HTTP/TLS log line"), "{from_logs}");

    // Without the flows, the hellos name connections no flow holds: said, and nothing is learned.
    let alone = learn(&[], &[], &[path(&tls)]);
    assert!(
        alone.contains(
            "\n# 6 HTTP/TLS log lines named a connection no flow line or capture holds, left out.\n"
        ),
        "{alone}"
    );
    assert!(rules(&alone, false).is_empty() && rules(&alone, true).is_empty());
}

#[test]
fn unreadable_log_lines_are_cited_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let flows = replayed_log(
        dir.path(),
        "flows.jsonl",
        &fixture("learn_lan.pcap"),
        None,
        &[],
    );
    let text = std::fs::read_to_string(&flows).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut broken = Vec::new();
    broken.extend_from_slice(lines[0].as_bytes());
    broken.push(b'\n');
    broken.extend_from_slice(&lines[1].as_bytes()[..50]); // cut short, as a crash leaves a log
    broken.push(b'\n');
    broken.extend_from_slice(b"\x00\x01\xfe\xffbinary\n");
    broken.extend_from_slice(b"{\"proto\":\"tcp\"}\n");
    for l in &lines[2..] {
        broken.extend_from_slice(l.as_bytes());
        broken.push(b'\n');
    }
    let log = dir.path().join("broken.jsonl");
    std::fs::write(&log, &broken).unwrap();
    let name = path(&log);

    let o = outgate(&["learn", name]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    for want in [
        format!(
            "outgate: {name}:2: cut short: EOF while parsing a string (column 50) (line skipped)"
        ),
        format!("outgate: {name}:3: not UTF-8 text (byte 3) (line skipped)"),
        format!("outgate: {name}:4: 'src' is missing (line skipped)"),
    ] {
        assert!(e.contains(&want), "missing {want:?} in\n{e}");
    }
    let out = stdout(&o);
    assert!(
        out.contains(
            "\n# Warning: 3 log lines were not understood, left out (listed on stderr).\n"
        ),
        "{out}"
    );
    // The other lines still count: one flow fewer than the capture's 31.
    assert!(out.contains("\n# Flows: 30, started between "), "{out}");

    // Many bad lines: ten cited, the rest counted.
    let mut many = "garbage\n".repeat(25);
    many.push_str(lines[0]);
    many.push('\n');
    let log = dir.path().join("many.jsonl");
    std::fs::write(&log, many).unwrap();
    let o = outgate(&["learn", path(&log)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.matches("(line skipped)").count(), 10, "{e}");
    assert!(
        e.contains(&format!(
            "{}:10: not JSON: expected value (column 1)",
            path(&log)
        )),
        "{e}"
    );
    assert!(
        e.contains("outgate: 15 more log lines not understood (25 in all), skipped"),
        "{e}"
    );
}

#[test]
fn files_that_cannot_be_read_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixture("office_mix.pcap");

    let o = outgate(&["learn", &good, "/nonexistent/flows.jsonl"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "outgate: /nonexistent/flows.jsonl: cannot read: No such file or directory (os error 2)"
    );
    assert!(stdout(&o).is_empty(), "no proposal from half the inputs");

    // Binary garbage: neither a capture nor a log.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, garbage).unwrap();
    let o = outgate(&["learn", &good, path(&junk)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with(&format!(
            "outgate: {}:1: neither a capture (pcap, pcapng) nor an outgate log (JSON lines): ",
            path(&junk)
        )) && e
            .trim_end()
            .ends_with("; no line of the file could be read"),
        "{e}"
    );
    assert!(stdout(&o).is_empty());

    // A capture cut inside a record: what came before it is learned from, and the run fails.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let o = outgate(&["learn", path(&cut)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("outgate: {}: record 49: ", path(&cut)))
            && e.contains("(what came before it was used)"),
        "{e}"
    );
    let out = stdout(&o);
    assert!(out.starts_with("# Proposed by `outgate learn`"), "{out}");
    assert!(
        out.contains(&format!("\n# Warning: {}: record 49: ", path(&cut))),
        "{out}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_teaches() {
    assert_eq!(outgate(&["learn"]).status.code(), Some(2));
    let o = outgate(&["learn", "--min-flows", "0", "x.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    let o = outgate(&["learn", "--lan", "10.0.0.0/33", "x.pcap"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad prefix length"), "{}", stderr(&o));

    let help = stdout(&outgate(&["learn", "--help"]));
    for want in [
        "It never changes a live policy",
        "outgate learn --lan 10.0.0.0/8 monday.pcap flows.jsonl > proposed.rules",
        "outgate check --policy proposed.rules",
        "--min-flows <N>",
        "--min-clients <N>",
        "--lan <CIDR>",
        "--policy-name <NAME>",
        "FILE:LINE",
    ] {
        assert!(help.contains(want), "learn --help lacks {want:?}:\n{help}");
    }
    let text = learn(
        &["--policy-name", "office\nweek 45"],
        &[],
        &[&fixture("office_mix.pcap")],
    );
    assert!(text.contains("\n# Name: office week 45\n"), "{text}");
}
