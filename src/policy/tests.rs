use super::*;
use crate::decision::{Action, Decision};
use crate::packet::Packet;
use etherparse::PacketBuilder;

fn first(policy: &Policy, bytes: &[u8]) -> Decision {
    match policy.evaluate(&Packet::parse(bytes).unwrap(), None, Timestamp::default()) {
        Eval::Decided(d) => d,
        Eval::NeedPayload => panic!("no rule here needs payload"),
    }
}

fn decide(policy: &Policy, bytes: &[u8]) -> (Verdict, Option<String>) {
    let d = first(policy, bytes);
    (d.verdict, policy.cite(d.reason))
}

fn tcp(src: [u8; 4], dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(40000, dport, 1, 1000)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

fn udp(dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64)
        .udp(40000, dport)
        .write(&mut out, &[])
        .unwrap();
    out
}

fn icmp(ty: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let b = PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64);
    let b = if ty == 8 {
        b.icmpv4_echo_request(1, 1)
    } else {
        b.icmpv4_raw(ty, 0, [0; 4])
    };
    b.write(&mut out, &[]).unwrap();
    out
}

#[test]
fn builtin_policy_means_what_the_article_meant() {
    let p = Policy::builtin();
    assert_eq!(p.rules().len(), 19);
    let lan = [10, 0, 0, 2];
    let web = [93, 184, 216, 34];
    assert_eq!(
        decide(&p, &tcp(lan, web, 443)),
        (Verdict::Accept, Some("<default>:20".into()))
    );
    assert_eq!(
        decide(&p, &tcp(lan, web, 80)),
        (Verdict::Accept, Some("<default>:13".into()))
    );
    assert_eq!(
        decide(&p, &udp(53)),
        (Verdict::Accept, Some("<default>:9".into()))
    );
    assert_eq!(
        decide(&p, &udp(13)),
        (Verdict::Accept, Some("<default>:2".into()))
    );
    assert_eq!(
        decide(&p, &tcp(lan, web, 8080)),
        (Verdict::Drop, Some("<default>:1".into()))
    );
    assert_eq!(
        decide(&p, &udp(443)),
        (Verdict::Accept, Some("<default>:20".into())),
        "bare port: TCP and UDP"
    );
    assert_eq!(
        decide(&p, &icmp(8)),
        (Verdict::Accept, Some("<default>:3".into()))
    );
    assert_eq!(
        decide(&p, &icmp(13)).0,
        Verdict::Drop,
        "ICMP 8 is echo request only"
    );
}

#[test]
fn first_match_wins_with_address_narrowing() {
    let text = "policy loc net ACCEPT\nDROP loc net:192.0.2.0/24 tcp 80\nREJECT loc net tcp 80,8000:8100\n";
    let p = Policy::compile("t", text).unwrap();
    assert_eq!(
        decide(&p, &tcp([10, 0, 0, 2], [192, 0, 2, 9], 80)),
        (Verdict::Drop, Some("t:2".into()))
    );
    assert_eq!(
        decide(&p, &tcp([10, 0, 0, 2], [198, 51, 100, 1], 80)),
        (Verdict::Reject, Some("t:3".into()))
    );
    assert_eq!(
        decide(&p, &tcp([10, 0, 0, 2], [198, 51, 100, 1], 8050)),
        (Verdict::Reject, Some("t:3".into()))
    );
    assert_eq!(
        decide(&p, &tcp([10, 0, 0, 2], [198, 51, 100, 1], 22)),
        (Verdict::Accept, Some("t:1".into()))
    );
}

#[test]
fn declared_zones_and_catch_all_net() {
    let text = "zone lan 10.0.0.0/8\nzone dmz 172.16.0.0/12\npolicy lan net DROP\npolicy all all REJECT\n\
                ACCEPT lan net tcp 443\nACCEPT lan dmz all\n";
    let p = Policy::compile("z", text).unwrap();
    assert_eq!(p.zone_names(), vec!["lan", "dmz", "net"]);
    assert_eq!(
        decide(&p, &tcp([10, 1, 1, 1], [8, 8, 8, 8], 443)).0,
        Verdict::Accept
    );
    assert_eq!(
        decide(&p, &tcp([10, 1, 1, 1], [8, 8, 8, 8], 22)),
        (Verdict::Drop, Some("z:3".into()))
    );
    assert_eq!(
        decide(&p, &tcp([10, 1, 1, 1], [172, 16, 0, 5], 22)),
        (Verdict::Accept, Some("z:6".into()))
    );
    assert_eq!(
        decide(&p, &tcp([8, 8, 8, 8], [10, 1, 1, 1], 22)),
        (Verdict::Reject, Some("z:4".into()))
    );
}

#[test]
fn no_policy_line_drops() {
    let p = Policy::compile("n", "ACCEPT loc net tcp 22\n").unwrap();
    let d = first(&p, &tcp([10, 0, 0, 2], [192, 0, 2, 1], 23));
    assert_eq!(d, Decision::new(Verdict::Drop, Reason::NoPolicy));
}

#[test]
fn the_hash_follows_what_the_policy_says_not_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let text = "policy loc net DROP\nDROP loc net tcp 80 host=@bad.txt\nACCEPT loc net 80\n";
    std::fs::write(dir.path().join("bad.txt"), "tunnel.example.net\n").unwrap();
    let at = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        Policy::load(&path).unwrap().hash().to_string()
    };
    let (a, b) = (at("a.rules"), at("b.rules"));
    assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
    assert_eq!(a, b, "the same policy under another name");
    std::fs::write(dir.path().join("bad.txt"), "other.example.net\n").unwrap();
    assert_ne!(at("a.rules"), a, "a host list it reads changed");
    assert_ne!(
        Policy::compile("x", "policy loc net ACCEPT\n")
            .unwrap()
            .hash(),
        Policy::compile("x", "policy loc net DROP\n")
            .unwrap()
            .hash()
    );
}

fn to_port(dport: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 2], [192, 0, 2, 1], 64)
        .tcp(40000, dport, 1, 1000)
        .syn()
        .write(&mut out, &[])
        .unwrap();
    out
}

#[test]
fn shape_sends_flows_to_their_class() {
    let p = Policy::compile(
        "p",
        "policy loc net SHAPE\nACCEPT loc net tcp 443\nSHAPE(bulk) loc net tcp 6881\n\
         class bulk 500kbit\noption shape-rate 2mbit\n",
    )
    .unwrap();
    let names: Vec<(&str, u64)> = p
        .classes()
        .iter()
        .map(|c| (c.name.as_str(), c.rate.bits_per_second()))
        .collect();
    assert_eq!(names, [("slow", 2_000_000), ("bulk", 500_000)]);
    assert_eq!(first(&p, &to_port(443)).verdict, Verdict::Accept);
    let bulk = first(&p, &to_port(6881));
    assert_eq!((bulk.verdict, bulk.class), (Verdict::Shape, 1));
    let other = first(&p, &to_port(8080));
    assert_eq!(
        (other.verdict, other.class, other.reason),
        (Verdict::Shape, 0, Reason::Policy(0))
    );
    assert!(other.enforced());
    let s = p.summary();
    assert!(s.contains("loc -> net SHAPE  (p:1)"), "{s}");
    assert!(
        s.contains("classes (SHAPE): slow 2mbit (p:5), bulk 500kbit (p:4)"),
        "{s}"
    );
    assert!(s.contains("tcp    shaped ports 0-442, 444-65535"), "{s}");
}

#[test]
fn an_audited_line_is_counted_as_it_says_and_the_rest_of_the_policy_applies() {
    let p = Policy::compile(
        "p",
        "policy loc net ACCEPT\nAUDIT(DROP) loc net tcp 8080\nREJECT loc net tcp 8080\n",
    )
    .unwrap();
    let d = first(&p, &to_port(8080));
    assert_eq!((d.verdict, d.reason), (Verdict::Drop, Reason::Rule(0)));
    assert_eq!(
        d.applied,
        Some(Action::of(Verdict::Reject)),
        "the next line that is not audited applies"
    );
    let d = first(&p, &to_port(80));
    assert!(d.enforced() && d.verdict == Verdict::Accept);
    // Trialling default-deny: an audited policy line leaves its flows accepted.
    let trial = Policy::compile(
        "p",
        "policy loc net AUDIT(DROP)\nACCEPT loc net tcp 443\nHTTP(AUDIT(SHAPE(b))) loc net\nclass b 1mbit\n",
    )
    .unwrap();
    let d = first(&trial, &to_port(8080));
    assert_eq!(
        (d.verdict, d.reason, d.applied),
        (Verdict::Drop, Reason::Policy(0), Some(Action::ACCEPT))
    );
    assert!(first(&trial, &to_port(443)).enforced());
    let d = first(&trial, &to_port(80));
    assert_eq!((d.verdict, d.class), (Verdict::Shape, 0));
    assert_eq!(
        d.applied,
        Some(Action::ACCEPT),
        "the audited policy line behind it"
    );
    let s = trial.summary();
    assert!(
        s.contains("AUDIT: 2 line(s) trialled, logged and counted but not enforced: p:1, p:3"),
        "{s}"
    );
    assert!(s.contains("loc -> net AUDIT(DROP)"), "{s}");
    assert!(
        s.contains("tcp    ports 0-65535"),
        "enforced, everything is open: {s}"
    );
}

#[test]
fn a_rule_past_its_until_matches_nothing() {
    let p = Policy::compile(
        "p",
        "policy loc net DROP\nACCEPT loc net tcp 8080 until=2026-12-31 # exam week\nACCEPT loc net tcp 80\n",
    )
    .unwrap();
    let at = |secs: u64| Timestamp::from_secs(secs);
    let before = 1_798_675_200; // 2026-12-31T00:00Z
    let verdict = |secs| match p.evaluate(&Packet::parse(&to_port(8080)).unwrap(), None, at(secs)) {
        Eval::Decided(d) => d.verdict,
        Eval::NeedPayload => unreachable!(),
    };
    assert_eq!(verdict(before), Verdict::Accept, "during its last day");
    assert_eq!(verdict(before + 86_399), Verdict::Accept);
    assert_eq!(
        verdict(before + 86_400),
        Verdict::Drop,
        "the day after: the policy decides"
    );
    let notes = p.expiry_notes(at(before));
    assert_eq!(
        notes,
        "p:2: expires 2027-01-01T00:00Z, within a week (ACCEPT loc net tcp 8080 until=2026-12-31 # exam week)\n"
    );
    assert!(
        p.expiry_notes(at(before + 86_400))
            .contains("p:2: expired 2027-01-01T00:00Z")
    );
    assert_eq!(
        p.expiry_notes(at(before - 30 * 86_400)),
        "",
        "a month ahead: nothing to say"
    );
    let err = match Policy::compile("p", "ACCEPT loc net 80 until=soon\n") {
        Ok(_) => panic!("compiled"),
        Err(e) => e[0].to_string(),
    };
    assert!(err.starts_with("p:1:25: 'soon' is not a date"), "{err}");
}

#[test]
fn shape_and_audit_errors_name_the_place() {
    let err = |text: &str| match Policy::compile("p", text) {
        Ok(_) => panic!("{text} compiled"),
        Err(e) => e[0].to_string(),
    };
    assert_eq!(
        err("policy loc net DROP\nSHAPE loc net tcp 80\n"),
        "p:2:1: plain SHAPE needs `option shape-rate RATE` (its class), or name a class: SHAPE(bulk) with `class bulk 2mbit`"
    );
    assert_eq!(
        err("SHAPE(bulk) loc net tcp 80\nclass bulk 1mbit\nclass bulk 2mbit\n"),
        "p:3:7: class 'bulk' is declared twice"
    );
    assert_eq!(
        err("class bulk fast\n"),
        "p:1:12: 'fast' is not a rate (expected a number with bit, kbit, mbit, gbit, bps, kbps, mbps or gbps, like 2mbit)"
    );
    assert!(err("option shape-rate 2mbit\nclass slow 1mbit\n").contains("cannot name a class"));
    assert!(err("option malformed SHAPE\n").contains("expected ACCEPT, DROP or REJECT"));
    assert!(err("SSH(AUDIT) loc net\n").contains("AUDIT needs an action"));
}

#[test]
fn summary_lists_open_ports() {
    let s = Policy::builtin().summary();
    assert!(
        s.contains(
            "tcp    ports 13, 21-23, 25, 43, 53, 63, 70, 79-80, 109-110, 113, 119, 123, 143, 443"
        ),
        "{s}"
    );
    assert!(s.contains("icmp   types 8"), "{s}");
    assert!(s.contains("icmp6  types none"), "{s}");
}
