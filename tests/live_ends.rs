//! Flow ends, live: the daemon reads the kernel's conntrack destroy events and writes one end line per
//! decided flow to its flow log, with the kernel's counts per direction and its times.

mod common;

use std::time::Duration;

use common::{Setup, gateway_mode, host_mode, serial, wait_for};
use serde_json::Value;

const POLICY: &str = "policy loc net DROP\nACCEPT loc net tcp 80\n";

/// Bytes of the file the client downloads.
const SIZE: u64 = 1 << 20;

/// The filter's conntrack ends a closed connection's entry after 1 s of TIME_WAIT (120 s by default),
/// so the test need not wait two minutes for the destroy event.
fn quick_ends(s: &Setup) {
    s.lab.sh(
        &s.filter,
        "sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_time_wait=1 \
         net.netfilter.nf_conntrack_tcp_timeout_close=1",
    );
}

/// The server serves a file of [`SIZE`] bytes on port 80; the filter's ruleset is applied, with
/// [`quick_ends`].
fn serve(s: &mut Setup) {
    let www = s.lab.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("big"), vec![b'x'; SIZE as usize]).unwrap();
    s.lab.http_server(&s.server.clone(), 80, &www);
    s.rules("--apply", "");
    quick_ends(s);
}

/// The client downloads the file, whole.
fn download(s: &Setup) {
    let got = s.lab.sh(
        &s.client,
        &format!(
            "curl -s -o /dev/null -w '%{{size_download}}' --max-time 10 http://{}/big",
            s.server4
        ),
    );
    assert_eq!(
        got.trim(),
        SIZE.to_string(),
        "{} mode: the download",
        s.mode
    );
}

fn download_then_end(mut s: Setup) {
    serve(&mut s);
    s.daemon(POLICY, "--metrics 127.0.0.1:9717");
    download(&s);
    // A connection the policy drops: decided, never established.
    let refused = s.lab.try_sh(
        &s.client,
        &format!("curl -s --max-time 2 http://{}:22/", s.server4),
    );
    assert_ne!(refused.status.code(), Some(0));

    // The kernel reports an entry's end when it reaps it: its garbage collection may take a minute
    // to come round, but a dump (`conntrack -L`) reaps the expired entries it walks over at once.
    let ends = wait_for(Duration::from_secs(30), || {
        s.lab.try_sh(&s.filter, "conntrack -L >/dev/null 2>&1");
        s.end_lines()
            .iter()
            .any(|e| e["dst"].as_str().is_some_and(|d| d.ends_with(":80")))
    });
    let lines = s.end_lines();
    assert!(
        ends.is_some(),
        "{} mode: no end line for the download: {lines:#?}",
        s.mode
    );
    let decisions = s.flows_log();
    let decided = decisions
        .iter()
        .find(|f| f["dst"].as_str().is_some_and(|d| d.ends_with(":80")))
        .expect("the download's decision line");
    let end: Vec<&Value> = lines
        .iter()
        .filter(|e| e["dst"].as_str().is_some_and(|d| d.ends_with(":80")))
        .collect();
    assert_eq!(
        end.len(),
        1,
        "{} mode: one end line per flow: {lines:#?}",
        s.mode
    );
    // The dropped connection never got a conntrack entry the kernel kept (its SYNs were dropped before
    // conntrack confirmed one), so it has no end: its decision line is its whole story.
    assert_eq!(
        lines.len(),
        1,
        "{} mode: only the download ended: {lines:#?}",
        s.mode
    );
    assert!(
        decisions.iter().any(
            |f| f["dst"].as_str().is_some_and(|d| d.ends_with(":22")) && f["verdict"] == "drop"
        )
    );
    let e = end[0];
    // The same flow, as the decision line wrote it: the client (in gateway mode the LAN address, as it
    // was before any NAT) and the server.
    assert_eq!(
        (&e["src"], &e["dst"], &e["proto"]),
        (&decided["src"], &decided["dst"], &decided["proto"])
    );
    assert_eq!(e["verdict"], "accept");
    let n = |k: &str| e[k].as_u64().unwrap_or_else(|| panic!("{k} in {e}"));
    // The server sent the file and its headers, each segment with its IP and TCP headers; the client
    // sent its request and ACKs.
    assert!(
        (SIZE..SIZE + SIZE / 10).contains(&n("resp_bytes")),
        "{} mode: resp_bytes {} for a {SIZE}-byte file",
        s.mode,
        n("resp_bytes")
    );
    assert!(n("orig_bytes") < SIZE / 10 && n("orig_packets") > 2, "{e}");
    assert_eq!(n("bytes"), n("orig_bytes") + n("resp_bytes"));
    assert_eq!(n("packets"), n("orig_packets") + n("resp_packets"));
    // It began when the daemon saw its SYN, and lasted the download and TIME_WAIT.
    let secs = |v: &Value| {
        let t = v.as_str().unwrap_or_default();
        outgate::calendar::parse_rfc3339(t)
            .unwrap_or_else(|| panic!("a time: {t}"))
            .as_nanos() as f64
            / 1e9
    };
    assert!(
        (secs(&e["first_ts"]) - secs(&decided["first_ts"])).abs() < 1.0,
        "{e}\n{decided}"
    );
    let d = e["duration"].as_f64().expect("duration");
    assert!((0.5..30.0).contains(&d), "{} mode: duration {d}", s.mode);
    assert!((secs(&e["last_ts"]) - secs(&e["first_ts"]) - d).abs() < 0.001);

    let m = s.metrics();
    assert_eq!(
        common::metric(&m, "outgate_flow_ends_total"),
        Some(lines.len() as f64),
        "{m}"
    );
    assert_eq!(
        common::metric(&m, "outgate_flow_end_overruns_total"),
        Some(0.0)
    );
    s.rules("--remove", "");
}

#[test]
fn a_finished_download_gets_an_end_line_with_the_kernels_counts() {
    if !common::root("a_finished_download_gets_an_end_line_with_the_kernels_counts") {
        return;
    }
    let _g = serial();
    download_then_end(host_mode());
    download_then_end(gateway_mode());
}

/// Waits for the download's end line, reaping expired entries with a dump as above; `None` after
/// `secs` seconds.
fn download_end(s: &Setup, secs: u64) -> Option<Value> {
    download(s);
    wait_for(Duration::from_secs(secs), || {
        s.lab.try_sh(&s.filter, "conntrack -L >/dev/null 2>&1");
        !s.end_lines().is_empty()
    })?;
    s.end_lines().pop()
}

#[test]
fn end_lines_say_what_the_kernel_keeps_and_can_be_turned_off() {
    if !common::root("end_lines_say_what_the_kernel_keeps_and_can_be_turned_off") {
        return;
    }
    let _g = serial();

    // Timestamps off: the daemon says so at its start, and the end line has the counts, no times.
    let mut s = host_mode();
    serve(&mut s);
    s.lab.sh(
        &s.filter,
        "sysctl -qw net.netfilter.nf_conntrack_timestamp=0",
    );
    s.daemon_logged(POLICY, "");
    let err = s.daemon_err();
    assert!(
        err.contains(
            "flow end lines will have no times: net.netfilter.nf_conntrack_timestamp is 0"
        ),
        "{err}"
    );
    let e = download_end(&s, 30).expect("an end line");
    assert!(e["resp_bytes"].as_u64() > Some(SIZE), "{e}");
    for key in ["first_ts", "last_ts", "duration"] {
        assert!(e.get(key).is_none(), "{key}: {e}");
    }
    // --remove leaves the kernel's settings as --apply made them.
    s.rules("--remove", "");
    let acct = s
        .lab
        .sh(&s.filter, "sysctl -n net.netfilter.nf_conntrack_acct");
    assert_eq!(acct.trim(), "1");
    drop(s);

    // --no-flow-ends: decision lines only.
    let mut s = host_mode();
    serve(&mut s);
    s.daemon(POLICY, "--no-flow-ends");
    assert!(download_end(&s, 5).is_none(), "{:#?}", s.end_lines());
    assert!(!s.flows_log().is_empty());
    s.rules("--remove", "");
}
