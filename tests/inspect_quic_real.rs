//! QUIC in captures written by others (`../shared/pcaps-real`, read in place), replayed through the engine:
//! every QUIC ClientHello tshark lists in `truth/<file>.txt` is read from the flow's Initial packets, with
//! the same legacy version, supported versions, SNI, ALPN and ECH flag, on a flow whose app is `quic`; and
//! no hello is found that tshark does not list (its lists name the first rows and count the rest).
//!
//! The policy inspects every UDP flow to port 443 (a rule with an `sni=` term), so the engine holds each
//! one's datagrams until its ClientHello is whole, as it does live.

mod common;

use std::path::Path;

use common::{captures, real_dir};
use outgate::inspect::detect::App;
use outgate::inspect::tls::ClientHello;
use outgate::replay::{ReplayConfig, replay};
use outgate::{Engine, Policy};

const POLICY: &str = "policy all all ACCEPT\nDROP all all udp 443 sni=blocked.invalid\n";

/// One section of a truth file: its lines, and how many it says it left out (`... N more`).
fn section<'a>(truth: &'a str, title: &str) -> (Vec<&'a str>, usize) {
    let mut lines = Vec::new();
    let mut more = 0;
    let mut inside = false;
    for line in truth.lines() {
        if line.starts_with("## ") {
            inside = line.starts_with(title);
            continue;
        }
        let t = line.trim();
        if !inside || t.is_empty() || t == "(none)" {
            continue;
        }
        if let Some(n) = t.strip_prefix("... ").and_then(|r| r.split(' ').next()) {
            more += n.parse::<usize>().unwrap();
            continue;
        }
        lines.push(t);
    }
    (lines, more)
}

/// A hello as tshark's row writes it: legacy_version | supported_versions | SNI | ALPN | ECH.
fn as_row(h: &ClientHello) -> String {
    let versions: Vec<String> = h
        .supported_versions
        .iter()
        .map(|v| format!("0x{v:04x}"))
        .collect();
    let or_dash = |list: Vec<String>| {
        if list.is_empty() {
            "-".to_string()
        } else {
            list.join("|")
        }
    };
    format!(
        "0x{:04x} | {} | {} | {} | {}",
        h.legacy_version,
        or_dash(versions),
        h.sni.as_deref().unwrap_or("(no SNI)"),
        or_dash(h.alpn.clone()),
        if h.ech { "ECH" } else { "-" }
    )
}

/// The QUIC hellos the engine read from a capture: (client ip, server ip, server port, row).
fn replayed(engine: &Engine, file: &Path) -> Vec<(String, String, String, String)> {
    let cfg = ReplayConfig {
        captures: vec![file.to_path_buf()],
        workers: 1,
        keep_flows: true,
        ..Default::default()
    };
    let report = replay(engine, &cfg).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut found = Vec::new();
    for rec in &report.flows {
        let Some(payload) = rec.inspected.as_ref().map(|i| &i.payload) else {
            continue;
        };
        let Some(hello) = payload.tls.as_ref() else {
            continue;
        };
        if rec.key.proto() != 17 {
            continue;
        }
        assert_eq!(
            payload.app,
            Some(App::Quic),
            "a hello read from UDP is QUIC's"
        );
        assert_eq!(rec.flow.app, Some(App::Quic));
        let (client, _) = rec.key.endpoint(rec.flow.initiator);
        let (server, port) = rec.key.endpoint(rec.flow.initiator.other());
        found.push((
            client.to_string(),
            server.to_string(),
            port.to_string(),
            as_row(hello),
        ));
    }
    found
}

#[test]
fn quic_client_hellos_match_tshark() {
    if !common::shared("quic_client_hellos_match_tshark") {
        return;
    }
    let engine = Engine::new(Policy::compile("quic.rules", POLICY).unwrap());
    let mut compared = 0;
    let mut failures = Vec::new();
    for file in captures() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let truth =
            std::fs::read_to_string(real_dir().join("truth").join(format!("{name}.txt"))).unwrap();
        let (rows, more) = section(&truth, "## TLS/QUIC ClientHello");
        // frame | transport | src | dst | dport | the rest of the row
        let mut want: Vec<(String, String, String, String)> = rows
            .iter()
            .map(|r| r.split(" | ").map(str::trim).collect::<Vec<_>>())
            .filter(|c| c.get(1) == Some(&"QUIC"))
            .map(|c| (c[2].into(), c[3].into(), c[4].into(), c[5..].join(" | ")))
            .collect();
        let mut extra = Vec::new();
        for hello in replayed(&engine, &file) {
            match want.iter().position(|w| *w == hello) {
                Some(i) => {
                    want.remove(i);
                    compared += 1;
                }
                None => extra.push(format!(
                    "{} -> {}:{}: {}",
                    hello.0, hello.1, hello.2, hello.3
                )),
            }
        }
        for (s, d, p, r) in &want {
            failures.push(format!("{name}: tshark's QUIC {s} -> {d}:{p} {r} not read"));
        }
        // A truncated list names only its first rows: what was found beyond them must fit in the count
        // it left out.
        if extra.len() > more {
            for e in &extra {
                failures.push(format!("{name}: read {e}, which tshark does not list"));
            }
        } else if !extra.is_empty() {
            eprintln!(
                "{name}: {} QUIC hellos beyond the rows listed (the list leaves out {more}):",
                extra.len()
            );
            for e in &extra {
                eprintln!("  {e}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 4, "only {compared} QUIC hellos compared");
    eprintln!("{compared} QUIC ClientHellos agree with tshark");
}
