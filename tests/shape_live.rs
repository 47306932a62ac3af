//! SHAPE in the kernel, live, without a daemon: `outgate rules --apply --policy FILE` in network
//! namespaces, real transfers measured through it.
//!
//! A flow is made "decided by the daemon" with a test-only mangle rule that writes what the daemon's
//! verdict leaves in the conntrack mark (ACCEPT in the verdict bits, the class value in the class bits)
//! on the flow's first packet, before outgate's chain sees it; the rule is added after `--apply`, whose
//! collision check would rightly refuse it. Then curl downloads (GET) and uploads (PUT) through the
//! filter, and its speed and tc's byte counters are compared with the class's rate.
//!
//! Root only: without root each test says it was skipped (in CI it fails).

mod common;

use common::shape::*;
use common::{Lab, Setup, gateway_mode, host_mode, outgate_bin, serial};
use outgate::rules::{Marks, RulesConfig, ShapeBackend, ShapeClass, Shaping};

/// `option shape-rate` makes class `slow` (index 0, class value 1, tc class 1:11); `bulk` is index 1.
const POLICY: &str = "\
option shape-rate 2mbit
class bulk 500kbit
policy loc net ACCEPT
";

/// The ports' conntrack marks: ACCEPT with class `slow`, with class `bulk`, and with no class.
fn port_marks() -> [(u16, u32); 3] {
    let m = Marks::DEFAULT;
    let accept = m.verdict(outgate::Verdict::Accept);
    [
        (SLOW_PORT, accept | m.class_value(0)),
        (BULK_PORT, accept | m.class_value(1)),
        (ACCEPT_PORT, accept),
    ]
}

/// The test-only rule: a new flow to each port gets its conntrack mark, in `table`'s `chain` (mangle
/// PREROUTING on a gateway, OUTPUT on a host), both families.
fn mark_flows(lab: &Lab, ns: &str, chain: &str, action: &str) {
    for tool in ["iptables", "ip6tables"] {
        for (port, mark) in port_marks() {
            lab.sh(
                ns,
                &format!(
                    "{tool} -t mangle {action} {chain} -p tcp --dport {port} -m conntrack --ctstate NEW \
                     -j CONNMARK --set-xmark {mark:#x}/0xff00"
                ),
            );
        }
    }
}

fn rules(s: &Setup, extra: &str, options: &str) -> std::process::Output {
    s.lab.try_sh(
        &s.filter,
        &format!(
            "{} rules --mode {} {extra} {options}",
            outgate_bin(),
            s.mode
        ),
    )
}

fn ok(o: std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Gateway mode: a download leaves by --lan and an upload by --wan, each shaped there to its class's
/// rate; an accepted flow without class, and the same transfers, run at full speed. IPv4 and IPv6.
/// `--remove` leaves no qdisc, class, chain or rule behind.
#[test]
fn gateway_shapes_downloads_on_the_lan_side_and_uploads_on_the_wan_side() {
    if !common::root("gateway_shapes_downloads_on_the_lan_side_and_uploads_on_the_wan_side") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let (lan, wan) = devices(&s);
    let lan = lan.expect("gateway mode has --lan");
    let dir = files(&s.lab);
    serve(&mut s, &dir);
    let policy = s.lab.write("policy.rules", POLICY);
    let before = traces(&s.lab, &s.filter);
    let extra = s.extra.clone();
    ok(rules(
        &s,
        &extra,
        &format!("--policy {} --link-rate 1gbit --apply", policy.display()),
    ));
    let applied = traces(&s.lab, &s.filter);
    for needle in [
        &format!("qdisc htb 1: dev {lan} root"),
        &format!("qdisc htb 1: dev {wan} root"),
        "class htb 1:11 parent 1:1 leaf 11: prio 0 rate 2Mbit ceil 2Mbit",
        "class htb 1:12 parent 1:1 leaf 12: prio 0 rate 500Kbit ceil 500Kbit",
        &format!(
            "-A POSTROUTING -o {lan} -j OUTGATE-SHAPE\n-A POSTROUTING -o {wan} -j OUTGATE-SHAPE\n"
        ),
        "-A OUTGATE-SHAPE -m connmark --mark 0x1100/0xff00 -j CLASSIFY --set-class 0001:0011\n",
    ] {
        assert!(applied.contains(needle), "missing {needle:?} in\n{applied}");
    }
    // Idempotent: a second apply changes nothing (not even tc's classes).
    ok(rules(
        &s,
        &extra,
        &format!("--policy {} --link-rate 1gbit --apply", policy.display()),
    ));
    assert_eq!(
        traces(&s.lab, &s.filter),
        applied,
        "a second apply changed something"
    );

    mark_flows(&s.lab, &s.filter, "PREROUTING", "-A");
    let (v4, v6) = (s.server4.clone(), s.server6.clone());
    let up = dir.join("slow");
    let up = up.to_str().expect("UTF-8 path");
    let bulk_up = dir.join("bulk");
    let bulk_up = bulk_up.to_str().expect("UTF-8 path");
    shaped(
        &s,
        "slow download, IPv4",
        &url(&v4, SLOW_PORT, "slow"),
        None,
        &lan,
        "1:11",
        SLOW,
    );
    shaped(
        &s,
        "bulk download, IPv6",
        &url(&v6, BULK_PORT, "bulk"),
        None,
        &lan,
        "1:12",
        BULK,
    );
    shaped(
        &s,
        "slow upload, IPv6",
        &url(&v6, SLOW_PORT, "up"),
        Some(up),
        &wan,
        "1:11",
        SLOW,
    );
    shaped(
        &s,
        "bulk upload, IPv4",
        &url(&v4, BULK_PORT, "up"),
        Some(bulk_up),
        &wan,
        "1:12",
        BULK,
    );
    let big = dir.join("big");
    let big = big.to_str().expect("UTF-8 path");
    unshaped(
        &s,
        "accepted download",
        &url(&v4, ACCEPT_PORT, "big"),
        None,
        &lan,
        "1:11",
    );
    unshaped(
        &s,
        "accepted upload",
        &url(&v6, ACCEPT_PORT, "up"),
        Some(big),
        &wan,
        "1:11",
    );

    // The generated mangle text is what iptables-save shows.
    let cfg = RulesConfig {
        mode: outgate::rules::Mode::Gateway,
        lan: Some(lan.clone()),
        wan: Some(wan.clone()),
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
            link_rate: outgate::policy::Rate(1_000_000_000),
            backend: ShapeBackend::Classify,
        }),
        ..RulesConfig::default()
    };
    let text = outgate::rules::iptables_restore(&cfg, outgate::rules::Family::V4).expect("valid");
    let generated: Vec<String> = text
        .lines()
        .skip_while(|l| *l != "*mangle")
        .take_while(|l| *l != "COMMIT")
        .filter_map(|l| match l.strip_prefix("-I POSTROUTING ") {
            Some(rest) => Some(format!("-A POSTROUTING {}", rest.split_once(' ')?.1)),
            None => l.starts_with("-A ").then(|| l.to_string()),
        })
        .collect();
    let saved: Vec<String> = s
        .lab
        .sh(&s.filter, "iptables-save -t mangle")
        .lines()
        .filter(|l| l.contains("OUTGATE-SHAPE") && l.starts_with("-A "))
        .map(str::to_string)
        .collect();
    assert_eq!(saved, generated);

    mark_flows(&s.lab, &s.filter, "PREROUTING", "-D");
    let notes = ok(rules(&s, &extra, "--remove"));
    assert!(notes.is_empty(), "{notes}");
    assert_eq!(
        traces(&s.lab, &s.filter),
        before,
        "--remove left something behind"
    );
}

/// Host mode: what this host sends leaves by --wan, so an upload is shaped and a download is not (that
/// takes an IFB device: `--shape-backend ifb` prints it). Shaping in host mode without --wan is refused.
#[test]
fn host_shapes_uploads_on_its_wan() {
    if !common::root("host_shapes_uploads_on_its_wan") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    let wan = host_device(&s);
    let dir = files(&s.lab);
    serve(&mut s, &dir);
    let policy = s.lab.write("policy.rules", POLICY);
    let before = traces(&s.lab, &s.filter);
    let o = rules(&s, "", &format!("--policy {} --apply", policy.display()));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("shaping in host mode needs --wan"), "{err}");
    assert_eq!(
        traces(&s.lab, &s.filter),
        before,
        "a refused apply changed something"
    );

    let extra = format!("--wan {wan}");
    ok(rules(
        &s,
        &extra,
        &format!("--policy {} --apply", policy.display()),
    ));
    mark_flows(&s.lab, &s.filter, "OUTPUT", "-A");
    let v4 = s.server4.clone();
    let up = dir.join("slow");
    let up = up.to_str().expect("UTF-8 path");
    let big = dir.join("big");
    let big = big.to_str().expect("UTF-8 path");
    shaped(
        &s,
        "slow upload",
        &url(&v4, SLOW_PORT, "up"),
        Some(up),
        &wan,
        "1:11",
        SLOW,
    );
    unshaped(
        &s,
        "accepted upload",
        &url(&v4, ACCEPT_PORT, "up"),
        Some(big),
        &wan,
        "1:11",
    );
    let (speed, _) = transfer(&s, &url(&v4, SLOW_PORT, "big"), None);
    eprintln!(
        "slow download in host mode: {speed:.0} B/s (not shaped: only its ACKs leave by --wan)"
    );
    assert!(
        speed > 10.0 * SLOW,
        "a download in host mode: {speed:.0} B/s"
    );

    mark_flows(&s.lab, &s.filter, "OUTPUT", "-D");
    ok(rules(&s, &extra, "--remove"));
    assert_eq!(
        traces(&s.lab, &s.filter),
        before,
        "--remove left something behind"
    );
}

/// A root qdisc outgate did not make is never replaced nor deleted: `--apply` refuses to shape that
/// device (and changes nothing), `--remove` leaves it and says so. A later `--apply` with fewer classes
/// takes the extra class away, and one without `--policy` all of outgate's traffic control.
#[test]
fn foreign_root_qdiscs_are_left_alone() {
    if !common::root("foreign_root_qdiscs_are_left_alone") {
        return;
    }
    let s = gateway_mode();
    let (lan, wan) = devices(&s);
    let lan = lan.expect("gateway mode has --lan");
    let extra = s.extra.clone();
    let policy = s.lab.write("policy.rules", POLICY);
    let apply = format!("--policy {} --apply", policy.display());
    let tbf =
        format!("tc qdisc replace dev {wan} root handle 5: tbf rate 1mbit burst 10k latency 50ms");
    s.lab.sh(&s.filter, &tbf);
    let before = traces(&s.lab, &s.filter);
    let o = rules(&s, &extra, &apply);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "refusing to shape {wan}: its root qdisc is not outgate's (`qdisc tbf 5: root"
        )),
        "{err}"
    );
    assert_eq!(
        traces(&s.lab, &s.filter),
        before,
        "a refused apply changed something"
    );

    s.lab.sh(&s.filter, &format!("tc qdisc del dev {wan} root"));
    ok(rules(&s, &extra, &apply));
    s.lab.sh(&s.filter, &tbf);
    let notes = ok(rules(&s, &extra, "--remove"));
    assert!(
        notes.contains(&format!("left the root qdisc of {wan} (`qdisc tbf 5: root")),
        "{notes}"
    );
    let left = s.lab.sh(&s.filter, "tc qdisc show");
    assert!(
        left.contains(&format!("qdisc tbf 5: dev {wan} root")),
        "{left}"
    );
    assert!(!left.contains("htb"), "{left}");
    s.lab.sh(&s.filter, &format!("tc qdisc del dev {wan} root"));

    // Fewer classes: the extra one goes; no --policy: all of it, and the mangle chain.
    ok(rules(&s, &extra, &apply));
    let one = s
        .lab
        .write("one.rules", "class bulk 500kbit\npolicy loc net ACCEPT\n");
    ok(rules(
        &s,
        &extra,
        &format!("--policy {} --apply", one.display()),
    ));
    let classes = s.lab.sh(&s.filter, &format!("tc class show dev {lan}"));
    assert!(
        classes.contains("class htb 1:11 parent 1:1 leaf 11: prio 0 rate 500Kbit"),
        "{classes}"
    );
    assert!(!classes.contains("1:12"), "{classes}");
    let plain = s.lab.try_sh(
        &s.filter,
        &format!("{} rules --mode gateway {extra}", outgate_bin()),
    );
    let plain = String::from_utf8_lossy(&plain.stdout).into_owned();
    ok(rules(&s, &extra, "--apply"));
    let after = traces(&s.lab, &s.filter);
    assert!(
        !after.contains("htb") && !after.contains("OUTGATE-SHAPE"),
        "{after}"
    );
    assert!(
        after.contains("-A FORWARD -i"),
        "the ruleset itself stays:\n{after}"
    );
    assert!(!plain.contains("mangle"), "{plain}");
    ok(rules(&s, &extra, "--remove"));
}

/// All or nothing: when a tc command fails halfway (a `tc` in PATH that fails on class 1:12), `--apply`
/// puts iptables and traffic control back as they were: nothing, or an earlier apply's tree.
#[test]
fn a_failing_tc_puts_everything_back() {
    if !common::root("a_failing_tc_puts_everything_back") {
        return;
    }
    let s = gateway_mode();
    let extra = s.extra.clone();
    let policy = s.lab.write("policy.rules", POLICY);
    let fake = s.lab.dir.path().join("bin");
    std::fs::create_dir_all(&fake).expect("bin");
    let real = common::run("command -v tc");
    std::fs::write(
        fake.join("tc"),
        format!(
            "#!/bin/sh\ncase \"$*\" in *\"classid 1:12 \"*) echo 'RTNETLINK answers: injected' >&2; exit 2;; esac\nexec {} \"$@\"\n",
            real.trim()
        ),
    )
    .expect("fake tc");
    common::run(&format!("chmod +x {}/tc", fake.display()));
    let failing = |options: &str| {
        s.lab.try_sh(
            &s.filter,
            &format!(
                "PATH={}:$PATH {} rules --mode gateway {extra} {options}",
                fake.display(),
                outgate_bin()
            ),
        )
    };
    let apply = format!("--policy {} --apply", policy.display());
    for earlier in ["", "--policy ONE --link-rate 100mbit --apply"] {
        if earlier.is_empty() {
            ok(rules(&s, &extra, "--apply"));
        } else {
            let one = s.lab.write(
                "one.rules",
                "option shape-rate 3mbit\npolicy loc net ACCEPT\n",
            );
            ok(rules(
                &s,
                &extra,
                &earlier.replace("ONE", one.to_str().expect("UTF-8")),
            ));
        }
        let before = traces(&s.lab, &s.filter);
        let o = failing(&apply);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("classid 1:12") && err.contains("injected"),
            "{err}"
        );
        assert_eq!(
            traces(&s.lab, &s.filter),
            before,
            "after {earlier:?}, a failed apply did not put everything back"
        );
    }
    // nft: traffic control first, then the table. This kernel cannot load the table (no NFT_QUEUE), so
    // the earlier apply's tree must come back.
    let before = traces(&s.lab, &s.filter);
    let o = rules(&s, &extra, &format!("--backend nft {apply}"));
    let err = String::from_utf8_lossy(&o.stderr);
    if o.status.success() {
        let after = traces(&s.lab, &s.filter);
        assert!(
            after.contains("class htb 1:12"),
            "a kernel with nft queue: {after}"
        );
    } else {
        assert!(err.contains("nft -f -: "), "{err}");
        assert_eq!(
            traces(&s.lab, &s.filter),
            before,
            "a failed nft apply did not put traffic control back"
        );
    }
    ok(rules(&s, &extra, "--remove"));
    assert!(!traces(&s.lab, &s.filter).contains("htb"));
}

/// The setups printed for other kernels (`--shape-backend fw|cake|ifb`) parse here as far as this
/// kernel allows: every tc command either runs, or is refused by the kernel for lack of the module the
/// backend is for (cls_fw, sch_cake, act_ctinfo), never by tc's parser; their iptables text passes
/// `iptables-restore --test`. `--apply` with them is refused. The check catches a misspelt command.
#[test]
fn printed_backends_parse_here() {
    if !common::root("printed_backends_parse_here") {
        return;
    }
    let s = host_mode();
    let wan = host_device(&s);
    let policy = s.lab.write("policy.rules", POLICY);
    let kernel_lacks = |err: &str| {
        [
            "Error: TC classifier not found.",
            "Error: Specified qdisc kind is unknown.",
            "Error: Failed to load TC action module.",
        ]
        .iter()
        .any(|known| err.starts_with(known))
    };
    let mut ran = Vec::new();
    for backend in ["classify", "fw", "cake", "ifb"] {
        let print = format!(
            "--wan {wan} --policy {} --shape-backend {backend}",
            policy.display()
        );
        let o = rules(&s, &print, "");
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The ruleset's two families, each checked by its restore tool.
        let (v4, rest) = text.split_once("\n\n").expect("IPv4, IPv6 and tc parts");
        let (v6, tc) = rest.split_once("\n# Traffic control").expect("a tc part");
        let tc = tc.split_once('\n').map_or("", |(_, commands)| commands);
        for (tool, part) in [("iptables-restore", v4), ("ip6tables-restore", v6)] {
            let file = s.lab.write("restore.txt", &format!("{part}\n"));
            s.lab.sh(
                &s.filter,
                &format!("{tool} --test --noflush < {}", file.display()),
            );
        }
        let mut refused = 0;
        for line in tc
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let o = s.lab.try_sh(&s.filter, line);
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            if !o.status.success() {
                assert!(kernel_lacks(&err), "{backend}: `{line}` failed: {err}");
                refused += 1;
            }
        }
        ran.push((backend, refused));
        // Back to nothing for the next backend.
        let _ = s.lab.try_sh(
            &s.filter,
            &format!(
                "tc qdisc del dev {wan} root; tc qdisc del dev {wan} ingress; ip link del ifb4{wan}"
            ),
        );
        if backend != "classify" {
            let o = rules(&s, &print, "--apply");
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{backend}: {err}");
            assert!(
                err.contains(&format!(
                    "--shape-backend {backend} is printed, not applied"
                )),
                "{err}"
            );
        }
    }
    eprintln!("commands the kernel refused for a missing module, by backend: {ran:?}");
    assert_eq!(
        ran,
        [("classify", 0), ("fw", 2), ("cake", 1), ("ifb", 5)],
        "classify runs whole; fw lacks its 2 filters, cake its qdisc, ifb ctinfo and 4 fw filters"
    );
    // The check fails on what tc itself cannot read.
    let o = s.lab.try_sh(
        &s.filter,
        &format!("tc qdisc replace dev {wan} root cake bandwidthh 1gbit"),
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!kernel_lacks(&err), "{err}");
}

/// `outgate run` reads what the ruleset shapes: a policy whose classes the ruleset does not shape is
/// started with a warning that names both and the command that fixes it; once applied, no warning.
/// Another `--class-mask` than the ruleset's is refused.
#[test]
fn run_warns_when_its_classes_are_not_shaped() {
    if !common::root("run_warns_when_its_classes_are_not_shaped") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let extra = s.extra.clone();
    ok(rules(&s, &extra, "--apply"));
    let warning = "outgate: warning: the installed ruleset shapes traffic classes none and the policy \
                   has slow 2mbit, bulk 500kbit: flows SHAPE sends to a class the ruleset does not have \
                   pass at full speed; apply the policy's classes with: outgate rules --apply --mode gateway";
    for (apply, warned) in [(false, true), (true, false)] {
        if apply {
            let policy = s.lab.path("policy.rules");
            ok(rules(
                &s,
                &extra,
                &format!("--policy {} --apply", policy.display()),
            ));
        }
        let _ = std::fs::remove_file(s.lab.path("daemon.err"));
        let d = s.daemon_logged(POLICY, "");
        let _ = s.lab.child(d).kill();
        let _ = s.lab.child(d).wait();
        let err = s.daemon_err();
        assert_eq!(err.contains(warning), warned, "applied: {apply}:\n{err}");
    }
    let policy = s.lab.path("policy.rules");
    let o = s.lab.try_sh(
        &s.filter,
        &format!(
            "{} run --policy {} --queues 0 --class-mask 0xf0000",
            outgate_bin(),
            policy.display()
        ),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("class mask: the ruleset uses 0xf000, this daemon 0xf0000"),
        "{err}"
    );
    ok(rules(&s, &extra, "--remove"));
}
