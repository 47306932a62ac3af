//! `outgate diff`, the real binary: two policies over the bundled captures and their flow logs.

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

fn pcap(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
        .display()
        .to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// The default policy's lines that office_mix.pcap uses, with port 80's on line 5 and 443's on line 7.
const OFFICE: &str = "loc net DROP\nACCEPT loc net ICMP 8 # ping\nACCEPT loc net 53 # DNS\n\
                      ACCEPT loc net 123 # NTP\nACCEPT loc net 80 # HTTP\nACCEPT loc net 21\n\
                      ACCEPT loc net 443 # HTTPS\n";

/// `outgate diff --old A --new B INPUTS... [EXTRA...]` with the policies' texts.
fn diff(dir: &Path, old: &str, new: &str, inputs: &[&str], extra: &[&str]) -> Output {
    let old = write(dir, "old.rules", old);
    let new = write(dir, "new.rules", new);
    let mut args = vec!["diff", "--old", &old, "--new", &new];
    args.extend_from_slice(extra);
    args.extend_from_slice(inputs);
    outgate(&args)
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

/// The changes of a JSON diff without what only a log has (its line citations) and the policy paths.
fn changes(v: &Value) -> Value {
    let mut c = v["changes"].clone();
    for change in c.as_array_mut().unwrap() {
        for side in ["old", "new"] {
            change[side]["rule"] = Value::Null;
        }
        for row in change["rows"].as_array_mut().unwrap() {
            row.as_object_mut().unwrap().remove("cites");
            row.as_object_mut().unwrap().remove("cites_more");
        }
    }
    c
}

/// `replay --flows` of `capture` under `policy`: the flow log of the same traffic.
fn flow_log(dir: &Path, policy: &str, capture: &str) -> String {
    let policy = write(dir, "logged.rules", policy);
    let log = dir.join("flows.jsonl").display().to_string();
    let o = outgate(&["replay", "--policy", &policy, "--flows", &log, capture]);
    assert!(o.status.success(), "{}", stderr(&o));
    log
}

#[test]
fn identical_policies_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let policy = std::fs::read_to_string(pcap("http_hosts.rules")).unwrap();
    let captures = [pcap("office_mix.pcap"), pcap("http_hosts.pcap")];
    let inputs: Vec<&str> = captures.iter().map(String::as_str).collect();
    let o = diff(dir.path(), &policy, &policy, &inputs, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains(
            "flows: 23 flows compared: 0 decision changed, 0 enforcement changed only, 23 unchanged"
        ),
        "{s}"
    );
    assert!(s.ends_with("\nnothing changes\n"), "{s}");
    assert_eq!(stderr(&o), "");
}

#[test]
fn closing_a_port_lists_exactly_its_flows_with_old_and_new_lines() {
    let dir = tempfile::tempdir().unwrap();
    let closed = OFFICE.replace("ACCEPT loc net 443 # HTTPS\n", "");
    let capture = pcap("office_mix.pcap");
    let o = diff(dir.path(), OFFICE, &closed, &[&capture], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = stdout(&o);
    let (old, new) = (dir.path().join("old.rules"), dir.path().join("new.rules"));
    let expected = format!(
        "decision changes:\n  ACCEPT  {}:7 (ACCEPT loc net 443)\n  -> DROP  {}:1 (loc net DROP)\n     \
         2 flows, 18 packets, 5588 bytes\n      tcp/443     192.0.2.10                1 flow, 10 packets, 3367 bytes\n      \
         tcp/443     2001:db8::10              1 flow, 8 packets, 2221 bytes\n",
        old.display(),
        new.display()
    );
    assert!(s.ends_with(&expected), "{s}");
    assert!(
        s.contains(
            "flows: 12 flows compared: 2 decision changed, 0 enforcement changed only, 10 unchanged"
        ),
        "{s}"
    );

    // The JSON says the same, with the same numbers.
    let j = json(&diff(
        dir.path(),
        OFFICE,
        &closed,
        &[&capture],
        &["--format", "json"],
    ));
    assert_eq!(j["flows"]["compared"], 12);
    assert_eq!(j["flows"]["changed"], 2);
    assert_eq!(j["flows"]["unchanged"], 10);
    let c = &j["changes"];
    assert_eq!(c.as_array().unwrap().len(), 1, "{c}");
    assert_eq!(c[0]["kind"], "decision");
    assert_eq!(c[0]["old"]["rule"], format!("{}:7", old.display()));
    assert_eq!(c[0]["old"]["verdict"], "accept");
    assert_eq!(c[0]["new"]["rule"], format!("{}:1", new.display()));
    assert_eq!(c[0]["new"]["verdict"], "drop");
    assert_eq!(c[0]["new"]["reason"], "policy");
    assert_eq!(
        (&c[0]["flows"], &c[0]["packets"], &c[0]["bytes"]),
        (&Value::from(2), &Value::from(18), &Value::from(5588))
    );
    let rows: Vec<(String, u64, u64, u64)> = c[0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!((&r["proto"], &r["port"]), (&"tcp".into(), &443.into()));
            let n = |k: &str| r[k].as_u64().unwrap();
            (
                r["host"].as_str().unwrap().to_string(),
                n("flows"),
                n("packets"),
                n("bytes"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("192.0.2.10".to_string(), 1, 10, 3367),
            ("2001:db8::10".to_string(), 1, 8, 2221)
        ]
    );
    // Each number of the JSON is in the table.
    for r in c[0]["rows"].as_array().unwrap() {
        let line = format!("1 flow, {} packets, {} bytes", r["packets"], r["bytes"]);
        assert!(s.contains(&line), "{line}: {s}");
    }
}

#[test]
fn a_shape_class_is_part_of_the_decision_by_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let capture = pcap("office_mix.pcap");
    let head = "policy loc net ACCEPT\nclass bulk 1mbit\nclass p2p 200kbit\n";
    let bulk = format!("{head}SHAPE(bulk) loc net tcp 6881\n");
    let p2p = format!("{head}SHAPE(p2p) loc net tcp 6881\n");
    let o = diff(dir.path(), &bulk, &p2p, &[&capture], &["--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let j = json(&o);
    let c = &j["changes"][0];
    assert_eq!(
        (&c["kind"], &c["old"]["verdict"], &c["old"]["class"]),
        (&"decision".into(), &"shape".into(), &"bulk".into())
    );
    assert_eq!(
        (&c["new"]["verdict"], &c["new"]["class"]),
        (&"shape".into(), &"p2p".into())
    );
    assert_eq!(
        (&c["flows"], &c["packets"], &c["bytes"]),
        (&1.into(), &2.into(), &92.into())
    );
    assert_eq!(j["flows"]["changed"], 1);
    let text = stdout(&diff(dir.path(), &bulk, &p2p, &[&capture], &[]));
    assert!(text.contains("  SHAPE(bulk)  "), "{text}");
    assert!(text.contains("  -> SHAPE(p2p)  "), "{text}");
    // The same class declared in another place is the same class.
    let reordered = "policy loc net ACCEPT\nclass p2p 200kbit\nclass bulk 1mbit\nSHAPE(bulk) loc net tcp 6881\n";
    let o = diff(dir.path(), &bulk, reordered, &[&capture], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn an_audit_line_changes_what_is_enforced_or_what_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let capture = pcap("office_mix.pcap");
    let enforced = "policy loc net ACCEPT\nDROP loc net tcp 8080\n";
    let audited = "policy loc net ACCEPT\nAUDIT(DROP) loc net tcp 8080\n";
    // Auditing a DROP line: the decision stays DROP, the packets now pass.
    let o = diff(dir.path(), enforced, audited, &[&capture], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("0 decision changed, 1 enforcement changed only, 11 unchanged"),
        "{s}"
    );
    assert!(s.contains("enforcement changes only"), "{s}");
    assert!(!s.contains("decision changes:"), "{s}");
    assert!(
        s.contains(&format!(
            "  -> DROP  {}:2 (AUDIT(DROP) loc net tcp 8080), not enforced: gets ACCEPT\n     1 flow, 3 packets, 156 bytes",
            dir.path().join("new.rules").display()
        )),
        "{s}"
    );
    let j = json(&diff(
        dir.path(),
        enforced,
        audited,
        &[&capture],
        &["--format", "json"],
    ));
    let c = &j["changes"][0];
    assert_eq!(c["kind"], "enforcement");
    assert_eq!(
        (&c["old"]["verdict"], &c["old"]["enforced"]),
        (&"drop".into(), &true.into())
    );
    assert_eq!(
        (&c["new"]["verdict"], &c["new"]["enforced"]),
        (&"drop".into(), &false.into())
    );
    assert_eq!(c["new"]["applied"]["verdict"], "accept");
    // Trialling a new DROP line: the decision changes, what is enforced does not.
    let plain = "policy loc net ACCEPT\n";
    let j = json(&diff(
        dir.path(),
        plain,
        audited,
        &[&capture],
        &["--format", "json"],
    ));
    assert_eq!(j["flows"]["changed"], 1);
    let c = &j["changes"][0];
    assert_eq!(c["kind"], "decision");
    assert_eq!(
        (&c["old"]["verdict"], &c["new"]["verdict"]),
        (&"accept".into(), &"drop".into())
    );
    assert_eq!(c["new"]["applied"]["verdict"], "accept");
}

#[test]
fn a_flow_log_gives_the_changes_the_capture_gives() {
    let dir = tempfile::tempdir().unwrap();
    // Port rules only: every flow of the log is decidable.
    let capture = pcap("office_mix.pcap");
    let log = flow_log(dir.path(), OFFICE, &capture);
    let closed = OFFICE
        .replace("ACCEPT loc net 80 # HTTP\n", "")
        .replace("443", "443,8080");
    let from_capture = json(&diff(
        dir.path(),
        OFFICE,
        &closed,
        &[&capture],
        &["--format", "json"],
    ));
    let o = diff(dir.path(), OFFICE, &closed, &[&log], &["--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let from_log = json(&o);
    assert_eq!(changes(&from_log), changes(&from_capture));
    assert_eq!(from_log["flows"], from_capture["flows"]);
    assert_eq!(
        from_log["changes"].as_array().unwrap().len(),
        2,
        "{from_log}"
    );
    // The log's rows cite their lines: the flow to port 80 is the log's 4th line.
    let port80 = from_log["changes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["rows"].as_array().unwrap())
        .find(|r| r["port"] == 80)
        .unwrap();
    assert_eq!(port80["cites"], serde_json::json!([format!("{log}:4")]));

    // Payload rules: the log tells the host, not the URL or the method.
    let capture = pcap("http_hosts.pcap");
    let rules = std::fs::read_to_string(pcap("http_hosts.rules")).unwrap();
    let log = flow_log(dir.path(), &rules, &capture);
    let rejects = rules.replace(
        "DROP   loc net tcp 80,8080 host=numeric",
        "REJECT loc net tcp 80,8080 host=numeric",
    );
    assert_ne!(rejects, rules);
    let from_capture = json(&diff(
        dir.path(),
        &rules,
        &rejects,
        &[&capture],
        &["--format", "json"],
    ));
    let o = diff(dir.path(), &rules, &rejects, &[&log], &["--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let from_log = json(&o);
    // The numeric hosts are decided by the host rule before any URL rule: the same 7 flows.
    assert_eq!(from_capture["flows"]["changed"], 7);
    assert_eq!(changes(&from_log), changes(&from_capture));
    // The named hosts pass the host rule and meet the URL and method rules: undecidable from the log.
    assert_eq!(from_log["flows"]["compared"], 7);
    assert_eq!(from_log["flows"]["undecidable"], 4);
    assert_eq!(from_capture["flows"]["undecidable"], 0);
    let cites: Vec<String> = [1, 9, 10, 11]
        .iter()
        .map(|n| format!("{log}:{n}"))
        .collect();
    assert_eq!(from_log["undecidable"]["cites"], serde_json::json!(cites));
    let text = stdout(&diff(dir.path(), &rules, &rejects, &[&log], &[]));
    assert!(text.contains("undecidable from the log: 4 flows"), "{text}");
}

#[test]
fn bad_log_lines_are_counted_and_cited_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let capture = pcap("office_mix.pcap");
    let log = flow_log(dir.path(), OFFICE, &capture);
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"proto\":\"tcp\",\"src\":\"10.0.0.2:1\"}\nnot json at all\n\n");
    text.push_str("{\"ts\":\"x\",\"client\":\"10.0.0.2:1\",\"server\":\"192.0.2.1:443\",\"sni\":null,\"alpn\":[],\"verdict\":\"drop\",\"rule\":null,\"reason\":\"rule\"}\n");
    std::fs::write(&log, text).unwrap();
    let o = diff(dir.path(), OFFICE, OFFICE, &[&log], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains(&format!("not understood: 2 lines: {log}:13, {log}:14\n")),
        "{s}"
    );
    assert!(s.contains("skipped: 1 line (HTTP or TLS log lines"), "{s}");
    assert!(s.contains("12 flows compared"), "{s}");
}

#[test]
fn flows_from_their_middle_are_compared_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let capture = pcap("midstream.pcap");
    let rules = std::fs::read_to_string(pcap("midstream.rules")).unwrap();
    let log = flow_log(dir.path(), &rules, &capture);
    let ssh = format!("{rules}ACCEPT loc net tcp 22\noption midstream DROP\n");
    for input in [&capture, &log] {
        let o = diff(dir.path(), &rules, &ssh, &[input], &["--format", "json"]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let j = json(&o);
        assert_eq!(j["flows"]["compared"], 5, "{input}");
        assert_eq!(j["flows"]["midstream"], 4, "{input}");
        let c = j["changes"].as_array().unwrap();
        let to22 = c.iter().find(|c| c["new"]["verdict"] == "accept").unwrap();
        assert_eq!(
            (&to22["flows"], &to22["midstream"]),
            (&2.into(), &1.into()),
            "{input}"
        );
        let mid = c
            .iter()
            .find(|c| c["new"]["reason"] == "midstream")
            .unwrap();
        assert_eq!(
            (
                &mid["old"]["verdict"],
                &mid["new"]["verdict"],
                &mid["midstream"]
            ),
            (&"reject".into(), &"drop".into(), &1.into()),
            "{input}"
        );
    }
    let text = stdout(&diff(dir.path(), &rules, &ssh, &[&capture], &[]));
    assert!(
        text.contains("2 flows, 4 packets, 280 bytes (1 seen from the middle)"),
        "{text}"
    );
    // --lan tells which end of a flow from its middle is the client, as in replay.
    let lan = format!("{rules}ACCEPT loc net tcp 40000\n");
    let without = diff(dir.path(), &rules, &lan, &[&capture], &[]);
    assert_eq!(without.status.code(), Some(0), "{}", stdout(&without));
    let with = diff(
        dir.path(),
        &rules,
        &lan,
        &[&capture],
        &["--lan", "10.0.0.0/8"],
    );
    assert_eq!(with.status.code(), Some(1), "{}", stdout(&with));
    assert!(
        stdout(&with).contains("tcp/40000   198.51.100.7"),
        "{}",
        stdout(&with)
    );
}

#[test]
fn flows_the_two_flow_tables_cut_differently_are_counted_not_compared() {
    let dir = tempfile::tempdir().unwrap();
    // UDP to :5000 at 0 s, 10 s and 200 s: two flows with a 60 s timeout, three with 5 s.
    let rules = std::fs::read_to_string(pcap("expiry.rules")).unwrap();
    let short = rules.replace("option timeout udp 60", "option timeout udp 5");
    assert_ne!(short, rules);
    let o = diff(dir.path(), &rules, &short, &[&pcap("expiry.pcap")], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = stdout(&o);
    assert!(
        s.contains("flows: 4 flows compared: 0 decision changed"),
        "{s}"
    );
    assert!(
        s.contains("not compared: 1 flow found under one policy only"),
        "{s}"
    );
    assert!(
        s.ends_with("\nnothing changes among the flows compared (1 not compared, see above)\n"),
        "{s}"
    );
}

#[test]
fn errors_exit_2_and_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let capture = pcap("office_mix.pcap");
    let missing = dir.path().join("missing.pcap").display().to_string();
    let o = diff(dir.path(), OFFICE, OFFICE, &[&capture, &missing], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{missing}: cannot open")),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");

    let o = diff(
        dir.path(),
        OFFICE,
        "policy loc net DROP\nACCEPT loc lan 80\n",
        &[&capture],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let new = dir.path().join("new.rules").display().to_string();
    assert!(
        stderr(&o).contains(&format!("{new}:2:12: unknown zone 'lan'")),
        "{}",
        stderr(&o)
    );

    // A pcap header cut short: named with the file.
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, [0xd4, 0xc3, 0xb2, 0xa1]).unwrap();
    let cut = cut.display().to_string();
    let o = diff(dir.path(), OFFICE, OFFICE, &[&cut], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{cut}: record 1: truncated")),
        "{}",
        stderr(&o)
    );

    let text = write(dir.path(), "notes.txt", "these are not flows\n");
    let o = diff(dir.path(), OFFICE, OFFICE, &[&text], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{text}: neither a capture nor a flow log")),
        "{}",
        stderr(&o)
    );

    let missing_policy = outgate(&[
        "diff",
        "--old",
        "/nonexistent/old.rules",
        "--new",
        "/nonexistent/new.rules",
        &capture,
    ]);
    assert_eq!(missing_policy.status.code(), Some(2));
    assert!(stderr(&missing_policy).contains("/nonexistent/old.rules: cannot read the policy"));

    let usage = outgate(&["diff", "--new", &new, &capture]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("--old"), "{}", stderr(&usage));
}

#[test]
fn the_default_policy_against_itself_changes_nothing_on_any_real_capture() {
    if !common::shared("the_default_policy_against_itself_changes_nothing_on_any_real_capture") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "default.rules", outgate::policy::DEFAULT_POLICY);
    for capture in common::captures() {
        let capture: PathBuf = capture;
        let c = capture.display().to_string();
        let o = outgate(&["diff", "--old", &policy, "--new", &policy, &c]);
        let s = stdout(&o);
        assert!(s.ends_with("\nnothing changes\n"), "{c}: {s}");
        assert!(
            s.contains(" 0 decision changed, 0 enforcement changed only"),
            "{c}: {s}"
        );
        match o.status.code() {
            Some(0) => assert_eq!(stderr(&o), "", "{c}"),
            // A capture cut short is compared as far as it reads, and named with its bad record.
            Some(2) => assert!(
                stderr(&o).contains(&format!("{c}: record ")),
                "{c}: {}",
                stderr(&o)
            ),
            other => panic!("{c}: exit {other:?}: {s}{}", stderr(&o)),
        }
    }
}

/// A rule that expires is judged at each flow's time, in a capture as in its log: office_mix runs from
/// 09:00:00 to 09:00:01 on 2024-03-01, so `until=2024-03-01T09:00` (its first second) closes 443 for
/// every flow, and one at 10:00 for none.
#[test]
fn rules_that_expire_are_judged_at_each_flows_time() {
    let dir = tempfile::tempdir().unwrap();
    let capture = pcap("office_mix.pcap");
    let log = flow_log(dir.path(), OFFICE, &capture);
    for (until, changed) in [("2024-03-01T09:00", true), ("2024-03-01T10:00", false)] {
        let expiring = OFFICE.replace(
            "ACCEPT loc net 443 # HTTPS",
            &format!("ACCEPT loc net 443 until={until} # HTTPS"),
        );
        for input in [&capture, &log] {
            let o = diff(
                dir.path(),
                OFFICE,
                &expiring,
                &[input],
                &["--format", "json"],
            );
            assert_eq!(
                o.status.code(),
                Some(if changed { 1 } else { 0 }),
                "{until} {input}: {}",
                stdout(&o)
            );
            if changed {
                let v = json(&o);
                let c = &v["changes"][0];
                assert_eq!(
                    (&c["old"]["verdict"], &c["new"]["verdict"]),
                    (&"accept".into(), &"drop".into()),
                    "{v}"
                );
            }
        }
    }
}
