use super::*;
use crate::rules::tests::{gateway, host, shaped};

fn host_wan() -> RulesConfig {
    shaped(RulesConfig {
        wan: Some("eth0".into()),
        ..host("0")
    })
}

fn with_backend(cfg: RulesConfig, backend: ShapeBackend) -> RulesConfig {
    let mut cfg = cfg;
    if let Some(s) = cfg.shaping.as_mut() {
        s.backend = backend;
    }
    cfg
}

fn shell(commands: Vec<Argv>) -> Vec<String> {
    commands.into_iter().map(|a| a.join(" ")).collect()
}

#[test]
fn class_ids_follow_the_class_bits() {
    assert_eq!(class_id(0), "1:10", "the default class");
    assert_eq!(class_id(1), "1:11");
    assert_eq!(class_id(15), "1:1f");
    assert_eq!(
        class_id_iptables(1),
        "0001:0011",
        "as iptables-save prints it"
    );
    assert_eq!(class_id_iptables(15), "0001:001f");
}

#[test]
fn classify_rules_are_exactly_these() {
    assert_eq!(
        iptables_mangle_body(&shaped(gateway())),
        [
            ":OUTGATE-SHAPE - [0:0]",
            "-I POSTROUTING 1 -o lan0 -j OUTGATE-SHAPE",
            "-I POSTROUTING 2 -o wan0 -j OUTGATE-SHAPE",
            "# SHAPE: an accepted flow's class, from its conntrack mark (both directions), to tc class 1:1V.",
            "-A OUTGATE-SHAPE -m connmark --mark 0x1100/0xff00 -j CLASSIFY --set-class 0001:0011",
            "-A OUTGATE-SHAPE -m connmark --mark 0x2100/0xff00 -j CLASSIFY --set-class 0001:0012",
        ]
    );
    // Host mode: the one device its traffic leaves by. Other bits: other values.
    let moved = RulesConfig {
        marks: Marks::new(0x7000)
            .and_then(|m| m.with_class_mask(0xf0))
            .expect("valid"),
        ..host_wan()
    };
    assert_eq!(
        iptables_mangle_body(&moved)[1..],
        [
            "-I POSTROUTING 1 -o eth0 -j OUTGATE-SHAPE",
            "# SHAPE: an accepted flow's class, from its conntrack mark (both directions), to tc class 1:1V.",
            "-A OUTGATE-SHAPE -m connmark --mark 0x1010/0x70f0 -j CLASSIFY --set-class 0001:0011",
            "-A OUTGATE-SHAPE -m connmark --mark 0x1020/0x70f0 -j CLASSIFY --set-class 0001:0012",
        ]
    );
    assert!(
        iptables_mangle_body(&gateway()).is_empty(),
        "no classes, no chain"
    );
    let text = iptables_restore(&shaped(gateway()), Family::V6).expect("valid");
    assert!(
        text.contains("COMMIT\n*mangle\n:OUTGATE-SHAPE - [0:0]\n")
            && text.contains("--set-class 0001:0012\nCOMMIT\n*filter\n"),
        "between raw and filter:\n{text}"
    );
    let plain = iptables_restore(&gateway(), Family::V4).expect("valid");
    assert!(!plain.contains("mangle"), "{plain}");
}

#[test]
fn htb_trees_are_exactly_these() {
    let cfg = host_wan();
    let shaping = cfg.shaping.as_ref().expect("shaped");
    assert_eq!(
        shell(htb_commands("eth0", shaping, true)),
        [
            "tc qdisc replace dev eth0 root handle 1: htb default 10",
            "tc class replace dev eth0 parent 1: classid 1:1 htb rate 100mbit ceil 100mbit quantum 200000",
            "tc class replace dev eth0 parent 1:1 classid 1:10 htb rate 97500kbit ceil 100mbit quantum 200000",
            "tc qdisc replace dev eth0 parent 1:10 handle 10: pfifo limit 804",
            "tc class replace dev eth0 parent 1:1 classid 1:11 htb rate 2mbit ceil 2mbit quantum 25000",
            "tc qdisc replace dev eth0 parent 1:11 handle 11: pfifo limit 16",
            "tc class replace dev eth0 parent 1:1 classid 1:12 htb rate 500kbit ceil 500kbit quantum 6250",
            "tc qdisc replace dev eth0 parent 1:12 handle 12: pfifo limit 10",
        ]
    );
    // Outgate's root already there: HTB cannot change it, and need not.
    assert_eq!(htb_commands("eth0", shaping, false).len(), 7);
    // Host mode: the --wan device only; gateway mode: both.
    let host_script = script(&cfg).expect("valid");
    assert_eq!(host_script.matches("root handle 1: htb").count(), 1);
    assert!(host_script.contains("tc qdisc replace dev eth0 root handle 1: htb default 10\n"));
    let gateway_script = script(&shaped(gateway())).expect("valid");
    for device in ["lan0", "wan0"] {
        assert!(
            gateway_script.contains(&format!(
                "tc qdisc replace dev {device} root handle 1: htb default 10\n"
            )),
            "{gateway_script}"
        );
    }
    assert_eq!(script(&gateway()).expect("valid"), "", "no classes, no tc");
    assert!(
            gateway_script.starts_with(
                "# Traffic control for the policy's classes, --shape-backend classify, --link-rate 100mbit:\n\
                 #   class slow 2mbit: class bits 0x1000, tc class 1:11\n\
                 #   class bulk 500kbit: class bits 0x2000, tc class 1:12\n\
                 # What `outgate rules --apply --policy FILE` runs"
            ),
            "{gateway_script}"
        );
}

#[test]
fn quantum_and_queue_stay_where_the_kernel_takes_them() {
    assert_eq!(quantum(BitRate(8)), 1514);
    assert_eq!(quantum(BitRate(1_000_000_000_000)), 200_000);
    assert_eq!(pfifo_limit(BitRate(8)), 10);
    assert_eq!(pfifo_limit(BitRate(1_000_000_000_000)), 1000);
}

#[test]
fn shaping_is_checked() {
    let no_wan = shaped(host("0"));
    assert_eq!(
        no_wan.validate().expect_err("no wan").to_string(),
        "shaping in host mode needs --wan: traffic control shapes what leaves a device, so name \
             the one this host's traffic leaves by"
    );
    let wildcard = shaped(RulesConfig {
        lan: Some("br+".into()),
        ..gateway()
    });
    assert_eq!(
        wildcard.validate().expect_err("wildcard").to_string(),
        "cannot shape --lan br+: it is a wildcard, and traffic control needs one device; name it"
    );
    let mut too_fast = host_wan();
    if let Some(s) = too_fast.shaping.as_mut() {
        s.link_rate = BitRate(2_500_000);
    }
    assert_eq!(
        too_fast.validate().expect_err("rates").to_string(),
        "the policy's classes add up to 2500kbit, at or above --link-rate 2500kbit: set \
             --link-rate to the real uplink's rate"
    );
    let mut many = host_wan();
    if let Some(s) = many.shaping.as_mut() {
        s.classes = (0..16)
            .map(|i| ShapeClass {
                name: format!("c{i}"),
                rate: BitRate(1000),
            })
            .collect();
    }
    assert!(
        many.validate()
            .expect_err("16")
            .to_string()
            .contains("16 traffic classes")
    );
    assert!(host_wan().validate().is_ok());
    assert!(shaped(gateway()).validate().is_ok());
    for bad in ["", "tc", "CLASSIFY", "htb"] {
        let err = bad.parse::<ShapeBackend>().expect_err(bad).to_string();
        assert!(err.contains("expected classify, fw, cake or ifb"), "{err}");
    }
    for b in ShapeBackend::ALL {
        assert_eq!(b.to_string().parse::<ShapeBackend>().ok(), Some(b));
    }
}

#[test]
fn nft_puts_the_class_in_the_priority() {
    let text = nft(&shaped(gateway())).expect("valid");
    assert!(
            text.contains(
                "\tchain shape {\n\t\ttype filter hook postrouting priority mangle; policy accept;\n\
                 \t\toifname { \"lan0\", \"wan0\" } ct mark & 0xff00 == 0x1100 meta priority set 1:11\n\
                 \t\toifname { \"lan0\", \"wan0\" } ct mark & 0xff00 == 0x2100 meta priority set 1:12\n\t}\n}\n"
            ),
            "{text}"
        );
    let fw = nft(&with_backend(host_wan(), ShapeBackend::Fw)).expect("valid");
    assert!(
            fw.contains("\t\toifname \"eth0\" ct mark & 0xff00 == 0x2100 meta mark set meta mark & 0xffff00ff | 0x2100\n"),
            "{fw}"
        );
    let cake = nft(&with_backend(host_wan(), ShapeBackend::Cake)).expect("valid");
    assert!(
            cake.contains("\t\toifname \"eth0\" ct mark & 0xff00 == 0x2100 meta mark set meta mark & 0xffff0fff | 0x1000\n"),
            "{cake}"
        );
    assert!(!nft(&gateway()).expect("valid").contains("chain shape"));
}

#[test]
fn the_other_backends_print_their_setup() {
    let fw = with_backend(shaped(gateway()), ShapeBackend::Fw);
    assert_eq!(
        iptables_mangle_body(&fw)[3..],
        [
            "# SHAPE: tc's fw classifier reads the packet mark; copy the conntrack mark's verdict and class",
            "# into it, on both directions' packets.",
            "-A OUTGATE-SHAPE -j CONNMARK --restore-mark --nfmask 0xff00 --ctmask 0xff00",
        ]
    );
    let text = script(&fw).expect("valid");
    for device in ["lan0", "wan0"] {
        assert!(text.contains(&format!(
                "tc filter replace dev {device} parent 1: protocol all prio 1 handle 0x1100/0xff00 fw classid 1:11\n\
                 tc filter replace dev {device} parent 1: protocol all prio 1 handle 0x2100/0xff00 fw classid 1:12\n"
            )), "{text}");
    }
    assert!(text.contains("# Printed for kernels with cls_fw; `--apply` runs only classify."));

    let cake = with_backend(host_wan(), ShapeBackend::Cake);
    assert_eq!(
        iptables_mangle_body(&cake)[3..],
        [
            "-A OUTGATE-SHAPE -m connmark --mark 0x1100/0xff00 -j MARK --set-xmark 0x1000/0xf000",
            "-A OUTGATE-SHAPE -m connmark --mark 0x2100/0xff00 -j MARK --set-xmark 0x1000/0xf000",
        ]
    );
    let text = script(&cake).expect("valid");
    assert!(
        text.contains(
            "\ntc qdisc replace dev eth0 root cake bandwidth 100mbit diffserv4 fwmark 0xf000\n"
        ),
        "{text}"
    );
    assert!(!text.contains("htb"), "{text}");

    let ifb = with_backend(host_wan(), ShapeBackend::Ifb);
    let text = script(&ifb).expect("valid");
    for line in [
        "ip link add ifb4eth0 type ifb\nip link set ifb4eth0 up\n",
        "tc qdisc replace dev eth0 handle ffff: ingress\n",
        "tc filter replace dev eth0 parent ffff: protocol all prio 1 u32 match u32 0 0 action ctinfo \
             cpmark 0xff00 action mirred egress redirect dev ifb4eth0\n",
        "tc qdisc replace dev ifb4eth0 root handle 1: htb default 10\n",
        "tc filter replace dev ifb4eth0 parent 1: protocol all prio 1 handle 0x2100/0xff00 fw classid 1:12\n",
        "tc filter replace dev eth0 parent 1: protocol all prio 1 handle 0x2100/0xff00 fw classid 1:12\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let gateway_ifb = script(&with_backend(shaped(gateway()), ShapeBackend::Ifb)).expect("valid");
    assert!(
        gateway_ifb.contains("# Gateway mode needs no IFB"),
        "{gateway_ifb}"
    );
    assert!(!gateway_ifb.contains("ifb4"), "{gateway_ifb}");
    assert_eq!(ifb_name("abcdefghijklmno"), "ifb4abcdefghijk");
}
