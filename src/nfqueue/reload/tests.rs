use super::*;
use crate::Policy;
use crate::flow::FlowKey;
use std::net::IpAddr;

fn tuple(src: &str, dst: &str, proto: u8, dport: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto,
        sport: 40000,
        dport,
        icmp: None,
    }
}

#[test]
fn a_tuple_is_asked_about_as_its_first_packet() {
    let engine = Engine::new(
        Policy::compile(
            "p",
            "policy loc net DROP\nACCEPT loc net tcp 80\nACCEPT loc net tcp 443 app=tls\n",
        )
        .unwrap(),
    );
    let p = packet_of(&tuple("10.0.0.2", "192.0.2.1", 6, 80));
    assert_eq!(
        engine.redecide(&p, None, Timestamp::default()).verdict,
        Verdict::Accept
    );
    let p = packet_of(&tuple("10.0.0.2", "192.0.2.1", 6, 443));
    assert_eq!(
        engine.redecide(&p, None, Timestamp::default()),
        Decision::new(Verdict::Reject, Reason::Midstream),
        "443 needs the first payload"
    );
    let key = FlowKey::of(&p).unwrap().0;
    let (a, _) = key.endpoint(crate::flow::Side::Lo);
    assert_eq!(a, "10.0.0.2".parse::<IpAddr>().unwrap());
}

#[test]
fn memory_is_bounded_and_forgets_the_oldest() {
    let mut m = Memory::new(4);
    let key = |port| {
        FlowKey::of(&packet_of(&tuple("10.0.0.2", "192.0.2.1", 6, port)))
            .unwrap()
            .0
    };
    for port in 1..=4 {
        m.remember(
            key(port),
            Timestamp::from_secs(u64::from(port)),
            Payload::default(),
        );
    }
    m.remember(key(5), Timestamp::from_secs(5), Payload::default());
    assert!(m.len() <= 4);
    assert!(m.get(&key(1)).is_none() && m.get(&key(5)).is_some());
    m.forget(&key(5));
    assert!(m.get(&key(5)).is_none());
}

#[test]
fn state_round_trips_and_a_broken_file_trusts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    let key = FlowKey::of(&packet_of(&tuple("10.0.0.2", "192.0.2.1", 6, 443)))
        .unwrap()
        .0;
    let payload = crate::inspect::read_payload(
        crate::inspect::detect::Transport::Tcp,
        b"GET / HTTP/1.1\r\nHost: www.example.org\r\n\r\n",
    )
    .unwrap();
    let s = State {
        policy_hash: "sha256:ab".into(),
        version: "1".into(),
        flows: vec![(key, payload)],
    };
    s.write(&path).unwrap();
    assert_eq!(State::read(&path, 10), Some(s.clone()));
    assert_eq!(
        State::read(&path, 0).map(|s| s.flows.len()),
        Some(0),
        "at most max flows"
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{not a flow}\n");
    std::fs::write(&path, &text).unwrap();
    assert_eq!(
        State::read(&path, 10),
        Some(s),
        "a flow line that does not read is skipped"
    );
    std::fs::write(&path, "{\"policy_hash\": 3}\n").unwrap();
    assert_eq!(State::read(&path, 10), None);
    assert_eq!(State::read(&dir.path().join("missing"), 10), None);
}
