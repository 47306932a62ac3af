//! Policy text -> checked lines ([`Parsed`]), with every error as `FILE:LINE:COL: message`.
//!
//! One statement a line; `#` starts a comment anywhere; keywords are case-insensitive; zone names are not.
//!
//! ```text
//! zone NAME CIDR[,CIDR...]                    declare a zone (IPv4 and IPv6 networks)
//! policy SRC DST ACTION                       the default for a zone pair (Shorewall's policy file)
//! SRC DST ACTION                              the same, as the article writes it
//! ACTION SRC DST [PROTO [DPORT]] [TERM...]    a rule; first match wins (`until=DATE` among the terms)
//! MACRO(ACTION) SRC DST                       SSH, Ping, DNS, HTTP, HTTPS, NTP
//! class NAME RATE                             a traffic class for SHAPE(NAME)
//! option NAME VALUE...                        malformed ACTION | midstream ACTION | timeout PROTO SECONDS
//!                                             | max-flows N | inspect-packets N | inspect-bytes N
//!                                             | inspect-time SECONDS | inspect-memory BYTES | inspect-limit ACTION
//!                                             | shape-rate RATE (the class `slow`, for plain SHAPE)
//! ```
//!
//! ACTION is ACCEPT, DROP, REJECT, SHAPE, SHAPE(CLASS) or AUDIT(ACTION) (see [`super::action`]).
//!
//! SRC and DST are a zone, `all`, or `zone:CIDR[,CIDR...]`. PROTO is tcp, udp, icmp, icmp6 (ipv6-icmp) or
//! all. A bare port spec where PROTO stands (`443`, `80,443`, `6000:6010`) is a destination port on TCP and
//! UDP: the article's shorthand (real Shorewall would read a bare number as an IP protocol number). For
//! icmp/icmp6 the DPORT column holds ICMP types. TERM is `key=value`, reserved for payload match terms
//! (HTTP host, TLS SNI, app protocol); an unknown key is an error, so a typo never silently widens a rule.
//!
//! Here: the model ([`Parsed`]), the tokens and the passes over the lines. The lines themselves are read in
//! `zone` (networks, zones, SRC/DST), `rule` (rule and policy lines) and `options` (option and class lines).

mod options;
mod rule;
mod zone;

use std::fmt;

use super::action::{self, Class, MAX_CLASSES, Rate};

pub use options::Options;
pub use rule::{PairPolicy, Proto, Ranges, Rule, Service};
pub use zone::{Cidr, Endpoint, Zone, ZoneSel};

/// One error in a policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

/// Messages quote the text they are about; a longer message is cut in the middle to this many
/// characters, so a 10 MB word does not become a 10 MB error line.
const MESSAGE_SHOWN: usize = 240;

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        let chars = self.message.chars().count();
        if chars <= MESSAGE_SHOWN {
            return f.write_str(&self.message);
        }
        let half = MESSAGE_SHOWN / 2;
        let head: String = self.message.chars().take(half).collect();
        let tail: String = self.message.chars().skip(chars - half).collect();
        write!(f, "{head}[... {} characters ...]{tail}", chars - 2 * half)
    }
}

/// A policy file, checked line by line.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    /// Declared zones; empty means the implicit pair: `loc` (the initiator) and `net` (the other end).
    pub zones: Vec<Zone>,
    pub pair_policies: Vec<PairPolicy>,
    pub rules: Vec<Rule>,
    /// Traffic classes for SHAPE: `slow` first when `option shape-rate` is set, then `class` lines.
    pub classes: Vec<Class>,
    pub options: Options,
}

/// Declared zones at most: the compiled policy has a table for each pair of zones.
pub const MAX_ZONES: usize = 64;

/// The names `loc` and `net` when no zone is declared.
pub const IMPLICIT_ZONES: [&str; 2] = ["loc", "net"];

struct Token<'a> {
    text: &'a str,
    col: u32,
}

/// The words of `line` before any `#`, with their columns (counted in characters, from 1).
fn tokens(line: &str) -> Vec<Token<'_>> {
    let code = line.split('#').next().unwrap_or("");
    let mut out = Vec::new();
    // (byte offset, column) of the word being read. Columns are counted as the characters go by:
    // counting them again from the start of the line for each word takes quadratic time on a long line.
    let mut start: Option<(usize, u32)> = None;
    let chars = code
        .char_indices()
        .chain(std::iter::once((code.len(), ' ')));
    for (col, (i, c)) in (1u32..).zip(chars) {
        match (c.is_whitespace(), start) {
            (true, Some((s, col))) => {
                out.push(Token {
                    text: code.get(s..i).unwrap_or_default(),
                    col,
                });
                start = None;
            }
            (false, None) => start = Some((i, col)),
            _ => {}
        }
    }
    out
}

struct LineParser<'p> {
    file: &'p str,
    line: u32,
    text: &'p str,
    zone_names: &'p [String],
    class_names: &'p [String],
}

type Fail = (u32, String);

/// [`parse`] on the bytes of a file: each line that is not UTF-8 is an error at its first bad byte
/// (the column counts the characters before it), and is otherwise left out; the rest is parsed.
pub fn parse_bytes(file: &str, bytes: &[u8]) -> Result<Parsed, Vec<PolicyError>> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => return parse(file, text),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    let mut bad = Vec::new();
    let mut clean = String::with_capacity(text.len());
    // `split` keeps the line numbers that `str::lines` gives `parse`.
    for (n, line) in (1u32..).zip(bytes.split(|&b| b == b'\n')) {
        match std::str::from_utf8(line) {
            Ok(line) => clean.push_str(line),
            Err(e) => {
                let good = line.get(..e.valid_up_to()).unwrap_or_default();
                let col = String::from_utf8_lossy(good).chars().count() as u32 + 1;
                let byte = line.get(e.valid_up_to()).copied().unwrap_or_default();
                bad.push(PolicyError {
                    file: file.to_string(),
                    line: n,
                    col,
                    message: format!("not UTF-8 (byte 0x{byte:02x}); a policy file is text"),
                });
            }
        }
        clean.push('\n');
    }
    match parse(file, &clean) {
        Ok(_) => Err(bad),
        Err(mut errors) => {
            errors.append(&mut bad);
            errors.sort_by_key(|e| (e.line, e.col));
            Err(errors)
        }
    }
}

/// Parses a policy file's text. `file` is the name errors and citations use.
pub fn parse(file: &str, text: &str) -> Result<Parsed, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let mut err = |line: u32, (col, message): Fail| {
        errors.push(PolicyError {
            file: file.to_string(),
            line,
            col,
            message,
        });
    };
    let lines: Vec<(u32, &str, Vec<Token<'_>>)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i as u32 + 1, l, tokens(l)))
        .filter(|(_, _, t)| !t.is_empty())
        .collect();
    let is_kw = |t: &Token<'_>, kw: &str| t.text.eq_ignore_ascii_case(kw);

    // Pass 1: zone names, so lines may use a zone declared further down (Shorewall keeps them in another file).
    let mut zone_names: Vec<String> = Vec::new();
    for (n, _, toks) in &lines {
        if let (true, Some(name)) = (is_kw(&toks[0], "zone"), toks.get(1)) {
            if zone_names.iter().any(|z| z == name.text) {
                err(
                    *n,
                    (name.col, format!("zone '{}' is declared twice", name.text)),
                );
            } else if zone_names.len() >= MAX_ZONES {
                err(
                    *n,
                    (
                        name.col,
                        format!(
                            "more than {MAX_ZONES} zones; each pair of zones gets its own tables"
                        ),
                    ),
                );
            } else {
                zone_names.push(name.text.to_string());
            }
        }
    }
    if zone_names.is_empty() {
        zone_names = IMPLICIT_ZONES.iter().map(|s| s.to_string()).collect();
    } else if !zone_names.iter().any(|z| z == "net") {
        // `net` is the catch-all for addresses in no declared zone; its index follows the declared ones.
        zone_names.push("net".to_string());
    }

    // Pass 1 too: class names (SHAPE(bulk) may come before `class bulk ...`); `slow` for shape-rate.
    let mut class_names: Vec<String> = Vec::new();
    let mut shape_rate: Option<(u32, &str)> = None;
    for (n, _, toks) in &lines {
        match (toks.first(), toks.get(1), toks.get(2)) {
            (Some(o), Some(name), Some(rate))
                if is_kw(o, "option") && name.text.eq_ignore_ascii_case("shape-rate") =>
            {
                shape_rate = Some((*n, rate.text));
            }
            (Some(c), Some(name), _) if is_kw(c, "class") => {
                let valid = name
                    .text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid || name.text == action::DEFAULT_CLASS {
                    err(
                        *n,
                        (
                            name.col,
                            format!(
                                "'{}' cannot name a class (letters, digits, '-' and '_'; not '{}', which option shape-rate makes)",
                                name.text,
                                action::DEFAULT_CLASS
                            ),
                        ),
                    );
                } else if class_names.iter().any(|c| c == name.text) {
                    err(
                        *n,
                        (name.col, format!("class '{}' is declared twice", name.text)),
                    );
                } else {
                    class_names.push(name.text.to_string());
                }
            }
            _ => {}
        }
    }
    let mut parsed = Parsed::default();
    if let Some((line, rate)) = shape_rate {
        class_names.insert(0, action::DEFAULT_CLASS.to_string());
        if let Ok(rate) = Rate::parse(rate) {
            parsed.classes.push(Class {
                name: action::DEFAULT_CLASS.to_string(),
                rate,
                line,
            });
        }
    }
    if class_names.len() > MAX_CLASSES {
        err(
            1,
            (
                1,
                format!(
                    "{} traffic classes; at most {MAX_CLASSES}",
                    class_names.len()
                ),
            ),
        );
    }
    for (n, text, toks) in &lines {
        let lp = LineParser {
            file,
            line: *n,
            text,
            zone_names: &zone_names,
            class_names: &class_names,
        };
        let first = &toks[0];
        let result = if is_kw(first, "zone") {
            lp.zone_line(toks).map(|z| parsed.zones.push(z))
        } else if is_kw(first, "policy") {
            lp.policy_line(&toks[1..])
                .map(|p| parsed.pair_policies.push(p))
        } else if is_kw(first, "option") {
            lp.option_line(toks, &mut parsed.options)
        } else if is_kw(first, "class") {
            lp.class_line(toks).map(|c| parsed.classes.push(c))
        } else if action::looks_like_action(first.text) || first.text.contains('(') {
            lp.rule_line(toks).map(|r| parsed.rules.push(r))
        } else if toks
            .get(2)
            .is_some_and(|t| action::looks_like_action(t.text))
        {
            lp.policy_line(toks).map(|p| parsed.pair_policies.push(p))
        } else {
            Err((
                first.col,
                format!(
                    "'{}' does not start a statement (expected ACCEPT, DROP, REJECT, SHAPE, AUDIT(...), a macro, policy, zone, class or option)",
                    first.text
                ),
            ))
        };
        if let Err(e) = result {
            err(*n, e);
        }
    }
    if errors.is_empty() {
        Ok(parsed)
    } else {
        errors.sort_by_key(|e| (e.line, e.col));
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Verdict;

    fn one_error(text: &str) -> PolicyError {
        let errs = parse("p.rules", text).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn forms_and_keywords() {
        let p = parse(
            "p",
            "zone lan 10.0.0.0/8,fd00::/8\nzone wan 0.0.0.0/0\npolicy lan wan REJECT\n\
             accept lan wan:192.0.2.0/24,2001:db8::1 tcp 80,443,6000:6010\nSSH(ACCEPT) lan all\n\
             option malformed ACCEPT\noption timeout udp 30\noption max-flows 1000\n",
        )
        .unwrap();
        assert_eq!(p.zones.len(), 2);
        assert_eq!(p.rules[0].dst.nets.len(), 2);
        assert!(p.rules[0].dst.contains("2001:db8::1".parse().unwrap()));
        assert!(!p.rules[0].dst.contains("192.0.3.1".parse().unwrap()));
        assert_eq!(
            p.rules[0].service,
            Service::Of(vec![(
                Proto::Tcp,
                Some(vec![(80, 80), (443, 443), (6000, 6010)])
            )])
        );
        assert_eq!(p.rules[1].dst.zone, ZoneSel::All);
        assert_eq!(p.options.malformed, Verdict::Accept);
        assert_eq!(
            (p.options.flows.timeouts.udp, p.options.flows.max_flows),
            (30, 1000)
        );
        let q = parse(
            "p",
            "ACCEPT loc net icmp6 echo-request,1-4\nACCEPT loc net icmp echo-reply",
        )
        .unwrap();
        assert_eq!(
            q.rules[0].service,
            Service::Of(vec![(Proto::Icmp6, Some(vec![(128, 128), (1, 4)]))])
        );
        assert_eq!(
            q.rules[1].service,
            Service::Of(vec![(Proto::Icmp, Some(vec![(0, 0)]))])
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = one_error("loc net DROP\nACCEPT loc lan 80\n");
        assert_eq!((e.line, e.col), (2, 12));
        assert_eq!(
            e.to_string(),
            "p.rules:2:12: unknown zone 'lan' (expected one of: loc, net, all)"
        );
        assert_eq!(one_error("ACCEPT loc net tcp 70000").col, 20);
        assert!(
            one_error("ACCEPT loc net tcp 90:80")
                .message
                .contains("backwards")
        );
        assert!(
            one_error("ALLOW loc net 80")
                .message
                .contains("does not start a statement")
        );
        let e = one_error("ACCEPT loc net tcp 80 hots=numeric");
        assert_eq!(e.col, 23);
        assert!(
            e.message.contains("unknown match term 'hots='"),
            "{}",
            e.message
        );
        let e = one_error("DROP loc net tcp 443 app=tls,sshh");
        assert_eq!(e.col, 26);
        assert!(e.message.contains("unknown app 'sshh'"), "{}", e.message);
        assert!(
            one_error("DROP loc net tcp 80 url=/a url=/b")
                .message
                .contains("appears twice")
        );
        assert!(
            one_error("DROP loc net tcp 80 host=@missing.txt")
                .message
                .contains("cannot read host list")
        );
        assert!(
            one_error("DROP loc net tcp 80 host=")
                .message
                .contains("needs a value")
        );
        assert!(
            one_error("DROP loc net tcp 80 host=numeric junk")
                .message
                .contains("expected a match term")
        );
        assert!(
            one_error("SSH(ACCEPT) loc net tcp")
                .message
                .contains("macro sets protocol")
        );
        assert!(
            one_error("Telnet(ACCEPT) loc net")
                .message
                .contains("unknown macro")
        );
        assert!(one_error("zone lan 10.0.0.0/33").message.contains("prefix"));
        assert!(
            one_error("loc net DROP info")
                .message
                .contains("unexpected 'info'")
        );
        assert!(
            one_error("option timeout tcp soon")
                .message
                .contains("whole number")
        );
    }

    #[test]
    fn every_error_is_reported() {
        let errs = parse("p", "ACCEPT loc lan 80\nACCEPT loc net bogus\nnonsense\n").unwrap_err();
        assert_eq!(
            errs.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn comments_and_blank_lines() {
        let p = parse("p", "# only a comment\n\n   \nACCEPT loc net 443# https\n").unwrap();
        assert_eq!(p.rules[0].line, 4);
    }
}
