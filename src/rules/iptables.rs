//! The iptables backend's text: `iptables-restore --noflush` input for the raw and filter tables.

use super::*;

fn mark_is(marks: Marks, value: u32) -> String {
    format!("-m mark --mark {}/{}", hex(value), hex(marks.mask()))
}

/// The hook chain and the match of the jump to [`CHAIN`].
fn iptables_hook(cfg: &RulesConfig) -> (&'static str, String) {
    match (cfg.mode, &cfg.lan, &cfg.wan) {
        (Mode::Gateway, Some(lan), Some(wan)) => ("FORWARD", format!("-i {lan} -o {wan}")),
        (_, _, Some(wan)) => ("OUTPUT", format!("-o {wan}")),
        _ => ("OUTPUT", "! -o lo".to_string()),
    }
}

/// The jumps to [`CHAIN`], each the first rule of its hook: (table, hook chain, the rule after
/// `-A HOOK `), raw table first.
pub(super) fn jumps(cfg: &RulesConfig) -> [(&'static str, &'static str, String); 2] {
    let (hook, hook_match) = iptables_hook(cfg);
    // raw has no FORWARD: in gateway mode the LAN side's PREROUTING sees the same packets.
    let (raw_hook, raw_match) = match (cfg.mode, &cfg.lan) {
        (Mode::Gateway, Some(lan)) => ("PREROUTING", format!("-i {lan}")),
        _ => ("OUTPUT", hook_match.clone()),
    };
    [
        ("raw", raw_hook, format!("{raw_match} -j {CHAIN}")),
        ("filter", hook, format!("{hook_match} -j {CHAIN}")),
    ]
}

/// Several queues are balanced by the kernel's hash of the two addresses, so each flow stays on one queue
/// (one worker decides it, and reassembles its first payload). Never `--queue-cpu-fanout`: it can send
/// one flow's packets to two queues. The price: every flow between two addresses shares one queue.
fn iptables_queue(cfg: &RulesConfig) -> String {
    let q = cfg.queues;
    let mut target = if q.first == q.last {
        format!("-j NFQUEUE --queue-num {}", q.first)
    } else {
        format!("-j NFQUEUE --queue-balance {}:{}", q.first, q.last)
    };
    if cfg.fail_open {
        target.push_str(" --queue-bypass");
    }
    target
}

/// The table body: everything between `*filter` and `COMMIT`, with a comment above each step.
pub(super) fn iptables_body(cfg: &RulesConfig, family: Family) -> Result<Vec<String>, RulesError> {
    let [_, (_, hook, jump)] = jumps(cfg);
    let c = CHAIN;
    let m = cfg.marks;
    let mask = hex(m.mask());
    // Restored and saved with the verdict: a SHAPE verdict is an accept with a class beside it.
    let both = hex(m.full_mask());
    let none = mark_is(m, 0);
    let mut l: Vec<String> = vec![
        format!(":{c} - [0:0]"),
        "# First in the hook: no earlier rule may pass packets of flows under inspection, and the"
            .into(),
        "# daemon's REPEAT pass (the hook again from its first rule) runs no other rule twice."
            .into(),
        format!("-I {hook} 1 {jump}"),
        "# What this ruleset was made with: `outgate run` reads it, and refuses to start with other".into(),
        "# queues, another fail mode or other mark bits.".into(),
    ];
    for comment in describe::comments(cfg, describe::IPTABLES_COMMENT_MAX)? {
        l.push(format!("-A {c} -m comment --comment \"{comment}\""));
    }
    l.extend([
        "# Replies on connections opened from outside are not outbound flows.".into(),
        format!("-A {c} -m conntrack --ctdir REPLY -j RETURN"),
    ]);
    if family == Family::V6 && cfg.mode == Mode::Host {
        l.push("# IPv6 needs neighbour discovery and MLD reports; link-local by hop limit.".into());
        for (icmp_type, hop_limit) in [
            (133, 255),
            (135, 255),
            (136, 255),
            (131, 1),
            (132, 1),
            (143, 1),
        ] {
            l.push(format!(
                "-A {c} -p ipv6-icmp -m icmp6 --icmpv6-type {icmp_type} -m hl --hl-eq {hop_limit} -j RETURN"
            ));
        }
    }
    let reject_icmp = match family {
        Family::V4 => "icmp-port-unreachable",
        Family::V6 => "icmp6-port-unreachable",
    };
    let queue_comment = if cfg.fail_open {
        "# Undecided: to the daemon; with none listening the packet passes (fail-open)."
    } else {
        "# Undecided: to the daemon; with none listening the packet is dropped (fail-closed)."
    };
    let verdict = |v| mark_is(m, m.verdict(v));
    let save = Verdict::KERNEL.map(|v| {
        format!(
            "-A {c} {} -m connmark --mark 0x0/{mask} -j CONNMARK --save-mark --nfmask {both} --ctmask {both}",
            verdict(v)
        )
    });
    l.extend([
        "# The daemon's REPEAT of a packet it passed but has not decided (pending): on to the admin's".into(),
        "# rules, nothing saved, so the flow's next packet comes to the daemon too. Before the restore,".into(),
        "# so that a conntrack mark holding this value is never restored into a pass.".into(),
        format!("-A {c} {} -j RETURN", mark_is(m, m.pending())),
        "# A SYN opening a connection on the 4-tuple of an accepted one that the server reset: conntrack".into(),
        "# keeps the old entry for it (the reset came from the other side), and the saved ACCEPT would".into(),
        "# pass the new connection unread. Cleared, the daemon decides it like any new connection. Only".into(),
        "# an ACCEPT: a kept DROP or REJECT errs on the safe side (the new connection meets it). Not a".into(),
        "# RELATED entry: an FTP data connection takes its control connection's mark by design.".into(),
        format!(
            "-A {c} -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate ESTABLISHED \
             -m connmark --mark {:#x}/{mask} -j CONNMARK --set-xmark 0x0/{both}",
            m.verdict(Verdict::Accept)
        ),
        "# Decided flow: its verdict (and class) comes from the conntrack mark. Not when the packet carries".into(),
        "# one: that is the REPEAT pass, and restoring the still-empty conntrack mark would loop it.".into(),
        format!("-A {c} {none} -j CONNMARK --restore-mark --nfmask {both} --ctmask {both}"),
    ]);
    if let Some(limit) = cfg.limit_per_source {
        let name = match family {
            Family::V4 => "outgate4",
            Family::V6 => "outgate6",
        };
        l.extend([
            "# At most so many packets per source address to the daemon: a dropped flow's retries all come".into(),
            "# back to it (the kernel never confirms their connection); one client must not flood it.".into(),
            format!(
                "-A {c} {none} -m hashlimit --hashlimit-above {} --hashlimit-burst {} --hashlimit-mode srcip --hashlimit-name {name} -j DROP",
                limit.rate.iptables(),
                limit.burst
            ),
        ]);
    }
    l.extend([
        queue_comment.into(),
        format!("-A {c} {none} {}", iptables_queue(cfg)),
        "# Keep a verdict (with its class) in conntrack so the flow skips the queue: only a verdict, and".into(),
        "# only into empty bits, so no other value is ever saved and a flow's verdict is never rewritten.".into(),
    ]);
    l.extend(save);
    l.extend([
        "# Accept returns to the admin's rules: outgate only restricts.".into(),
        format!("-A {c} {} -j RETURN", verdict(Verdict::Accept)),
        format!("-A {c} {} -j DROP", verdict(Verdict::Drop)),
        format!(
            "-A {c} -p tcp {} -j REJECT --reject-with tcp-reset",
            verdict(Verdict::Reject)
        ),
        format!(
            "-A {c} {} -j REJECT --reject-with {reject_icmp}",
            verdict(Verdict::Reject)
        ),
        "# Any other value in outgate's bits is no verdict: fail closed.".into(),
        format!("-A {c} -j DROP"),
    ]);
    Ok(l)
}

/// The raw table's part: the kernel's FTP helper on the control connections outgate lets through. It
/// reads the server's 227/229 replies and the client's PORT/EPRT commands (which the daemon never sees:
/// only the client's direction is queued) and expects exactly the data connection they announce, for a
/// short time. That connection is RELATED and inherits the control connection's conntrack mark, so an
/// accepted control connection's data channel is accepted in the kernel, and nothing else on high ports.
pub(super) fn iptables_raw_body(cfg: &RulesConfig) -> Vec<String> {
    let c = CHAIN;
    let [(_, hook, jump), _] = jumps(cfg);
    vec![
        format!(":{c} - [0:0]"),
        format!("-I {hook} 1 {jump}"),
        "# FTP: the kernel's helper admits exactly the data connection the control connection announces."
            .into(),
        format!("-A {c} -p tcp -m tcp --dport 21 -j CT --helper ftp"),
    ]
}

/// The ruleset as `iptables-restore --noflush` (or `ip6tables-restore`) text, for a filter table without
/// outgate rules: loading it twice inserts the jump twice. [`apply`] replaces existing rules instead.
pub fn iptables_restore(cfg: &RulesConfig, family: Family) -> Result<String, RulesError> {
    cfg.validate()?;
    let mut l = vec![
        format!(
            "# outgate, {} ({}): {} mode, queue {}, {}.",
            family.name(),
            family.restore(),
            cfg.mode,
            cfg.queues,
            fail_mode(cfg)
        ),
        "# Load with --noflush into tables without outgate; `outgate rules --apply` replaces in place.".into(),
        "*raw".into(),
    ];
    l.extend(iptables_raw_body(cfg));
    l.push("COMMIT".into());
    let mangle = shape::iptables_mangle_body(cfg);
    if !mangle.is_empty() {
        l.push("*mangle".into());
        l.extend(mangle);
        l.push("COMMIT".into());
    }
    l.push("*filter".into());
    l.extend(iptables_body(cfg, family)?);
    l.push("COMMIT".into());
    Ok(lines(l))
}

/// What one table holds of outgate's chain (OUTGATE in raw and filter, OUTGATE-SHAPE in mangle), from
/// `iptables -S` (which prints rules as restore reads them, quotes included).
pub(super) struct Present {
    /// The chain.
    pub name: &'static str,
    /// `-D` lines for every jump or goto to the chain: by spec, so a rule inserted meanwhile cannot shift
    /// a deletion to the wrong rule.
    pub deletes: Vec<String>,
    /// Whether the chain exists.
    pub chain: bool,
    /// The chain's rules, `-A OUTGATE ...`.
    pub rules: Vec<String>,
    /// The jumps as `-I CHAIN N ...`, N their place in their chain, in listing order.
    pub inserts: Vec<String>,
}

impl Present {
    pub(super) fn read(name: &'static str, listing: &str) -> Present {
        let mut present = Present {
            name,
            deletes: Vec::new(),
            chain: false,
            rules: Vec::new(),
            inserts: Vec::new(),
        };
        let mut places: Vec<(&str, usize)> = Vec::new();
        for line in listing.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let (Some(&"-A"), Some(&chain), Some(rest)) =
                (words.first(), words.get(1), line.splitn(3, ' ').nth(2))
            else {
                if words.as_slice() == ["-N", name] {
                    present.chain = true;
                }
                continue;
            };
            let place = match places.iter_mut().find(|(c, _)| *c == chain) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    places.push((chain, 1));
                    1
                }
            };
            if chain == name {
                present.rules.push(line.to_string());
            } else if let [.., "-j" | "-g", target] = words.as_slice()
                && *target == name
            {
                present.deletes.push(format!("-D {chain} {rest}"));
                present.inserts.push(format!("-I {chain} {place} {rest}"));
            }
        }
        present
    }
}

/// Restore lines that turn outgate's part of `table` from `now` back into `before`: the jumps at their
/// old places (inserted in listing order, so each lands where it was), the chain's old rules, or no chain.
pub(super) fn put_back(table: &str, before: &Present, now: &Present) -> Vec<String> {
    let name = now.name;
    let mut l = vec![format!("*{table}")];
    l.extend(now.deletes.iter().cloned());
    if now.chain {
        l.push(format!("-F {name}"));
        if !before.chain {
            l.push(format!("-X {name}"));
        }
    } else if before.chain {
        l.push(format!(":{name} - [0:0]"));
    }
    l.extend(before.rules.iter().cloned());
    l.extend(before.inserts.iter().cloned());
    l.push("COMMIT".into());
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{gateway, host, rules};

    #[test]
    fn host_one_queue_fail_closed_is_exactly_this() {
        let text = iptables_restore(&host("0"), Family::V4).expect("valid config");
        let expected = "\
# outgate, IPv4 (iptables-restore): host mode, queue 0, fail-closed.
# Load with --noflush into tables without outgate; `outgate rules --apply` replaces in place.
*raw
:OUTGATE - [0:0]
-I OUTPUT 1 ! -o lo -j OUTGATE
# FTP: the kernel's helper admits exactly the data connection the control connection announces.
-A OUTGATE -p tcp -m tcp --dport 21 -j CT --helper ftp
COMMIT
*filter
:OUTGATE - [0:0]
# First in the hook: no earlier rule may pass packets of flows under inspection, and the
# daemon's REPEAT pass (the hook again from its first rule) runs no other rule twice.
-I OUTPUT 1 ! -o lo -j OUTGATE
# What this ruleset was made with: `outgate run` reads it, and refuses to start with other
# queues, another fail mode or other mark bits.
-A OUTGATE -m comment --comment \"outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00 class-mask=0xf000\"
# Replies on connections opened from outside are not outbound flows.
-A OUTGATE -m conntrack --ctdir REPLY -j RETURN
# The daemon's REPEAT of a packet it passed but has not decided (pending): on to the admin's
# rules, nothing saved, so the flow's next packet comes to the daemon too. Before the restore,
# so that a conntrack mark holding this value is never restored into a pass.
-A OUTGATE -m mark --mark 0x400/0xf00 -j RETURN
# A SYN opening a connection on the 4-tuple of an accepted one that the server reset: conntrack
# keeps the old entry for it (the reset came from the other side), and the saved ACCEPT would
# pass the new connection unread. Cleared, the daemon decides it like any new connection. Only
# an ACCEPT: a kept DROP or REJECT errs on the safe side (the new connection meets it). Not a
# RELATED entry: an FTP data connection takes its control connection's mark by design.
-A OUTGATE -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack --ctstate ESTABLISHED -m connmark --mark 0x100/0xf00 -j CONNMARK --set-xmark 0x0/0xff00
# Decided flow: its verdict (and class) comes from the conntrack mark. Not when the packet carries
# one: that is the REPEAT pass, and restoring the still-empty conntrack mark would loop it.
-A OUTGATE -m mark --mark 0x0/0xf00 -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00
# Undecided: to the daemon; with none listening the packet is dropped (fail-closed).
-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-num 0
# Keep a verdict (with its class) in conntrack so the flow skips the queue: only a verdict, and
# only into empty bits, so no other value is ever saved and a flow's verdict is never rewritten.
-A OUTGATE -m mark --mark 0x100/0xf00 -m connmark --mark 0x0/0xf00 -j CONNMARK --save-mark --nfmask 0xff00 --ctmask 0xff00
-A OUTGATE -m mark --mark 0x200/0xf00 -m connmark --mark 0x0/0xf00 -j CONNMARK --save-mark --nfmask 0xff00 --ctmask 0xff00
-A OUTGATE -m mark --mark 0x300/0xf00 -m connmark --mark 0x0/0xf00 -j CONNMARK --save-mark --nfmask 0xff00 --ctmask 0xff00
# Accept returns to the admin's rules: outgate only restricts.
-A OUTGATE -m mark --mark 0x100/0xf00 -j RETURN
-A OUTGATE -m mark --mark 0x200/0xf00 -j DROP
-A OUTGATE -p tcp -m mark --mark 0x300/0xf00 -j REJECT --reject-with tcp-reset
-A OUTGATE -m mark --mark 0x300/0xf00 -j REJECT --reject-with icmp-port-unreachable
# Any other value in outgate's bits is no verdict: fail closed.
-A OUTGATE -j DROP
COMMIT
";
        assert_eq!(text, expected);
    }

    #[test]
    fn host_four_queues_balance_by_address_never_by_cpu() {
        // `--queue-cpu-fanout` could send one flow's packets to two workers, which breaks inspection.
        for family in Family::ALL {
            let text = iptables_restore(&host("0-3"), family).expect("valid config");
            let queue: Vec<_> = rules(&text)
                .into_iter()
                .filter(|l| l.contains("NFQUEUE"))
                .collect();
            assert_eq!(
                queue,
                ["-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-balance 0:3"]
            );
            assert!(!text.contains("fanout"), "{text}");
        }
        let text = iptables_restore(&host("0-3"), Family::V4).expect("valid config");
        assert!(text.contains("queue 0-3, fail-closed"), "{text}");
        assert!(!text.contains("bypass"), "{text}");
    }

    #[test]
    fn host_wan_limits_the_jump_to_that_interface() {
        let cfg = RulesConfig {
            wan: Some("eth0".into()),
            fail_open: true,
            ..host("7")
        };
        let text = iptables_restore(&cfg, Family::V4).expect("valid config");
        assert!(
            text.contains("\n-I OUTPUT 1 -o eth0 -j OUTGATE\n"),
            "{text}"
        );
        assert!(
            text.contains("-j NFQUEUE --queue-num 7 --queue-bypass\n"),
            "{text}"
        );
    }

    #[test]
    fn gateway_fail_open_balances_by_address_with_bypass() {
        let text = iptables_restore(&gateway(), Family::V4).expect("valid config");
        let r = rules(&text);
        assert_eq!(
            r[2], "-I PREROUTING 1 -i lan0 -j OUTGATE",
            "raw: the FTP helper on LAN traffic"
        );
        assert_eq!(r[7], "-I FORWARD 1 -i lan0 -o wan0 -j OUTGATE");
        assert!(
            r.contains(
                &"-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-balance 2:5 --queue-bypass"
            ),
            "{text}"
        );
        assert!(!text.contains("OUTPUT"), "{text}");
        assert!(!text.contains("fanout"), "{text}");
        assert!(!text.contains("icmpv6"), "{text}");
    }

    #[test]
    fn ip6tables_rejects_with_icmp6_and_passes_neighbour_discovery() {
        let v4 = iptables_restore(&host("0"), Family::V4).expect("valid config");
        let v6 = iptables_restore(&host("0"), Family::V6).expect("valid config");
        assert!(
            v6.contains("-j REJECT --reject-with icmp6-port-unreachable\n"),
            "{v6}"
        );
        assert!(!v6.contains("icmp-port-unreachable"), "{v6}");
        assert!(
            v6.starts_with("# outgate, IPv6 (ip6tables-restore)"),
            "{v6}"
        );
        let nd: Vec<_> = rules(&v6)
            .into_iter()
            .filter(|l| l.contains("icmpv6-type"))
            .collect();
        assert_eq!(
            nd,
            [
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 133 -m hl --hl-eq 255 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 135 -m hl --hl-eq 255 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 136 -m hl --hl-eq 255 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 131 -m hl --hl-eq 1 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 132 -m hl --hl-eq 1 -j RETURN",
                "-A OUTGATE -p ipv6-icmp -m icmp6 --icmpv6-type 143 -m hl --hl-eq 1 -j RETURN",
            ]
        );
        // Apart from those, the families differ only in the ICMP reject type and the header.
        let strip = |t: &str| -> Vec<String> {
            rules(t)
                .into_iter()
                .filter(|l| !l.contains("icmpv6-type"))
                .map(|l| l.replace("icmp6-port", "icmp-port"))
                .collect()
        };
        assert_eq!(strip(&v4), strip(&v6));
        // Gateway mode forwards no neighbour discovery.
        let gw6 = iptables_restore(&gateway(), Family::V6).expect("valid config");
        assert!(!gw6.contains("icmpv6-type"), "{gw6}");
    }

    #[test]
    fn verdict_rules_follow_the_mark_contract() {
        let text = iptables_restore(&host("0"), Family::V4).expect("valid config");
        let r = rules(&text);
        // Pending returns before the restore; restore, queue, save come before every verdict; only
        // verdicts are saved; the catch-all is last.
        let pos = |needle: &str| {
            r.iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no rule with {needle}: {text}"))
        };
        assert!(pos("--mark 0x400/0xf00 -j RETURN") < pos("--restore-mark"));
        assert!(pos("--restore-mark") < pos("NFQUEUE"));
        assert!(pos("NFQUEUE") < pos("--save-mark"));
        assert!(pos("--save-mark") < pos("0x100/0xf00 -j RETURN"));
        let saves: Vec<_> = r.iter().filter(|l| l.contains("--save-mark")).collect();
        assert_eq!(saves.len(), 3, "{text}");
        for (save, value) in saves.iter().zip(["0x100", "0x200", "0x300"]) {
            assert!(
                save.starts_with(&format!(
                    "-A OUTGATE -m mark --mark {value}/0xf00 -m connmark --mark 0x0/0xf00 "
                )),
                "{save}"
            );
        }
        assert_eq!(r[r.len() - 2], "-A OUTGATE -j DROP");
    }

    #[test]
    fn another_mask_moves_every_mark_rule() {
        let cfg = RulesConfig {
            marks: "0x7000".parse().expect("valid mask"),
            ..host("0")
        };
        let text = iptables_restore(&cfg, Family::V4).expect("valid config");
        assert!(!text.contains("0xf00"), "{text}");
        for needle in [
            "-m mark --mark 0x0/0x7000 -j CONNMARK --restore-mark --nfmask 0x7f000 --ctmask 0x7f000\n",
            "-m mark --mark 0x1000/0x7000 -j RETURN\n",
            "-m mark --mark 0x2000/0x7000 -j DROP\n",
            "-m mark --mark 0x3000/0x7000 -j REJECT --reject-with tcp-reset\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn a_listing_is_read_back_with_the_jumps_places() {
        let listing = "\
-P INPUT ACCEPT
-P FORWARD ACCEPT
-N ADMIN
-N OUTGATE
-A FORWARD -p tcp -m tcp --dport 7 -j DROP
-A FORWARD -i lan0 -o wan0 -j OUTGATE
-A OUTPUT -m comment --comment \"two words\" -j OUTGATE
-A OUTGATE -m conntrack --ctdir REPLY -j RETURN
-A OUTGATE -j DROP
-A ADMIN -j OUTGATE2
-A ADMIN -g OUTGATE
";
        let before = Present::read(CHAIN, listing);
        assert!(before.chain);
        assert_eq!(
            before.deletes,
            [
                "-D FORWARD -i lan0 -o wan0 -j OUTGATE",
                "-D OUTPUT -m comment --comment \"two words\" -j OUTGATE",
                "-D ADMIN -g OUTGATE",
            ]
        );
        assert_eq!(
            before.inserts,
            [
                "-I FORWARD 2 -i lan0 -o wan0 -j OUTGATE",
                "-I OUTPUT 1 -m comment --comment \"two words\" -j OUTGATE",
                "-I ADMIN 2 -g OUTGATE",
            ]
        );
        assert_eq!(
            before.rules,
            [
                "-A OUTGATE -m conntrack --ctdir REPLY -j RETURN",
                "-A OUTGATE -j DROP"
            ]
        );
        let now = Present::read(
            CHAIN,
            "-N OUTGATE\n-A OUTPUT ! -o lo -j OUTGATE\n-A OUTGATE -j RETURN\n",
        );
        assert_eq!(
            put_back("filter", &before, &now),
            [
                "*filter",
                "-D OUTPUT ! -o lo -j OUTGATE",
                "-F OUTGATE",
                "-A OUTGATE -m conntrack --ctdir REPLY -j RETURN",
                "-A OUTGATE -j DROP",
                "-I FORWARD 2 -i lan0 -o wan0 -j OUTGATE",
                "-I OUTPUT 1 -m comment --comment \"two words\" -j OUTGATE",
                "-I ADMIN 2 -g OUTGATE",
                "COMMIT",
            ]
        );
        let nothing = Present::read(CHAIN, "-P OUTPUT ACCEPT\n");
        assert!(!nothing.chain);
        assert_eq!(
            put_back("raw", &nothing, &now),
            [
                "*raw",
                "-D OUTPUT ! -o lo -j OUTGATE",
                "-F OUTGATE",
                "-X OUTGATE",
                "COMMIT"
            ]
        );
    }

    #[test]
    fn the_limit_per_source_sits_between_restore_and_queue() {
        let cfg = RulesConfig {
            limit_per_source: Some(
                SourceLimit::new("200/second".parse().expect("valid"), Some(50)).expect("valid"),
            ),
            ..host("0")
        };
        for (family, name) in [(Family::V4, "outgate4"), (Family::V6, "outgate6")] {
            let text = iptables_restore(&cfg, family).expect("valid config");
            let r = rules(&text);
            let limit = format!(
                "-A OUTGATE -m mark --mark 0x0/0xf00 -m hashlimit --hashlimit-above 200/sec \
                 --hashlimit-burst 50 --hashlimit-mode srcip --hashlimit-name {name} -j DROP"
            );
            let at = r.iter().position(|l| *l == limit).expect(&text);
            assert!(r[at - 1].contains("--restore-mark"), "{text}");
            assert!(r[at + 1].contains("-j NFQUEUE"), "{text}");
        }
        let none = iptables_restore(&host("0"), Family::V4).expect("valid config");
        assert!(!none.contains("hashlimit"), "{none}");
    }
}
