//! Hostile policy files through the parser, the compiler and `outgate check`: every error is
//! `FILE:LINE:COL: message`, at most 20 are printed and the rest counted, nothing panics, and size
//! is bounded (a long word is elided in its message; the compiled tables have a budget).

use std::fmt::Write as _;
use std::path::Path;

use outgate::packet::Packet;
use outgate::policy::{ERRORS_SHOWN, Eval};
use outgate::{Policy, Reason, Timestamp};

use crate::{Rng, outgate_limited, stderr};

/// `outgate check --policy` on `text`: (exit code, stderr).
fn check(dir: &Path, name: &str, text: &[u8]) -> (Option<i32>, String, String) {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_string();
    let out = outgate_limited(&["check", "--policy", &path]);
    (out.status.code(), stderr(&out), path)
}

/// Every error line is `PATH:LINE:COL: ...`; at most 20 of them, then the count of the rest.
fn assert_bounded(err: &str, path: &str, total: usize) {
    // `main` prints the whole message once, behind "outgate: ".
    let lines: Vec<&str> = err
        .lines()
        .map(|l| l.strip_prefix("outgate: ").unwrap_or(l))
        .collect();
    let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with(path)).collect();
    assert_eq!(errors.len(), total.min(ERRORS_SHOWN), "{err}");
    for e in &errors {
        let rest = e
            .strip_prefix(path)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap();
        let mut parts = rest.splitn(3, ':');
        let (line, col) = (parts.next().unwrap(), parts.next().unwrap());
        assert!(
            line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok(),
            "{e}"
        );
        assert!(e.len() < 600, "an error line of {} bytes", e.len());
    }
    if total > ERRORS_SHOWN {
        let more = format!("... and {} more errors", total - ERRORS_SHOWN);
        assert!(lines.contains(&more.as_str()), "{err}");
    }
    let summary = format!("{total} error(s); the policy was not loaded");
    assert_eq!(lines.last(), Some(&summary.as_str()), "{err}");
}

fn errors_of(text: &str) -> Vec<String> {
    match Policy::compile("p.rules", text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn binary_garbage_is_a_bounded_list_of_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng::new(0x5eed_0003);
    let garbage: Vec<u8> = (0..256 * 1024).map(|_| rng.word() as u8).collect();
    let (code, err, path) = check(dir.path(), "garbage.rules", &garbage);
    assert_eq!(code, Some(1), "{err}");
    let total = garbage.split(|&b| b == b'\n').count();
    assert!(total > ERRORS_SHOWN);
    // Every line holds a byte that is not UTF-8 (or is a statement that is not one): count them all.
    let reported: usize = err
        .lines()
        .find_map(|l| l.strip_suffix(" error(s); the policy was not loaded"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_bounded(&err, &path, reported);
}

#[test]
fn a_hundred_thousand_errors_print_twenty_and_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let text = "bogus words here\n".repeat(100_000);
    let (code, err, path) = check(dir.path(), "bogus.rules", text.as_bytes());
    assert_eq!(code, Some(1));
    assert_bounded(&err, &path, 100_000);
    assert!(
        err.starts_with(&format!("{path}:1:1: 'bogus' does not start a statement")),
        "{err}"
    );
}

/// Found: the tokenizer counted each word's column from the start of its line, so a line of many
/// words took quadratic time (a 10 MB line of 5 million words: hours).
#[test]
fn a_10mb_line_of_words_is_read_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("ACCEPT loc net tcp 80");
    while text.len() < 10 << 20 {
        text.push_str(" x");
    }
    let (code, err, path) = check(dir.path(), "long.rules", text.as_bytes());
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "{path}:1:23: unexpected 'x' after the port column"
        )),
        "{err}"
    );
    assert_bounded(&err, &path, 1);
}

/// Found: an error quoting a 10 MB word was a 10 MB line on the terminal.
#[test]
fn a_10mb_word_is_elided_in_its_error() {
    let word = "y".repeat(10 << 20);
    let errors = errors_of(&format!("loc net DROP\nACCEPT loc {word} tcp 80\n"));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("p.rules:2:12: unknown zone 'yyy"),
        "{}",
        &errors[0][..80]
    );
    assert!(errors[0].contains("[... "), "not elided");
    assert!(errors[0].len() < 400, "{} bytes", errors[0].len());
}

/// Found: invalid UTF-8 failed the whole file with "stream did not contain valid UTF-8", no line.
#[test]
fn invalid_utf8_is_an_error_at_its_line_and_column_and_the_rest_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let text = b"loc net DROP\nACCEPT loc net tcp 80\nACCEPT \xc3\xa9t\xff loc net\nnonsense\n";
    let (code, err, path) = check(dir.path(), "latin1.rules", text);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{path}:3:10: not UTF-8 (byte 0xff)")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{path}:4:1: 'nonsense' does not start")),
        "{err}"
    );
    assert_bounded(&err, &path, 2);
    let good = b"loc net DROP # caf\xc3\xa9\n";
    let (code, err, _) = check(dir.path(), "utf8.rules", good);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn deeply_nested_and_very_long_lists_are_errors_not_crashes() {
    let deep =
        |open: &str, inner: &str| format!("{}{inner}{}", open.repeat(100_000), ")".repeat(100_000));
    let cases = [
        format!("{} loc net\n", deep("AUDIT(", "DROP")),
        format!("{} loc net\n", deep("SSH(", "ACCEPT")),
        format!("{} loc net\n", deep("(", "")),
        format!("ACCEPT loc net:{} tcp 80\n", "[".repeat(100_000)),
        format!("ACCEPT loc net tcp {}\n", ",".repeat(100_000)),
        format!("ACCEPT loc net tcp 80 host={}\n", "!".repeat(100_000)),
        format!("ACCEPT loc net tcp 80 app={}\n", ",tls".repeat(100_000)),
        format!("zone lan {}\nlan net DROP\n", "10.0.0.0/8,".repeat(100_000)),
        format!("option {}\n", "timeout ".repeat(100_000)),
    ];
    for text in cases {
        let errors = errors_of(&text);
        for e in &errors {
            assert!(
                e.starts_with("p.rules:") && e.len() < 600,
                "{}",
                &e[..e.len().min(200)]
            );
        }
    }
    // Long lists that are valid stay valid.
    let ports: Vec<String> = (1..=65535).map(|p| p.to_string()).collect();
    let text = format!("loc net DROP\nACCEPT loc net tcp {}\n", ports.join(","));
    assert!(errors_of(&text).is_empty());
    let hosts: Vec<String> = (0..100_000).map(|i| format!("h{i}.example")).collect();
    let text = format!(
        "loc net DROP\nDROP loc net tcp 80 host={}\n",
        hosts.join(",")
    );
    assert!(errors_of(&text).is_empty());
}

#[test]
fn unknown_words_are_named_where_they_stand() {
    let errors = errors_of(
        "loc net DROP\nACCEPT loc net tcp 80 colour=blue\nALOW loc net 80\noption frobnicate 3\n\
         ACCEPT loc net tcp 80 app=gopher\nACCEPT loc mars 80\nSHAPE(nope) loc net 80\n",
    );
    let at: Vec<&str> = errors
        .iter()
        .map(|e| e.splitn(4, ':').take(3).last().unwrap())
        .collect();
    assert_eq!(errors.len(), 6, "{errors:#?}");
    assert_eq!(at, ["23", "1", "8", "27", "12", "1"], "{errors:#?}");
}

/// A flow to `port` from 10.0.0.1 to 192.0.2.1, as its first packet.
fn tcp_syn(port: u16) -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 40, 0, 1, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 192, 0, 2, 1, 0x30, 0x39, 0, 0, 0, 0,
        0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ];
    p[22..24].copy_from_slice(&port.to_be_bytes());
    p
}

/// Found: the port index held rule positions as u16, so a zone pair with 65,535 rules or more did
/// not compile ("1:1: more than 65534 rules apply to one zone pair").
#[test]
fn a_policy_of_100k_rules_compiles_and_its_last_rule_still_decides() {
    let mut text = String::from("loc net DROP\n");
    for i in 0..100_000u32 {
        let _ = writeln!(
            text,
            "ACCEPT loc net:198.18.{}.{} tcp {}",
            i >> 8 & 0xff,
            i & 0xff,
            1 + i % 60_000
        );
    }
    text.push_str("REJECT loc net tcp 65000\n");
    let policy = Policy::compile("big.rules", &text).unwrap_or_else(|e| panic!("{}", e[0]));
    assert_eq!(policy.rules().len(), 100_001);
    let syn = tcp_syn(65000);
    let packet = Packet::parse(&syn).unwrap();
    let Eval::Decided(d) = policy.evaluate(&packet, None, Timestamp::from_nanos(0)) else {
        panic!("no decision");
    };
    assert_eq!(policy.cite(d.reason).as_deref(), Some("big.rules:100002"));
    let syn = tcp_syn(1);
    let Eval::Decided(d) = policy.evaluate(
        &Packet::parse(&syn).unwrap(),
        None,
        Timestamp::from_nanos(0),
    ) else {
        panic!("no decision");
    };
    assert!(matches!(d.reason, Reason::Policy(_)), "{d:?}");
}

#[test]
fn zones_and_compiled_tables_are_bounded() {
    let zones: String = (0..65)
        .map(|i| format!("zone z{i} 10.{i}.0.0/16\n"))
        .collect();
    let errors = errors_of(&zones);
    assert_eq!(
        errors,
        ["p.rules:65:6: more than 64 zones; each pair of zones gets its own tables"]
    );
    // 64 zones, a rule for every pair: 4096 distinct port indexes of 256 KiB would be 1 GiB.
    let mut text: String = (0..64)
        .map(|i| format!("zone z{i} 10.{i}.0.0/16\n"))
        .collect();
    for s in 0..64 {
        for d in 0..64 {
            let _ = writeln!(text, "ACCEPT z{s} z{d} tcp 80");
        }
    }
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("too large to compile"), "{}", errors[0]);
    // The same rules for every pair (`all`) share one index: fine.
    let mut text: String = (0..64)
        .map(|i| format!("zone z{i} 10.{i}.0.0/16\n"))
        .collect();
    text.push_str(&"ACCEPT all all tcp 80\n".repeat(4096));
    assert!(errors_of(&text).is_empty());
}

/// Found: a policy file, or a `host=@FILE` list, was read whole whatever its size: `/dev/zero`
/// grew memory until the process was killed. Both are refused past 64 MiB.
#[test]
fn a_policy_or_host_list_from_dev_zero_is_refused_not_read_forever() {
    let out = outgate_limited(&["check", "--policy", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/dev/zero: cannot read the policy: larger than 64 MiB"),
        "{}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let (code, err, path) = check(
        dir.path(),
        "zero.rules",
        b"loc net DROP\nDROP loc net tcp 80 host=@/dev/zero\n",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{path}:2:"))
            && err.contains("cannot read host list /dev/zero: larger than 64 MiB"),
        "{err}"
    );
}

/// Found: `check` on 100k rules ran for hours: its open-ports summary walked every rule for each of
/// the 65,536 ports (now it starts from the port's index), and its never-matches warnings compare
/// every rule with every earlier one (now skipped, with a note, above 5,000 rules).
#[test]
fn check_of_100k_rules_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("loc net DROP\n");
    for i in 0..100_000u32 {
        let _ = writeln!(text, "ACCEPT loc net tcp {}", 1 + i % 60_000);
    }
    let (code, err, _) = check(dir.path(), "big.rules", text.as_bytes());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(
            "note: 100000 rules: lines that never match are looked for up to 5000 rules only"
        ),
        "{err}"
    );
}
