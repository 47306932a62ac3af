//! Live tests of `outgate::rules`: the real iptables, ip6tables and nft, in network namespaces.
//!
//! Root only: without root each test says it was skipped (in CI, where everything must run, it fails).
//! Each test makes its own namespaces (named after the process id and a counter, so tests run in
//! parallel) and deletes them when done, on failure too (`common::netns::Netns`, made by a `Lab`). The root namespace's
//! firewall is never touched: code that must run inside a namespace (`apply`, `remove`, sending
//! packets) runs in a copy of this test binary started there, `ip netns exec NS <this binary> --exact
//! netns_child`, which performs the action named in `OUTGATE_RULES_CHILD` (see [`netns_child`]).
//!
//! No daemon decides anything here: what a fail-closed queue without listener does, and what decided
//! flows do, is the kernel's doing alone. Decided flows are made with `conntrack -I` (a conntrack entry
//! with a mark), packets that arrive with outgate's bits set with a mangle rule. (`outgate run` is only
//! started to see its check of the installed ruleset.)

mod common;

use common::netns::{Netns, must};

use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::Duration;

use outgate::Verdict;
use outgate::rules::{
    Backend, Family, Installed, Marks, Mode, RulesConfig, ShapeBackend, ShapeClass, Shaping,
    SourceLimit, apply, ensure_first, installed, nft, remove,
};

const M: Marks = Marks::DEFAULT;

const A4: &str = "10.231.0.1";
const B4: &str = "10.231.0.2";
const A6: &str = "fd00:231::1";
const B6: &str = "fd00:231::2";

fn host(queues: &str, fail_open: bool) -> RulesConfig {
    RulesConfig {
        queues: queues.parse().expect("valid queue range"),
        fail_open,
        ..RulesConfig::default()
    }
}

#[test]
fn apply_is_idempotent_and_remove_restores_the_tables() {
    if !common::root("apply_is_idempotent_and_remove_restores_the_tables") {
        return;
    }
    let ns = Netns::new();
    // Nothing there: remove succeeds and creates nothing.
    ns.child("remove");
    assert_eq!(
        ns.tables(),
        "",
        "remove on an empty namespace created tables"
    );
    // The admin's own rules, which outgate must leave as they are.
    for tool in ["iptables", "ip6tables"] {
        for rule in [
            "-A OUTPUT -p tcp --dport 9 -j DROP",
            "-N ADMIN",
            "-A ADMIN -m comment --comment \"admin chain\" -j RETURN",
            "-A FORWARD -j ADMIN",
            "-t mangle -A OUTPUT -j MARK --set-xmark 0x1/0x1",
        ] {
            ns.ok(tool, &split(rule));
        }
    }
    let before = ns.tables();

    ns.child("apply iptables host 0-3 closed - -");
    let first = ns.tables();
    assert_ne!(first, before);
    for filter in first.split("*filter").skip(1) {
        let output: Vec<_> = filter
            .lines()
            .take_while(|l| *l != "COMMIT")
            .filter(|l| l.starts_with("-A OUTPUT "))
            .collect();
        assert_eq!(
            output,
            [
                "-A OUTPUT ! -o lo -j OUTGATE",
                "-A OUTPUT -p tcp -m tcp --dport 9 -j DROP"
            ],
            "the jump must be first in OUTPUT:\n{first}"
        );
    }
    assert!(
        first.contains("-j NFQUEUE --queue-balance 0:3\n"),
        "{first}"
    );
    assert!(first.contains("icmp6-port-unreachable"), "{first}");

    ns.child("apply iptables host 0-3 closed - -");
    assert_eq!(ns.tables(), first, "a second apply changed the tables");

    // A mode change replaces the hook, and a jump added by hand goes too.
    ns.ok("iptables", &split("-A INPUT -i x -j OUTGATE"));
    ns.child("apply iptables gateway 1 open lan0 wan0");
    let gateway = ns.tables();
    let jumps: Vec<_> = gateway
        .lines()
        .filter(|l| l.ends_with("-j OUTGATE"))
        .collect();
    assert_eq!(
        jumps,
        [
            "-A PREROUTING -i lan0 -j OUTGATE",
            "-A FORWARD -i lan0 -o wan0 -j OUTGATE",
            "-A PREROUTING -i lan0 -j OUTGATE",
            "-A FORWARD -i lan0 -o wan0 -j OUTGATE"
        ],
        "per family, one jump in raw (the FTP helper) and one in filter, nothing else:\n{gateway}"
    );
    assert!(
        gateway.contains("-j NFQUEUE --queue-num 1 --queue-bypass"),
        "{gateway}"
    );

    // remove also takes the nft table (made by hand here: this kernel cannot load outgate's, see below).
    ns.nft_load("table inet outgate {\n\tchain output {\n\t\ttype filter hook output priority filter;\n\t}\n}\n");
    assert!(ns.nft_ruleset().contains("table inet outgate"));
    ns.child("remove");
    assert_eq!(ns.tables(), before, "remove left something behind");
    assert!(!ns.nft_ruleset().contains("table inet outgate"));
    ns.child("remove");
    assert_eq!(ns.tables(), before);
}

/// The text `outgate rules` prints is what iptables-save shows once it is applied, rule for rule, so a
/// reader can compare the two (and the unit tests' expected text is the kernel's).
#[test]
fn generated_rules_are_what_iptables_save_prints() {
    if !common::root("generated_rules_are_what_iptables_save_prints") {
        return;
    }
    let ns = Netns::new();
    for (action, cfg) in [
        ("apply iptables host 0 closed - -", host("0", false)),
        (
            "apply iptables host 0-3 open - eth0 mask=0x7000 limit=120/minute burst=7",
            RulesConfig {
                wan: Some("eth0".into()),
                marks: "0x7000".parse().expect("valid"),
                limit_per_source: Some(
                    SourceLimit::new("120/minute".parse().expect("valid"), Some(7)).expect("valid"),
                ),
                ..host("0-3", true)
            },
        ),
        (
            "apply iptables gateway 2-5 closed br+ wan0 limit=7/minute",
            RulesConfig {
                mode: Mode::Gateway,
                lan: Some("br+".into()),
                wan: Some("wan0".into()),
                limit_per_source: Some(
                    SourceLimit::new("7/minute".parse().expect("valid"), None).expect("valid"),
                ),
                ..host("2-5", false)
            },
        ),
    ] {
        ns.child(action);
        for family in Family::ALL {
            let text = outgate::rules::iptables_restore(&cfg, family).expect("valid config");
            let generated: Vec<String> = text
                .lines()
                .filter_map(|l| {
                    if l.starts_with("-A ") {
                        return Some(l.to_string());
                    }
                    // `-I HOOK 1 ...` is saved as `-A HOOK ...`
                    let (hook, rest) = l.strip_prefix("-I ")?.split_once(" 1 ")?;
                    Some(format!("-A {hook} {rest}"))
                })
                .collect();
            let saved = ns.out(&format!("{}-save", family.iptables()), &[]);
            let saved: Vec<&str> = saved
                .lines()
                .filter(|l| l.starts_with("-A ") && l.contains("OUTGATE"))
                .collect();
            assert_eq!(saved, generated, "{action} {family:?}");
        }
    }
}

/// The iptables ruleset describes itself, and [`installed`] reads it back; a chain without description
/// (an older outgate's), or families that disagree, are errors rather than guesses.
#[test]
fn installed_reads_the_ruleset_back() {
    if !common::root("installed_reads_the_ruleset_back") {
        return;
    }
    let ns = Netns::new();
    assert_eq!(ns.child("installed"), "None");
    ns.child("apply iptables host 0-3 closed - -");
    let expected = Installed {
        backend: Backend::Iptables,
        config: host("0-3", false),
    };
    assert_eq!(ns.child("installed"), format!("{:?}", Some(expected)));
    ns.child("apply iptables gateway 2 open br+ wan0 mask=0x7000 limit=5/second burst=9");
    let expected = Installed {
        backend: Backend::Iptables,
        config: RulesConfig {
            mode: Mode::Gateway,
            lan: Some("br+".into()),
            wan: Some("wan0".into()),
            marks: "0x7000".parse().expect("valid"),
            limit_per_source: Some(
                SourceLimit::new("5/second".parse().expect("valid"), Some(9)).expect("valid"),
            ),
            ..host("2", true)
        },
    };
    assert_eq!(ns.child("installed"), format!("{:?}", Some(expected)));

    let description = "outgate ruleset: mode=gateway queues=3 fail=open mark-mask=0x7000 \
                       class-mask=0x78000 lan=br+ wan=wan0 limit=5/second burst=9";
    ns.ok(
        "ip6tables",
        &[
            "-R",
            "OUTGATE",
            "1",
            "-m",
            "comment",
            "--comment",
            description,
        ],
    );
    let result = ns.child_result("installed");
    assert!(
        result.starts_with("error: the IPv4 and IPv6 rulesets differ (IPv4: "),
        "{result}"
    );
    assert!(result.contains("queues=3"), "{result}");
    ns.ok("ip6tables", &["-D", "OUTGATE", "1"]);
    assert_eq!(
        ns.child_result("installed"),
        "error: IPv6 chain OUTGATE has no description (made by an older outgate?): run `outgate \
         rules --apply` to replace it"
    );
    ns.child("remove");
    assert_eq!(ns.child("installed"), "None");
}

/// `outgate run` reads the installed ruleset before it binds a queue: other queues, another fail mode or
/// other mark bits, and it refuses to start, naming both values and the commands that fix it. No
/// ruleset: it starts, and warns once that nothing will be queued.
#[test]
fn run_refuses_a_ruleset_made_for_other_settings() {
    if !common::root("run_refuses_a_ruleset_made_for_other_settings") {
        return;
    }
    let ns = Netns::new();
    let run = |args: &str| {
        let mut words = vec!["run", "--policy", "/dev/null"];
        words.extend(args.split_whitespace());
        let out = ns
            .exec(common::outgate_bin(), &words)
            .output()
            .expect("run outgate");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    ns.child("apply iptables host 0-3 closed - -");
    let (code, stderr) = run("--queues 0");
    assert_eq!(code, Some(1), "{stderr}");
    for needle in [
        "the installed ruleset (iptables, host mode) does not match this daemon",
        "queues: the ruleset sends to 0-3, this daemon binds 0\n",
        "start the daemon as the ruleset expects: outgate run --queues 0-3 --fail-closed \
         --mark-mask 0xf00 --class-mask 0xf000",
        "or make the ruleset match the daemon: outgate rules --apply --mode host --queues 0 \
         --fail-closed --mark-mask 0xf00 --class-mask 0xf000\n",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in\n{stderr}");
    }
    assert!(!stderr.contains("fail mode:"), "{stderr}");
    let (code, stderr) = run("--queues 0-3 --fail-open --mark-mask 0xf000");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("fail mode: the ruleset is fail-closed, this daemon fail-open"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mark mask: the ruleset uses 0xf00, this daemon 0xf000"),
        "{stderr}"
    );
    assert!(!stderr.contains("queues:"), "{stderr}");
    assert!(
        !Netns::queues_bound(&ns).contains(&0),
        "a refused daemon bound a queue"
    );

    // No ruleset: the daemon starts, and says that nothing comes to it.
    ns.child("remove");
    let log = tempfile::NamedTempFile::new().expect("temp file");
    let daemon = {
        let mut c = ns.exec(
            common::outgate_bin(),
            &["run", "--policy", "/dev/null", "--queues", "7"],
        );
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().expect("temp file"));
        Spawned(c.spawn().expect("start outgate run"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ns.queues_bound().contains(&7) {
        assert!(
            std::time::Instant::now() < deadline,
            "queue 7 was never bound"
        );
        sleep(Duration::from_millis(50));
    }
    drop(daemon);
    let stderr = std::fs::read_to_string(log.path()).expect("read stderr");
    let warning = "outgate: warning: no outgate ruleset is installed: nothing is queued until \
                   `outgate rules --apply`\n";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
}

/// What ufw, firewalld and Docker do on every reload (insert their rules at position 1) is undone by
/// `ensure_first`, which reports each repair once.
#[test]
fn ensure_first_puts_the_jump_back_first() {
    if !common::root("ensure_first_puts_the_jump_back_first") {
        return;
    }
    let ns = Netns::new();
    let established = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT";
    ns.child("apply iptables host 0 closed - -");
    assert_eq!(ns.child("ensure-first host 0 closed - -"), "nothing");
    for tool in ["iptables", "ip6tables"] {
        ns.ok(tool, &split(&format!("-I OUTPUT 1 {established}")));
    }
    ns.ok(
        "iptables",
        &split("-t raw -I OUTPUT 1 -p udp --dport 9 -j ACCEPT"),
    );
    let repairs = ns.child("ensure-first host 0 closed - -");
    assert_eq!(
        repairs.split(" | ").collect::<Vec<_>>(),
        [
            "IPv4 raw OUTPUT: rule 1 was `-A OUTPUT -p udp -m udp --dport 9 -j ACCEPT`, the jump \
             was further down; the jump to OUTGATE is rule 1 again",
            "IPv4 filter OUTPUT: rule 1 was `-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED \
             -j ACCEPT`, the jump was further down; the jump to OUTGATE is rule 1 again",
            "IPv6 filter OUTPUT: rule 1 was `-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED \
             -j ACCEPT`, the jump was further down; the jump to OUTGATE is rule 1 again",
        ]
    );
    let tables = ns.tables();
    for family in tables.split("*filter").skip(1) {
        let output: Vec<_> = family
            .lines()
            .take_while(|l| *l != "COMMIT")
            .filter(|l| l.starts_with("-A OUTPUT "))
            .collect();
        assert_eq!(
            output,
            [
                "-A OUTPUT ! -o lo -j OUTGATE".to_string(),
                format!("-A OUTPUT {established}")
            ],
            "{tables}"
        );
    }
    assert_eq!(ns.child("ensure-first host 0 closed - -"), "nothing");

    // A jump deleted by hand comes back too.
    ns.ok("ip6tables", &split("-D OUTPUT ! -o lo -j OUTGATE"));
    assert_eq!(
        ns.child("ensure-first host 0 closed - -"),
        format!(
            "IPv6 filter OUTPUT: rule 1 was `-A OUTPUT {established}`, the jump was missing; the \
             jump to OUTGATE is rule 1 again"
        )
    );
    assert_eq!(ns.child("ensure-first host 0 closed - -"), "nothing");

    // Gateway mode: FORWARD, and the raw table's PREROUTING.
    ns.child("apply iptables gateway 0 closed lan0 wan0");
    for tool in ["iptables", "ip6tables"] {
        ns.ok(tool, &split(&format!("-I FORWARD 1 {established}")));
    }
    let repairs = ns.child("ensure-first gateway 0 closed lan0 wan0");
    assert_eq!(
        repairs.matches("filter FORWARD: rule 1 was `").count(),
        2,
        "{repairs}"
    );
    assert!(!repairs.contains("raw"), "{repairs}");
    let tables = ns.tables();
    let jumps = tables
        .lines()
        .filter(|l| l.starts_with("-A FORWARD "))
        .collect::<Vec<_>>();
    assert_eq!(
        jumps[0], "-A FORWARD -i lan0 -o wan0 -j OUTGATE",
        "{tables}"
    );
    assert_eq!(
        ns.child("ensure-first gateway 0 closed lan0 wan0"),
        "nothing"
    );

    // No ruleset at all: a reload flushed it, and the jump alone cannot bring it back.
    ns.child("remove");
    let gone = ns.child_result("ensure-first gateway 0 closed lan0 wan0");
    assert!(
        gone.starts_with(
            "error: outgate's ruleset is gone: the IPv4 raw table has no chain OUTGATE"
        ),
        "{gone}"
    );
}

/// Other software's marks in outgate's bits: a packet that arrives with a 1 there reads as a verdict
/// (the filter is bypassed), a conntrack mark written there forges or erases one. `apply` refuses, naming
/// the rule; other bits, or `--force`, and it applies.
#[test]
fn apply_refuses_rules_that_write_into_outgates_mark_bits() {
    if !common::root("apply_refuses_rules_that_write_into_outgates_mark_bits") {
        return;
    }
    let ns = Netns::new();
    // Outgate's own rules (its CONNMARK saves) are no collision: applying again is fine.
    ns.child("apply iptables host 0 closed - -");
    ns.child("apply iptables host 0 closed - -");
    let mwan = "-A OUTPUT -j MARK --set-xmark 0x100/0x3f00";
    let save = "-A PREROUTING -j CONNMARK --save-mark --nfmask 0x3f00 --ctmask 0x3f00";
    let cases = [
        Foreign {
            what: "mwan3-like packet mark",
            add: vec![("iptables", format!("-t mangle {mwan}"))],
            take_away: vec![(
                "iptables",
                format!("-t mangle {}", mwan.replacen("-A", "-D", 1)),
            )],
            words: vec![format!(
                "iptables mangle OUTPUT: `{mwan}` sets packet-mark bits 0x100"
            )],
            free: "0xf000",
            in_0xf000_too: false,
        },
        Foreign {
            what: "wg-quick's fwmark",
            add: vec![("ip", "rule add not fwmark 0xca6c table 51820".into())],
            take_away: vec![("ip", "rule del not fwmark 0xca6c table 51820".into())],
            words: vec![
                "ip rule: `32765: not from all fwmark 0xca6c lookup 51820`".into(),
                "mark bits 0xca00".into(),
            ],
            free: "0xf0000",
            in_0xf000_too: true,
        },
        Foreign {
            what: "an nft table of the admin's",
            add: vec![
                ("nft", "add table inet admin".into()),
                (
                    "nft",
                    "add chain inet admin out { type route hook output priority mangle ; }".into(),
                ),
                (
                    "nft",
                    "add rule inet admin out meta mark set meta mark | 0x200".into(),
                ),
            ],
            take_away: vec![("nft", "delete table inet admin".into())],
            words: vec![
                "nft table inet admin, chain out: `meta mark set meta mark | 0x00000200` sets \
                 packet-mark bits 0x200"
                    .into(),
            ],
            free: "0xf000",
            in_0xf000_too: false,
        },
        Foreign {
            what: "a conntrack mark save",
            add: vec![("ip6tables", format!("-t mangle {save}"))],
            take_away: vec![(
                "ip6tables",
                format!("-t mangle {}", save.replacen("-A", "-D", 1)),
            )],
            words: vec![format!(
                "ip6tables mangle PREROUTING: `{save}` writes conntrack-mark bits 0x3f00"
            )],
            free: "0xf0000",
            in_0xf000_too: true,
        },
    ];
    for Foreign {
        what,
        add,
        take_away,
        words,
        free,
        in_0xf000_too,
    } in &cases
    {
        for (program, args) in add {
            ns.ok(program, &split(args));
        }
        let before = ns.tables();
        let refused = ns.child_result("apply iptables host 0-1 closed - -");
        assert!(
            refused.starts_with("error: refusing to apply"),
            "{what}: {refused}"
        );
        for w in words {
            assert!(
                refused.contains(w.as_str()),
                "{what}: no {w:?} in {refused}"
            );
        }
        assert_eq!(
            ns.tables(),
            before,
            "{what}: a refused apply changed the tables"
        );
        let high = ns.child_result("apply iptables host 0 closed - - mask=0xf000");
        assert_eq!(
            high.starts_with("error: refusing"),
            *in_0xf000_too,
            "{what}: {high}"
        );
        ns.child(&format!("apply iptables host 0 closed - - mask={free}"));
        ns.child("apply iptables host 0 closed - - force");
        let expected = Installed {
            backend: Backend::Iptables,
            config: host("0", false),
        };
        assert_eq!(
            ns.child("installed"),
            format!("{:?}", Some(expected)),
            "{what}"
        );
        for (program, args) in take_away {
            ns.ok(program, &split(args));
        }
        ns.child("apply iptables host 0 closed - -");
    }
}

/// Another program's use of marks, for [`apply_refuses_rules_that_write_into_outgates_mark_bits`].
struct Foreign {
    what: &'static str,
    /// The commands that add it and take it away.
    add: Vec<(&'static str, String)>,
    take_away: Vec<(&'static str, String)>,
    /// What the refusal must say.
    words: Vec<String>,
    /// A mask it leaves free.
    free: &'static str,
    /// Whether it also uses bits of 0xf000.
    in_0xf000_too: bool,
}

/// An `ip6tables-restore` that passes `--test` and fails the commit (the real one from PATH does the
/// test): `apply` must leave IPv4 as it was, with or without an outgate ruleset there before.
#[test]
fn apply_is_all_or_nothing_across_families() {
    if !common::root("apply_is_all_or_nothing_across_families") {
        return;
    }
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("ip6tables-restore"))
        .find(|p| p.is_file())
        .expect("ip6tables-restore in PATH");
    let fake = tempfile::tempdir().expect("temp dir");
    let script = fake.path().join("ip6tables-restore");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --test ] && exec {} \"$@\"; done\n\
             echo 'fake ip6tables-restore: commit refused' >&2\nexit 1\n",
            real.display()
        ),
    )
    .expect("write the fake");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the fake");

    let ns = Netns::new();
    for tool in ["iptables", "ip6tables"] {
        ns.ok(tool, &split("-A OUTPUT -p tcp --dport 9 -j DROP"));
    }
    // Nothing of outgate there: nothing afterwards either.
    let before = ns.tables();
    let result = ns.child_result_in_path("apply iptables host 0 closed - -", Some(fake.path()));
    assert!(result.starts_with("error: ip6tables-restore"), "{result}");
    assert!(result.contains("commit refused"), "{result}");
    assert_eq!(ns.tables(), before, "a failed apply left IPv4 changed");

    // An earlier ruleset, its jump no longer first: exactly that, afterwards.
    ns.child("apply iptables gateway 1 open lan0 wan0");
    for tool in ["iptables", "ip6tables"] {
        ns.ok(tool, &split("-I FORWARD 1 -p tcp --dport 7 -j DROP"));
        ns.ok(
            tool,
            &split("-t raw -I PREROUTING 1 -p tcp --dport 7 -j CT --notrack"),
        );
    }
    let before = ns.tables();
    let result = ns.child_result_in_path("apply iptables host 0-3 closed - -", Some(fake.path()));
    assert!(result.starts_with("error: ip6tables-restore"), "{result}");
    assert_eq!(ns.tables(), before, "a failed apply left IPv4 changed");
    assert!(
        before.contains("-A FORWARD -i lan0 -o wan0 -j OUTGATE"),
        "{before}"
    );
}

/// Fail-open without a daemon passes every undecided packet (`--queue-bypass`), except what is over the
/// per-source limit: of 200 packets sent at once from one address, only the burst gets through.
#[test]
fn limit_per_source_caps_what_goes_to_the_queue() {
    if !common::root("limit_per_source_caps_what_goes_to_the_queue") {
        return;
    }
    let (a, b) = Netns::pair((A4, A6), (B4, B6));
    b.count_udp_in(9010);
    a.child("apply iptables host 0 open - - limit=1/minute burst=10");
    let sent = a.child(&format!("udp-send {B4} 9010 0 200 0"));
    assert!(sent.contains("sent=10 errors=190 "), "{sent}");
    assert_eq!(b.eventually_udp_in(9010, (10, 0)), (10, 0));
    settle();
    assert_eq!(b.udp_in(9010), (10, 0));
    let limit = "-A OUTGATE -m mark --mark 0x0/0xf00 -m hashlimit --hashlimit-above 1/min \
                 --hashlimit-burst 10 --hashlimit-mode srcip --hashlimit-name outgate4 -j DROP";
    assert_eq!(a.counter("iptables", limit), 190);
    // Another family, another bucket.
    b.count_udp_in(9011);
    a.child(&format!("udp-send {B6} 9011 0 20 0"));
    assert_eq!(b.eventually_udp_in(9011, (0, 10)), (0, 10));
}

#[test]
fn without_daemon_fail_closed_drops_and_fail_open_passes() {
    if !common::root("without_daemon_fail_closed_drops_and_fail_open_passes") {
        return;
    }
    let (a, b) = Netns::pair((A4, A6), (B4, B6));
    b.count_udp_in(9000);
    a.child("apply iptables host 0 closed - -");
    for dst in [B4, B6] {
        a.child(&format!("udp-send {dst} 9000 0 5"));
    }
    settle();
    assert_eq!(b.udp_in(9000), (0, 0), "fail-closed let packets through");
    let queued = "-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-num 0";
    assert_eq!(a.counter("iptables", queued), 5);
    assert_eq!(a.counter("ip6tables", queued), 5);

    a.child("apply iptables host 0 open - -");
    for dst in [B4, B6] {
        let sent = a.child(&format!("udp-send {dst} 9000 0 5"));
        assert!(sent.contains("sent=5 "), "{dst}: {sent}");
    }
    assert_eq!(
        b.eventually_udp_in(9000, (5, 5)),
        (5, 5),
        "fail-open (--queue-bypass) did not pass"
    );
}

#[test]
fn decided_flows_are_answered_in_the_kernel() {
    if !common::root("decided_flows_are_answered_in_the_kernel") {
        return;
    }
    let (a, b) = Netns::pair((A4, A6), (B4, B6));
    // Fail-closed with no daemon: anything that reached the queue would be dropped and counted there.
    a.child("apply iptables host 0 closed - -");
    // (destination port, conntrack mark): outgate's bits decide, the other bits are left alone.
    let cases = [
        (9001, M.verdict(Verdict::Accept) | 0x1_0000),
        (9002, M.verdict(Verdict::Drop)),
        (9003, M.verdict(Verdict::Reject)),
        (9004, 0x500), // not a verdict
        (9008, M.pending()),
    ];
    for (port, mark) in cases {
        b.count_udp_in(port);
        a.conntrack_udp(port + 30000, port, mark);
    }
    let mut sent = Vec::new();
    for (port, _) in cases {
        for dst in [B4, B6] {
            sent.push(a.child(&format!("udp-send {dst} {port} {} 3", port + 30000)));
        }
    }
    assert_eq!(
        b.eventually_udp_in(9001, (3, 3)),
        (3, 3),
        "accepted flow: {sent:?}"
    );
    settle();
    for port in [9002, 9003, 9004, 9008] {
        assert_eq!(b.udp_in(port), (0, 0), "port {port}: {sent:?}");
    }
    for tool in ["iptables", "ip6tables"] {
        let at = |rule: &str| a.counter(tool, rule);
        assert_eq!(
            at("-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-num 0"),
            0
        );
        assert_eq!(at("-A OUTGATE -m mark --mark 0x100/0xf00 -j RETURN"), 3);
        assert_eq!(at("-A OUTGATE -m mark --mark 0x200/0xf00 -j DROP"), 3);
        assert_eq!(
            at("-A OUTGATE -j DROP"),
            6,
            "{tool}: 0x500 and a pending value in conntrack must hit the catch-all"
        );
    }
    let reject = "-A OUTGATE -m mark --mark 0x300/0xf00 -j REJECT --reject-with";
    assert_eq!(
        a.counter("iptables", &format!("{reject} icmp-port-unreachable")),
        3
    );
    assert_eq!(
        a.counter("ip6tables", &format!("{reject} icmp6-port-unreachable")),
        3
    );
    // The conntrack marks' other bits survived the save.
    let entries = a.out("conntrack", &["-L", "-p", "udp", "--dport", "9001"]);
    assert_eq!(
        entries
            .matches(&format!("mark={}", M.verdict(Verdict::Accept) | 0x1_0000))
            .count(),
        2,
        "{entries}"
    );
    // What is not a verdict stays as it was: dropped, never overwritten.
    a.assert_conntrack_marks(9004, 0x500);
    a.assert_conntrack_marks(9008, M.pending());
}

/// Packets that reach outgate's chain with its bits already set (here by a mangle rule; in life by other
/// software, or by the daemon's REPEAT): the pending value goes on to the admin's later rules, any value
/// that is no verdict is dropped, and neither is saved into the conntrack mark.
#[test]
fn packet_marks_that_are_no_verdict_are_never_saved() {
    if !common::root("packet_marks_that_are_no_verdict_are_never_saved") {
        return;
    }
    let (a, b) = Netns::pair((A4, A6), (B4, B6));
    a.child("apply iptables host 0 closed - -");
    forced_packet_marks(
        &a,
        &b,
        "-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-num 0",
    );
}

/// [`packet_marks_that_are_no_verdict_are_never_saved`] for the nft ruleset, its queue statement
/// replaced by a counted drop (see [`nft_decided_flows_are_answered_in_the_kernel`]).
#[test]
fn nft_packet_marks_that_are_no_verdict_are_never_saved() {
    if !common::root("nft_packet_marks_that_are_no_verdict_are_never_saved") {
        return;
    }
    let (a, b) = Netns::pair((A4, A6), (B4, B6));
    let text = nft(&host("0", false)).expect("valid config");
    let queue = "queue num 0\n";
    assert!(text.contains(queue), "{text}");
    a.nft_load(&text.replace(queue, "counter drop\n"));
    forced_packet_marks(&a, &b, "");
    let table = a.out("nft", &["list", "table", "inet", "outgate"]);
    assert!(
        table.contains("counter packets 0 bytes 0 drop"),
        "a marked packet reached the queue's place:\n{table}"
    );
}

/// The nft backend's FTP helper, loaded alone (the rest of the nft ruleset has a `queue` statement this
/// kernel cannot load): a passive download, PASV over IPv4 and EPSV over IPv6, must give the control
/// connection the `ftp` helper and make the data connection an expected one. A helper assigned before
/// the conntrack lookup (priority raw) finds no connection and does nothing.
#[test]
fn nft_ftp_helper_is_assigned_after_conntrack() {
    if !common::root("nft_ftp_helper_is_assigned_after_conntrack") {
        return;
    }
    let (a, b) = Netns::pair((A4, A6), (B4, B6));
    let text = nft(&host("0", false)).expect("valid config");
    let start = text
        .find("\tct helper ftp-standard {")
        .expect("the helper object");
    let chain = text.find("\tchain helpers {").expect("the helpers chain");
    let end = chain + text[chain..].find("\n\t}\n").expect("the chain's end") + 4;
    let helper_only = format!("table inet outgate {{\n{}}}\n", &text[start..end]);
    assert!(!helper_only.contains("queue"), "{helper_only}");
    a.nft_load(&helper_only);

    let root = tempfile::tempdir().expect("temp dir");
    std::fs::write(root.path().join("file.txt"), "outgate ftp test\n").expect("write");
    let root_dir = root.path().to_str().expect("UTF-8 path");
    // Debian's python3 carries pyftpdlib (python3-pyftpdlib); anonymous, read-only.
    let _server = b.spawn(
        "/usr/bin/python3",
        &[
            "-m",
            "pyftpdlib",
            "-i",
            "::",
            "-p",
            "21",
            "-d",
            root_dir,
            "-r",
            "50000-50020",
        ],
    );
    b.wait_tcp_listening(21);
    for server in [B4, B6] {
        // ftplib uses PASV over IPv4 and EPSV over IPv6.
        let script = format!(
            "import ftplib\nf = ftplib.FTP()\nf.connect('{server}', 21, timeout=5)\nf.login()\n\
             got = []\nf.retrbinary('RETR file.txt', got.append)\nf.quit()\nprint(b''.join(got).decode())"
        );
        let got = a.out("/usr/bin/python3", &["-c", &script]);
        assert_eq!(got, "outgate ftp test\n\n", "{server}");
    }
    let control = a.out("conntrack", &["-L", "-p", "tcp", "--dport", "21"]);
    assert_eq!(control.lines().count(), 2, "{control}");
    for line in control.lines() {
        assert!(
            line.contains(" helper=ftp "),
            "no helper on the control connection: {line}"
        );
    }
    let expected = a.out("conntrack", &["-L", "-p", "tcp", "--status", "EXPECTED"]);
    for server in [B4, B6] {
        let data = expected
            .lines()
            .filter(|l| l.contains(&format!(" dst={server} ")) && l.contains(" dport=500"))
            .count();
        assert_eq!(
            data,
            1,
            "{server}: the data connection is not an expected one:\n{expected}\nall:\n{}",
            a.out("conntrack", &["-L", "-p", "tcp"])
        );
    }
}

/// 9005: a packet mark that is no verdict; 9006 and 9007: the pending value, and the admin drops
/// 9006 in a rule after outgate's. Every flow has a conntrack entry whose other bits are set.
/// `queue_rule`: the iptables queue rule, which no packet may reach (empty for nft).
fn forced_packet_marks(a: &Netns, b: &Netns, queue_rule: &str) {
    for (port, mark) in [(9005, 0x500), (9006, M.pending()), (9007, M.pending())] {
        b.count_udp_in(port);
        a.conntrack_udp(port + 30000, port, 0x1_0000);
        for tool in ["iptables", "ip6tables"] {
            let (port, mark) = (port.to_string(), format!("{mark:#x}/0xf00"));
            a.ok(
                tool,
                &split(&format!(
                    "-t mangle -A OUTPUT -p udp --dport {port} -j MARK --set-xmark {mark}"
                )),
            );
        }
    }
    for tool in ["iptables", "ip6tables"] {
        a.ok(tool, &split("-A OUTPUT -p udp --dport 9006 -j DROP"));
    }
    for port in [9005, 9006, 9007] {
        for dst in [B4, B6] {
            a.child(&format!("udp-send {dst} {port} {} 3", port + 30000));
        }
    }
    assert_eq!(
        b.eventually_udp_in(9007, (3, 3)),
        (3, 3),
        "a pending packet goes on to the admin's rules, which accept it"
    );
    settle();
    assert_eq!(b.udp_in(9005), (0, 0), "not a verdict: dropped");
    assert_eq!(b.udp_in(9006), (0, 0), "the admin's rule drops it");
    for tool in ["iptables", "ip6tables"] {
        assert_eq!(
            a.counter(tool, "-A OUTPUT -p udp -m udp --dport 9006 -j DROP"),
            3,
            "{tool}: the pending packets must reach the admin's rule"
        );
        if !queue_rule.is_empty() {
            assert_eq!(a.counter(tool, queue_rule), 0, "{tool}");
        }
    }
    for port in [9005, 9006, 9007] {
        a.assert_conntrack_marks(port, 0x1_0000);
    }
}

#[test]
fn inbound_connections_and_neighbour_discovery_are_not_queued() {
    if !common::root("inbound_connections_and_neighbour_discovery_are_not_queued") {
        return;
    }
    let (a, b) = Netns::pair((A4, A6), (B4, B6));
    a.child("apply iptables host 0 closed - -");
    // b connects to a closed port on a: a's RST is in the REPLY direction and must pass. Over IPv6
    // a must also answer b's neighbour solicitation. Without the exemptions: a timeout.
    for dst in [A4, A6] {
        let result = b.child(&format!("tcp-connect {dst} 22"));
        assert_eq!(result, "refused", "{dst}");
    }
    let queued = "-A OUTGATE -m mark --mark 0x0/0xf00 -j NFQUEUE --queue-num 0";
    assert_eq!(a.counter("iptables", queued), 0);
    assert_eq!(a.counter("ip6tables", queued), 0);
    assert!(
        a.counter(
            "iptables",
            "-A OUTGATE -m conntrack --ctdir REPLY -j RETURN"
        ) >= 1
    );
}

/// `nft -c` is the check. Where the kernel lacks `CONFIG_NFT_QUEUE` it fails on the `queue` statement,
/// so the check accepts exactly that failure: every error is the kernel's ENOENT and points at a
/// `queue` keyword. Syntax and type errors are found by nft itself before the kernel is asked, and the
/// kernel reports every failing rule of the batch, so the rest was accepted. A second check replaces the
/// `queue` statement with `accept` and must pass completely.
#[test]
fn nft_rulesets_pass_nft_check() {
    if !common::root("nft_rulesets_pass_nft_check") {
        return;
    }
    let ns = Netns::new();
    let ruleset = ns.nft_ruleset();
    let configs = [
        host("0", false),
        host("0-3", true),
        RulesConfig {
            wan: Some("eth0".into()),
            ..host("5", false)
        },
        RulesConfig {
            limit_per_source: Some(
                SourceLimit::new("200/second".parse().expect("valid"), Some(20)).expect("valid"),
            ),
            marks: "0x7000".parse().expect("valid"),
            ..host("0-1", false)
        },
        RulesConfig {
            queues: "2-5".parse().expect("valid"),
            mode: Mode::Gateway,
            lan: Some("br+".into()),
            wan: Some("wan0".into()),
            fail_open: true,
            ..RulesConfig::default()
        },
    ];
    // Shaping: the class saved with the accept, and each backend's shape chain.
    let shaped = |backend: ShapeBackend| RulesConfig {
        mode: Mode::Gateway,
        lan: Some("lan0".into()),
        wan: Some("wan0".into()),
        marks: "0x7000".parse().expect("valid"),
        shaping: Some(Shaping {
            classes: vec![
                ShapeClass {
                    name: "slow".into(),
                    rate: outgate::policy::Rate(2_000_000),
                },
                ShapeClass {
                    name: "bulk".into(),
                    rate: outgate::policy::Rate(500_000),
                },
            ],
            link_rate: outgate::policy::Rate(100_000_000),
            backend,
        }),
        ..host("0", false)
    };
    let configs: Vec<RulesConfig> = configs
        .into_iter()
        .chain(ShapeBackend::ALL.map(shaped))
        .collect();
    for cfg in &configs {
        let text = nft(cfg).expect("valid config");
        if let Err(e) = nft_check(&ns, &text) {
            panic!("{cfg:?}:\n{text}\n{e}");
        }
    }
    // The check can fail: broken text is caught, also on the queue line itself.
    let good = nft(&configs[1]).expect("valid config");
    for (from, to) in [
        ("ct direction reply", "ct direction replyy"),
        ("queue num 0-3 bypass", "queue num 0-3 bypasss"),
        ("queue num 0-3", "queue num 3-0"),
        ("reject with tcp reset", "reject with tcp-reset"),
        ("\t}\n}\n", "\t}\n"),
        ("0xfffff0ff", "0xfffff0ffff"),
    ] {
        assert!(good.contains(from), "{from:?} not in the text");
        let bad = good.replacen(from, to, 1);
        assert!(nft_check(&ns, &bad).is_err(), "not caught: {to:?}");
    }
    let shaped = nft(&configs[configs.len() - ShapeBackend::ALL.len()]).expect("valid config");
    for (from, to) in [
        ("meta priority set 1:11", "meta priority set 1:1x"),
        ("jump classes", "jump classez"),
        ("priority mangle;", "priority mangled;"),
    ] {
        assert!(shaped.contains(from), "{from:?} not in the text");
        let bad = shaped.replacen(from, to, 1);
        assert!(nft_check(&ns, &bad).is_err(), "not caught: {to:?}");
    }
    assert_eq!(ns.nft_ruleset(), ruleset, "nft -c changed the ruleset");
}

#[test]
fn nft_apply_is_atomic() {
    if !common::root("nft_apply_is_atomic") {
        return;
    }
    let ns = Netns::new();
    ns.child("apply iptables host 0 closed - -");
    let iptables = ns.tables();
    let result = ns.child_result("apply nft host 0 closed - -");
    if ns.nft_ruleset().contains("table inet outgate") {
        // A kernel with nft queue: the table replaced the iptables rules; again gives the same.
        assert_eq!(result, "ok");
        let first = ns.nft_ruleset();
        ns.child("apply nft host 0 closed - -");
        assert_eq!(ns.nft_ruleset(), first);
        assert!(!ns.tables().contains("OUTGATE"));
    } else {
        // This kernel: the load fails as a whole, with nft's message, and the iptables rules stay.
        assert!(result.starts_with("error: nft -f -: "), "{result}");
        assert!(result.contains("No such file or directory"), "{result}");
        assert!(!result.contains('\n'));
        assert_eq!(ns.tables(), iptables, "a failed nft apply touched iptables");
    }
    ns.child("remove");
    assert!(!ns.nft_ruleset().contains("table inet outgate"));
    assert!(!ns.tables().contains("OUTGATE"));
}

/// The nft ruleset's mark logic, run by the kernel: the `queue` statement (which this kernel cannot
/// load) becomes `counter drop`, i.e. fail-closed without a daemon, and must count no decided packet.
#[test]
fn nft_decided_flows_are_answered_in_the_kernel() {
    if !common::root("nft_decided_flows_are_answered_in_the_kernel") {
        return;
    }
    let (a, b) = Netns::pair((A4, A6), (B4, B6));
    let text = nft(&host("0", false)).expect("valid config");
    let queue = "queue num 0\n";
    assert!(text.contains(queue), "{text}");
    a.nft_load(&text.replace(queue, "counter drop\n"));
    let cases = [
        (9001, M.verdict(Verdict::Accept) | 0x1_0000),
        (9002, M.verdict(Verdict::Drop)),
        (9003, M.verdict(Verdict::Reject)),
        (9004, 0x500), // not a verdict
    ];
    for (port, mark) in cases {
        b.count_udp_in(port);
        a.conntrack_udp(port + 30000, port, mark);
    }
    for (port, _) in cases {
        for dst in [B4, B6] {
            a.child(&format!("udp-send {dst} {port} {} 3", port + 30000));
        }
    }
    assert_eq!(b.eventually_udp_in(9001, (3, 3)), (3, 3));
    settle();
    for port in [9002, 9003, 9004] {
        assert_eq!(b.udp_in(port), (0, 0), "port {port}");
    }
    let table = a.out("nft", &["list", "table", "inet", "outgate"]);
    assert!(
        table.contains("counter packets 0 bytes 0 drop"),
        "a decided packet reached the queue's place:\n{table}"
    );
    // An undecided flow does reach it.
    a.child(&format!("udp-send {B4} 9001 0 2"));
    let table = a.out("nft", &["list", "table", "inet", "outgate"]);
    assert!(table.contains("counter packets 2 "), "{table}");
}

/// The values the tests here write by hand (conntrack marks) are the ones the daemon writes.
#[test]
fn marks_are_the_daemon_contract() {
    assert_eq!(M.mask(), 0xf00);
    assert_eq!(
        Verdict::KERNEL.map(|v| M.verdict(v)),
        [0x100, 0x200, 0x300],
        "accept, drop, reject"
    );
    assert_eq!(M.pending(), 0x400);
    assert_eq!(M.decode(0x500), None, "the tests' 'not a verdict' value");
}

/// Runs in a copy of this binary inside a namespace when `OUTGATE_RULES_CHILD` is set; otherwise it
/// has nothing to do. Prints one result line (newlines become ` | `), prefixed with [`RESULT`]:
/// - `apply BACKEND MODE QUEUES open|closed LAN|- WAN|- [mask=MASK] [limit=RATE] [burst=N] [force]` and
///   `remove`: `ok` or `error: MESSAGE`
/// - `ensure-first MODE QUEUES open|closed LAN|- WAN|-`: [`ensure_first`]'s repairs joined by ` | `,
///   `nothing`, or `error: MESSAGE`
/// - `installed`: [`installed`]'s answer, `{:?}`, or `error: MESSAGE`
/// - `udp-send ADDR PORT SPORT COUNT [GAP_MS]`: `ADDR PORT sent=N errors=M last=ERROR`, a packet every
///   GAP_MS (default 20) milliseconds
/// - `tcp-connect ADDR PORT`: `refused`, `timeout`, `connected` or `error: MESSAGE`
#[test]
fn netns_child() {
    let Ok(action) = std::env::var(CHILD_ENV) else {
        return;
    };
    // One line: a message of several lines (the list of colliding rules) has them joined by " | ".
    println!("{RESULT}{}", child_action(&action).replace('\n', " | "));
}

const CHILD_ENV: &str = "OUTGATE_RULES_CHILD";
const RESULT: &str = "outgate-child-result: ";

fn child_action(action: &str) -> String {
    let words: Vec<&str> = action.split(' ').collect();
    let outcome = |r: Result<(), outgate::rules::RulesError>| match r {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    match words.as_slice() {
        ["apply", backend, mode, queues, fail, lan, wan, options @ ..] => {
            let name = |w: &str| (w != "-").then(|| w.to_string());
            let mut cfg = RulesConfig {
                queues: queues.parse().expect("queue range"),
                mode: mode.parse().expect("mode"),
                lan: name(lan),
                wan: name(wan),
                fail_open: *fail == "open",
                ..RulesConfig::default()
            };
            let (mut rate, mut burst, mut force) = (None, None, false);
            for option in options {
                if *option == "force" {
                    force = true;
                    continue;
                }
                match option.split_once('=') {
                    Some(("mask", mask)) => cfg.marks = mask.parse().expect("mark mask"),
                    Some(("limit", limit)) => rate = Some(limit.parse().expect("rate")),
                    Some(("burst", n)) => burst = Some(n.parse().expect("burst")),
                    _ => panic!("unknown apply option {option:?}"),
                }
            }
            cfg.limit_per_source =
                rate.map(|rate| SourceLimit::new(rate, burst).expect("valid limit"));
            outcome(apply(
                &cfg,
                backend.parse::<Backend>().expect("backend"),
                force,
            ))
        }
        ["remove"] => match remove() {
            Ok(notes) if notes.is_empty() => "ok".to_string(),
            Ok(notes) => format!("ok, {}", notes.join(" | ")),
            Err(e) => format!("error: {e}"),
        },
        ["ensure-first", mode, queues, fail, lan, wan] => {
            let name = |w: &str| (w != "-").then(|| w.to_string());
            let cfg = RulesConfig {
                queues: queues.parse().expect("queue range"),
                mode: mode.parse().expect("mode"),
                lan: name(lan),
                wan: name(wan),
                fail_open: *fail == "open",
                ..RulesConfig::default()
            };
            match ensure_first(&cfg) {
                Ok(repairs) if repairs.is_empty() => "nothing".into(),
                Ok(repairs) => repairs.join(" | "),
                Err(e) => format!("error: {e}"),
            }
        }
        ["installed"] => match installed() {
            Ok(found) => format!("{found:?}"),
            Err(e) => format!("error: {e}"),
        },
        ["udp-send", addr, port, sport, count] => udp_send(addr, port, sport, count, 20),
        ["udp-send", addr, port, sport, count, gap] => {
            udp_send(addr, port, sport, count, gap.parse().expect("gap"))
        }
        ["tcp-connect", addr, port] => tcp_connect(addr, port),
        _ => panic!("unknown child action {action:?}"),
    }
}

fn socket_addr(addr: &str, port: &str) -> std::net::SocketAddr {
    let ip: std::net::IpAddr = addr.parse().expect("address");
    (ip, port.parse::<u16>().expect("port")).into()
}

fn udp_send(addr: &str, port: &str, sport: &str, count: &str, gap_ms: u64) -> String {
    let to = socket_addr(addr, port);
    let any = if to.is_ipv4() { "0.0.0.0" } else { "::" };
    let socket = std::net::UdpSocket::bind(socket_addr(any, sport)).expect("bind");
    // Not connected: ICMP errors from the receiver (no one listens there) must not fail later sends.
    let (mut sent, mut errors, mut last) = (0, 0, String::from("-"));
    for _ in 0..count.parse::<u32>().expect("count") {
        match socket.send_to(b"outgate live test", to) {
            Ok(_) => sent += 1,
            Err(e) => {
                errors += 1;
                last = format!("{:?}", e.kind());
            }
        }
        sleep(Duration::from_millis(gap_ms));
    }
    format!("{addr} {port} sent={sent} errors={errors} last={last}")
}

fn tcp_connect(addr: &str, port: &str) -> String {
    match std::net::TcpStream::connect_timeout(&socket_addr(addr, port), Duration::from_secs(3)) {
        Ok(_) => "connected".into(),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "refused".into(),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => "timeout".into(),
        Err(e) => format!("error: {e}"),
    }
}

/// See [`nft_rulesets_pass_nft_check`]. `Err` holds nft's output.
fn nft_check(ns: &Netns, text: &str) -> Result<(), String> {
    let full = ns.nft_c(text);
    if !full.status.success() {
        let stderr = String::from_utf8_lossy(&full.stderr).into_owned();
        let errors: Vec<&str> = stderr.lines().filter(|l| l.contains(": Error: ")).collect();
        let only_queue = !errors.is_empty()
            && errors.iter().all(|e| {
                e.contains("No such file or directory") && points_at_queue(text, e).unwrap_or(false)
            });
        if !only_queue {
            return Err(format!("nft -c failed:\n{stderr}"));
        }
    }
    let substituted: String = text
        .lines()
        .map(|l| match l.find("queue num ") {
            Some(at) => format!("{}accept\n", &l[..at]),
            None => format!("{l}\n"),
        })
        .collect();
    let check = ns.nft_c(&substituted);
    if !check.status.success() {
        return Err(format!(
            "nft -c failed with the queue statement replaced by accept:\n{}",
            String::from_utf8_lossy(&check.stderr)
        ));
    }
    Ok(())
}

/// Does `FILE:LINE:FIRST-LAST: Error: ...` point at the keyword `queue` of `text`?
fn points_at_queue(text: &str, error: &str) -> Option<bool> {
    let mut at = error.split(": Error: ").next()?.rsplit(':');
    let (columns, line) = (at.next()?, at.next()?);
    let (first, last) = columns.split_once('-')?;
    let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
    let source = text
        .lines()
        .nth(line.parse::<usize>().ok()?.checked_sub(1)?)?;
    Some(source.get(first.checked_sub(1)?..last)? == "queue")
}

fn split(rule: &str) -> Vec<&str> {
    // Quoted words stay whole (the comment in the admin's rule).
    let mut words = Vec::new();
    for (i, part) in rule.split('"').enumerate() {
        if i % 2 == 1 {
            words.push(part);
        } else {
            words.extend(part.split_whitespace());
        }
    }
    words
}

fn settle() {
    sleep(Duration::from_millis(200));
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// What only these tests do in a namespace.
impl Netns {
    /// Runs a [`netns_child`] action in this namespace; its result line.
    fn child_result(&self, action: &str) -> String {
        self.child_result_in_path(action, None)
    }

    /// [`Netns::child_result`] with `first` put first in the child's PATH (to replace a command).
    fn child_result_in_path(&self, action: &str, first: Option<&std::path::Path>) -> String {
        let exe = std::env::current_exe().expect("test binary path");
        let exe = exe.to_str().expect("UTF-8 path");
        let mut c = self.exec(
            exe,
            &["--exact", "netns_child", "--nocapture", "--test-threads=1"],
        );
        if let Some(first) = first {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let dirs = std::iter::once(first.to_path_buf()).chain(std::env::split_paths(&path));
            c.env("PATH", std::env::join_paths(dirs).expect("PATH"));
        }
        let out = must(c.env(CHILD_ENV, action), action);
        out.lines()
            .find_map(|l| Some(l.split_once(RESULT)?.1)) // after the harness's "test netns_child ... "
            .unwrap_or_else(|| panic!("{action}: no result in\n{out}"))
            .to_string()
    }

    /// Runs a [`netns_child`] action that must succeed (`apply`, `remove`) or report (the others).
    fn child(&self, action: &str) -> String {
        let result = self.child_result(action);
        assert!(!result.starts_with("error:"), "{action}: {result}");
        result
    }

    /// A conntrack entry with `mark` for UDP from a to b, both families: a flow decided before its
    /// first packet, as if the daemon had answered it.
    fn conntrack_udp(&self, sport: u16, dport: u16, mark: u32) {
        let (sport, dport, mark) = (sport.to_string(), dport.to_string(), format!("{mark:#x}"));
        for (src, dst) in [(A4, B4), (A6, B6)] {
            self.ok(
                "conntrack",
                &[
                    "-I",
                    "-p",
                    "udp",
                    "-s",
                    src,
                    "-d",
                    dst,
                    "--sport",
                    &sport,
                    "--dport",
                    &dport,
                    "--timeout",
                    "60",
                    "--mark",
                    &mark,
                ],
            );
        }
    }

    /// The NFQUEUE numbers bound in this namespace.
    fn queues_bound(&self) -> Vec<u16> {
        self.out("cat", &["/proc/net/netfilter/nfnetlink_queue"])
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// Starts `program` in this namespace, in the background.
    fn spawn(&self, program: &str, args: &[&str]) -> Spawned {
        let child = self
            .exec(program, args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: cannot start: {e}"));
        Spawned(child)
    }

    /// Waits up to 10 s until something listens on TCP `port`.
    fn wait_tcp_listening(&self, port: u16) {
        let filter = format!("sport = :{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.out("ss", &["-H", "-tln", &filter]).trim().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "nothing listens on TCP {port} in {}",
                self.name
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// Both families' conntrack entries to UDP `dport` (made by [`Netns::conntrack_udp`]) have `mark`.
    fn assert_conntrack_marks(&self, dport: u16, mark: u32) {
        let entries = self.out(
            "conntrack",
            &["-L", "-p", "udp", "--dport", &dport.to_string()],
        );
        let marks: Vec<&str> = entries
            .split_whitespace()
            .filter(|w| w.starts_with("mark="))
            .collect();
        let expected = format!("mark={mark}");
        assert_eq!(
            marks,
            [expected.as_str(); 2],
            "port {dport}: the conntrack marks changed:\n{entries}"
        );
    }

    /// iptables-save and ip6tables-save, all tables, without comments and counters. A table with no
    /// rules and every chain accepting is left out: it filters nothing, and the tools make one on first
    /// use (iptables-nft when rules are added, legacy iptables even when listing).
    fn tables(&self) -> String {
        let mut all = String::new();
        for save in ["iptables-save", "ip6tables-save"] {
            let mut table = String::new();
            let mut filters = false;
            for line in self.out(save, &[]).lines() {
                if line.starts_with('#') {
                    continue;
                }
                let line = match line.find(" [") {
                    Some(at) if line.starts_with(':') => &line[..at],
                    _ => line,
                };
                table.push_str(line);
                table.push('\n');
                let neutral = line.starts_with('*')
                    || line == "COMMIT"
                    || (line.starts_with(':') && line.ends_with(" ACCEPT"));
                filters |= !neutral;
                if line == "COMMIT" {
                    if filters {
                        all.push_str(&table);
                    }
                    table.clear();
                    filters = false;
                }
            }
        }
        all
    }

    /// The packet counter of a filter rule given as `iptables -S` prints it.
    fn counter(&self, tool: &str, rule: &str) -> u64 {
        let saved = self.out(&format!("{tool}-save"), &["-c", "-t", "filter"]);
        saved
            .lines()
            .find_map(|l| {
                let (counts, rest) = l.strip_prefix('[')?.split_once("] ")?;
                (rest == rule).then(|| counts.split(':').next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no rule {rule:?} in\n{saved}"))
    }

    fn count_udp_in(&self, port: u16) {
        for tool in ["iptables", "ip6tables"] {
            self.ok(
                tool,
                &["-A", "INPUT", "-p", "udp", "--dport", &port.to_string()],
            );
        }
    }

    /// Packets counted by [`Netns::count_udp_in`]: (IPv4, IPv6).
    fn udp_in(&self, port: u16) -> (u64, u64) {
        let rule = format!("-A INPUT -p udp -m udp --dport {port}");
        (
            self.counter("iptables", &rule),
            self.counter("ip6tables", &rule),
        )
    }

    /// [`Netns::udp_in`] once it is `expected`, or after 5 s. On a new veth the first IPv6 neighbour
    /// resolution can take a second or more; the packets wait for it.
    fn eventually_udp_in(&self, port: u16, expected: (u64, u64)) -> (u64, u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.udp_in(port);
            if got == expected || std::time::Instant::now() > deadline {
                return got;
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn nft_ruleset(&self) -> String {
        self.out("nft", &["list", "ruleset"])
    }

    fn nft_load(&self, text: &str) {
        let out = self.nft_file(&["-f"], text);
        assert!(
            out.status.success(),
            "nft -f: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `nft -c -f` on `text`.
    fn nft_c(&self, text: &str) -> Output {
        self.nft_file(&["-c", "-f"], text)
    }

    /// nft with `text` in a file (its errors then name lines and columns), the file removed after.
    fn nft_file(&self, args: &[&str], text: &str) -> Output {
        let path = self.temp_file(text);
        let mut args = args.to_vec();
        args.push(&path);
        let out = self.exec("nft", &args).output();
        let _ = std::fs::remove_file(&path);
        out.expect("run nft")
    }

    fn temp_file(&self, text: &str) -> String {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("{}-{n}.nft", self.name));
        std::fs::write(&path, text).expect("write temp file");
        path.to_str().expect("UTF-8 temp dir").to_string()
    }
}

/// A process started in a namespace, killed when dropped.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
