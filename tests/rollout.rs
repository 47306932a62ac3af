//! The rollout tools in replay, run as a user would: `--audit` logs and counts what the policy would do
//! while every packet passes, an `AUDIT(...)` line trials one rule while the rest enforce, SHAPE flows
//! are counted by class with their bytes, and `outgate report` reads it all back.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const OFFICE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/office_mix.pcap");
/// A LAN's minute with flows seen from their middle, which the verdict counts leave out.
const LAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/pcaps/learn_lan.pcap");

fn outgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outgate"))
        .args(args)
        .output()
        .expect("run outgate")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `replay --format json` with the extra arguments; the summary, and the flow log's lines.
fn replay(policy: &Path, extra: &[&str], dir: &Path) -> (Value, Vec<Value>) {
    replay_of(OFFICE, policy, extra, dir)
}

fn replay_of(capture: &str, policy: &Path, extra: &[&str], dir: &Path) -> (Value, Vec<Value>) {
    let flows = dir.join("flows.jsonl");
    let mut args = vec![
        "replay",
        "--format",
        "json",
        "--policy",
        policy.to_str().unwrap(),
        "--flows",
        flows.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(capture);
    let o = outgate(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = serde_json::from_slice(&o.stdout).unwrap();
    let lines = std::fs::read_to_string(&flows)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (summary, lines)
}

/// Records in a capture, as replay reads them.
fn records(capture: &Path) -> u64 {
    let o = outgate(&["replay", "--format", "json", capture.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["records"].as_u64().unwrap()
}

const STRICT: &str = "\
policy loc net DROP
ACCEPT loc net udp 53
ACCEPT loc net tcp 80
";

#[test]
fn replay_audit_logs_the_verdicts_and_passes_every_packet() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "strict.rules", STRICT);
    let (enforced, enforced_lines) = replay(&policy, &[], dir.path());
    let (accepted, dropped) = (dir.path().join("a.pcap"), dir.path().join("d.pcap"));
    let (audited, audited_lines) = replay(
        &policy,
        &[
            "--audit",
            "--write-accepted",
            accepted.to_str().unwrap(),
            "--write-dropped",
            dropped.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(enforced["mode"], "enforce");
    assert_eq!(audited["mode"], "audit");
    // The verdicts counted are the policy's, as if enforced...
    assert_eq!(audited["flows"], enforced["flows"]);
    assert_eq!(audited["packets"], enforced["packets"]);
    assert_eq!(audited["rules"], enforced["rules"]);
    let would_block = enforced["flows"]["drop"].as_u64().unwrap();
    assert!(would_block > 0, "the policy drops something here");
    assert_eq!(audited["not_enforced"]["flows"], would_block);
    assert_eq!(
        audited["not_enforced"]["packets"],
        enforced["packets"]["drop"]
    );
    assert_eq!(enforced["not_enforced"]["flows"], 0);
    // ...but every packet passed.
    assert_eq!(records(&dropped), 0);
    assert_eq!(
        records(&accepted),
        audited["packets"]["decided"].as_u64().unwrap()
    );
    // The log keeps verdict and rule, line for line, and says nothing was enforced.
    assert_eq!(audited_lines.len(), enforced_lines.len());
    for (a, e) in audited_lines.iter().zip(&enforced_lines) {
        assert_eq!((&a["verdict"], &a["rule"]), (&e["verdict"], &e["rule"]));
        assert_eq!(a["enforced"], false, "{a}");
        assert_eq!(a["applied"], "accept", "{a}");
        assert_eq!(e.get("enforced"), None, "{e}");
    }
    // Flows seen from their middle are left out of what enforcing would change, packets too.
    let (enforced, _) = replay_of(LAN, &policy, &[], dir.path());
    let (audited, _) = replay_of(LAN, &policy, &["--audit"], dir.path());
    assert!(enforced["flows"]["midstream"].as_u64().unwrap() > 0);
    assert_eq!(audited["not_enforced"]["flows"], enforced["flows"]["drop"]);
    assert_eq!(
        audited["not_enforced"]["packets"],
        enforced["packets"]["drop"]
    );
    // The table says so at the top.
    let o = outgate(&[
        "replay",
        "--audit",
        "--policy",
        policy.to_str().unwrap(),
        OFFICE,
    ]);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("AUDIT: nothing enforced"), "{table}");
}

#[test]
fn an_audit_line_trials_one_rule_while_the_rest_enforce() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "trial.rules",
        "policy loc net DROP\nACCEPT loc net udp 53\nAUDIT(DROP) loc net tcp 443\nACCEPT loc net tcp 443\n",
    );
    let o = outgate(&["check", "--policy", policy.to_str().unwrap()]);
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains(&format!(
            "AUDIT: 1 line(s) trialled, logged and counted but not enforced: {}:3",
            policy.display()
        )),
        "{summary}"
    );
    let dropped = dir.path().join("d.pcap");
    let (json, lines) = replay(
        &policy,
        &["--write-dropped", dropped.to_str().unwrap()],
        dir.path(),
    );
    let to_443: Vec<&Value> = lines
        .iter()
        .filter(|l| l["dst"].as_str().unwrap().ends_with(":443") && l["proto"] == "tcp")
        .collect();
    assert!(!to_443.is_empty());
    for l in &to_443 {
        assert_eq!(l["verdict"], "drop", "{l}");
        assert_eq!(l["rule"], format!("{}:3", policy.display()));
        assert_eq!(l["enforced"], false);
        assert_eq!(l["applied"], "accept");
    }
    // Only the trialled line is not enforced: the policy's drops are.
    for l in lines.iter().filter(|l| !to_443.contains(l)) {
        assert_eq!(l.get("enforced"), None, "{l}");
    }
    assert_eq!(json["not_enforced"]["flows"], to_443.len() as u64);
    let policy_drops = json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "policy")
        .unwrap()["packets"]
        .as_u64()
        .unwrap();
    assert!(policy_drops > 0);
    assert_eq!(records(&dropped), policy_drops, "the 443 flows passed");
}

#[test]
fn shaped_flows_and_bytes_by_class_in_replay_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "shape.rules",
        "option shape-rate 2mbit\nclass bulk 512kbit\npolicy loc net DROP\nACCEPT loc net udp 53\n\
         SHAPE(bulk) loc net tcp 80\nSHAPE loc net tcp 443\n",
    );
    let accepted = dir.path().join("a.pcap");
    let (json, lines) = replay(
        &policy,
        &["--write-accepted", accepted.to_str().unwrap()],
        dir.path(),
    );
    let classes = json["shaped"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{json}");
    let (mut flows, mut packets) = (0, 0);
    for class in classes {
        let name = class["class"].as_str().unwrap();
        let logged: Vec<&Value> = lines
            .iter()
            .filter(|l| l["verdict"] == "shape" && l["class"] == name)
            .collect();
        assert!(
            !logged.is_empty(),
            "{name}: shaped flows are logged with their class"
        );
        assert_eq!(class["flows"], logged.len() as u64);
        let bytes: u64 = logged.iter().map(|l| l["bytes"].as_u64().unwrap()).sum();
        assert_eq!(class["bytes"], bytes, "{name}");
        flows += class["flows"].as_u64().unwrap();
        packets += class["packets"].as_u64().unwrap();
    }
    assert_eq!(json["flows"]["shape"], flows);
    assert_eq!(json["packets"]["shape"], packets);
    assert_eq!(classes[1]["rate"], "512kbit");
    // A shaped flow passes (slowly).
    assert_eq!(
        records(&accepted),
        json["packets"]["accept"].as_u64().unwrap() + packets
    );

    let o = outgate(&[
        "report",
        "--format",
        "json",
        dir.path().join("flows.jsonl").to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let lanes = report["shaped"].as_array().unwrap();
    assert_eq!(lanes.len(), 2);
    for lane in lanes {
        let class = classes.iter().find(|c| c["class"] == lane["what"]).unwrap();
        assert_eq!(lane["flows"], class["flows"]);
        assert_eq!(lane["bytes"], class["bytes"]);
    }
}

#[test]
fn report_on_an_audit_names_what_enforcing_would_block() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "strict.rules", STRICT);
    let (json, _) = replay(&policy, &["--audit"], dir.path());
    let o = outgate(&[
        "report",
        "--format",
        "json",
        dir.path().join("flows.jsonl").to_str().unwrap(),
    ]);
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    let blocked = report["would_block"].as_array().unwrap();
    assert_eq!(blocked.len(), 1, "{report}");
    assert_eq!(blocked[0]["what"], format!("{}:1", policy.display()));
    assert_eq!(blocked[0]["verdict"], "drop");
    assert_eq!(blocked[0]["flows"], json["flows"]["drop"]);
}
