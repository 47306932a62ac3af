//! The diff as text: a summary, then each change with its flows by protocol, port and host.

use std::fmt::Write as _;

use super::{ChangeKind, Diff, Row, Said, Tally};

/// Host cells are cut to this many characters.
const HOST_MAX: usize = 40;
/// Inputs named in the summary (the JSON names all).
const INPUTS_SHOWN: usize = 5;

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// An action as the policy language writes it: `DROP`, `SHAPE(bulk)`.
fn action(verdict: &str, class: Option<&str>) -> String {
    match class {
        Some(c) => format!("{}({c})", verdict.to_uppercase()),
        None => verdict.to_uppercase(),
    }
}

/// What one policy says: `DROP  p.rules:3 (DROP loc net tcp 8080)`, `REJECT  option midstream`.
fn said(s: &Said) -> String {
    let Some(verdict) = s.verdict else {
        return "undecided  (waiting for its first payload when the capture ended)".to_string();
    };
    let what = action(verdict, s.class.as_deref());
    let by = match (&s.rule, &s.text) {
        (Some(rule), Some(text)) => format!("{rule} ({text})"),
        (Some(rule), None) => rule.clone(),
        _ => match s.reason {
            "no-policy" => "no policy line for the zone pair".to_string(),
            "midstream" => "option midstream (seen from its middle, a payload rule)".to_string(),
            "inspect-limit" => "option inspect-limit (no readable first payload)".to_string(),
            "ambiguous-stream" => "option inspect-limit (conflicting payload copies)".to_string(),
            "ftp-data" => "FTP data connection of an accepted control connection".to_string(),
            other => other.to_string(),
        },
    };
    let audit = match &s.applied {
        Some(a) => format!(
            ", not enforced: gets {}",
            action(a.verdict, a.class.as_deref())
        ),
        None => String::new(),
    };
    format!("{what}  {by}{audit}")
}

fn counts(flows: u64, packets: u64, bytes: u64, midstream: u64) -> String {
    let mut s = format!(
        "{}, {}, {}",
        plural(flows, "flow", "flows"),
        plural(packets, "packet", "packets"),
        plural(bytes, "byte", "bytes")
    );
    if midstream > 0 {
        let _ = write!(s, " ({midstream} seen from the middle)");
    }
    s
}

fn cites(t: &Tally) -> String {
    let mut s = t.cites.join(", ");
    if t.cites_more > 0 {
        let _ = write!(s, " and {} more", t.cites_more);
    }
    s
}

fn row(r: &Row) -> String {
    let service = match r.port {
        Some(p) => format!("{}/{p}", r.proto),
        None => r.proto.clone(),
    };
    let host: String = if r.host.chars().count() > HOST_MAX {
        r.host.chars().take(HOST_MAX - 1).chain(['…']).collect()
    } else {
        r.host.clone()
    };
    let mut s = format!(
        "      {service:<11} {host:<24}  {}",
        counts(r.flows, r.packets, r.bytes, r.midstream)
    );
    if !r.cites.is_empty() {
        let t = Tally {
            count: r.flows,
            cites: r.cites.clone(),
            cites_more: r.cites_more,
        };
        let _ = write!(s, "  {}", cites(&t));
    }
    s
}

pub(super) fn table(d: &Diff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "outgate diff: {} -> {}", d.old, d.new);
    let inputs: Vec<String> = d
        .inputs
        .iter()
        .map(|i| match i.lines {
            Some(n) => format!("{} ({}, {})", i.path, i.kind, plural(n, "line", "lines")),
            None => format!("{} ({})", i.path, i.kind),
        })
        .collect();
    let shown = inputs.len().min(INPUTS_SHOWN);
    let mut listed = inputs[..shown].join(", ");
    if inputs.len() > shown {
        let _ = write!(listed, " and {} more", inputs.len() - shown);
    }
    let _ = writeln!(out, "inputs: {listed}");
    let f = &d.flows;
    let mut compared = plural(f.compared, "flow", "flows") + " compared";
    if f.midstream > 0 {
        let _ = write!(compared, " ({} seen from the middle)", f.midstream);
    }
    let _ = writeln!(
        out,
        "flows: {compared}: {} decision changed, {} enforcement changed only, {} unchanged",
        f.changed, f.enforcement_only, f.unchanged
    );
    if f.undecidable > 0 {
        let _ = writeln!(
            out,
            "undecidable from the log: {} (a policy reads what the line does not tell: URL, method, an unread payload, an FTP control connection): {}",
            plural(f.undecidable, "flow", "flows"),
            cites(&d.undecidable)
        );
    }
    if f.unmatched > 0 {
        let _ = writeln!(
            out,
            "not compared: {} found under one policy only (their timeouts or max-flows cut the traffic into other flows)",
            plural(f.unmatched, "flow", "flows")
        );
    }
    if d.not_understood.count > 0 {
        let _ = writeln!(
            out,
            "not understood: {}: {}",
            plural(d.not_understood.count, "line", "lines"),
            cites(&d.not_understood)
        );
    }
    if d.skipped_lines > 0 {
        let _ = writeln!(
            out,
            "skipped: {} (HTTP or TLS log lines, and flow end lines; the flow log's decision lines have the flows)",
            plural(d.skipped_lines, "line", "lines")
        );
    }
    for kind in [ChangeKind::Decision, ChangeKind::Enforcement] {
        let changes: Vec<_> = d.changes.iter().filter(|c| c.kind == kind).collect();
        if changes.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "\n{}",
            match kind {
                ChangeKind::Decision => "decision changes:",
                ChangeKind::Enforcement =>
                    "enforcement changes only (the same decision; the packets get something else):",
            }
        );
        for c in changes {
            let _ = writeln!(out, "  {}", said(&c.old));
            let _ = writeln!(out, "  -> {}", said(&c.new));
            let _ = writeln!(
                out,
                "     {}",
                counts(c.flows, c.packets, c.bytes, c.midstream)
            );
            for r in &c.rows {
                let _ = writeln!(out, "{}", row(r));
            }
        }
    }
    if d.changes.is_empty() {
        let left_out = f.undecidable.saturating_add(f.unmatched);
        if left_out == 0 {
            let _ = writeln!(out, "\nnothing changes");
        } else {
            // Exit 0 all the same: no change is known; the summary says what could not be compared.
            let _ = writeln!(
                out,
                "\nnothing changes among the flows compared ({} not compared, see above)",
                left_out
            );
        }
    }
    out
}
