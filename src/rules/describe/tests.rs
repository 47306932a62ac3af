use super::*;
use crate::rules::tests::{gateway, host, shaped};

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
        shaped(RulesConfig {
            wan: Some("eth0".into()),
            marks: Marks::DEFAULT.with_class_mask(0xf0000).expect("valid"),
            ..host("0")
        }),
        shaped(limited(gateway())),
        RulesConfig {
            audit: true,
            ..gateway()
        },
    ]
}

#[test]
fn descriptions_read_back() {
    assert_eq!(
        describe(&host("0")),
        "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00 class-mask=0xf000"
    );
    assert_eq!(
        describe(&configs()[3]),
        "outgate ruleset: mode=gateway queues=2-5 fail=open mark-mask=0xf000 class-mask=0xf0000 \
             lan=br+ wan=wan0 limit=200/second burst=50"
    );
    assert_eq!(
        describe(&configs()[5]),
        "outgate ruleset: mode=gateway queues=2-5 fail=open mark-mask=0xf000 class-mask=0xf0000 \
             lan=lan0 wan=wan0 limit=200/second burst=50 shape=lan0,wan0 link-rate=100mbit \
             class=slow:2mbit class=bulk:500kbit"
    );
    assert!(describe(&configs()[6]).ends_with(" lan=lan0 wan=wan0 audit=yes"));
    for cfg in configs() {
        assert_eq!(read(&describe(&cfg)).ok(), Some(cfg.clone()), "{cfg:?}");
    }
}

/// The description as iptables lists it (`-S`: `-I` becomes `-A`), and as nft lists it (the lines as
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
        let comments: Vec<String> = comments(&cfg, NFT_COMMENT_MAX)
            .expect("fits")
            .iter()
            .map(|c| format!("\t\tcontinue comment \"{c}\"\n"))
            .collect();
        assert!(
                text.contains(&format!(
                    "\tchain gate {{\n\t\t# what this ruleset was made with: `outgate run` reads it\n{}",
                    comments.concat()
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
             mark-mask=0xf00 class-mask=0xf000\"",
        "first in the filter chain (after the raw table's helper rule)"
    );
}

/// A description longer than a comment is cut between fields, every piece within the limit and
/// starting with the prefix; the pieces read back as one.
#[test]
fn long_descriptions_take_several_comments() {
    let cfg = shaped(limited(gateway()));
    let whole = describe(&cfg);
    for max in [NFT_COMMENT_MAX, IPTABLES_COMMENT_MAX, 60] {
        let pieces = comments(&cfg, max).expect("fits");
        assert!(
            pieces
                .iter()
                .all(|p| p.len() <= max && p.starts_with(PREFIX))
        );
        let fields: Vec<&str> = pieces
            .iter()
            .map(|p| p.strip_prefix(PREFIX).expect("prefix"))
            .collect();
        assert_eq!(format!("{PREFIX}{}", fields.join(" ")), whole, "{max}");
    }
    assert_eq!(comments(&cfg, IPTABLES_COMMENT_MAX).expect("fits").len(), 1);
    assert_eq!(comments(&cfg, NFT_COMMENT_MAX).expect("fits").len(), 2);
    let err = comments(&cfg, 30).expect_err("a field longer than a comment");
    assert_eq!(
        err.to_string(),
        "the ruleset describes itself in comments of at most 30 characters, and \
             'mark-mask=0xf000' does not fit in one: use shorter interface or class names"
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
    let good = "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00 class-mask=0xf000";
    let shaped_host = format!("{good} wan=eth0 shape=eth0 link-rate=1gbit");
    for (bad, reason) in [
        (
            "mode=host queues=0 fail=closed mark-mask=0xf00",
            "does not start with",
        ),
        (
            "outgate ruleset: mode=host queues=0 fail=closed class-mask=0xf000",
            "'mark-mask' is missing",
        ),
        (
            "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00",
            "'class-mask' is missing",
        ),
        (&format!("{good} queues=1"), "'queues' is given twice"),
        (&format!("{good} tc=1"), "unknown key 'tc'"),
        (
            "outgate ruleset: mode=host queues=0 fail=maybe mark-mask=0xf00 class-mask=0xf000",
            "expected open or closed",
        ),
        (
            "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf0f class-mask=0xf000",
            "contiguous",
        ),
        (
            "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00 class-mask=0xff0",
            "overlaps the mark mask",
        ),
        (
            "outgate ruleset: mode=host queues=0 fail=closed mark-mask=0xf00 class-mask=f",
            "class-mask=f: expected a number",
        ),
        (&format!("{good} limit=5/second"), "go together"),
        (
            "outgate ruleset: mode=gateway queues=0 fail=closed mark-mask=0xf00 class-mask=0xf000 wan=eth0",
            "--lan is missing",
        ),
        (&format!("{good} wan"), "not KEY=VALUE"),
        (&format!("{good} wan=eth0 shape=eth0"), "go together"),
        (
            &format!("{shaped_host} class=slow"),
            "class=slow: expected NAME:RATE",
        ),
        (
            &format!("{shaped_host} class=slow:fast"),
            "class=slow:fast: 'fast' is not a rate",
        ),
        (
            &format!("{good} wan=eth0 shape=eth1 link-rate=1gbit class=slow:2mbit"),
            "shape=eth1: a host ruleset shapes eth0",
        ),
        (
            &format!("{shaped_host} class=slow:2mbit class=bulk:1gbit"),
            "add up to 1002mbit, at or above --link-rate 1gbit",
        ),
    ] {
        let err = read(bad).expect_err(bad).to_string();
        assert!(err.contains(reason), "{bad:?}: {err}");
        assert!(err.contains("run `outgate rules --apply`"), "{err}");
    }
    assert!(read(good).is_ok());
    let two = read(&format!(
        "{shaped_host} class=slow:2mbit class=bulk:500kbit"
    ))
    .expect("valid")
    .shaping
    .expect("shaping");
    let names: Vec<&str> = two.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["slow", "bulk"], "one class= per class, in order");
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
    assert_eq!(
        installed.mismatch(cfg.queues, false, cfg.marks, false),
        None
    );
    let message = installed
        .mismatch(QueueRange::one(0), true, Marks::DEFAULT, false)
        .expect("mismatch");
    assert_eq!(
            message,
            "the installed ruleset (iptables, host mode) does not match this daemon:
  queues: the ruleset sends to 0-3, this daemon binds 0
  fail mode: the ruleset is fail-closed, this daemon fail-open
  mark mask: the ruleset uses 0xf000, this daemon 0xf00
  class mask: the ruleset uses 0xf0000, this daemon 0xf000
start the daemon as the ruleset expects: outgate run --queues 0-3 --fail-closed --mark-mask 0xf000 --class-mask 0xf0000 (and your other options)
or make the ruleset match the daemon: outgate rules --apply --mode host --wan eth0 --queues 0 --fail-open --mark-mask 0xf00 --class-mask 0xf000 --limit-per-source 200/second --limit-burst 50"
        );
    // The mode alone is a mismatch too: an auditing ruleset with an enforcing daemon, and back.
    let audited = Installed {
        config: RulesConfig {
            audit: true,
            ..cfg.clone()
        },
        ..installed.clone()
    };
    assert_eq!(audited.mismatch(cfg.queues, false, cfg.marks, true), None);
    let message = audited
        .mismatch(cfg.queues, false, cfg.marks, false)
        .expect("mismatch");
    assert!(
            message.contains(
                "\n  mode: the ruleset was applied to audit (rules --audit), this daemon would enforce\n"
            ) && message.contains("--class-mask 0xf0000 --audit (and your other options)"),
            "{message}"
        );
    assert!(
        installed
            .mismatch(cfg.queues, false, cfg.marks, true)
            .is_some()
    );
    // The class bits alone are a mismatch too.
    let moved = cfg.marks.with_class_mask(0xf00000).expect("valid");
    let message = installed
        .mismatch(cfg.queues, false, moved, false)
        .expect("mismatch");
    assert!(
        message.contains("\n  class mask: the ruleset uses 0xf0000, this daemon 0xf00000\n"),
        "{message}"
    );
    let nft = Installed {
        backend: Backend::Nft,
        config: shaped(gateway()),
    };
    let message = nft
        .mismatch(QueueRange::one(2), true, Marks::DEFAULT, false)
        .expect("mismatch");
    assert!(
        message.ends_with(
            "outgate rules --apply --backend nft --mode gateway --lan lan0 --wan wan0 \
                 --queues 2 --fail-open --mark-mask 0xf00 --class-mask 0xf000 --policy POLICY \
                 --link-rate 100mbit"
        ),
        "{message}"
    );
}

#[test]
fn a_policy_with_other_classes_is_named() {
    let policy = |text: &str| crate::Policy::compile("p.rules", text).expect("valid policy");
    let same = policy("option shape-rate 2mbit\nclass bulk 500kbit\n");
    let other = policy("class bulk 1mbit\n");
    let none = policy("policy loc net ACCEPT\n");
    let installed = Installed {
        backend: Backend::Iptables,
        config: shaped(gateway()),
    };
    assert_eq!(installed.shaping_mismatch(same.classes()), None);
    let message = installed
        .shaping_mismatch(other.classes())
        .expect("other classes");
    assert_eq!(
        message,
        "the installed ruleset shapes traffic classes slow 2mbit, bulk 500kbit and the policy has \
             bulk 1mbit: flows SHAPE sends to a class the ruleset does not have pass at full speed; \
             apply the policy's classes with: outgate rules --apply --mode gateway --lan lan0 --wan \
             wan0 --queues 2-5 --fail-open --mark-mask 0xf00 --class-mask 0xf000 --policy POLICY \
             --link-rate 100mbit"
    );
    assert!(installed.shaping_mismatch(none.classes()).is_some());
    let unshaped = Installed {
        backend: Backend::Iptables,
        config: gateway(),
    };
    assert_eq!(unshaped.shaping_mismatch(none.classes()), None);
    let message = unshaped
        .shaping_mismatch(same.classes())
        .expect("no shaping");
    assert!(message.contains("shapes traffic classes none and the policy has slow 2mbit"));
    assert!(message.ends_with("--policy POLICY"), "{message}");
}
