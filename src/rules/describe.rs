//! The ruleset describes itself: `outgate ruleset: mode=host queues=0-3 fail=closed mark-mask=0xf00
//! class-mask=0xf000 [lan=IF] [wan=IF] [limit=RATE burst=N] [shape=DEV[,DEV] link-rate=RATE
//! class=NAME:RATE...]`, in comment rules of their own (iptables: the first rules of chain OUTGATE in
//! the filter table; nft: `continue` rules in chain `gate`), cut into as many comments as the tool's
//! length limit needs, each starting with `outgate ruleset: `.
//!
//! `outgate run` reads it back ([`super::installed`]) and refuses to start with other queues, another
//! fail mode or other mark bits (verdict or class bits): a ruleset for queues 0-3 with a daemon on
//! queue 0 would silently drop three quarters of new flows. The shaping part records what traffic
//! control outgate made: HTB root `1:` on each `shape=` device (the handle is always `1:`, the class ids
//! follow from the class list, see `shape`), which `--remove` takes away and a later `--apply` may
//! replace, and the classes, which `outgate run` compares with its policy's. Reading is strict: an
//! unknown or repeated key (but `class`, one per class, in order), or a missing one, is an error, since
//! a daemon must not guess what a ruleset does.

use super::*;
use crate::policy::Rate as BitRate;

const PREFIX: &str = "outgate ruleset: ";

/// The longest comment each tool takes (xt_comment: 256 bytes with the final NUL; nft: 128).
pub(super) const IPTABLES_COMMENT_MAX: usize = 255;
pub(super) const NFT_COMMENT_MAX: usize = 128;

/// What `outgate rules --apply` installed, as its ruleset describes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub backend: Backend,
    pub config: RulesConfig,
}

/// The description of `cfg`'s ruleset, in one piece.
pub(super) fn describe(cfg: &RulesConfig) -> String {
    let mut text = format!(
        "{PREFIX}mode={} queues={} fail={} mark-mask={} class-mask={:#x}",
        cfg.mode,
        cfg.queues,
        if cfg.fail_open { "open" } else { "closed" },
        cfg.marks,
        cfg.marks.class_mask()
    );
    for (key, value) in [("lan", &cfg.lan), ("wan", &cfg.wan)] {
        if let Some(value) = value {
            text.push_str(&format!(" {key}={value}"));
        }
    }
    if let Some(limit) = cfg.limit_per_source {
        text.push_str(&format!(" limit={} burst={}", limit.rate, limit.burst));
    }
    if cfg.audit {
        text.push_str(" audit=yes");
    }
    if let Some(shaping) = &cfg.shaping {
        text.push_str(&format!(
            " shape={} link-rate={}",
            devices(cfg).join(","),
            shaping.link_rate
        ));
        for class in &shaping.classes {
            text.push_str(&format!(" class={}:{}", class.name, class.rate));
        }
    }
    text
}

/// [`describe`] cut into comments of at most `max` characters, each starting with `outgate ruleset: `,
/// whole fields only.
pub(super) fn comments(cfg: &RulesConfig, max: usize) -> Result<Vec<String>, RulesError> {
    let text = describe(cfg);
    let mut comments: Vec<String> = Vec::new();
    for field in text.strip_prefix(PREFIX).unwrap_or(&text).split(' ') {
        if PREFIX.len() + field.len() > max {
            return Err(RulesError::LongDescription {
                field: field.to_string(),
                max,
            });
        }
        match comments.last_mut() {
            Some(last) if last.len() + 1 + field.len() <= max => {
                last.push(' ');
                last.push_str(field);
            }
            _ => comments.push(format!("{PREFIX}{field}")),
        }
    }
    Ok(comments)
}

/// Reads a description (its comments' fields joined) back into the configuration it was made from.
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
    let mut class_mask = None;
    let (mut shape, mut link_rate, mut classes) = (None, None, Vec::new());
    for field in fields.split_whitespace() {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| bad(format!("'{field}' is not KEY=VALUE")))?;
        if seen.contains(&key) && key != "class" {
            return Err(bad(format!("'{key}' is given twice")));
        }
        seen.push(key);
        let value_error = |e: RulesError| bad(e.to_string());
        let bit_rate = |v: &str| BitRate::parse(v).map_err(|e| bad(format!("{field}: {e}")));
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
            "class-mask" => {
                class_mask = Some(
                    parse_mask(value)
                        .ok_or_else(|| bad(format!("class-mask={value}: expected a number")))?,
                )
            }
            "audit" => {
                cfg.audit = match value {
                    "yes" => true,
                    _ => return Err(bad(format!("audit={value}: expected yes"))),
                }
            }
            "lan" => cfg.lan = Some(value.to_string()),
            "wan" => cfg.wan = Some(value.to_string()),
            "limit" => rate = Some(value.parse::<Rate>().map_err(value_error)?),
            "burst" => burst = Some(value),
            "shape" => shape = Some(value),
            "link-rate" => link_rate = Some(bit_rate(value)?),
            "class" => {
                let (name, rate) = value
                    .split_once(':')
                    .ok_or_else(|| bad(format!("class={value}: expected NAME:RATE")))?;
                classes.push(ShapeClass {
                    name: name.to_string(),
                    rate: bit_rate(rate)?,
                });
            }
            _ => return Err(bad(format!("unknown key '{key}'"))),
        }
    }
    for key in ["mode", "queues", "fail", "mark-mask", "class-mask"] {
        if !seen.contains(&key) {
            return Err(bad(format!("'{key}' is missing")));
        }
    }
    if let Some(class_mask) = class_mask {
        cfg.marks = cfg
            .marks
            .with_class_mask(class_mask)
            .map_err(|e| bad(e.to_string()))?;
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
    cfg.shaping = match (shape, link_rate, classes.is_empty()) {
        (Some(shape), Some(link_rate), false) => {
            let shaping = Shaping {
                classes,
                link_rate,
                backend: ShapeBackend::Classify,
            };
            cfg.shaping = Some(shaping.clone());
            let made = devices(&cfg).join(",");
            if shape != made {
                return Err(bad(format!(
                    "shape={shape}: a {} ruleset shapes {made}",
                    cfg.mode
                )));
            }
            Some(shaping)
        }
        (None, None, true) => None,
        _ => return Err(bad("'shape', 'link-rate' and 'class' go together".into())),
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
    let rule = format!("-A {CHAIN} -m comment --comment \"{PREFIX}");
    let mut chain = false;
    let mut fields = Vec::new();
    for line in listing.lines() {
        if line == format!("-N {CHAIN}") {
            chain = true;
        }
        if let Some(rest) = line.strip_prefix(&rule) {
            fields.push(rest.strip_suffix('"').unwrap_or(rest));
        }
    }
    if !fields.is_empty() {
        return read(&format!("{PREFIX}{}", fields.join(" "))).map(Some);
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
    let fields: Vec<&str> = listing
        .lines()
        .filter_map(|line| {
            let at = line.find(&start)?;
            let fields = &line[at + start.len()..];
            Some(fields.split('"').next().unwrap_or(fields))
        })
        .collect();
    if fields.is_empty() {
        return Err(RulesError::Undescribed(format!("table inet {NFT_TABLE}")));
    }
    read(&format!("{PREFIX}{}", fields.join(" ")))
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
    words.push(format!("--class-mask {:#x}", cfg.marks.class_mask()));
    if cfg.audit {
        words.push("--audit".into());
    }
    if let Some(limit) = cfg.limit_per_source {
        words.push(format!(
            "--limit-per-source {} --limit-burst {}",
            limit.rate, limit.burst
        ));
    }
    if let Some(shaping) = &cfg.shaping {
        // The description records the classes, not the file they came from.
        words.push(format!("--policy POLICY --link-rate {}", shaping.link_rate));
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
    /// Why the policy's traffic classes would not be shaped as it says by this ruleset's traffic control
    /// (SHAPE flows then pass at full speed, or at another class's rate), and the command that fixes
    /// it; `None` when they agree, or when neither has classes.
    pub fn shaping_mismatch(&self, classes: &[crate::policy::Class]) -> Option<String> {
        let recorded: Vec<(&str, BitRate)> = self.config.shaping.as_ref().map_or(Vec::new(), |s| {
            s.classes
                .iter()
                .map(|c| (c.name.as_str(), c.rate))
                .collect()
        });
        let policy: Vec<(&str, BitRate)> =
            classes.iter().map(|c| (c.name.as_str(), c.rate)).collect();
        if recorded == policy {
            return None;
        }
        let show = |list: &[(&str, BitRate)]| {
            if list.is_empty() {
                "none".to_string()
            } else {
                list.iter()
                    .map(|(name, rate)| format!("{name} {rate}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let link = self
            .config
            .shaping
            .as_ref()
            .map_or(String::new(), |s| format!(" --link-rate {}", s.link_rate));
        Some(format!(
            "the installed ruleset shapes traffic classes {} and the policy has {}: flows SHAPE sends to a \
             class the ruleset does not have pass at full speed; apply the policy's classes with: {} \
             --policy POLICY{link}",
            show(&recorded),
            show(&policy),
            apply_command(
                &RulesConfig {
                    shaping: None,
                    ..self.config.clone()
                },
                self.backend
            )
        ))
    }

    /// Why a daemon with these settings must not run with this ruleset, and the two commands that would
    /// make them agree; `None` when they do.
    pub fn mismatch(
        &self,
        queues: QueueRange,
        fail_open: bool,
        marks: Marks,
        audit: bool,
    ) -> Option<String> {
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
        if cfg.marks.mask() != marks.mask() {
            problems.push(format!(
                "mark mask: the ruleset uses {}, this daemon {marks}",
                cfg.marks
            ));
        }
        if cfg.marks.class_mask() != marks.class_mask() {
            problems.push(format!(
                "class mask: the ruleset uses {:#x}, this daemon {:#x}",
                cfg.marks.class_mask(),
                marks.class_mask()
            ));
        }
        if cfg.audit != audit {
            let mode = |audit| if audit { "audit" } else { "enforce" };
            problems.push(format!(
                "mode: the ruleset was applied to {} (rules{} --audit), this daemon would {}",
                mode(cfg.audit),
                if cfg.audit { "" } else { " without" },
                mode(audit)
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
            "outgate run --queues {} {} --mark-mask {} --class-mask {:#x}{}",
            cfg.queues,
            fail_option(cfg.fail_open),
            cfg.marks,
            cfg.marks.class_mask(),
            if cfg.audit { " --audit" } else { "" }
        );
        let ruleset = apply_command(
            &RulesConfig {
                queues,
                fail_open,
                marks,
                audit,
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
mod tests;
