//! Helpers of the shaping tests: transfers through the filter, measured by curl and by tc's class
//! counters; what outgate may leave behind in a namespace.

use std::path::Path;

use super::{Lab, Setup};

pub const SLOW: f64 = 2_000_000.0 / 8.0;
pub const BULK: f64 = 500_000.0 / 8.0;

pub const UPDOWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/updown.py");

/// Server ports, each marked as one kind of decided flow by [`mark_flows`].
pub const SLOW_PORT: u16 = 8001;
pub const BULK_PORT: u16 = 8002;
pub const ACCEPT_PORT: u16 = 8003;

/// The gateway's or the host's interfaces: (--lan, --wan) from a setup's `extra`, or host mode's one.
pub fn devices(s: &Setup) -> (Option<String>, String) {
    let words: Vec<&str> = s.extra.split_whitespace().collect();
    match words.as_slice() {
        ["--lan", lan, "--wan", wan] => (Some(lan.to_string()), wan.to_string()),
        _ => panic!("unexpected setup options {:?}", s.extra),
    }
}

/// The client's interface in host mode (the client is where the ruleset runs).
pub fn host_device(s: &Setup) -> String {
    let out = s.lab.sh(&s.client, "ip -o link show");
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .find(|name| name != "lo")
        .expect("the client's veth")
}

/// Files to transfer, in `www` of the lab: ~4 s at each class's rate, and a large one.
pub fn files(lab: &Lab) -> std::path::PathBuf {
    let dir = lab.dir.path().join("www");
    std::fs::create_dir_all(&dir).expect("www");
    for (name, size) in [("slow", 1_000_000), ("bulk", 250_000), ("big", 20_000_000)] {
        std::fs::write(dir.join(name), vec![b'x'; size]).expect("file");
    }
    dir
}

pub fn serve(s: &mut Setup, dir: &Path) {
    let server = s.server.clone();
    s.lab.spawn(
        &server,
        &format!(
            "python3 {UPDOWN} {} {SLOW_PORT} {BULK_PORT} {ACCEPT_PORT}",
            dir.display()
        ),
    );
    for port in [SLOW_PORT, BULK_PORT, ACCEPT_PORT] {
        s.lab.wait_listening(&server, "tcp", port);
    }
}

/// What outgate may leave behind in `ns`: every qdisc and class (sorted: tc lists them in the order of
/// its hash tables, which a delete and re-create changes), and both families' tables (without counters,
/// and without tables that filter nothing, which the tools make on first use).
pub fn traces(lab: &Lab, ns: &str) -> String {
    let tc = lab.sh(
        ns,
        "tc qdisc show; for d in $(ls /sys/class/net); do tc class show dev $d | sed \"s/^/$d: /\"; done",
    );
    let mut tc: Vec<&str> = tc.lines().collect();
    tc.sort_unstable();
    let mut all = tc.join("\n");
    all.push('\n');
    for save in ["iptables-save", "ip6tables-save"] {
        let mut table = String::new();
        let mut filters = false;
        for line in lab.sh(ns, save).lines() {
            if line.starts_with('#') {
                continue;
            }
            let line = match line.find(" [") {
                Some(at) if line.starts_with(':') => &line[..at],
                _ => line,
            };
            table.push_str(line);
            table.push('\n');
            filters |= !(line.starts_with('*')
                || line == "COMMIT"
                || (line.starts_with(':') && line.ends_with(" ACCEPT")));
            if line == "COMMIT" {
                if filters {
                    all.push_str(&table);
                }
                table.clear();
                filters = false;
            }
        }
    }
    all
}

/// Bytes tc's class `id` on `dev` has sent.
pub fn class_bytes(lab: &Lab, ns: &str, dev: &str, id: &str) -> u64 {
    let out = lab.sh(ns, &format!("tc -s class show dev {dev} classid {id}"));
    out.split_whitespace()
        .skip_while(|w| *w != "Sent")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte counter for {dev} {id}:\n{out}"))
}

/// A transfer from the client: (bytes per second, bytes), as curl measured it.
pub fn transfer(s: &Setup, url: &str, upload: Option<&str>) -> (f64, u64) {
    let (what, size, speed) = match upload {
        Some(file) => (
            format!("-H Expect: -T {file}"),
            "size_upload",
            "speed_upload",
        ),
        None => (String::new(), "size_download", "speed_download"),
    };
    let o = s.lab.try_sh(
        &s.client,
        &format!("curl -sS --max-time 30 -o /dev/null {what} -w '%{{{speed}}} %{{{size}}}' {url}"),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "curl {url}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut words = out.split_whitespace().map(|w| w.parse::<f64>());
    match (words.next(), words.next()) {
        (Some(Ok(speed)), Some(Ok(bytes))) => (speed, bytes as u64),
        _ => panic!("curl {url}: unexpected output {out:?}"),
    }
}

pub fn url(host: &str, port: u16, path: &str) -> String {
    if host.contains(':') {
        format!("http://[{host}]:{port}/{path}")
    } else {
        format!("http://{host}:{port}/{path}")
    }
}

/// One measured transfer through class `id` on `dev`: its speed is within 0.8-1.2 of `rate` (bytes per
/// second) and the class counted about the bytes it carried (headers add a few percent).
#[allow(clippy::too_many_arguments)]
pub fn shaped(
    s: &Setup,
    what: &str,
    url: &str,
    upload: Option<&str>,
    dev: &str,
    id: &str,
    rate: f64,
) {
    let before = class_bytes(&s.lab, &s.filter, dev, id);
    let (speed, bytes) = transfer(s, url, upload);
    let counted = class_bytes(&s.lab, &s.filter, dev, id) - before;
    eprintln!(
        "{what}: {speed:.0} B/s ({:.2} of the class's rate), {bytes} bytes, class {id} on {dev} counted {counted}",
        speed / rate
    );
    assert!(
        (0.8 * rate..=1.2 * rate).contains(&speed),
        "{what}: {speed:.0} B/s, the class's rate is {rate:.0} B/s"
    );
    assert!(
        counted >= bytes && (counted as f64) <= 1.2 * bytes as f64,
        "{what}: class {id} on {dev} counted {counted} bytes for a transfer of {bytes}"
    );
}

/// An unshaped transfer: many times the slow class's rate, and class `id` on `dev` did not carry it.
pub fn unshaped(s: &Setup, what: &str, url: &str, upload: Option<&str>, dev: &str, id: &str) {
    let before = class_bytes(&s.lab, &s.filter, dev, id);
    let (speed, bytes) = transfer(s, url, upload);
    let counted = class_bytes(&s.lab, &s.filter, dev, id) - before;
    eprintln!(
        "{what}: {speed:.0} B/s ({:.1} times the slow class's rate), {bytes} bytes",
        speed / SLOW
    );
    assert!(speed > 10.0 * SLOW, "{what}: only {speed:.0} B/s");
    assert!(
        counted < bytes / 10,
        "{what}: class {id} on {dev} carried {counted} bytes of it"
    );
}
