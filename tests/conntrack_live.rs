//! Live tests of `outgate::nfqueue::conntrack`: the kernel's conntrack table, read and re-marked, checked
//! against what `conntrack -L` (conntrack-tools) lists.
//!
//! Root only: without root each test says it was skipped (in CI, where everything must run, it fails).
//! Each test makes its own namespaces ([`common::Lab`], deleted when done). The code under test runs in
//! the namespace of the flows, as the daemon does: in a copy of this test binary started there, `ip netns
//! exec NS <this binary> --exact conntrack_child`, which does what `OUTGATE_CT_CHILD` says (see
//! [`conntrack_child`]).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::process::Command;

use common::Lab;
use outgate::nfqueue::conntrack::{Conntrack, Entry, Tuple};

const CHILD_ENV: &str = "OUTGATE_CT_CHILD";
const RESULT: &str = "outgate-ct-result: ";

/// Entries made with `conntrack -I` (and so a dump of many datagrams).
const INSERTED: u32 = 2000;

#[test]
fn dump_agrees_with_conntrack_list() {
    if !common::root("dump_agrees_with_conntrack_list") {
        return;
    }
    let mut lab = Lab::new();
    let client = lab.host("c");
    let server = lab.host("s");
    let link = lab.link(&client, &server, 1);
    // A namespace tracks connections only once a rule needs it.
    lab.sh(
        &client,
        "iptables -A OUTPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT && \
         ip6tables -A OUTPUT -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT",
    );
    let dir = lab.dir.path().to_path_buf();
    lab.http_server(&server, 8080, &dir);
    lab.udp_echo(&server, 5353);
    for addr in [&link.b4, &link.b6] {
        let url = if addr.contains(':') {
            format!("http://[{addr}]:8080/")
        } else {
            format!("http://{addr}:8080/")
        };
        lab.sh(
            &client,
            &format!("curl -sS -o /dev/null --max-time 5 {url}"),
        );
        lab.sh(&client, &format!("ping -c 1 -W 2 {addr}"));
        lab.sh(
            &client,
            &format!(
                "python3 -c \"import socket; s=socket.socket(socket.AF_INET{}, socket.SOCK_DGRAM); \
                 s.settimeout(3); s.sendto(b'x', ('{addr}', 5353)); s.recv(10)\"",
                if addr.contains(':') { "6" } else { "" }
            ),
        );
    }
    // Entries of both families, zones 0 to 2, marks over all 32 bits; TCP needs a state.
    lab.sh(
        &client,
        &format!(
            "i=0; while [ $i -lt {INSERTED} ]; do \
               conntrack -I -p udp -s 10.9.$((i / 250)).$((i % 250 + 1)) -d 10.8.0.1 \
                 --sport $((10000 + i)) --dport 53 --timeout 600 \
                 --mark $(((i * 2654435761) % 4294967296)) -w $((i % 3)) 2>/dev/null || exit 1; \
               i=$((i + 1)); done; \
             i=0; while [ $i -lt 300 ]; do \
               conntrack -I -p tcp -s fd00:9::$((i + 1)) -d fd00:8::1 --sport $((20000 + i)) \
                 --dport 443 --state ESTABLISHED --timeout 600 --mark $i 2>/dev/null || exit 1; \
               i=$((i + 1)); done"
        ),
    );

    // Flows end and expire meanwhile; compare when the table held still around the dump.
    for attempt in 1.. {
        let before = listed(&lab, &client);
        let dumped = child(&client, "dump");
        let after = listed(&lab, &client);
        if before != after && attempt < 5 {
            continue;
        }
        assert_eq!(before, after, "the table never held still");
        let (summary, lines) = dumped.split_first().expect("a summary line");
        assert_eq!(summary, &format!("entries={} unreadable=0", lines.len()));
        let mut lines = lines.to_vec();
        lines.sort();
        assert_eq!(lines, before, "dump (left) and conntrack -L (right) differ");
        assert!(lines.len() > INSERTED as usize + 300, "{}", lines.len());
        for (kind, needle) in [
            (
                "TCP/IPv4, to the listener",
                format!("tcp src={} dst={} ", link.a4, link.b4),
            ),
            (
                "TCP/IPv6, to the listener",
                format!("tcp src={} dst={} ", link.a6, link.b6),
            ),
            ("UDP/IPv4", format!("udp src={} dst={} ", link.a4, link.b4)),
            ("UDP/IPv6", format!("udp src={} dst={} ", link.a6, link.b6)),
            (
                "ICMP echo",
                format!("icmp src={} dst={} type=8", link.a4, link.b4),
            ),
            (
                "ICMPv6 echo",
                format!("icmpv6 src={} dst={} type=128", link.a6, link.b6),
            ),
        ] {
            assert!(
                lines.iter().any(|l| l.contains(&needle)),
                "no {kind} ({needle}) in the dump"
            );
        }
        assert!(lines.iter().any(|l| l.contains(" zone=2 ")));
        break;
    }
}

#[test]
fn set_mark_changes_only_the_masked_bits_and_knows_a_deleted_entry() {
    if !common::root("set_mark_changes_only_the_masked_bits_and_knows_a_deleted_entry") {
        return;
    }
    let mut lab = Lab::new();
    let ns = lab.host("m");
    // 1,200 entries to re-mark (more than one window of updates), 10 others that must not change.
    lab.sh(
        &ns,
        "i=0; while [ $i -lt 1000 ]; do \
           conntrack -I -p udp -s 10.7.$((i / 250)).$((i % 250 + 1)) -d 10.6.0.1 --sport $((10000 + i)) \
             --dport 7777 --timeout 600 --mark 0x00ff00ff -w $((i % 2)) 2>/dev/null || exit 1; \
           i=$((i + 1)); done; \
         i=0; while [ $i -lt 200 ]; do \
           conntrack -I -p udp -s fd00:7::$((i + 1)) -d fd00:6::1 --sport $((10000 + i)) \
             --dport 7777 --timeout 600 --mark 0x00ff00ff 2>/dev/null || exit 1; \
           i=$((i + 1)); done; \
         i=0; while [ $i -lt 10 ]; do \
           conntrack -I -p udp -s 10.5.0.$((i + 1)) -d 10.6.0.1 --sport 10000 --dport 8888 \
             --timeout 600 --mark 0xffffffff 2>/dev/null || exit 1; \
           i=$((i + 1)); done",
    );
    // Bits of the value outside the mask must not reach the mark.
    let result = child(&ns, "set-marks 0xabcd1234 0x0000ff00 7777");
    assert_eq!(result, ["updated=1200 gone=0 failed=0"]);
    let marks = marks_by_dport(&listed(&lab, &ns));
    assert_eq!(marks[&7777], [(0x00ff12ff, 1200)].into());
    assert_eq!(marks[&8888], [(0xffffffff, 10)].into());

    // An entry deleted between the dump and the update.
    let result = child(&ns, "delete-then-set 7777 0x0 0xff");
    assert_eq!(
        result,
        ["set_mark=false", "set_marks updated=1 gone=1 failed=0"]
    );
    let marks = marks_by_dport(&listed(&lab, &ns));
    assert_eq!(
        marks[&7777],
        [(0x00ff12ff, 1198), (0x00ff1200, 1)].into(),
        "one deleted, one re-marked"
    );
}

#[test]
fn an_empty_table_dumps_nothing() {
    if !common::root("an_empty_table_dumps_nothing") {
        return;
    }
    let mut lab = Lab::new();
    let ns = lab.host("e");
    assert_eq!(child(&ns, "dump"), ["entries=0 unreadable=0"]);
}

/// `conntrack -L` in `ns`, one [`entry_line`]-shaped line per entry, sorted.
fn listed(lab: &Lab, ns: &str) -> Vec<String> {
    let text = lab.sh(ns, "conntrack -L -o extended,id 2>/dev/null");
    let mut lines: Vec<String> = text.lines().map(tool_line).collect();
    lines.sort();
    lines
}

/// One line of `conntrack -L -o extended,id`, as [`entry_line`] writes an entry:
/// `ipv4 2 udp 17 599 src=A dst=B sport=1 dport=2 [UNREPLIED] src=B dst=A sport=2 dport=1 mark=0 zone=1
/// use=1 id=123` (TCP adds its state after the timeout, ICMP has type, code and id for ports, GRE
/// srckey and dstkey in hex).
fn tool_line(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert!(words.len() > 5, "{line}");
    let proto = words[2];
    let mut tuples: Vec<BTreeMap<&str, String>> = Vec::new();
    let (mut mark, mut zone, mut id, mut flags) = ("0", "0", "", Vec::new());
    let mut after_tuples = false;
    for word in &words[4..] {
        if let Some(flag) = word.strip_prefix('[') {
            flags.push(flag.trim_end_matches(']'));
            continue;
        }
        let Some((key, value)) = word.split_once('=') else {
            continue; // the TCP state
        };
        match key {
            "mark" => (mark, after_tuples) = (value, true),
            "zone" => zone = value,
            "use" => after_tuples = true,
            "id" if after_tuples => id = value,
            "src" => {
                let addr: IpAddr = value.parse().expect("address");
                tuples.push(BTreeMap::from([("src", addr.to_string())]));
            }
            "dst" => {
                let addr: IpAddr = value.parse().expect("address");
                tuples
                    .last_mut()
                    .expect("src first")
                    .insert(key, addr.to_string());
            }
            "srckey" | "dstkey" => {
                let key = if key == "srckey" { "sport" } else { "dport" };
                let n = u16::from_str_radix(value.trim_start_matches("0x"), 16).expect("key");
                tuples
                    .last_mut()
                    .expect("src first")
                    .insert(key, n.to_string());
            }
            _ if !after_tuples => {
                tuples
                    .last_mut()
                    .expect("src first")
                    .insert(key, value.to_string());
            }
            _ => {}
        }
    }
    let tuple = |t: &BTreeMap<&str, String>| {
        let get = |k: &str| t.get(k).cloned().unwrap_or_else(|| "0".into());
        if t.contains_key("type") {
            format!(
                "src={} dst={} type={} code={} id={}",
                get("src"),
                get("dst"),
                get("type"),
                get("code"),
                get("id")
            )
        } else {
            format!(
                "src={} dst={} sport={} dport={}",
                get("src"),
                get("dst"),
                get("sport"),
                get("dport")
            )
        }
    };
    let [orig, reply] = tuples.as_slice() else {
        panic!("two tuples in {line}")
    };
    format!(
        "{proto} {} | {} mark={mark} zone={zone} unreplied={} assured={} id={id}",
        tuple(orig),
        tuple(reply),
        flags.contains(&"UNREPLIED"),
        flags.contains(&"ASSURED"),
    )
}

fn tuple_text(t: &Tuple) -> String {
    match t.icmp {
        Some(icmp) => format!(
            "src={} dst={} type={} code={} id={}",
            t.src, t.dst, icmp.icmp_type, icmp.code, icmp.id
        ),
        None => format!(
            "src={} dst={} sport={} dport={}",
            t.src, t.dst, t.sport, t.dport
        ),
    }
}

/// An entry as [`tool_line`] writes a line of `conntrack -L`.
fn entry_line(e: &Entry) -> String {
    let proto = match e.orig.proto {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        1 => "icmp".to_string(),
        58 => "icmpv6".to_string(),
        47 => "gre".to_string(),
        _ => "unknown".to_string(),
    };
    format!(
        "{proto} {} | {} mark={} zone={} unreplied={} assured={} id={}",
        tuple_text(&e.orig),
        e.reply.as_ref().map_or("-".into(), tuple_text),
        e.mark,
        e.zone,
        e.status & 2 == 0, // IPS_SEEN_REPLY
        e.status & 4 != 0, // IPS_ASSURED
        e.id.map_or("-".into(), |id| id.to_string()),
    )
}

/// For each original destination port, how many entries have each mark.
fn marks_by_dport(lines: &[String]) -> BTreeMap<u16, BTreeMap<u32, usize>> {
    let mut out: BTreeMap<u16, BTreeMap<u32, usize>> = BTreeMap::new();
    for line in lines {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        let dport: u16 = field("dport=").parse().expect("port");
        let mark: u32 = field("mark=").parse().expect("mark");
        *out.entry(dport).or_default().entry(mark).or_default() += 1;
    }
    out
}

/// Runs a [`conntrack_child`] action in `ns`; its result lines.
fn child(ns: &str, action: &str) -> Vec<String> {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(exe)
        .args([
            "--exact",
            "conntrack_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, action)
        .output()
        .expect("ip netns exec");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{action}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // After the harness's "test conntrack_child ... " on the first line.
    stdout
        .lines()
        .filter_map(|l| Some(l.split_once(RESULT)?.1.to_string()))
        .collect()
}

/// Runs in a copy of this binary inside a namespace when `OUTGATE_CT_CHILD` is set; otherwise it has
/// nothing to do. Prints its result lines, each prefixed with [`RESULT`]:
/// - `dump`: `entries=N unreadable=M`, then one [`entry_line`] per entry
/// - `set-marks VALUE MASK DPORT`: the entries whose original destination port is DPORT get VALUE
///   under MASK in one `set_marks`; prints `updated=U gone=G failed=F`
/// - `delete-then-set DPORT VALUE MASK`: dumps, deletes the first entry to DPORT with `conntrack -D`,
///   then `set_mark` on it (`set_mark=BOOL`) and `set_marks` on it and the next one (`set_marks ...`)
#[test]
fn conntrack_child() {
    let Ok(action) = std::env::var(CHILD_ENV) else {
        return;
    };
    let words: Vec<&str> = action.split(' ').collect();
    let number = |s: &str| u32::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex");
    let mut ct = Conntrack::open().expect("open ctnetlink");
    let dump = ct.dump().expect("dump");
    let to = |port: &str| -> Vec<&Entry> {
        let port: u16 = port.parse().expect("port");
        dump.entries
            .iter()
            .filter(|e| e.orig.dport == port)
            .collect()
    };
    let say = |line: String| println!("{RESULT}{line}");
    match words.as_slice() {
        ["dump"] => {
            say(format!(
                "entries={} unreadable={}",
                dump.entries.len(),
                dump.unreadable
            ));
            dump.entries.iter().for_each(|e| say(entry_line(e)));
        }
        ["set-marks", value, mask, port] => {
            let value = number(value);
            let updates: Vec<(&Entry, u32)> = to(port).into_iter().map(|e| (e, value)).collect();
            let r = ct.set_marks(&updates, number(mask)).expect("set_marks");
            say(format!(
                "updated={} gone={} failed={}",
                r.updated, r.gone, r.failed
            ));
        }
        ["delete-then-set", port, value, mask] => {
            let (value, mask) = (number(value), number(mask));
            let entries = to(port);
            let [gone, kept, ..] = entries.as_slice() else {
                panic!("two entries to port {port}")
            };
            let t = &gone.orig;
            let status = Command::new("conntrack")
                .args(["-D", "-p", &t.proto.to_string(), "-s", &t.src.to_string()])
                .args(["-d", &t.dst.to_string(), "--sport", &t.sport.to_string()])
                .args([
                    "--dport",
                    &t.dport.to_string(),
                    "-w",
                    &gone.zone.to_string(),
                ])
                .status()
                .expect("conntrack -D");
            assert!(status.success(), "conntrack -D failed");
            let found = ct.set_mark(gone, value, mask).expect("set_mark");
            say(format!("set_mark={found}"));
            let r = ct
                .set_marks(&[(gone, value), (kept, value)], mask)
                .expect("set_marks");
            say(format!(
                "set_marks updated={} gone={} failed={}",
                r.updated, r.gone, r.failed
            ));
        }
        _ => panic!("unknown child action {action:?}"),
    }
}
