//! Other software's marks: what [`super::apply`] reads before it installs, and refuses to share.
//!
//! The chain trusts a packet that arrives with outgate's bits set (that is the daemon's REPEAT), so a
//! foreign 1 in them reads as a verdict, or as no verdict and is dropped; a foreign write into the
//! conntrack mark's bits forges or erases a flow's verdict. The class bits count the same way: a foreign
//! value there moves a flow into a slow class or out of one. What counts, and why:
//! - Packet mark: rules that can set a bit inside the mask to 1 (iptables `MARK`, `TPROXY
//!   --tproxy-mark`; nft `meta mark set`). Clearing bits is harmless: outgate's packet bits are 0
//!   before its chain. Copying the conntrack mark in (`CONNMARK --restore-mark`, nft `meta mark set ct
//!   mark`) is harmless too, since nothing else may write there.
//! - Conntrack mark: rules that write a bit inside the mask at all (`CONNMARK --set-xmark`,
//!   `--save-mark`; nft `ct mark set`, unless it keeps the mask's bits as they are).
//! - `ip rule ... fwmark X[/M]`: something (WireGuard, a VPN) marks packets with X.
//!
//! Outgate's own chain and table are left out. An expression outgate cannot bound (a hash, a number
//! generator) counts as writing every bit.

use super::*;

/// Which mark a rule writes or reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkKind {
    /// It can set these bits of the packet mark to 1.
    Packet,
    /// It writes these bits of the conntrack mark.
    Conntrack,
    /// Policy routing by these bits: something marks packets with them.
    Routing,
}

/// A rule of other software that uses bits of the marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkUser {
    /// Where it is: `iptables mangle OUTPUT`, `nft table inet admin, chain out`, `ip rule`.
    pub place: String,
    /// The rule as its tool lists it.
    pub rule: String,
    pub kind: MarkKind,
    /// The bits it uses (see [`MarkKind`]), all 32 of them.
    pub bits: u32,
}

impl MarkUser {
    /// One line for an error message: the rule and its bits inside `mask`.
    fn describe(&self, mask: u32) -> String {
        let bits = self.bits & mask;
        let what = match self.kind {
            MarkKind::Packet => format!("sets packet-mark bits {bits:#x}"),
            MarkKind::Conntrack => format!("writes conntrack-mark bits {bits:#x}"),
            MarkKind::Routing => format!(
                "routes by mark bits {bits:#x}, so something (WireGuard, a VPN) marks packets with them"
            ),
        };
        format!("{}: `{}` {what}", self.place, self.rule)
    }
}

/// Every rule of other software that uses mark bits: `iptables-save` and `ip6tables-save` (every table),
/// `nft list ruleset` (without outgate's table and the tables iptables-nft owns, already read), `ip rule`
/// and `ip -6 rule`. A tool that is not installed holds no rules.
pub(super) fn mark_users() -> Result<Vec<MarkUser>, RulesError> {
    let listing = |program: &str, args: &[&str]| match run(program, args, None) {
        Ok(text) => Ok(Some(text)),
        Err(RulesError::NotInstalled { .. }) => Ok(None),
        Err(e) => Err(e),
    };
    let mut users = Vec::new();
    for family in Family::ALL {
        let save = format!("{}-save", family.iptables());
        if let Some(text) = listing(&save, &[])? {
            users.extend(iptables_users(family, &text));
        }
    }
    if let Some(text) = listing("nft", &["list", "ruleset"])? {
        users.extend(nft_users(&text));
    }
    for (args, place) in [(["-4", "rule"], "ip rule"), (["-6", "rule"], "ip -6 rule")] {
        if let Some(text) = listing("ip", &args)? {
            users.extend(ip_rule_users(place, &text));
        }
    }
    Ok(users)
}

/// The rules of other software that use bits of `marks`: its verdict bits or its class bits.
pub fn collisions(marks: Marks) -> Result<Vec<MarkUser>, RulesError> {
    let users = mark_users()?;
    Ok(users
        .into_iter()
        .filter(|u| u.bits & marks.full_mask() != 0)
        .collect())
}

/// The refusal of [`super::apply`]: every colliding rule, and a mask no rule here uses, if there is one.
/// The class bits count like the verdict bits: a foreign value there would move a flow into a slow class,
/// or out of one.
pub(super) fn refusal(marks: Marks, users: &[MarkUser]) -> Option<RulesError> {
    let colliding: Vec<&MarkUser> = users
        .iter()
        .filter(|u| u.bits & marks.full_mask() != 0)
        .collect();
    if colliding.is_empty() {
        return None;
    }
    let used = users.iter().fold(0, |bits, u| bits | u.bits);
    // A mark mask whose default class bits (the four above it) are free too.
    let free = [12, 16, 20, 24, 28, 4, 0]
        .map(|shift| 0xf_u32 << shift)
        .into_iter()
        .filter_map(|mask| Marks::new(mask).ok())
        .find(|m| m.full_mask() & used == 0);
    Some(RulesError::MarkCollision {
        mask: format!("{marks} (verdicts) and {:#x} (classes)", marks.class_mask()),
        rules: colliding
            .iter()
            .map(|u| format!("\n  {}", u.describe(marks.full_mask())))
            .collect(),
        hint: match free {
            Some(m) => format!(
                "choose free bits with --mark-mask ({m} is free here, and so are its class bits {:#x})",
                m.class_mask()
            ),
            None => "no 8-bit run is free of other software's marks here".to_string(),
        },
    })
}

/// Splits a listed rule into words; a quoted string (a comment) is one word, quotes kept.
fn words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    words.push(&line[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        words.push(&line[s..]);
    }
    words
}

/// `0x100`, `256`; nft's `0x00000100,` with a list's comma.
fn number(word: &str) -> Option<u32> {
    let word = word.trim_end_matches(',');
    match word.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

/// `V/M` (or `V`, mask all ones).
fn value_mask(word: &str) -> Option<(u32, u32)> {
    match word.split_once('/') {
        Some((v, m)) => Some((number(v)?, number(m)?)),
        None => Some((number(word)?, u32::MAX)),
    }
}

/// The mark users in `iptables-save` output of every table.
fn iptables_users(family: Family, save: &str) -> Vec<MarkUser> {
    let mut users = Vec::new();
    let mut table = "";
    for line in save.lines() {
        if let Some(name) = line.strip_prefix('*') {
            table = name;
            continue;
        }
        let w = words(line);
        let [Some(&"-A"), Some(&chain)] = [w.first(), w.get(1)] else {
            continue;
        };
        if chain == CHAIN {
            continue;
        }
        let Some(j) = w.iter().position(|x| *x == "-j") else {
            continue;
        };
        let options = w.get(j + 2..).unwrap_or_default();
        let option = |name: &str| {
            let at = options.iter().position(|x| *x == name)?;
            options.get(at + 1).copied()
        };
        let has = |name: &str| options.contains(&name);
        // A form outgate cannot read counts as every bit.
        let bits = |parsed: Option<u32>| parsed.unwrap_or(u32::MAX);
        let found = match w.get(j + 1).copied() {
            Some("MARK") => {
                let set = ["--set-xmark", "--set-mark", "--or-mark", "--xor-mark"]
                    .into_iter()
                    .find_map(|o| option(o).map(|v| value_mask(v).map(|(v, _)| v)));
                match set {
                    Some(v) => Some((MarkKind::Packet, bits(v))),
                    // `--and-mark` only clears bits.
                    None if has("--and-mark") => None,
                    None => Some((MarkKind::Packet, u32::MAX)),
                }
            }
            Some("TPROXY") => option("--tproxy-mark")
                .map(|v| (MarkKind::Packet, bits(value_mask(v).map(|(v, _)| v)))),
            Some("CONNMARK") => {
                if has("--restore-mark") {
                    None
                } else if has("--save-mark") {
                    // ct = (ct & ~ctmask) ^ (packet & nfmask): both masks' bits change.
                    let mask = |o| option(o).map_or(Some(u32::MAX), number);
                    let both = mask("--ctmask").zip(mask("--nfmask")).map(|(c, n)| c | n);
                    Some((MarkKind::Conntrack, bits(both)))
                } else if let Some(v) = option("--set-xmark").or(option("--set-mark")) {
                    Some((MarkKind::Conntrack, bits(value_mask(v).map(|(v, m)| v | m))))
                } else if let Some(v) = option("--and-mark") {
                    Some((MarkKind::Conntrack, bits(number(v).map(|v| !v))))
                } else {
                    let v = option("--or-mark").or(option("--xor-mark"));
                    Some((MarkKind::Conntrack, bits(v.and_then(number))))
                }
            }
            _ => None,
        };
        if let Some((kind, bits)) = found
            && bits != 0
        {
            users.push(MarkUser {
                place: format!("{} {table} {chain}", family.iptables()),
                rule: line.to_string(),
                kind,
                bits,
            });
        }
    }
    users
}

/// The tables `nft list ruleset` shows that are outgate's own, or iptables-nft's (read through
/// iptables-save already).
fn skipped_table(family: &str, name: &str) -> bool {
    (family == "inet" && name == NFT_TABLE)
        || (matches!(family, "ip" | "ip6")
            && matches!(name, "filter" | "mangle" | "raw" | "nat" | "security"))
}

/// The mark users in `nft list ruleset` output.
fn nft_users(ruleset: &str) -> Vec<MarkUser> {
    let mut users = Vec::new();
    let mut depth = 0usize;
    let mut table: Option<(String, bool)> = None;
    let mut chain: Option<String> = None;
    for line in ruleset.lines() {
        let w = words(line);
        match (depth, w.as_slice()) {
            (0, ["table", family, name, "{"]) => {
                table = Some((format!("{family} {name}"), skipped_table(family, name)));
            }
            (1, ["chain", name, "{"]) => chain = Some(name.to_string()),
            (2, _) => {
                if let (Some((table, false)), Some(chain)) = (&table, &chain) {
                    for (kind, bits) in nft_statements(&w) {
                        users.push(MarkUser {
                            place: format!("nft table {table}, chain {chain}"),
                            rule: line.trim().to_string(),
                            kind,
                            bits,
                        });
                    }
                }
            }
            _ => {}
        }
        let opened = w.iter().filter(|x| **x == "{").count();
        let closed = w.iter().filter(|x| **x == "}").count();
        depth = (depth + opened).saturating_sub(closed);
        if depth < 2 {
            chain = None;
        }
        if depth == 0 {
            table = None;
        }
    }
    users
}

/// Each `meta mark set` and `ct mark set` of one rule: the bits it uses, when any.
fn nft_statements(w: &[&str]) -> Vec<(MarkKind, u32)> {
    let mut found = Vec::new();
    for i in 0..w.len() {
        let kind = match (
            w.get(i.wrapping_sub(1)).copied(),
            w[i],
            w.get(i + 1).copied(),
        ) {
            (Some("meta"), "mark", Some("set")) => MarkKind::Packet,
            (Some("ct"), "mark", Some("set")) => MarkKind::Conntrack,
            _ => continue,
        };
        let bits = nft_expression_bits(kind, w.get(i + 2..).unwrap_or_default());
        if bits != 0 {
            found.push((kind, bits));
        }
    }
    found
}

/// The bits an nft mark expression uses: for the packet mark, those it can set to 1; for the conntrack
/// mark, those it does not keep. Operations apply one after another; an `|` or `^` counts however it
/// is ordered with an `&` (nft lists iptables-nft's rules in either order).
fn nft_expression_bits(kind: MarkKind, expr: &[&str]) -> u32 {
    let (mut ones, mut kept, rest) = match (kind, expr) {
        (MarkKind::Packet, ["meta", "mark", rest @ ..]) => (0, u32::MAX, rest),
        (MarkKind::Packet, ["ct", "mark", rest @ ..]) => (0, 0, rest),
        (MarkKind::Packet, ["mark", rest @ ..]) => (0, u32::MAX, rest),
        (MarkKind::Conntrack, ["ct", "mark", rest @ ..]) => (0, u32::MAX, rest),
        (_, [value, rest @ ..]) if number(value).is_some() => {
            (number(value).unwrap_or(u32::MAX), 0, rest)
        }
        _ if expr.contains(&"map") => return map_values(expr).unwrap_or(u32::MAX),
        _ => return u32::MAX,
    };
    let mut rest: &[&str] = rest;
    while let [op, value, tail @ ..] = rest {
        let (op, Some(v)) = (*op, number(value)) else {
            break;
        };
        match op {
            "&" | "and" => kept &= v,
            "|" | "or" | "^" | "xor" => {
                ones |= v;
                kept &= !v;
            }
            _ => break,
        }
        rest = tail;
    }
    if let [op, ..] = rest
        && matches!(*op, "<<" | ">>" | "lshift" | "rshift")
    {
        return u32::MAX;
    }
    match kind {
        MarkKind::Packet => ones,
        _ => !kept,
    }
}

/// `... map { k : V, k : V }`: every V ORed; `None` when one is not a number.
fn map_values(expr: &[&str]) -> Option<u32> {
    let open = expr.iter().position(|x| *x == "{")?;
    let close = expr.iter().position(|x| *x == "}")?;
    let inner = expr.get(open + 1..close)?;
    let mut bits = 0;
    for (i, w) in inner.iter().enumerate() {
        if *w == ":" {
            bits |= number(inner.get(i + 1)?)?;
        }
    }
    Some(bits)
}

/// The `fwmark X[/M]` of `ip rule` output.
fn ip_rule_users(place: &str, text: &str) -> Vec<MarkUser> {
    text.lines()
        .filter_map(|line| {
            let w = words(line);
            let at = w.iter().position(|x| *x == "fwmark")?;
            let bits = w
                .get(at + 1)
                .and_then(|v| value_mask(v))
                .map_or(u32::MAX, |(v, m)| v & m);
            (bits != 0).then(|| MarkUser {
                place: place.to_string(),
                rule: w.join(" "),
                kind: MarkKind::Routing,
                bits,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
