//! The text report's cells, lists and grids.

use super::*;

pub(super) fn numeric_what(
    kind: &str,
    host: &str,
    addr: Option<IpAddr>,
    form: Option<&'static str>,
) -> String {
    match (kind, addr) {
        ("tls", None) => "TLS hello without SNI".to_string(),
        (_, addr) => {
            let what = if kind == "tls" {
                "TLS SNI"
            } else {
                "HTTP host"
            };
            match (addr, form) {
                (Some(a), Some(f)) if f != "dotted" && f != "ipv6" => {
                    format!("{what} is IP literal {host} (= {a}, {f})")
                }
                _ => format!("{what} is IP literal {host}"),
            }
        }
    }
}

pub(super) fn reason_text(reason: &str, max_query: u64) -> String {
    match reason {
        "dll_or_exe" => ".dll?/.exe? in path".to_string(),
        "long_query" => format!("query of {max_query} chars"),
        other => other.to_string(),
    }
}

pub(super) fn odd_what(o: &OddHttp) -> String {
    if o.kind == "post_only" {
        format!("only {}", o.methods.join("/"))
    } else {
        let why: Vec<String> = o
            .reasons
            .iter()
            .map(|r| reason_text(r, o.max_query_chars))
            .collect();
        format!("odd URL: {}", why.join(", "))
    }
}

pub(super) fn expect_text(app: &str, expected: Option<&str>, own: Option<u16>) -> String {
    match (expected, own) {
        (Some(e), Some(p)) => format!("expected {e}; {} uses {p}", clean(app)),
        (Some(e), None) => format!("expected {e}"),
        (None, Some(p)) => format!("{} uses {p}", clean(app)),
        (None, None) => "-".to_string(),
    }
}

pub(super) fn section_rank(section: &str) -> u8 {
    match section {
        "numeric_hosts" => 0,
        "odd_http" => 1,
        _ => 2,
    }
}

pub(super) fn section_title(section: &str) -> &'static str {
    match section {
        "numeric_hosts" => "numeric host",
        "odd_http" => "odd HTTP",
        "dns_tunnels" => "DNS tunnel",
        "icmp_tunnels" => "ICMP tunnel",
        _ => "wrong port",
    }
}

pub(super) fn heading(out: &mut String, title: &str) {
    let _ = write!(out, "\n== {title} ==\n");
}

/// Log text made safe for a terminal: control characters escaped, long text cut.
pub(super) fn clean(s: &str) -> Cow<'_, str> {
    let long = s.chars().count() > CELL_MAX;
    if !long && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::new();
    for c in s.chars().take(CELL_MAX) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if long {
        out.push('…');
    }
    Cow::Owned(out)
}

pub(super) fn verdict_text(verdicts: &BTreeMap<String, u64>) -> String {
    let v: Vec<String> = verdicts
        .iter()
        .map(|(k, n)| format!("{} {n}", clean(k)))
        .collect();
    v.join(", ")
}

pub(super) fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "-".to_string();
    }
    let mut v: Vec<String> = items
        .iter()
        .take(LIST_MAX)
        .map(|s| clean(s).into_owned())
        .collect();
    if items.len() > LIST_MAX {
        v.push(format!("+{} more", items.len() - LIST_MAX));
    }
    v.join(", ")
}

pub(super) fn cite_list(cites: &[String], more: u64) -> String {
    let mut v: Vec<String> = cites.iter().map(|s| clean(s).into_owned()).collect();
    if more > 0 {
        v.push(format!("+{more} more"));
    }
    v.join(", ")
}

pub(super) fn cite_text(cites: &[String], more: u64) -> String {
    let total = more.saturating_add(cites.len() as u64);
    format!(
        "{total} line{}: {}",
        if total == 1 { "" } else { "s" },
        cite_list(cites, more)
    )
}

pub(super) struct Row {
    pub(super) cells: Vec<String>,
    pub(super) details: Vec<String>,
}

/// Rows under a header, columns padded (`true` = right-aligned); each row's details below it.
pub(super) fn grid(out: &mut String, head: &[(&str, bool)], rows: &[Row]) {
    if rows.is_empty() {
        out.push_str("  none\n");
        return;
    }
    let mut widths: Vec<usize> = head.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(&row.cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::from(" ");
        for ((cell, (_, right)), w) in cells.zip(head).zip(&widths) {
            let pad = w.saturating_sub(cell.chars().count());
            text.push(' ');
            if *right {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad));
            }
            text.push(' ');
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(out, &mut head.iter().map(|(h, _)| *h));
    for row in rows {
        line(out, &mut row.cells.iter().map(String::as_str));
        for d in &row.details {
            let _ = writeln!(out, "      {d}");
        }
    }
}

pub(super) fn dest_grid(out: &mut String, dests: &[Dest]) {
    let rows: Vec<Row> = dests
        .iter()
        .map(|d| Row {
            cells: vec![
                clean(&d.dst).into_owned(),
                d.flows.to_string(),
                d.bytes.to_string(),
                d.packets.to_string(),
                verdict_text(&d.verdicts),
            ],
            details: vec![cite_text(&d.cites, d.cites_more)],
        })
        .collect();
    grid(
        out,
        &[
            ("DESTINATION", false),
            ("FLOWS", true),
            ("BYTES", true),
            ("PACKETS", true),
            ("VERDICTS", false),
        ],
        &rows,
    );
}
