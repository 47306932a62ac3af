//! The real `outgate` binary, run as a user would: exit codes, messages, outputs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn outgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outgate"))
        .args(args)
        .output()
        .expect("run outgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn real(name: &str) -> String {
    common::real_dir().join(name).display().to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_default_policy_summarises_it() {
    let o = outgate(&["check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("<default>: valid"), "{s}");
    assert!(s.contains("loc -> net DROP  (<default>:1)"), "{s}");
    assert!(s.contains("rules: 19"), "{s}");
    assert!(
        s.contains(
            "tcp    ports 13, 21-23, 25, 43, 53, 63, 70, 79-80, 109-110, 113, 119, 123, 143, 443"
        ),
        "{s}"
    );
}

/// `--against` a daemon that cannot be asked fails the check: "cannot tell" is not "the same".
#[test]
fn check_against_an_address_nobody_answers_on_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().to_string();
    drop(listener);
    let o = outgate(&["check", "--against", &closed, "--against", "gw-b:9717"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("<default>: valid"), "{s}");
    assert!(
        s.contains(&format!("against {closed}: cannot tell: no connection")),
        "{s}"
    );
    assert!(
        s.contains("against gw-b:9717: cannot tell: not an IP:PORT"),
        "{s}"
    );
}

#[test]
fn printed_default_compiles_to_the_same_policy() {
    let o = outgate(&["check", "--print-default"]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.starts_with("loc net DROP\nACCEPT loc net 13 # system time sync\n"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "policy.rules", &text);
    let o = outgate(&["check", "--policy", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let builtin = stdout(&outgate(&["check"])).replace("<default>", "F");
    assert_eq!(stdout(&o).replace(p.to_str().unwrap(), "F"), builtin);
}

#[test]
fn broken_policy_lists_every_error_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let text = "policy loc net DROP\nACCEPT loc lan 80\nACCEPT loc net tcp 99999\nPERMIT loc net 22\nACCEPT loc net 443 # fine\n";
    let p = write(dir.path(), "bad.rules", text);
    let path = p.to_str().unwrap();
    let o = outgate(&["check", "--policy", path]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{path}:2:12: unknown zone 'lan'")),
        "{e}"
    );
    assert!(e.contains(&format!("{path}:3:20: bad port '99999'")), "{e}");
    assert!(
        e.contains(&format!("{path}:4:1: 'PERMIT' does not start a statement")),
        "{e}"
    );
    assert!(e.contains("3 error(s)"), "{e}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn check_warns_of_lines_that_never_match_and_still_passes() {
    let dir = tempfile::tempdir().unwrap();
    let text = "policy loc net DROP\nACCEPT loc net 80,443 # web\nDNS(ACCEPT) loc net\n\
                ACCEPT loc net tcp 8443 app=tls\nDROP loc net tcp 8443\nDROP loc net tcp 443\n\
                loc net REJECT\n";
    let p = write(dir.path(), "p.rules", text);
    let path = p.to_str().unwrap();
    let o = outgate(&["check", "--policy", path]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(": valid"), "{}", stdout(&o));
    assert_eq!(
        stderr(&o).lines().collect::<Vec<_>>(),
        [
            format!(
                "{path}:6: never matches: {path}:2 (ACCEPT loc net 80,443) already takes every flow it would (warning)"
            ),
            format!(
                "{path}:7: never matches: {path}:1 (policy loc net DROP) already decides every zone pair it names (warning)"
            ),
        ],
        "line 5 follows a rule with a payload term: not reported"
    );
    // Many: the first 20, then a count.
    let many: String = std::iter::once("policy loc net DROP\nACCEPT loc net tcp\n".to_string())
        .chain((1..=25).map(|port| format!("DROP loc net tcp {port}\n")))
        .collect();
    let p = write(dir.path(), "many.rules", &many);
    let o = outgate(&["check", "--policy", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 21, "{e}");
    assert!(
        e.ends_with("... and 5 more line(s) that never match (warning)\n"),
        "{e}"
    );
    // The built-in policy has none.
    assert_eq!(stderr(&outgate(&["check"])), "");
}

#[test]
fn missing_policy_file_is_one_clear_line() {
    let o = outgate(&["check", "--policy", "/nonexistent/policy.rules"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("/nonexistent/policy.rules: cannot read the policy"));
}

#[test]
fn a_replay_log_named_dash_is_refused_clearly() {
    // `run` writes a log named `-` to stdout; replay's stdout has its summary, so it says so
    // instead of making a file called `-`.
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(common::outgate_bin())
        .current_dir(dir.path())
        .args(["replay", "--tls-log", "-", "/nonexistent.pcap"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--tls-log -: replay prints its summary on stdout"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("-").exists());
}

#[test]
fn replay_table_announces_the_default_policy() {
    if !common::shared("replay_table_announces_the_default_policy") {
        return;
    }
    let o = outgate(&[
        "replay",
        "--workers",
        "2",
        &real("http_get_hostname_google.pcapng"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("using the built-in default policy"));
    let s = stdout(&o);
    assert!(s.contains("records                  10"), "{s}");
    let accept = s.lines().find(|l| l.starts_with("accept")).unwrap();
    assert_eq!(
        accept.split_whitespace().collect::<Vec<_>>(),
        ["accept", "10", "1"],
        "{s}"
    );
    let http = s.lines().find(|l| l.contains("<default>:13")).unwrap();
    assert!(
        http.contains("ACCEPT loc net 80 # HTTP world wide web"),
        "{http}"
    );
}

#[test]
fn replay_json_and_flow_lines() {
    if !common::shared("replay_json_and_flow_lines") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows.jsonl");
    let o = outgate(&[
        "replay",
        "--format",
        "json",
        "--flows",
        flows.to_str().unwrap(),
        &real("dns_udp.pcap"),
        &real("tls12_sni_curl.pcap"),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("one JSON object");
    assert_eq!(v["records"], 111);
    assert_eq!(v["packets"]["accept"], 111);
    assert_eq!(v["flows"]["total"], 2);
    assert_eq!(v["captures"].as_array().unwrap().len(), 2);
    let rules = v["rules"].as_array().unwrap();
    let https = rules.iter().find(|r| r["rule"] == "<default>:20").unwrap();
    assert_eq!(
        (https["flows"].as_u64(), https["verdict"].as_str()),
        (Some(1), Some("accept"))
    );

    let text = std::fs::read_to_string(&flows).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for key in [
        "proto",
        "src",
        "dst",
        "verdict",
        "rule",
        "reason",
        "packets",
        "bytes",
        "first_ts",
        "last_ts",
        "duration",
        "orig_packets",
        "orig_bytes",
        "resp_packets",
        "resp_bytes",
    ] {
        assert!(lines[0].get(key).is_some(), "missing {key}: {}", lines[0]);
    }
    // Replay writes a flow's line at its end: the directions add up to the whole.
    for l in &lines {
        let n = |k: &str| l[k].as_u64().unwrap();
        assert_eq!(n("orig_packets") + n("resp_packets"), n("packets"), "{l}");
        assert_eq!(n("orig_bytes") + n("resp_bytes"), n("bytes"), "{l}");
        assert!(l["last_ts"].as_str().unwrap() >= l["first_ts"].as_str().unwrap());
    }
    assert_eq!(lines[0]["proto"], "udp");
    assert_eq!(
        lines[0]["dst"].as_str().unwrap().rsplit(':').next(),
        Some("53")
    );
    assert_eq!(lines[1]["rule"], "<default>:20");
    assert!(lines[0]["first_ts"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn write_accepted_and_dropped_split_the_capture() {
    if !common::shared("write_accepted_and_dropped_split_the_capture") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (acc, drop) = (dir.path().join("acc.pcap"), dir.path().join("drop.pcap"));
    let cap = real("ssh_port22_and_8000.pcapng");
    let o = outgate(&[
        "replay",
        "--format",
        "json",
        "--write-accepted",
        acc.to_str().unwrap(),
        "--write-dropped",
        drop.to_str().unwrap(),
        &cap,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let count = |p: &Path| -> Value {
        let o = outgate(&["replay", "--format", "json", p.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let (a, d) = (count(&acc), count(&drop));
    assert_eq!(a["records"], all["packets"]["accept"]);
    assert_eq!(d["records"], all["packets"]["drop"]);
    assert!(a["records"].as_u64().unwrap() > 0 && d["records"].as_u64().unwrap() > 0);
    // Replayed again, the accepted file is all accepted and the dropped file all dropped.
    assert_eq!(a["packets"]["accept"], a["records"]);
    assert_eq!(d["packets"]["drop"], d["records"]);
}

#[test]
fn corrupt_capture_prints_what_was_read_and_fails() {
    if !common::shared("corrupt_capture_prints_what_was_read_and_fails") {
        return;
    }
    let o = outgate(&["replay", &real("truncated_file_mid_packet.pcap")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("records"),
        "the report is still printed"
    );
    let e = stderr(&o);
    assert!(
        e.contains("truncated_file_mid_packet.pcap: record 2"),
        "{e}"
    );
}

#[test]
fn unreadable_and_non_capture_files_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = write(dir.path(), "notes.txt", "this is not a capture\n");
    for (path, what) in [
        ("/nonexistent.pcap", "/nonexistent.pcap"),
        (text.to_str().unwrap(), "not a pcap or pcapng"),
    ] {
        let o = outgate(&["replay", path]);
        assert_eq!(o.status.code(), Some(1), "{path}");
        let e = stderr(&o);
        let errors: Vec<&str> = e
            .lines()
            .filter(|l| !l.contains("built-in default policy"))
            .collect();
        assert_eq!(errors.len(), 1, "{e}");
        assert!(errors[0].contains(what), "{e}");
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(outgate(&["replay"]).status.code(), Some(2));
    assert_eq!(
        outgate(&["replay", "--workers", "0", "x.pcap"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(outgate(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn report_on_replayed_logs_names_the_suspects_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let pcaps = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    let mut logs = Vec::new();
    for name in ["http_hosts", "ports_apps"] {
        let (flows, http) = (
            dir.path().join(format!("{name}.flows")),
            dir.path().join(format!("{name}.http")),
        );
        let o = outgate(&[
            "replay",
            "--policy",
            pcaps.join(format!("{name}.rules")).to_str().unwrap(),
            "--flows",
            flows.to_str().unwrap(),
            "--http-log",
            http.to_str().unwrap(),
            pcaps.join(format!("{name}.pcap")).to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        logs.extend([flows.display().to_string(), http.display().to_string()]);
    }
    let args: Vec<&str> = ["report", "--format", "json"]
        .into_iter()
        .chain(logs.iter().map(String::as_str))
        .collect();
    let first = outgate(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(
        stdout(&outgate(&args)),
        stdout(&first),
        "the same logs give the same report"
    );
    let r: Value = serde_json::from_str(&stdout(&first)).unwrap();
    let hosts: Vec<&str> = r["numeric_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    for host in ["192.0.2.80", "[2001:db8::80]", "198.51.100.9"] {
        assert!(hosts.contains(&host), "{host} in {hosts:?}");
    }
    let wrong: Vec<(String, u64)> = r["wrong_port"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["app"].as_str().unwrap().to_string(),
                w["port"].as_u64().unwrap(),
            )
        })
        .collect();
    for (app, port) in [("ssh", 443), ("openvpn", 443), ("http", 443), ("tls", 80)] {
        assert!(
            wrong.contains(&(app.to_string(), port)),
            "{app} on {port} in {wrong:?}"
        );
    }
    assert_eq!(r["clients"][0]["client"], "10.0.0.2");
    let table = stdout(&outgate(&["report", &logs[0], &logs[1]]));
    assert!(
        table.contains("Numeric-IP hosts") && table.contains("192.0.2.80"),
        "{table}"
    );
    assert_eq!(
        outgate(&["report", "/nonexistent.log"]).status.code(),
        Some(1)
    );
}

/// `--lan` tells replay which end of a flow seen from its middle is local; without it the ports tell.
#[test]
fn replay_lan_names_the_client_of_a_flow_seen_from_its_middle() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/midstream.pcap");
    let peer = |lan: &[&str]| -> String {
        let flows = dir.path().join("flows.jsonl");
        let mut args = vec!["replay", "--flows", flows.to_str().unwrap()];
        args.extend_from_slice(lan);
        args.push(capture.to_str().unwrap());
        let o = outgate(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(&flows).unwrap();
        let line: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(line["midstream"], true, "{line}");
        line["src"].as_str().unwrap().to_string()
    };
    assert_eq!(peer(&[]), "198.51.100.7:40000", "by the ports");
    assert_eq!(peer(&["--lan", "10.0.0.0/8"]), "10.0.0.2:1500", "by --lan");
    let o = outgate(&["replay", "--lan", "10.0.0.0/33", capture.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "a bad network is a usage error");
    assert!(stderr(&o).contains("bad prefix length"), "{}", stderr(&o));
}

/// `outgate rules` prints (no root needed): the new options reach the text, and bad values are usage
/// errors that say what is wrong.
#[test]
fn rules_mark_mask_and_limit_per_source() {
    let help = stdout(&outgate(&["rules", "--help"]));
    for flag in [
        "--mark-mask",
        "--limit-per-source",
        "--limit-burst",
        "--force",
    ] {
        assert!(help.contains(flag), "rules --help lacks {flag}:\n{help}");
    }
    assert!(stdout(&outgate(&["run", "--help"])).contains("--mark-mask"));

    let o = outgate(&[
        "rules",
        "--mark-mask",
        "0x7000",
        "--limit-per-source",
        "120/minute",
        "--limit-burst",
        "9",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "--comment \"outgate ruleset: mode=host queues=0 fail=closed mark-mask=0x7000 class-mask=0x78000 limit=2/second burst=9\"",
        "-A OUTGATE -m mark --mark 0x4000/0x7000 -j RETURN\n",
        "--hashlimit-above 2/sec --hashlimit-burst 9 --hashlimit-mode srcip --hashlimit-name outgate4 -j DROP\n",
        "--hashlimit-name outgate6 -j DROP\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }

    for (args, message) in [
        (
            &["rules", "--mark-mask", "0xf0f"][..],
            "invalid mark mask '0xf0f': the bits must be one contiguous run",
        ),
        (
            &["rules", "--limit-per-source", "5/hour"][..],
            "invalid --limit-per-source '5/hour': the unit is second or minute",
        ),
        (&["rules", "--limit-burst", "5"][..], "--limit-per-source"),
        (&["rules", "--force"][..], "--apply"),
        (
            &["rules", "--limit-per-source", "5/s", "--limit-burst", "0"][..],
            "0 is not in 1..=1000000",
        ),
        (&["run", "--mark-mask", "0x3"][..], "at least 3 bits"),
    ] {
        let o = outgate(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
}

/// `until=` in replay goes by the capture's time (office_mix was captured on 2024-03-01).
#[test]
fn replay_expires_rules_by_capture_time() {
    let dir = tempfile::tempdir().unwrap();
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps/office_mix.pcap");
    let accepted_8080 = |until: &str| -> u64 {
        let policy = write(
            dir.path(),
            "p.rules",
            &format!("policy loc net DROP\nACCEPT loc net tcp 8080 until={until}\n"),
        );
        let o = outgate(&[
            "replay",
            "--format",
            "json",
            "--policy",
            policy.to_str().unwrap(),
            capture.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        v["rules"][1]["flows"].as_u64().unwrap()
    };
    assert_eq!(
        accepted_8080("2024-12-31"),
        1,
        "still valid on the capture's day"
    );
    assert_eq!(accepted_8080("2024-02-29"), 0, "expired before the capture");
    let o = outgate(&[
        "check",
        "--policy",
        dir.path().join("p.rules").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("p.rules:2: expired 2024-03-01T00:00Z"),
        "{}",
        stderr(&o)
    );
}

/// Shaping, printed (no root needed): `--policy` with classes adds the CLASSIFY rules and the tc commands;
/// the other backends print their own setup and say where they run; `--apply` with them, bad class
/// masks and shaping that cannot work are refused, each saying why.
#[test]
fn rules_print_the_shaping_of_a_policy() {
    let help = stdout(&outgate(&["rules", "--help"]));
    for flag in ["--class-mask", "--policy", "--link-rate", "--shape-backend"] {
        assert!(help.contains(flag), "rules --help lacks {flag}:\n{help}");
    }
    assert!(stdout(&outgate(&["run", "--help"])).contains("--class-mask"));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.rules");
    std::fs::write(
        &policy,
        "option shape-rate 2mbit\nclass bulk 500kbit\npolicy loc net ACCEPT\n",
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let gateway = [
        "rules", "--mode", "gateway", "--lan", "lan0", "--wan", "wan0",
    ];
    let o = outgate(
        &[
            &gateway[..],
            &["--policy", policy, "--link-rate", "100mbit"],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in [
        "*mangle\n:OUTGATE-SHAPE - [0:0]\n-I POSTROUTING 1 -o lan0 -j OUTGATE-SHAPE\n-I POSTROUTING 2 -o wan0 -j OUTGATE-SHAPE\n",
        "-A OUTGATE-SHAPE -m connmark --mark 0x2100/0xff00 -j CLASSIFY --set-class 0001:0012\n",
        "shape=lan0,wan0 link-rate=100mbit class=slow:2mbit class=bulk:500kbit\"\n",
        "# Traffic control for the policy's classes, --shape-backend classify, --link-rate 100mbit:\n",
        "tc class replace dev wan0 parent 1:1 classid 1:12 htb rate 500kbit ceil 500kbit quantum 6250\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    for (backend, needle) in [
        ("fw", "handle 0x1100/0xff00 fw classid 1:11\n"),
        (
            "cake",
            "root cake bandwidth 1gbit diffserv4 fwmark 0xf000\n",
        ),
        ("ifb", "# Gateway mode needs no IFB"),
    ] {
        let o = outgate(
            &[
                &gateway[..],
                &["--policy", policy, "--shape-backend", backend],
            ]
            .concat(),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let text = stdout(&o);
        assert!(
            text.contains(needle),
            "{backend}: missing {needle:?} in\n{text}"
        );
        assert!(
            text.contains("`--apply` runs only classify"),
            "{backend}:\n{text}"
        );
        let o = outgate(
            &[
                &gateway[..],
                &["--policy", policy, "--shape-backend", backend, "--apply"],
            ]
            .concat(),
        );
        assert_eq!(o.status.code(), Some(1), "{backend}");
        assert!(
            stderr(&o).contains(&format!(
                "--shape-backend {backend} is printed, not applied"
            )),
            "{}",
            stderr(&o)
        );
    }
    let none = dir.path().join("none.rules");
    std::fs::write(&none, "policy loc net ACCEPT\n").unwrap();
    let o = outgate(&["rules", "--policy", none.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stdout(&o).contains("mangle"), "{}", stdout(&o));
    assert!(stderr(&o).contains("has no traffic classes: no traffic control is set up"));

    for (args, code, message) in [
        (
            vec!["rules", "--class-mask", "0xff0"],
            2,
            "invalid class mask '0xff0': it overlaps the mark mask 0xf00",
        ),
        (
            vec!["run", "--mark-mask", "0xf000", "--class-mask", "0xf000"],
            2,
            "invalid class mask '0xf000': it overlaps the mark mask 0xf000",
        ),
        (vec!["rules", "--class-mask", "0x700"], 2, "at least 4 bits"),
        (vec!["rules", "--class-mask", "zz"], 2, "expected a number"),
        (vec!["rules", "--link-rate", "1gbit"], 2, "--policy <FILE>"),
        (
            vec!["rules", "--policy", policy, "--link-rate", "fast"],
            2,
            "'fast' is not a rate",
        ),
        (
            vec!["rules", "--policy", policy],
            1,
            "shaping in host mode needs --wan",
        ),
        (
            vec![
                "rules",
                "--wan",
                "eth0",
                "--policy",
                policy,
                "--link-rate",
                "2mbit",
            ],
            1,
            "the policy's classes add up to 2500kbit, at or above --link-rate 2mbit",
        ),
        (
            vec!["rules", "--wan", "eth+", "--policy", policy],
            1,
            "cannot shape --wan eth+: it is a wildcard",
        ),
    ] {
        let o = outgate(&args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
    }
    // The class bits move the CLASSIFY match and the description.
    let o = outgate(&[
        "rules",
        "--wan",
        "eth0",
        "--class-mask",
        "0xf0000",
        "--policy",
        policy,
    ]);
    let text = stdout(&o);
    assert!(
        text.contains("--mark 0x10100/0xf0f00 -j CLASSIFY"),
        "{text}"
    );
    assert!(
        text.contains("mark-mask=0xf00 class-mask=0xf0000 "),
        "{text}"
    );
    assert!(
        text.contains("--restore-mark --nfmask 0xf0f00 --ctmask 0xf0f00"),
        "{text}"
    );
}
