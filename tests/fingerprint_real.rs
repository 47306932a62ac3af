//! Fingerprints and encrypted-looking first payloads on captures written by others
//! (`../shared/pcaps-real`, read in place), replayed through the engine:
//! - the JA4 in the TLS log is the one FoxIO's own tool computes (`tests/data/ja4-foxio.tsv`, which
//!   names the command), for every ClientHello the engine reads;
//! - a flow is `app=encrypted` only where tshark names no protocol on it.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{captures, real_dir};
use outgate::log::{FlowLine, TlsLine};
use outgate::replay::{ReplayConfig, ReplayReport, replay};
use outgate::{Engine, Policy};

/// Rows of the FoxIO table that the engine does not read as TLS, with the reason.
const NOT_READ: &[(&str, &str)] = &[(
    "ipv6_in_ipv4_6in4.pcap",
    "the TCP flow is inside 6in4: the engine filters the outer packets (IP protocol 41)",
)];

/// A policy whose payload rules make the engine read every TCP and UDP flow's first payload.
fn engine(term: &str) -> Engine {
    let text = format!(
        "policy all all ACCEPT\nDROP all all tcp {term}\nDROP all all udp {term}\n{}",
        ["tcp", "tcp-closed", "udp", "icmp", "other"]
            .map(|p| format!("option timeout {p} 999999999\n"))
            .concat()
    );
    Engine::new(Policy::compile("<test>", &text).unwrap())
}

fn run(engine: &Engine, file: &Path) -> ReplayReport {
    let cfg = ReplayConfig {
        captures: vec![file.to_path_buf()],
        workers: 1,
        keep_flows: true,
        ..Default::default()
    };
    replay(engine, &cfg).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn ja4_agrees_with_foxios_tool() {
    if !common::shared("ja4_agrees_with_foxios_tool") {
        return;
    }
    let table = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ja4-foxio.tsv"),
    )
    .unwrap();
    // capture -> (client, server) -> JA4
    let mut want: BTreeMap<&str, BTreeMap<(String, String), &str>> = BTreeMap::new();
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split('\t').collect();
        want.entry(f[0])
            .or_default()
            .insert((f[1].to_string(), f[2].to_string()), f[3]);
    }
    // A term that never matches, so that every hello is read and logged as accepted.
    let engine = engine("ja4=x*");
    let (mut compared, mut failures) = (0, Vec::new());
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let report = run(&engine, &file);
        let mut rows = want.remove(name.as_str()).unwrap_or_default();
        for rec in &report.flows {
            let Some(line) = TlsLine::new(engine.policy(), rec, |_| String::new()) else {
                continue;
            };
            match rows.remove(&(line.client.clone(), line.server.clone())) {
                Some(fp) if fp == line.ja4 => compared += 1,
                Some(fp) => failures.push(format!(
                    "{name}: {} -> {}: FoxIO {fp}, ours {}",
                    line.client, line.server, line.ja4
                )),
                // A hello FoxIO's tool does not list (it lists one per TCP stream; QUIC is not
                // compared here).
                None => eprintln!(
                    "{name}: {} -> {}: {} (not in FoxIO's list)",
                    line.client, line.server, line.ja4
                ),
            }
        }
        let reason = NOT_READ.iter().find(|(f, _)| *f == name);
        match (rows.is_empty(), reason) {
            (true, None) => {}
            (false, Some((_, why))) => eprintln!("{name}: {} not read: {why}", rows.len()),
            (true, Some(_)) => failures.push(format!("{name} is listed as not read but was")),
            (false, None) => failures.push(format!("{name}: not found: {rows:?}")),
        }
    }
    assert!(want.is_empty(), "captures missing: {want:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 60, "only {compared} fingerprints compared");
    eprintln!("{compared} JA4 fingerprints agree with FoxIO's tool");
}

#[test]
fn encrypted_only_where_tshark_names_no_protocol() {
    if !common::shared("encrypted_only_where_tshark_names_no_protocol") {
        return;
    }
    let engine = engine("app=encrypted");
    let (mut named, mut encrypted) = (0, Vec::new());
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let truth_path = real_dir().join("truth").join(format!("{name}.txt"));
        let truth = std::fs::read_to_string(&truth_path).unwrap();
        // "TCP 10.0.0.1:5 -> 10.0.0.2:80 pkts=... app=http": (src, dst) -> app, as tshark writes them.
        let apps: BTreeMap<(String, String), String> = truth
            .lines()
            .filter(|l| l.starts_with("  TCP ") || l.starts_with("  UDP "))
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                let app = w.iter().find_map(|x| x.strip_prefix("app="))?;
                Some(((w[1].to_string(), w[3].to_string()), app.to_string()))
            })
            .collect();
        let report = run(&engine, &file);
        for rec in &report.flows {
            let line = FlowLine::new(engine.policy(), rec);
            let tshark = |s: &str| match s.parse::<std::net::SocketAddr>() {
                Ok(a) => format!("{}:{}", a.ip(), a.port()),
                Err(_) => s.to_string(),
            };
            let key = (tshark(&line.src), tshark(&line.dst));
            let theirs = apps.get(&key).map(String::as_str);
            if theirs.is_some_and(|a| a != "-") {
                named += 1;
            }
            if line.app == Some("encrypted") {
                assert_eq!(
                    line.outcome.verdict, "drop",
                    "{name}: {} -> {}",
                    line.src, line.dst
                );
                encrypted.push(format!(
                    "{name}: {} {} -> {} (tshark: {})",
                    line.proto,
                    line.src,
                    line.dst,
                    theirs.unwrap_or("not listed")
                ));
                assert!(
                    theirs.is_none_or(|a| a == "-"),
                    "{name}: {} -> {} is encrypted, tshark says {theirs:?}",
                    line.src,
                    line.dst
                );
            }
        }
    }
    assert!(named >= 100, "only {named} flows with a protocol compared");
    eprintln!(
        "{named} flows tshark names a protocol on, none encrypted; {} encrypted:\n  {}",
        encrypted.len(),
        encrypted.join("\n  ")
    );
}
