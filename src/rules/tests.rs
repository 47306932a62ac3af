use super::*;

pub(super) fn host(queues: &str) -> RulesConfig {
    RulesConfig {
        queues: queues.parse().expect("valid range"),
        ..RulesConfig::default()
    }
}

/// `cfg` with the policy's classes `slow` (2mbit) and `bulk` (500kbit) shaped, on a 100mbit link.
pub(super) fn shaped(cfg: RulesConfig) -> RulesConfig {
    let class = |name: &str, rate| ShapeClass {
        name: name.into(),
        rate: crate::policy::Rate(rate),
    };
    RulesConfig {
        shaping: Some(Shaping {
            classes: vec![class("slow", 2_000_000), class("bulk", 500_000)],
            link_rate: crate::policy::Rate(100_000_000),
            backend: ShapeBackend::Classify,
        }),
        ..cfg
    }
}

pub(super) fn gateway() -> RulesConfig {
    RulesConfig {
        queues: "2-5".parse().expect("valid range"),
        mode: Mode::Gateway,
        lan: Some("lan0".into()),
        wan: Some("wan0".into()),
        fail_open: true,
        ..RulesConfig::default()
    }
}

/// Rules only, without comments: what iptables-save would show (apart from `-I` for `-A`).
pub(super) fn rules(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn bad_interface_names_are_refused_before_any_text() {
    for (name, reason) in [
        ("", "empty"),
        ("abcdefghijklmnop", "longer than 15"),
        ("eth0 -j ACCEPT", "only letters"),
        ("eth0\n-A", "only letters"),
        ("wan\"0", "only letters"),
        ("-j", "must not start"),
        ("..", "not a valid"),
        ("lo", "loopback"),
    ] {
        let cfg = RulesConfig {
            wan: Some(name.into()),
            ..gateway()
        };
        // (`apply` validates the same way first; not called here: unit tests must not touch the host.)
        for result in [iptables_restore(&cfg, Family::V4), nft(&cfg)] {
            let err = result.expect_err(name).to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
            assert!(err.starts_with("invalid --wan interface"), "{err}");
        }
    }
    for ok in [
        "eth0",
        "wlp3s0",
        "br-lan.10",
        "veth+",
        "wg@x",
        "abcdefghijklmno",
    ] {
        let cfg = RulesConfig {
            lan: Some(ok.into()),
            ..gateway()
        };
        assert!(cfg.validate().is_ok(), "{ok}");
    }
}

#[test]
fn gateway_needs_lan_and_wan_host_takes_no_lan() {
    let no_lan = RulesConfig {
        lan: None,
        ..gateway()
    };
    let err = iptables_restore(&no_lan, Family::V4).expect_err("no lan");
    assert_eq!(
        err.to_string(),
        "gateway mode needs --lan and --wan (--lan is missing)"
    );
    let no_wan = RulesConfig {
        wan: None,
        ..gateway()
    };
    assert!(
        nft(&no_wan)
            .expect_err("no wan")
            .to_string()
            .contains("--wan is missing")
    );
    let host_lan = RulesConfig {
        lan: Some("eth1".into()),
        ..host("0")
    };
    assert!(matches!(
        host_lan.validate(),
        Err(RulesError::LanInHostMode)
    ));
}

#[test]
fn command_errors_are_one_line_and_name_the_command() {
    let err = run(
        "sh",
        &["-c", "echo first >&2; echo; echo second >&2; exit 3"],
        None,
    )
    .expect_err("exit 3");
    assert_eq!(
        err.to_string(),
        "sh -c echo first >&2; echo; echo second >&2; exit 3: first | second"
    );
    let err = run("sh", &["-c", "exit 4"], None).expect_err("exit 4");
    assert!(err.to_string().contains("exit status: 4"), "{err}");
    let err = run("outgate-no-such-program", &[], None).expect_err("missing");
    assert!(matches!(err, RulesError::NotInstalled { .. }), "{err}");
    let out = run("cat", &[], Some("fed\n")).expect("cat runs");
    assert_eq!(out, "fed\n");
}
