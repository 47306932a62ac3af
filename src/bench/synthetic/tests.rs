use std::collections::{HashMap, HashSet};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::*;

/// (client address, client port, server address, server port)
type Ends = ([u8; 4], u16, [u8; 4], u16);

/// Every frame of `cfg`: the packets made, the packets of each flow (both directions under one key),
/// and all the frames' bytes one after another.
fn flows_of(cfg: SyntheticConfig) -> (u64, HashMap<Ends, u64>, Vec<u8>) {
    let mut traffic = Synthetic::new(cfg);
    let mut frame = Vec::new();
    let mut all = Vec::new();
    let mut flows = HashMap::new();
    let mut packets = 0;
    while let Some(_ts) = traffic.next_frame(&mut frame).unwrap() {
        packets += 1;
        all.extend_from_slice(&frame);
        let p = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        let (src, dst) = (ip.header().source(), ip.header().destination());
        let (sp, dp) = match p.transport {
            Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
            Some(TransportSlice::Udp(u)) => (u.source_port(), u.destination_port()),
            _ => panic!("no transport"),
        };
        // Clients are 10.0.0.0/16.
        let key = if src[0] == 10 {
            (src, sp, dst, dp)
        } else {
            (dst, dp, src, sp)
        };
        *flows.entry(key).or_insert(0) += 1;
    }
    assert_eq!(traffic.flows_started(), flows.len() as u64);
    (packets, flows, all)
}

#[test]
fn the_same_config_gives_the_same_bytes() {
    let cfg = SyntheticConfig::new(5_000);
    let (_, _, a) = flows_of(cfg);
    let (_, _, b) = flows_of(cfg);
    assert_eq!(a, b);
    let (_, _, c) = flows_of(cfg.with_flows(300));
    assert_ne!(a, c, "the flow count changes the traffic");
}

#[test]
fn the_packets_and_flows_asked_are_made() {
    for (packets, flows) in [(20_000, 2_000), (20_000, 500), (20_000, 2_400), (1_000, 1)] {
        let cfg = SyntheticConfig { packets, flows };
        let (made, seen, _) = flows_of(cfg);
        assert_eq!(made, packets, "{cfg:?}");
        assert_eq!(seen.len() as u64, flows, "{cfg:?}");
    }
    assert_eq!(SyntheticConfig::new(1_000_000).flows, 100_000);
    assert_eq!(SyntheticConfig::new(3).flows, 1);
}

#[test]
fn flows_that_cannot_fit_or_fill_still_give_the_packets() {
    // 20,000 flows cannot fit into 20,000 packets (a TCP flow needs 8): as many as fit.
    let (made, seen, _) = flows_of(SyntheticConfig {
        packets: 20_000,
        flows: 20_000,
    });
    assert_eq!(made, 20_000);
    assert!((2_500..10_000).contains(&seen.len()), "{}", seen.len());
    // No flows asked: flows of the mix at their own lengths.
    let (made, seen, _) = flows_of(SyntheticConfig {
        packets: 5_000,
        flows: 0,
    });
    assert_eq!(made, 5_000);
    assert!(seen.len() > 100, "{}", seen.len());
}

#[test]
fn the_mix_keeps_its_ports() {
    let (_, seen, _) = flows_of(SyntheticConfig::new(100_000));
    let share = |port: u16| seen.keys().filter(|k| k.3 == port).count() as f64 / seen.len() as f64;
    assert!((0.45..0.55).contains(&share(443)), "https {}", share(443));
    assert!((0.17..0.23).contains(&share(80)), "http {}", share(80));
    assert!((0.08..0.12).contains(&share(53)), "dns {}", share(53));
    let ports: HashSet<u16> = seen.keys().map(|k| k.3).collect();
    for port in [123, 22, 8080, 3389, 6881, 1194] {
        assert!(ports.contains(&port), "{port}");
    }
    // Every flow is complete: DNS and NTP ones are a question and an answer.
    assert!(seen.iter().filter(|(k, _)| k.3 == 53).all(|(_, n)| *n == 2));
    assert!(
        seen.iter()
            .filter(|(k, _)| k.3 == 443)
            .all(|(_, n)| *n >= 8)
    );
}

#[test]
fn the_capture_replays_to_the_same_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synthetic.pcap");
    let cfg = SyntheticConfig::new(20_000);
    let made = write_capture(&path, cfg).unwrap();
    assert_eq!((made.packets, made.flows), (20_000, 2_000));
    let engine = crate::Engine::new(crate::Policy::builtin());
    let report = crate::replay::replay(
        &engine,
        &crate::replay::ReplayConfig {
            captures: vec![path],
            workers: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.counters.records, 20_000);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.counters.flows_total(), 2_000);
}
