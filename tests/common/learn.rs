//! Helpers of the `outgate learn` tests: running it, and reading its proposal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn outgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outgate"))
        .args(args)
        .output()
        .expect("run outgate")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pcaps")
        .join(name)
        .display()
        .to_string()
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Single-machine captures have one client: with these flags every port seen gets a rule.
pub const EVERY_PORT: [&str; 4] = ["--min-flows", "1", "--min-clients", "1"];
pub const LAN: [&str; 2] = ["10.0.0.0/24", "fd00::/64"];

/// `outgate learn FLAGS [--lan N]... INPUTS...`, which must succeed.
pub fn learn(flags: &[&str], lan: &[&str], inputs: &[&str]) -> String {
    let o = outgate(&learn_args(flags, lan, inputs));
    assert!(o.status.success(), "learn {inputs:?}: {}", stderr(&o));
    stdout(&o)
}

pub fn learn_args<'a>(flags: &[&'a str], lan: &[&'a str], inputs: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["learn"];
    args.extend_from_slice(flags);
    for net in lan {
        args.extend(["--lan", net]);
    }
    args.extend_from_slice(inputs);
    args
}

/// (protocol keyword, port or ICMP type) of each rule, uncommented (`ACCEPT loc net tcp 443`) or
/// listed as seen (`# ACCEPT loc net tcp 8443`).
pub fn rules(text: &str, seen: bool) -> BTreeSet<(String, u16)> {
    let prefix = if seen {
        "# ACCEPT loc net "
    } else {
        "ACCEPT loc net "
    };
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            let proto = words.next()?.to_string();
            let port = words.next()?.parse().ok()?;
            Some((proto, port))
        })
        .collect()
}

pub fn set(items: &[(&str, u16)]) -> BTreeSet<(String, u16)> {
    items.iter().map(|&(p, n)| (p.to_string(), n)).collect()
}

/// The line of the rule (or the seen line) for `proto port`.
pub fn line_of<'a>(text: &'a str, proto: &str, port: u16) -> &'a str {
    let rule = format!("ACCEPT loc net {proto} {port} ");
    text.lines()
        .find(|l| l.starts_with(&rule) || l.starts_with(&format!("# {rule}")))
        .unwrap_or_else(|| panic!("no line for {proto} {port} in\n{text}"))
}

/// Replays `capture` under `policy` (None: the built-in one) into the flow log `dir/name`, audited
/// (every flow passes, as in the week of `run --audit` learn is meant for).
pub fn replayed_log(
    dir: &Path,
    name: &str,
    capture: &str,
    policy: Option<&Path>,
    lan: &[&str],
) -> PathBuf {
    let log = dir.join(name);
    let mut args = vec!["replay", "--audit", "--flows", path(&log)];
    if let Some(p) = policy {
        args.extend(["--policy", path(p)]);
    }
    for net in lan {
        args.extend(["--lan", net]);
    }
    args.push(capture);
    let o = outgate(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    log
}

/// The proposal without its header (which names the inputs).
pub fn body(text: &str) -> Vec<&str> {
    text.lines()
        .skip_while(|l| !(l.starts_with("zone ") || l.starts_with("policy ")))
        .collect()
}

/// A line without its `top: ...` evidence.
pub fn without_top(line: &str) -> String {
    match line.split_once(", top: ") {
        Some((head, tail)) => match tail.split_once(';') {
            Some((_, rest)) => format!("{head};{rest}"),
            None => head.to_string(),
        },
        None => line.to_string(),
    }
}
