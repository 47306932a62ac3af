//! The policy: Shorewall-style text compiled once into an immutable value.
//!
//! Promises: a policy that fails to parse or compile yields every error as `FILE:LINE:COL: message` and no
//! `Policy` (so it can never replace a working one); a compiled policy answers [`Policy::evaluate`] with a
//! [`Decision`](crate::Decision) whose reason cites the line that made it. The language is documented in [`parse`] and in
//! the README.

pub mod action;
mod compile;
pub mod parse;
mod reach;
mod shadow;
pub mod terms;
pub mod until;

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;

pub use action::{Class, Rate};
pub use compile::Eval;
pub use parse::{Cidr, Options, PairPolicy, PolicyError, Proto, Rule, Service, ZoneSel};
pub use reach::PAYLOAD_KEYS;
pub use shadow::{LineKind, Shadowed};

use crate::Timestamp;
use crate::decision::{Reason, Verdict};
use crate::inspect::Payload;
use crate::packet::Packet;
use compile::Compiled;
use parse::{IMPLICIT_ZONES, Parsed};

/// The policy's fingerprint. Everything a decision can depend on is in `Parsed` (lines, rules with their
/// terms and host lists, options), which holds no hash maps, so its debug text is the same for the same
/// policy on every run of one outgate version.
fn policy_hash(parsed: &Parsed) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{parsed:?}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The name the built-in policy is cited by.
const DEFAULT_POLICY_NAME: &str = "<default>";

/// The built-in default policy: the article's lines, verbatim.
pub const DEFAULT_POLICY: &str = "\
loc net DROP
ACCEPT loc net 13 # system time sync
ACCEPT loc net ICMP 8 # ping & traceroute
ACCEPT loc net 21 # FTP control
ACCEPT loc net 22 # SSH
ACCEPT loc net 23 # Telnet
ACCEPT loc net 25 # outgoing email
ACCEPT loc net 43 # old whois
ACCEPT loc net 53 # DNS (if no name servers either in DMZ or local)
ACCEPT loc net 63 # new whois
ACCEPT loc net 70 # gopher
ACCEPT loc net 79 # finger
ACCEPT loc net 80 # HTTP world wide web
ACCEPT loc net 109 # POP2 (should never be used, but...)
ACCEPT loc net 110 # POP3 get email
ACCEPT loc net 113 # identification/authorization
ACCEPT loc net 119 # usenet (network news)
ACCEPT loc net 123 # atomic time sync (network time protocol)
ACCEPT loc net 143 # imap (an email alternative to POP3)
ACCEPT loc net 443 # https:
# probably something else
";

/// Why a policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read the policy: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Printed as [`error_list`] prints it: the first [`ERRORS_SHOWN`], then how many more.
    #[error("{}", error_list(.0))]
    Invalid(Vec<PolicyError>),
}

/// Largest policy file (or `host=@FILE` list) read; a larger one (or `/dev/zero`) is an error.
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// Reads a policy file or host list, refusing one of more than [`MAX_FILE_BYTES`].
pub fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {} MiB", MAX_FILE_BYTES >> 20),
        ));
    }
    Ok(bytes)
}

/// At most this many policy errors are printed; the rest are counted.
pub const ERRORS_SHOWN: usize = 20;

/// `errors` one a line, the first [`ERRORS_SHOWN`] of them, then `... and N more errors` if there are more.
pub fn error_list(errors: &[PolicyError]) -> String {
    let mut out = String::new();
    for e in errors.iter().take(ERRORS_SHOWN) {
        let _ = writeln!(out, "{e}");
    }
    if let Some(more) = errors.len().checked_sub(ERRORS_SHOWN).filter(|&n| n > 0) {
        let _ = writeln!(out, "... and {more} more errors");
    }
    out.truncate(out.trim_end().len());
    out
}

/// A compiled policy.
pub struct Policy {
    file: String,
    parsed: Parsed,
    compiled: Compiled,
    hash: String,
}

impl Policy {
    /// Parses and compiles `text`; `file` is the name errors and citations use.
    pub fn compile(file: &str, text: &str) -> Result<Policy, Vec<PolicyError>> {
        Policy::compile_parsed(file, parse::parse(file, text)?)
    }

    /// [`Policy::compile`] on the bytes of a file: a line that is not UTF-8 is an error at its first
    /// bad byte, and the other lines are still checked.
    pub fn compile_bytes(file: &str, bytes: &[u8]) -> Result<Policy, Vec<PolicyError>> {
        Policy::compile_parsed(file, parse::parse_bytes(file, bytes)?)
    }

    fn compile_parsed(file: &str, parsed: parse::Parsed) -> Result<Policy, Vec<PolicyError>> {
        let compiled = Compiled::new(&parsed).map_err(|message| {
            vec![PolicyError {
                file: file.to_string(),
                line: 1,
                col: 1,
                message,
            }]
        })?;
        let hash = policy_hash(&parsed);
        Ok(Policy {
            file: file.to_string(),
            parsed,
            compiled,
            hash,
        })
    }

    /// The built-in default policy.
    pub fn builtin() -> Policy {
        match Policy::compile(DEFAULT_POLICY_NAME, DEFAULT_POLICY) {
            Ok(p) => p,
            // The built-in text is a constant, checked by a unit test; failing here is a bug in this crate.
            Err(e) => unreachable!("the built-in policy does not compile: {e:?}"),
        }
    }

    /// Reads and compiles a policy file.
    pub fn load(path: &Path) -> Result<Policy, LoadError> {
        let name = path.display().to_string();
        let bytes = read_bounded(path).map_err(|source| LoadError::Read {
            path: name.clone(),
            source,
        })?;
        Policy::compile_bytes(&name, &bytes).map_err(LoadError::Invalid)
    }

    /// Decides a new flow from its first packet (whose source is the initiator), and its first payload
    /// once a rule has asked for it ([`Eval::NeedPayload`]).
    ///
    /// `at` is the time of the decision (Unix time: the capture's in replay, the clock's live): a rule
    /// whose `until=` has passed no longer matches.
    pub fn evaluate(&self, p: &Packet<'_>, payload: Option<&Payload>, at: Timestamp) -> Eval {
        self.compiled
            .evaluate(&self.parsed, p, payload, at.as_nanos() / 1_000_000_000)
    }

    /// Whether any rule looks at payload (then the live daemon copies whole packets).
    pub(crate) fn needs_payload(&self) -> bool {
        self.parsed.rules.iter().any(|r| !r.terms.is_empty())
    }

    /// Whether any rule is decided per message (`qname=`, `qtype=`, `size=`): then each DNS query
    /// over UDP and each ICMP echo request is decided on its own (see policy::terms).
    pub fn per_message(&self) -> bool {
        self.parsed.rules.iter().any(|r| r.terms.per_message())
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// `sha256:HEX` of the policy as read: its statements, options and the host lists its `@FILE`s hold
    /// (not the file's name, so two gateways with the same policy in different places agree).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn rules(&self) -> &[Rule] {
        &self.parsed.rules
    }

    pub fn pair_policies(&self) -> &[PairPolicy] {
        &self.parsed.pair_policies
    }

    /// The traffic classes SHAPE sends flows to, by index (a decision's `class`).
    pub fn classes(&self) -> &[Class] {
        &self.parsed.classes
    }

    pub fn options(&self) -> &Options {
        &self.parsed.options
    }

    /// `FILE:LINE` of the line behind a reason, if a line made it.
    pub fn cite(&self, reason: Reason) -> Option<String> {
        let line = match reason {
            Reason::Rule(id) => self.parsed.rules.get(id as usize)?.line,
            Reason::Policy(id) => self.parsed.pair_policies.get(id as usize)?.line,
            _ => return None,
        };
        Some(format!("{}:{}", self.file, line))
    }

    /// The text of the line behind a reason, if a line made it.
    pub(crate) fn line_text(&self, reason: Reason) -> Option<&str> {
        match reason {
            Reason::Rule(id) => self.parsed.rules.get(id as usize).map(|r| r.text.as_str()),
            Reason::Policy(id) => self
                .parsed
                .pair_policies
                .get(id as usize)
                .map(|p| p.text.as_str()),
            _ => None,
        }
    }

    /// Whether `a` is on the local side: in a declared zone other than `net`. `None` without zone lines
    /// (then `loc` is whoever starts a flow).
    pub(crate) fn is_local(&self, a: IpAddr) -> Option<bool> {
        if self.parsed.zones.is_empty() {
            return None;
        }
        let zone = self
            .parsed
            .zones
            .iter()
            .find(|z| z.nets.iter().any(|n| n.contains(a)));
        Some(zone.is_some_and(|z| z.name != "net"))
    }

    /// A line's action as the policy language writes it: `DROP`, `SHAPE(bulk)`, `AUDIT(DROP)`.
    fn action_text(&self, verdict: Verdict, class: u8, audit: bool) -> String {
        let plain = match verdict {
            Verdict::Shape => match self.parsed.classes.get(usize::from(class)) {
                Some(c) if c.name != action::DEFAULT_CLASS => format!("SHAPE({})", c.name),
                _ => "SHAPE".to_string(),
            },
            v => v.name().to_uppercase(),
        };
        if audit {
            format!("AUDIT({plain})")
        } else {
            plain
        }
    }

    /// The name of traffic class `class` (SHAPE's), if the policy has it.
    pub(crate) fn class_name(&self, class: u8) -> Option<&str> {
        self.parsed
            .classes
            .get(usize::from(class))
            .map(|c| c.name.as_str())
    }

    /// The first moment after `now` (Unix time) at which a line expires, as Unix seconds.
    pub(crate) fn next_expiry(&self, now: Timestamp) -> Option<until::Expiry> {
        let now = now.as_nanos() / 1_000_000_000;
        self.parsed
            .rules
            .iter()
            .filter_map(|r| r.until)
            .filter(|&u| u > now)
            .min()
    }

    /// For `check`: the lines with `until=` that have expired by `now` (Unix time), and those that expire
    /// within a week, one line each; empty when there are none.
    pub fn expiry_notes(&self, now: Timestamp) -> String {
        let now = now.as_nanos() / 1_000_000_000;
        let mut out = String::new();
        for r in &self.parsed.rules {
            let Some(until) = r.until else { continue };
            let when = until::show(until);
            if until <= now {
                let _ = writeln!(
                    out,
                    "{}:{}: expired {when}: matches nothing any more ({})",
                    self.file, r.line, r.text
                );
            } else if until - now <= 7 * 86_400 {
                let _ = writeln!(
                    out,
                    "{}:{}: expires {when}, within a week ({})",
                    self.file, r.line, r.text
                );
            }
        }
        out
    }

    /// Zone names by index (declared zones, plus the implicit catch-all `net` when not declared).
    pub fn zone_names(&self) -> Vec<String> {
        if self.parsed.zones.is_empty() {
            return IMPLICIT_ZONES.iter().map(|s| s.to_string()).collect();
        }
        let mut names: Vec<String> = self.parsed.zones.iter().map(|z| z.name.clone()).collect();
        if names.len() < self.compiled.zone_count() {
            names.push("net".to_string());
        }
        names
    }

    /// The short summary `outgate check` prints: zones, pair policies, rule count, open ports.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let names = self.zone_names();
        let _ = writeln!(out, "{}: valid", self.file);
        let _ = writeln!(out, "hash: {}", self.hash);
        if self.parsed.zones.is_empty() {
            let _ = writeln!(
                out,
                "zones: loc (whoever starts a flow), net (the other end)"
            );
        } else {
            let _ = writeln!(
                out,
                "zones: {} (an address in none of them is in net)",
                names.join(", ")
            );
        }
        let _ = writeln!(out, "policies:");
        for p in &self.parsed.pair_policies {
            let zone = |z: ZoneSel| match z {
                ZoneSel::All => "all".to_string(),
                ZoneSel::Zone(i) => names.get(i).cloned().unwrap_or_default(),
            };
            let _ = writeln!(
                out,
                "  {} -> {} {}  ({}:{})",
                zone(p.src),
                zone(p.dst),
                self.action_text(p.verdict, p.class, p.audit),
                self.file,
                p.line
            );
        }
        let _ = writeln!(out, "  anything else: DROP (no policy line)");
        if !self.parsed.classes.is_empty() {
            let classes: Vec<String> = self
                .parsed
                .classes
                .iter()
                .map(|c| format!("{} {} ({}:{})", c.name, c.rate, self.file, c.line))
                .collect();
            let _ = writeln!(out, "classes (SHAPE): {}", classes.join(", "));
        }
        let audited: Vec<String> = self
            .parsed
            .pair_policies
            .iter()
            .filter(|p| p.audit)
            .map(|p| p.line)
            .chain(self.parsed.rules.iter().filter(|r| r.audit).map(|r| r.line))
            .map(|line| format!("{}:{line}", self.file))
            .collect();
        if !audited.is_empty() {
            let _ = writeln!(
                out,
                "AUDIT: {} line(s) trialled, logged and counted but not enforced: {}",
                audited.len(),
                audited.join(", ")
            );
        }
        let narrowed = self
            .parsed
            .rules
            .iter()
            .filter(|r| !r.src.nets.is_empty() || !r.dst.nets.is_empty() || !r.terms.is_empty())
            .count();
        let _ = write!(out, "rules: {}", self.parsed.rules.len());
        if narrowed > 0 {
            let _ = write!(
                out,
                " ({narrowed} narrowed to addresses or payload, left out of the open lists below)"
            );
        }
        let _ = writeln!(out);
        for (s, src) in names.iter().enumerate() {
            for (d, dst) in names.iter().enumerate() {
                if self.parsed.zones.is_empty() && (s, d) != (0, 1) {
                    continue;
                }
                let _ = writeln!(out, "open {src} -> {dst}:");
                for proto in Proto::ALL {
                    let with = |verdict: Verdict| -> Vec<u16> {
                        (0..=proto.max_selector())
                            .filter(|&sel| {
                                self.compiled.verdict_for_any_address(
                                    &self.parsed,
                                    s,
                                    d,
                                    Some((proto, sel)),
                                ) == verdict
                            })
                            .collect()
                    };
                    let what = if matches!(proto, Proto::Icmp | Proto::Icmp6) {
                        "types"
                    } else {
                        "ports"
                    };
                    let open = with(Verdict::Accept);
                    let _ = writeln!(out, "  {:<6} {what} {}", proto.name(), format_ranges(&open));
                    let shaped = with(Verdict::Shape);
                    if !shaped.is_empty() {
                        let _ = writeln!(
                            out,
                            "  {:<6} shaped {what} {}",
                            proto.name(),
                            format_ranges(&shaped)
                        );
                    }
                }
                let other = self
                    .compiled
                    .verdict_for_any_address(&self.parsed, s, d, None);
                let _ = writeln!(
                    out,
                    "  other protocols: {}",
                    match other {
                        Verdict::Accept => "open",
                        Verdict::Shape => "shaped",
                        _ => "closed",
                    }
                );
            }
        }
        out
    }
}

/// `[13, 21, 22, 23]` -> `13, 21-23`; empty -> `none`; everything -> `all`.
fn format_ranges(sorted: &[u16]) -> String {
    if sorted.is_empty() {
        return "none".into();
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        while i + 1 < sorted.len() && sorted[i + 1] == sorted[i] + 1 {
            i += 1;
        }
        parts.push(if start == sorted[i] {
            start.to_string()
        } else {
            format!("{start}-{}", sorted[i])
        });
        i += 1;
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests;
