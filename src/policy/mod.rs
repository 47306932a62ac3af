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
mod tests {
    use super::*;
    use crate::decision::{Action, Decision};
    use crate::packet::Packet;
    use etherparse::PacketBuilder;

    fn first(policy: &Policy, bytes: &[u8]) -> Decision {
        match policy.evaluate(&Packet::parse(bytes).unwrap(), None, Timestamp::default()) {
            Eval::Decided(d) => d,
            Eval::NeedPayload => panic!("no rule here needs payload"),
        }
    }

    fn decide(policy: &Policy, bytes: &[u8]) -> (Verdict, Option<String>) {
        let d = first(policy, bytes);
        (d.verdict, policy.cite(d.reason))
    }

    fn tcp(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .tcp(40000, dport, 1, 1000)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        out
    }

    fn udp(dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64)
            .udp(40000, dport)
            .write(&mut out, &[])
            .unwrap();
        out
    }

    fn icmp(ty: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let b = PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64);
        let b = if ty == 8 {
            b.icmpv4_echo_request(1, 1)
        } else {
            b.icmpv4_raw(ty, 0, [0; 4])
        };
        b.write(&mut out, &[]).unwrap();
        out
    }

    #[test]
    fn builtin_policy_means_what_the_article_meant() {
        let p = Policy::builtin();
        assert_eq!(p.rules().len(), 19);
        let lan = [10, 0, 0, 2];
        let web = [93, 184, 216, 34];
        assert_eq!(
            decide(&p, &tcp(lan, web, 443)),
            (Verdict::Accept, Some("<default>:20".into()))
        );
        assert_eq!(
            decide(&p, &tcp(lan, web, 80)),
            (Verdict::Accept, Some("<default>:13".into()))
        );
        assert_eq!(
            decide(&p, &udp(53)),
            (Verdict::Accept, Some("<default>:9".into()))
        );
        assert_eq!(
            decide(&p, &udp(13)),
            (Verdict::Accept, Some("<default>:2".into()))
        );
        assert_eq!(
            decide(&p, &tcp(lan, web, 8080)),
            (Verdict::Drop, Some("<default>:1".into()))
        );
        assert_eq!(
            decide(&p, &udp(443)),
            (Verdict::Accept, Some("<default>:20".into())),
            "bare port: TCP and UDP"
        );
        assert_eq!(
            decide(&p, &icmp(8)),
            (Verdict::Accept, Some("<default>:3".into()))
        );
        assert_eq!(
            decide(&p, &icmp(13)).0,
            Verdict::Drop,
            "ICMP 8 is echo request only"
        );
    }

    #[test]
    fn first_match_wins_with_address_narrowing() {
        let text = "policy loc net ACCEPT\nDROP loc net:192.0.2.0/24 tcp 80\nREJECT loc net tcp 80,8000:8100\n";
        let p = Policy::compile("t", text).unwrap();
        assert_eq!(
            decide(&p, &tcp([10, 0, 0, 2], [192, 0, 2, 9], 80)),
            (Verdict::Drop, Some("t:2".into()))
        );
        assert_eq!(
            decide(&p, &tcp([10, 0, 0, 2], [198, 51, 100, 1], 80)),
            (Verdict::Reject, Some("t:3".into()))
        );
        assert_eq!(
            decide(&p, &tcp([10, 0, 0, 2], [198, 51, 100, 1], 8050)),
            (Verdict::Reject, Some("t:3".into()))
        );
        assert_eq!(
            decide(&p, &tcp([10, 0, 0, 2], [198, 51, 100, 1], 22)),
            (Verdict::Accept, Some("t:1".into()))
        );
    }

    #[test]
    fn declared_zones_and_catch_all_net() {
        let text = "zone lan 10.0.0.0/8\nzone dmz 172.16.0.0/12\npolicy lan net DROP\npolicy all all REJECT\n\
                    ACCEPT lan net tcp 443\nACCEPT lan dmz all\n";
        let p = Policy::compile("z", text).unwrap();
        assert_eq!(p.zone_names(), vec!["lan", "dmz", "net"]);
        assert_eq!(
            decide(&p, &tcp([10, 1, 1, 1], [8, 8, 8, 8], 443)).0,
            Verdict::Accept
        );
        assert_eq!(
            decide(&p, &tcp([10, 1, 1, 1], [8, 8, 8, 8], 22)),
            (Verdict::Drop, Some("z:3".into()))
        );
        assert_eq!(
            decide(&p, &tcp([10, 1, 1, 1], [172, 16, 0, 5], 22)),
            (Verdict::Accept, Some("z:6".into()))
        );
        assert_eq!(
            decide(&p, &tcp([8, 8, 8, 8], [10, 1, 1, 1], 22)),
            (Verdict::Reject, Some("z:4".into()))
        );
    }

    #[test]
    fn no_policy_line_drops() {
        let p = Policy::compile("n", "ACCEPT loc net tcp 22\n").unwrap();
        let d = first(&p, &tcp([10, 0, 0, 2], [192, 0, 2, 1], 23));
        assert_eq!(d, Decision::new(Verdict::Drop, Reason::NoPolicy));
    }

    #[test]
    fn the_hash_follows_what_the_policy_says_not_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let text = "policy loc net DROP\nDROP loc net tcp 80 host=@bad.txt\nACCEPT loc net 80\n";
        std::fs::write(dir.path().join("bad.txt"), "tunnel.example.net\n").unwrap();
        let at = |name: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            Policy::load(&path).unwrap().hash().to_string()
        };
        let (a, b) = (at("a.rules"), at("b.rules"));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        assert_eq!(a, b, "the same policy under another name");
        std::fs::write(dir.path().join("bad.txt"), "other.example.net\n").unwrap();
        assert_ne!(at("a.rules"), a, "a host list it reads changed");
        assert_ne!(
            Policy::compile("x", "policy loc net ACCEPT\n")
                .unwrap()
                .hash(),
            Policy::compile("x", "policy loc net DROP\n")
                .unwrap()
                .hash()
        );
    }

    fn to_port(dport: u16) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64)
            .tcp(40000, dport, 1, 1000)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        out
    }

    #[test]
    fn shape_sends_flows_to_their_class() {
        let p = Policy::compile(
            "p",
            "policy loc net SHAPE\nACCEPT loc net tcp 443\nSHAPE(bulk) loc net tcp 6881\n\
             class bulk 500kbit\noption shape-rate 2mbit\n",
        )
        .unwrap();
        let names: Vec<(&str, u64)> = p
            .classes()
            .iter()
            .map(|c| (c.name.as_str(), c.rate.bits_per_second()))
            .collect();
        assert_eq!(names, [("slow", 2_000_000), ("bulk", 500_000)]);
        assert_eq!(first(&p, &to_port(443)).verdict, Verdict::Accept);
        let bulk = first(&p, &to_port(6881));
        assert_eq!((bulk.verdict, bulk.class), (Verdict::Shape, 1));
        let other = first(&p, &to_port(8080));
        assert_eq!(
            (other.verdict, other.class, other.reason),
            (Verdict::Shape, 0, Reason::Policy(0))
        );
        assert!(other.enforced());
        let s = p.summary();
        assert!(s.contains("loc -> net SHAPE  (p:1)"), "{s}");
        assert!(
            s.contains("classes (SHAPE): slow 2mbit (p:5), bulk 500kbit (p:4)"),
            "{s}"
        );
        assert!(s.contains("tcp    shaped ports 0-442, 444-65535"), "{s}");
    }

    #[test]
    fn an_audited_line_is_counted_as_it_says_and_the_rest_of_the_policy_applies() {
        let p = Policy::compile(
            "p",
            "policy loc net ACCEPT\nAUDIT(DROP) loc net tcp 8080\nREJECT loc net tcp 8080\n",
        )
        .unwrap();
        let d = first(&p, &to_port(8080));
        assert_eq!((d.verdict, d.reason), (Verdict::Drop, Reason::Rule(0)));
        assert_eq!(
            d.applied,
            Some(Action::of(Verdict::Reject)),
            "the next line that is not audited applies"
        );
        let d = first(&p, &to_port(80));
        assert!(d.enforced() && d.verdict == Verdict::Accept);
        // Trialling default-deny: an audited policy line leaves its flows accepted.
        let trial = Policy::compile(
            "p",
            "policy loc net AUDIT(DROP)\nACCEPT loc net tcp 443\nHTTP(AUDIT(SHAPE(b))) loc net\nclass b 1mbit\n",
        )
        .unwrap();
        let d = first(&trial, &to_port(8080));
        assert_eq!(
            (d.verdict, d.reason, d.applied),
            (Verdict::Drop, Reason::Policy(0), Some(Action::ACCEPT))
        );
        assert!(first(&trial, &to_port(443)).enforced());
        let d = first(&trial, &to_port(80));
        assert_eq!((d.verdict, d.class), (Verdict::Shape, 0));
        assert_eq!(
            d.applied,
            Some(Action::ACCEPT),
            "the audited policy line behind it"
        );
        let s = trial.summary();
        assert!(
            s.contains("AUDIT: 2 line(s) trialled, logged and counted but not enforced: p:1, p:3"),
            "{s}"
        );
        assert!(s.contains("loc -> net AUDIT(DROP)"), "{s}");
        assert!(
            s.contains("tcp    ports 0-65535"),
            "enforced, everything is open: {s}"
        );
    }

    #[test]
    fn a_rule_past_its_until_matches_nothing() {
        let p = Policy::compile(
            "p",
            "policy loc net DROP\nACCEPT loc net tcp 8080 until=2026-12-31 # exam week\nACCEPT loc net tcp 80\n",
        )
        .unwrap();
        let at = |secs: u64| Timestamp::from_secs(secs);
        let before = 1_798_675_200; // 2026-12-31T00:00Z
        let verdict =
            |secs| match p.evaluate(&Packet::parse(&to_port(8080)).unwrap(), None, at(secs)) {
                Eval::Decided(d) => d.verdict,
                Eval::NeedPayload => unreachable!(),
            };
        assert_eq!(verdict(before), Verdict::Accept, "during its last day");
        assert_eq!(verdict(before + 86_399), Verdict::Accept);
        assert_eq!(
            verdict(before + 86_400),
            Verdict::Drop,
            "the day after: the policy decides"
        );
        let notes = p.expiry_notes(at(before));
        assert_eq!(
            notes,
            "p:2: expires 2027-01-01T00:00Z, within a week (ACCEPT loc net tcp 8080 until=2026-12-31 # exam week)\n"
        );
        assert!(
            p.expiry_notes(at(before + 86_400))
                .contains("p:2: expired 2027-01-01T00:00Z")
        );
        assert_eq!(
            p.expiry_notes(at(before - 30 * 86_400)),
            "",
            "a month ahead: nothing to say"
        );
        let err = match Policy::compile("p", "ACCEPT loc net 80 until=soon\n") {
            Ok(_) => panic!("compiled"),
            Err(e) => e[0].to_string(),
        };
        assert!(err.starts_with("p:1:25: 'soon' is not a date"), "{err}");
    }

    #[test]
    fn shape_and_audit_errors_name_the_place() {
        let err = |text: &str| match Policy::compile("p", text) {
            Ok(_) => panic!("{text} compiled"),
            Err(e) => e[0].to_string(),
        };
        assert_eq!(
            err("policy loc net DROP\nSHAPE loc net tcp 80\n"),
            "p:2:1: plain SHAPE needs `option shape-rate RATE` (its class), or name a class: SHAPE(bulk) with `class bulk 2mbit`"
        );
        assert_eq!(
            err("SHAPE(bulk) loc net tcp 80\nclass bulk 1mbit\nclass bulk 2mbit\n"),
            "p:3:7: class 'bulk' is declared twice"
        );
        assert_eq!(
            err("class bulk fast\n"),
            "p:1:12: 'fast' is not a rate (expected a number with bit, kbit, mbit, gbit, bps, kbps, mbps or gbps, like 2mbit)"
        );
        assert!(err("option shape-rate 2mbit\nclass slow 1mbit\n").contains("cannot name a class"));
        assert!(err("option malformed SHAPE\n").contains("expected ACCEPT, DROP or REJECT"));
        assert!(err("SSH(AUDIT) loc net\n").contains("AUDIT needs an action"));
    }

    #[test]
    fn summary_lists_open_ports() {
        let s = Policy::builtin().summary();
        assert!(s.contains("tcp    ports 13, 21-23, 25, 43, 53, 63, 70, 79-80, 109-110, 113, 119, 123, 143, 443"), "{s}");
        assert!(s.contains("icmp   types 8"), "{s}");
        assert!(s.contains("icmp6  types none"), "{s}");
    }
}
