//! The nft backend's text: one `nft -f` file for `table inet outgate`.

use super::*;

/// An nft interface name: iptables' trailing `+` wildcard is nft's `*`.
fn nft_interface(name: &str) -> String {
    match name.strip_suffix('+') {
        Some(prefix) => format!("\"{prefix}*\""),
        None => format!("\"{name}\""),
    }
}

/// Balanced by address hash, never `fanout` (by CPU): see the iptables backend's queue rule.
fn nft_queue(cfg: &RulesConfig) -> String {
    let statement = format!("queue num {}", cfg.queues);
    if cfg.fail_open {
        statement + " bypass"
    } else {
        statement
    }
}

/// The ruleset as one `nft -f` file: `table inet outgate`, both families, the same steps as iptables.
/// nft 1.0 cannot combine two registers (`meta mark | ct mark`), so the mark is restored and saved one
/// verdict value at a time, with constants, which also leaves the other bits of both marks alone.
///
/// Classes: an accept is saved with its class, one rule per class value (chain `classes`, which only
/// the first decided packet of a flow reaches). Only the verdict is restored into the packet mark: the
/// shaping rules read the class from the conntrack mark, and restoring it too would take a rule per
/// class value on every packet of every decided flow.
pub fn nft(cfg: &RulesConfig) -> Result<String, RulesError> {
    cfg.validate()?;
    let (chain, hook, jump) = match (cfg.mode, &cfg.lan, &cfg.wan) {
        (Mode::Gateway, Some(lan), Some(wan)) => (
            "forward",
            "forward",
            format!(
                "iifname {} oifname {} jump gate",
                nft_interface(lan),
                nft_interface(wan)
            ),
        ),
        (_, _, Some(wan)) => (
            "output",
            "output",
            format!("oifname {} jump gate", nft_interface(wan)),
        ),
        _ => (
            "output",
            "output",
            "oifname != \"lo\" jump gate".to_string(),
        ),
    };
    let (helper_hook, helper_match) = match (cfg.mode, &cfg.lan, &cfg.wan) {
        (Mode::Gateway, Some(lan), _) => ("prerouting", format!("iifname {} ", nft_interface(lan))),
        (_, _, Some(wan)) => ("output", format!("oifname {} ", nft_interface(wan))),
        _ => ("output", "oifname != \"lo\" ".to_string()),
    };
    let description = describe::comments(cfg, describe::NFT_COMMENT_MAX)?;
    let m = cfg.marks;
    let mask = hex(m.mask());
    let keep = hex(!m.mask());
    let bits = |v: u32| format!("meta mark & {mask} == {}", hex(v));
    let verdicts = Verdict::KERNEL.map(|v| m.verdict(v));
    let mut l = vec![
        format!(
            "# outgate (nft -f): {} mode, queue {}, {}.",
            cfg.mode,
            cfg.queues,
            fail_mode(cfg)
        ),
        format!("table inet {NFT_TABLE} {{"),
        "\t# FTP: the kernel's helper admits exactly the data connection a control connection announces".into(),
        "\tct helper ftp-standard {".into(),
        "\t\ttype \"ftp\" protocol tcp;".into(),
        "\t}".into(),
    ];
    if let Some(limit) = cfg.limit_per_source {
        // An idle address's bucket is forgotten after as long as hashlimit keeps it.
        let timeout = match limit.rate.unit {
            RateUnit::Second => "10s",
            RateUnit::Minute => "1m",
        };
        l.extend([
            "\t# --limit-per-source: a dropped flow's retries all come back to the daemon (the kernel never".into(),
            "\t# confirms their connection); one client must not flood it. A token bucket per address.".into(),
        ]);
        for (set, kind) in [("limit4", "ipv4_addr"), ("limit6", "ipv6_addr")] {
            l.extend([
                format!("\tset {set} {{"),
                format!("\t\ttype {kind}; size 65535; flags dynamic,timeout; timeout {timeout};"),
                "\t}".into(),
            ]);
        }
    }
    l.extend([
        "\t# Assigned after the conntrack lookup (priority -200): before it, `ct helper set` finds no".into(),
        "\t# connection to set it on (nftables wiki, \"Conntrack helpers\"). On a connection's first packet.".into(),
        "\tchain helpers {".into(),
        format!("\t\ttype filter hook {helper_hook} priority filter; policy accept;"),
        format!("\t\t{helper_match}tcp dport 21 ct state new ct helper set \"ftp-standard\""),
        "\t}".into(),
        "\t# Base chains of one hook run in priority order, and `accept` in one does not skip the others".into(),
        "\t# (only `drop` ends the hook), so no other chain can let a packet past this one. Before".into(),
        "\t# `priority filter` nonetheless: outgate decides before iptables-nft's filter table and the".into(),
        "\t# admin's own filter chains see the packet, as the iptables jump is first in its hook (at".into(),
        "\t# equal priority, the order would be whichever chain was registered first).".into(),
        format!("\tchain {chain} {{"),
        format!("\t\ttype filter hook {hook} priority filter - 10; policy accept;"),
        format!("\t\t{jump}"),
        "\t}".into(),
        "\tchain gate {".into(),
        "\t\t# what this ruleset was made with: `outgate run` reads it".into(),
    ]);
    l.extend(
        description
            .iter()
            .map(|d| format!("\t\tcontinue comment \"{d}\"")),
    );
    l.extend([
        "\t\t# replies on connections opened from outside are not outbound flows".into(),
        "\t\tct direction reply return".into(),
    ]);
    if cfg.mode == Mode::Host {
        l.extend([
            "\t\t# IPv6 needs neighbour discovery and MLD reports; link-local by hop limit".into(),
            "\t\ticmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 return".into(),
            "\t\ticmpv6 type { mld-listener-report, mld-listener-done, mld2-listener-report } ip6 hoplimit 1 return".into(),
        ]);
    }
    l.extend([
        "\t\t# the daemon's REPEAT of a packet it passed but has not decided: on, nothing saved; before the".into(),
        "\t\t# restore, so that a conntrack mark holding this value is never restored into a pass".into(),
        format!("\t\t{} return", bits(m.pending())),
        "\t\t# a SYN opening a connection on the 4-tuple of an accepted one that the server reset keeps".into(),
        "\t\t# the old conntrack entry: its ACCEPT is cleared so the daemon decides the new connection".into(),
        format!(
            "\t\ttcp flags & (syn|ack|fin|rst) == syn ct state established ct mark & {mask} == {} ct mark set ct mark & {}",
            hex(m.verdict(Verdict::Accept)),
            hex(!m.full_mask())
        ),
        "\t\t# decided flow: the verdict from the conntrack mark, unless the packet has one (REPEAT pass)".into(),
    ]);
    for v in verdicts {
        l.push(format!(
            "\t\t{} ct mark & {mask} == {} meta mark set meta mark | {}",
            bits(0),
            hex(v),
            hex(v)
        ));
    }
    l.extend([
        "\t\t# any other value in outgate's conntrack bits is no verdict: fail closed".into(),
        format!("\t\t{} ct mark & {mask} != 0x0 drop", bits(0)),
        format!(
            "\t\t# undecided: to the daemon; with none listening the packet {}",
            if cfg.fail_open {
                "passes (fail-open)"
            } else {
                "is dropped (fail-closed)"
            }
        ),
    ]);
    if let Some(limit) = cfg.limit_per_source {
        l.push(
            "\t\t# at most so many packets per source address to the daemon (see the sets above)"
                .into(),
        );
        for (set, address) in [("limit4", "ip saddr"), ("limit6", "ip6 saddr")] {
            l.push(format!(
                "\t\t{} update @{set} {{ {address} limit rate over {} burst {} packets }} drop",
                bits(0),
                limit.rate.nft(),
                limit.burst
            ));
        }
    }
    l.extend([
        format!("\t\t{} {}", bits(0), nft_queue(cfg)),
        "\t\t# a verdict: keep it in conntrack so the flow skips the queue; only a verdict, only into empty".into(),
        "\t\t# bits, so no other value is ever saved and a flow's verdict is never rewritten".into(),
    ]);
    for v in verdicts {
        if v == m.verdict(Verdict::Accept) {
            l.push(format!(
                "\t\t{} ct mark & {mask} == 0x0 jump classes",
                bits(v)
            ));
            continue;
        }
        l.push(format!(
            "\t\t{} ct mark & {mask} == 0x0 ct mark set ct mark & {keep} | {}",
            bits(v),
            hex(v)
        ));
    }
    l.extend([
        "\t\t# accept ends this table's chain only: the admin's tables still run".into(),
        format!("\t\t{} accept", bits(m.verdict(Verdict::Accept))),
        format!("\t\t{} drop", bits(m.verdict(Verdict::Drop))),
        format!(
            "\t\t{} meta l4proto tcp reject with tcp reset",
            bits(m.verdict(Verdict::Reject))
        ),
        format!(
            "\t\t{} reject with icmpx type port-unreachable",
            bits(m.verdict(Verdict::Reject))
        ),
        "\t\t# any other value in outgate's bits is no verdict: fail closed".into(),
        "\t\tdrop".into(),
        "\t}".into(),
        "\t# an accept is saved with its class (SHAPE); a value the class bits cannot name, as none".into(),
        "\tchain classes {".into(),
    ]);
    let accept = m.verdict(Verdict::Accept);
    let keep_both = hex(!m.full_mask());
    let class_mask = hex(m.class_mask());
    for class in 0..CLASSES {
        let value = m.class_value(class);
        l.push(format!(
            "\t\tmeta mark & {class_mask} == {} ct mark set ct mark & {keep_both} | {} return",
            hex(value),
            hex(accept | value)
        ));
    }
    l.extend([
        format!("\t\tct mark set ct mark & {keep_both} | {}", hex(accept)),
        "\t}".into(),
    ]);
    l.extend(shape::nft_chain(cfg));
    l.push("}".into());
    Ok(lines(l))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::tests::{gateway, host};

    #[test]
    fn nft_host_multi_queue_fail_open() {
        let cfg = RulesConfig {
            fail_open: true,
            ..host("0-3")
        };
        let text = nft(&cfg).expect("valid config");
        for needle in [
            "\tchain output {\n\t\ttype filter hook output priority filter - 10; policy accept;\n\t\toifname != \"lo\" jump gate\n\t}",
            "\tchain helpers {\n\t\ttype filter hook output priority filter; policy accept;\n\t\toifname != \"lo\" tcp dport 21 ct state new ct helper set \"ftp-standard\"\n\t}",
            "\t\tct direction reply return\n",
            "\t\tmeta mark & 0xf00 == 0x0 ct mark & 0xf00 == 0x100 meta mark set meta mark | 0x100\n",
            "\t\tmeta mark & 0xf00 == 0x0 ct mark & 0xf00 != 0x0 drop\n",
            "\t\tmeta mark & 0xf00 == 0x0 queue num 0-3 bypass\n",
            "\t\tmeta mark & 0xf00 == 0x400 return\n\t\t# a SYN opening",
            "\t\ttcp flags & (syn|ack|fin|rst) == syn ct state established ct mark & 0xf00 == 0x100 ct mark set ct mark & 0xffff00ff\n\t\t# decided flow",
            "\t\tmeta mark & 0xf00 == 0x200 ct mark & 0xf00 == 0x0 ct mark set ct mark & 0xfffff0ff | 0x200\n",
            "\t\tmeta mark & 0xf00 == 0x100 ct mark & 0xf00 == 0x0 jump classes\n",
            "\tchain classes {\n\t\tmeta mark & 0xf000 == 0x1000 ct mark set ct mark & 0xffff00ff | 0x1100 return\n",
            "\t\tmeta mark & 0xf000 == 0xf000 ct mark set ct mark & 0xffff00ff | 0xf100 return\n\t\tct mark set ct mark & 0xffff00ff | 0x100\n\t}\n}\n",
            "\t\tmeta mark & 0xf00 == 0x100 accept\n",
            "\t\tmeta mark & 0xf00 == 0x300 meta l4proto tcp reject with tcp reset\n",
            "\t\tmeta mark & 0xf00 == 0x300 reject with icmpx type port-unreachable\n",
            "\t\tdrop\n\t}\n",
            "nd-neighbor-solicit",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn nft_gateway_and_wildcards() {
        let cfg = RulesConfig {
            lan: Some("br+".into()),
            fail_open: false,
            ..gateway()
        };
        let text = nft(&cfg).expect("valid config");
        assert!(text.contains("\tchain forward {\n\t\ttype filter hook forward priority filter - 10; policy accept;\n\t\tiifname \"br*\" oifname \"wan0\" jump gate\n"), "{text}");
        assert!(text.contains(" queue num 2-5\n"), "{text}");
        assert!(!text.contains("fanout"), "{text}");
        assert!(!text.contains("icmpv6"), "{text}");
        let one = nft(&RulesConfig {
            fail_open: true,
            ..host("4")
        })
        .expect("valid config");
        assert!(one.contains(" queue num 4 bypass\n"), "{one}");
    }

    #[test]
    fn nft_another_mask_moves_every_mark_rule() {
        let cfg = RulesConfig {
            marks: "0x7000".parse().expect("valid mask"),
            ..host("0")
        };
        let text = nft(&cfg).expect("valid config");
        assert!(!text.contains("0xf00"), "{text}");
        for needle in [
            "meta mark & 0x7000 == 0x0 ct mark & 0x7000 == 0x1000 meta mark set meta mark | 0x1000\n",
            "meta mark & 0x7000 == 0x2000 ct mark & 0x7000 == 0x0 ct mark set ct mark & 0xffff8fff | 0x2000\n",
            "meta mark & 0x7000 == 0x4000 return\n",
            "meta mark & 0x7000 == 0x1000 accept\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }

    #[test]
    fn nft_limit_per_source_is_a_set_per_family() {
        let cfg = RulesConfig {
            limit_per_source: Some(
                SourceLimit::new("30/minute".parse().expect("valid"), None).expect("valid"),
            ),
            ..gateway()
        };
        let text = nft(&cfg).expect("valid config");
        for needle in [
            "\tset limit4 {\n\t\ttype ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m;\n\t}\n",
            "\tset limit6 {\n\t\ttype ipv6_addr; size 65535; flags dynamic,timeout; timeout 1m;\n\t}\n",
            "\t\tmeta mark & 0xf00 == 0x0 update @limit4 { ip saddr limit rate over 30/minute burst 30 packets } drop\n\t\tmeta mark & 0xf00 == 0x0 update @limit6 { ip6 saddr limit rate over 30/minute burst 30 packets } drop\n\t\tmeta mark & 0xf00 == 0x0 queue num 2-5 bypass\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!nft(&gateway()).expect("valid config").contains("limit"));
    }
}
