//! The ruleset describes itself: one comment, `outgate ruleset: mode=host queues=0-3 fail=closed
//! mark-mask=0xf00 [lan=IF] [wan=IF] [limit=RATE burst=N]`, in a rule of its own (iptables: the first
//! rule of chain OUTGATE in the filter table; nft: a `continue` rule in chain `gate`).
//!
//! `outgate run` reads it back ([`super::installed`]) and refuses to start with other queues, another
//! fail mode or other mark bits: a ruleset for queues 0-3 with a daemon on queue 0 would silently drop
//! three quarters of new flows. Reading is strict: an unknown or repeated key, or a missing one, is an
//! error, since a daemon must not guess what a ruleset does.

use super::*;

const PREFIX: &str = "outgate ruleset: ";

/// nft refuses longer comments.
const NFT_COMMENT_MAX: usize = 128;

/// What `outgate rules --apply` installed, as its ruleset describes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub backend: Backend,
    pub config: RulesConfig,
}

/// The description of `cfg`'s ruleset.
pub(super) fn describe(cfg: &RulesConfig) -> String {
    let mut text = format!(
        "{PREFIX}mode={} queues={} fail={} mark-mask={}",
        cfg.mode,
        cfg.queues,
        if cfg.fail_open { "open" } else { "closed" },
        cfg.marks
    );
    for (key, value) in [("lan", &cfg.lan), ("wan", &cfg.wan)] {
        if let Some(value) = value {
            text.push_str(&format!(" {key}={value}"));
        }
    }
    if let Some(limit) = cfg.limit_per_source {
        text.push_str(&format!(" limit={} burst={}", limit.rate, limit.burst));
    }
    text
}

/// [`describe`] for the nft ruleset, which takes comments of at most 128 characters.
pub(super) fn describe_for_nft(cfg: &RulesConfig) -> Result<String, RulesError> {
    let text = describe(cfg);
    if text.len() > NFT_COMMENT_MAX {
        return Err(RulesError::NftDescription {
            length: text.len(),
            max: NFT_COMMENT_MAX,
        });
    }
    Ok(text)
}

/// Reads a description back into the configuration it was made from.
pub(super) fn read(text: &str) -> Result<RulesConfig, RulesError> {
    let bad = |reason: String| RulesError::Description {
        text: text.to_string(),
        reason,
    };
    let fields = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| bad(format!("does not start with '{PREFIX}'")))?;
    let mut cfg = RulesConfig::default();
    let mut seen: Vec<&str> = Vec::new();
    let (mut rate, mut burst) = (None, None);
    for field in fields.split_whitespace() {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| bad(format!("'{field}' is not KEY=VALUE")))?;
        if seen.contains(&key) {
            return Err(bad(format!("'{key}' is given twice")));
        }
        seen.push(key);
        let value_error = |e: RulesError| bad(e.to_string());
        match key {
            "mode" => cfg.mode = value.parse().map_err(value_error)?,
            "queues" => cfg.queues = value.parse().map_err(value_error)?,
            "fail" => {
                cfg.fail_open = match value {
                    "open" => true,
                    "closed" => false,
                    _ => return Err(bad(format!("fail={value}: expected open or closed"))),
                }
            }
            "mark-mask" => cfg.marks = value.parse().map_err(value_error)?,
            "lan" => cfg.lan = Some(value.to_string()),
            "wan" => cfg.wan = Some(value.to_string()),
            "limit" => rate = Some(value.parse::<Rate>().map_err(value_error)?),
            "burst" => burst = Some(value),
            _ => return Err(bad(format!("unknown key '{key}'"))),
        }
    }
    for key in ["mode", "queues", "fail", "mark-mask"] {
        if !seen.contains(&key) {
            return Err(bad(format!("'{key}' is missing")));
        }
    }
    cfg.limit_per_source = match (rate, burst) {
        (Some(rate), Some(burst)) => {
            let burst = limit::number(burst)
                .ok_or_else(|| bad(format!("burst={burst}: expected a count")))?;
            Some(SourceLimit::new(rate, Some(burst)).map_err(|e| bad(e.to_string()))?)
        }
        (None, None) => None,
        _ => return Err(bad("'limit' and 'burst' go together".into())),
    };
    cfg.validate().map_err(|e| bad(e.to_string()))?;
    Ok(cfg)
}

/// The description in an `iptables -S` listing of the filter table: `None` when there is no chain
/// OUTGATE, an error when the chain has none.
pub(super) fn in_iptables(
    family: Family,
    listing: &str,
) -> Result<Option<RulesConfig>, RulesError> {
    let mut chain = false;
    for line in listing.lines() {
        if line == format!("-N {CHAIN}") {
            chain = true;
        }
        let rule = format!("-A {CHAIN} -m comment --comment \"{PREFIX}");
        if let Some(rest) = line.strip_prefix(&rule) {
            let fields = rest.strip_suffix('"').unwrap_or(rest);
            return read(&format!("{PREFIX}{fields}")).map(Some);
        }
    }
    if chain {
        return Err(RulesError::Undescribed(format!(
            "{} chain {CHAIN}",
            family.name()
        )));
    }
    Ok(None)
}

/// The description in `nft list table inet outgate`; an error when the table has none.
pub(super) fn in_nft(listing: &str) -> Result<RulesConfig, RulesError> {
    let start = format!("comment \"{PREFIX}");
    for line in listing.lines() {
        if let Some(at) = line.find(&start) {
            let fields = &line[at + start.len()..];
            let fields = fields.split('"').next().unwrap_or(fields);
            return read(&format!("{PREFIX}{fields}"));
        }
    }
    Err(RulesError::Undescribed(format!("table inet {NFT_TABLE}")))
}

/// The `outgate rules --apply` command that installs `cfg`.
pub(super) fn apply_command(cfg: &RulesConfig, backend: Backend) -> String {
    let mut words = vec!["outgate rules --apply".to_string()];
    if backend == Backend::Nft {
        words.push("--backend nft".into());
    }
    words.push(format!("--mode {}", cfg.mode));
    for (option, value) in [("lan", &cfg.lan), ("wan", &cfg.wan)] {
        if let Some(value) = value {
            words.push(format!("--{option} {value}"));
        }
    }
    words.push(format!("--queues {}", cfg.queues));
    words.push(fail_option(cfg.fail_open).into());
    words.push(format!("--mark-mask {}", cfg.marks));
    if let Some(limit) = cfg.limit_per_source {
        words.push(format!(
            "--limit-per-source {} --limit-burst {}",
            limit.rate, limit.burst
        ));
    }
    words.join(" ")
}

fn fail_option(fail_open: bool) -> &'static str {
    if fail_open {
        "--fail-open"
    } else {
        "--fail-closed"
    }
}

impl Installed {
    /// Why a daemon with these settings must not run with this ruleset, and the two commands that would
    /// make them agree; `None` when they do.
    pub fn mismatch(&self, queues: QueueRange, fail_open: bool, marks: Marks) -> Option<String> {
        let cfg = &self.config;
        let fail = |open| if open { "fail-open" } else { "fail-closed" };
        let mut problems = Vec::new();
        if cfg.queues != queues {
            problems.push(format!(
                "queues: the ruleset sends to {}, this daemon binds {queues}",
                cfg.queues
            ));
        }
        if cfg.fail_open != fail_open {
            problems.push(format!(
                "fail mode: the ruleset is {}, this daemon {}",
                fail(cfg.fail_open),
                fail(fail_open)
            ));
        }
        if cfg.marks != marks {
            problems.push(format!(
                "mark mask: the ruleset uses {}, this daemon {marks}",
                cfg.marks
            ));
        }
        if problems.is_empty() {
            return None;
        }
        let backend = match self.backend {
            Backend::Iptables => "iptables",
            Backend::Nft => "nft",
        };
        let daemon = format!(
            "outgate run --queues {} {} --mark-mask {}",
            cfg.queues,
            fail_option(cfg.fail_open),
            cfg.marks
        );
        let ruleset = apply_command(
            &RulesConfig {
                queues,
                fail_open,
                marks,
                ..cfg.clone()
            },
            self.backend,
        );
        Some(format!(
            "the installed ruleset ({backend}, {} mode) does not match this daemon:\n  {}\n\
             start the daemon as the ruleset expects: {daemon} (and your other options)\n\
             or make the ruleset match the daemon: {ruleset}",
            cfg.mode,
            problems.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{gateway, host};

    fn limited(cfg: RulesConfig) -> RulesConfig {
        RulesConfig {
            limit_per_source: Some(
                SourceLimit::new("200/second".parse().expect("valid"), Some(50)).expect("valid"),
            ),
            marks: "0xf000".parse().expect("valid"),
            ..cfg
        }
    }

    fn configs() -> Vec<RulesConfig> {
        vec![
            host("0"),
            RulesConfig {
                wan: Some("eth0".into()),
                ..limited(host("0-3"))
            },
            gateway(),
            limited(RulesConfig {
                lan: Some("br+".into()),
                ..gateway()
            }),
        ]
    }

    #[test]
    fn descriptions_read_back() {
        assert_eq!(
            describe(&host("0")),
            "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00"
        );
        assert_eq!(
            describe(&configs()[3]),
            "outgate ruleset: mode=gateway queues=2-5 fail=open mark-mask=0xf000 lan=br+ wan=wan0 \
             limit=200/second burst=50"
        );
        for cfg in configs() {
            assert_eq!(read(&describe(&cfg)).ok(), Some(cfg.clone()), "{cfg:?}");
        }
    }

    /// The description as iptables lists it (`-S`: `-I` becomes `-A`), and as nft lists it (the line as
    /// generated), for every kind of ruleset.
    #[test]
    fn both_backends_texts_carry_the_description() {
        for cfg in configs() {
            for family in Family::ALL {
                let text = iptables_restore(&cfg, family).expect("valid config");
                let listing: String = text
                    .lines()
                    .skip_while(|l| *l != "*filter")
                    .filter_map(|l| {
                        if let Some(name) = l.strip_prefix(':') {
                            return Some(format!("-N {}\n", name.split(' ').next()?));
                        }
                        l.starts_with("-A ").then(|| format!("{l}\n"))
                    })
                    .collect();
                assert_eq!(
                    in_iptables(family, &listing).ok(),
                    Some(Some(cfg.clone())),
                    "{listing}"
                );
            }
            let text = nft(&cfg).expect("valid config");
            assert!(
                text.contains(&format!(
                    "\tchain gate {{\n\t\t# what this ruleset was made with: `outgate run` reads it\n\
                     \t\tcontinue comment \"{}\"\n",
                    describe(&cfg)
                )),
                "{text}"
            );
            assert_eq!(in_nft(&text).ok(), Some(cfg.clone()), "{text}");
        }
        let first = iptables_restore(&host("0"), Family::V4).expect("valid config");
        let rules: Vec<_> = first
            .lines()
            .filter(|l| l.starts_with("-A OUTGATE"))
            .collect();
        assert_eq!(
            rules[1],
            "-A OUTGATE -m comment --comment \"outgate ruleset: mode=host queues=0 fail=closed \
             mark-mask=0xf00\"",
            "first in the filter chain (after the raw table's helper rule)"
        );
    }

    #[test]
    fn no_chain_is_no_ruleset_and_a_chain_without_description_is_an_error() {
        let none = "-P INPUT ACCEPT\n-A OUTPUT -j ACCEPT\n";
        assert_eq!(in_iptables(Family::V4, none).ok(), Some(None));
        let old = "-N OUTGATE\n-A OUTPUT ! -o lo -j OUTGATE\n-A OUTGATE -j DROP\n";
        let err = in_iptables(Family::V6, old).expect_err("old ruleset");
        assert_eq!(
            err.to_string(),
            "IPv6 chain OUTGATE has no description (made by an older outgate?): run `outgate \
             rules --apply` to replace it"
        );
        assert!(in_nft("table inet outgate {\n}\n").is_err());
    }

    #[test]
    fn descriptions_are_read_strictly() {
        let good = "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00";
        for (bad, reason) in [
            (
                "mode=host queues=0 fail=closed mark-mask=0xf00",
                "does not start with",
            ),
            (
                "outgate ruleset: mode=host queues=0 fail=closed",
                "'mark-mask' is missing",
            ),
            (
                "outgate ruleset: mode=host queues=0 queues=1 fail=closed mark-mask=0xf00",
                "'queues' is given twice",
            ),
            (
                "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00 shape=1",
                "unknown key 'shape'",
            ),
            (
                "outgate ruleset: mode=host queues=0 fail=maybe mark-mask=0xf00",
                "expected open or closed",
            ),
            (
                "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf0f",
                "contiguous",
            ),
            (
                "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00 limit=5/second",
                "go together",
            ),
            (
                "outgate ruleset: mode=gateway queues=0 fail=closed mark-mask=0xf00 wan=eth0",
                "--lan is missing",
            ),
            (
                "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00 wan",
                "not KEY=VALUE",
            ),
        ] {
            let err = read(bad).expect_err(bad).to_string();
            assert!(err.contains(reason), "{bad:?}: {err}");
            assert!(err.contains("run `outgate rules --apply`"), "{err}");
        }
        assert!(read(good).is_ok());
    }

    #[test]
    fn nft_descriptions_fit_nft_comments() {
        let long = RulesConfig {
            lan: Some("abcdefghijklmno".into()),
            wan: Some("abcdefghijklmnp".into()),
            marks: "0xf0000000".parse().expect("valid"),
            queues: "65000-65535".parse().expect("valid"),
            ..limited(gateway())
        };
        let err = nft(&long).expect_err("too long").to_string();
        assert!(err.contains("nft takes at most 128"), "{err}");
        assert!(
            iptables_restore(&long, Family::V4).is_ok(),
            "iptables takes 255"
        );
        // A usual gateway fits.
        let usual = RulesConfig {
            lan: Some("enp0s31f6.100".into()),
            wan: Some("enp0s31f6".into()),
            ..limited(gateway())
        };
        assert!(nft(&usual).is_ok(), "{}", describe(&usual));
    }

    #[test]
    fn a_mismatch_names_both_values_and_the_commands() {
        let installed = Installed {
            backend: Backend::Iptables,
            config: RulesConfig {
                wan: Some("eth0".into()),
                ..limited(host("0-3"))
            },
        };
        let cfg = &installed.config;
        assert_eq!(installed.mismatch(cfg.queues, false, cfg.marks), None);
        let message = installed
            .mismatch(QueueRange::one(0), true, Marks::DEFAULT)
            .expect("mismatch");
        assert_eq!(
            message,
            "the installed ruleset (iptables, host mode) does not match this daemon:
  queues: the ruleset sends to 0-3, this daemon binds 0
  fail mode: the ruleset is fail-closed, this daemon fail-open
  mark mask: the ruleset uses 0xf000, this daemon 0xf00
start the daemon as the ruleset expects: outgate run --queues 0-3 --fail-closed --mark-mask 0xf000 (and your other options)
or make the ruleset match the daemon: outgate rules --apply --mode host --wan eth0 --queues 0 --fail-open --mark-mask 0xf00 --limit-per-source 200/second --limit-burst 50"
        );
        let nft = Installed {
            backend: Backend::Nft,
            config: gateway(),
        };
        let message = nft
            .mismatch(QueueRange::one(2), true, Marks::DEFAULT)
            .expect("mismatch");
        assert!(
            message.ends_with(
                "outgate rules --apply --backend nft --mode gateway --lan lan0 --wan wan0 \
                 --queues 2 --fail-open --mark-mask 0xf00"
            ),
            "{message}"
        );
    }
}
