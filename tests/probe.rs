//! `outgate probe` as a user runs it, without root: servers on loopback (allowed with `--allow`),
//! the second round with the clock moved (`--now`), and the errors it must name.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use common::outgate_bin;

fn outgate(args: &[&str]) -> Output {
    Command::new(outgate_bin()).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A loopback server answering every connection with `answer` after reading the request.
fn serve(answer: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(answer);
        }
    });
    port
}

fn log_line(host: &str, method: &str, url: &str) -> String {
    format!(
        r#"{{"ts":"2026-12-01T00:00:00Z","client":"10.0.0.5:40000","server":"{host}","method":"{method}","host":"{host}","url":"{url}","user_agent":null,"verdict":"accept","rule":null,"reason":"default"}}"#
    )
}

fn statuses(state: &Path) -> Vec<(String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    v["servers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, s)| (k.clone(), s["status"].as_str().unwrap().to_string()))
        .collect()
}

fn sorted<const N: usize>(mut v: [(String, String); N]) -> Vec<(String, String)> {
    v.sort();
    v.to_vec()
}

#[test]
fn probe_on_loopback_clears_a_page_and_confirms_garbage_the_next_day() {
    let page = serve(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 27\r\n\r\n\
          <html><body>hi</body></html>",
    );
    let garbage = serve(b"\x16\x03\x01\x00\x00garbage");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("http.jsonl");
    let (page_host, garbage_host) = (format!("127.0.0.1:{page}"), format!("127.0.0.1:{garbage}"));
    std::fs::write(
        &log,
        [
            log_line(&page_host, "GET", "/"),
            log_line(&garbage_host, "POST", "/in"),
            log_line(&garbage_host, "POST", "/in"),
        ]
        .join("\n"),
    )
    .unwrap();
    let state = dir.path().join("probe.json");
    let conf = dir.path().join("confederates.txt");
    let run = |now: &str, extra: &[&str]| {
        let mut args = vec![
            "probe",
            "--state",
            state.to_str().unwrap(),
            "--confederates",
            conf.to_str().unwrap(),
            "--interval",
            "0",
            "--now",
            now,
        ];
        args.extend_from_slice(extra);
        args.push(log.to_str().unwrap());
        let o = outgate(&args);
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };

    // Loopback is refused without --allow.
    let refused = run("2026-12-01T03:00:00Z", &[]);
    assert_eq!(
        refused.matches("127.0.0.1 is loopback").count(),
        2,
        "{refused}"
    );
    assert!(statuses(&state).is_empty());

    let allow = ["--allow", "127.0.0.0/8"];
    let first = run("2026-12-01T03:00:00Z", &allow);
    assert_eq!(
        statuses(&state),
        sorted([
            (garbage_host.clone(), "suspect".to_string()),
            (page_host.clone(), "cleared".to_string())
        ]),
        "{first}"
    );
    assert!(first.contains("GET /in: not_http"), "{first}");

    let second = run("2026-12-02T03:00:00Z", &allow);
    assert_eq!(
        statuses(&state),
        sorted([
            (garbage_host, "confirmed".to_string()),
            (page_host, "cleared".to_string())
        ]),
        "{second}"
    );
    let listed: Vec<String> = std::fs::read_to_string(&conf)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert_eq!(listed, ["127.0.0.1"]);

    // A policy reads the list.
    let policy = dir.path().join("policy.rules");
    std::fs::write(
        &policy,
        "policy loc net DROP\nDROP loc net tcp 80 host=@confederates.txt\nACCEPT loc net tcp 80\n",
    )
    .unwrap();
    let o = outgate(&["check", "--policy", policy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));

    // A month without new evidence: both entries would be dropped.
    let later = run("2027-01-03T04:00:00Z", &["--dry-run"]);
    assert_eq!(later.matches("would drop").count(), 2, "{later}");
}

#[test]
fn probe_names_a_bad_state_file_and_a_bad_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("http.jsonl");
    std::fs::write(&log, "").unwrap();
    let state = dir.path().join("probe.json");
    std::fs::write(&state, "{\"version\": 1,\n\"servers\": [}").unwrap();
    let o = outgate(&[
        "probe",
        "--state",
        state.to_str().unwrap(),
        log.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{}:2:", state.display())),
        "{}",
        text(&o)
    );
    let o = outgate(&[
        "probe",
        "--state",
        state.to_str().unwrap(),
        "--now",
        "yesterday",
        log.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
