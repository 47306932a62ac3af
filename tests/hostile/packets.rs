//! Every prefix and seeded random bit flips of every packet (link frame included) through the engine as
//! replay runs it: no panic, and exactly one decision for every packet fed, held ones included.

use std::path::{Path, PathBuf};

use outgate::replay::capture::{CaptureReader, LinkType};
use outgate::replay::link::network_layer;
use outgate::{Engine, Policy, Reason, Timestamp};

use crate::{Rng, common};

/// Every rule kind that reads the first payload, so that damaged payloads reach each inspector.
const PAYLOAD_POLICY: &str = "policy loc net ACCEPT\n\
    DROP loc net tcp 80,8080 host=numeric\n\
    DROP loc net tcp 80 url=gateway.dll? method=POST\n\
    ACCEPT loc net tcp 443 app=tls sni=!numeric\n\
    DROP loc net tcp 443\n\
    DROP loc net all app=ssh,openvpn,wireguard,socks\n\
    ACCEPT loc net udp 443 app=quic\n\
    ACCEPT loc net tcp 21 app=ftp\n\
    DROP loc net udp 53 app=!dns\n\
    option inspect-packets 4\n";

/// Bit-flip variants made of each packet; each flips 1 to 4 random bits.
const FLIPS: usize = 8;
/// Packets of each shared capture that get every prefix and the flips (the shared captures hold
/// about 1 MB; this keeps a debug run to seconds).
const SHARED_PACKETS: usize = 200;

#[derive(Debug, Default)]
struct Fed {
    packets: u64,
    prefixes: u64,
    flips: u64,
    /// Variants with no IP packet after the link layer: replay counts them, the engine never sees them.
    not_ip: u64,
}

/// One engine and flow table per capture, fed in capture order as one replay worker is.
struct Run<'e> {
    engine: &'e Engine,
    table: outgate::flow::FlowTable,
    /// Decisions per fed packet, by seq.
    decisions: Vec<u8>,
}

impl<'e> Run<'e> {
    fn new(engine: &'e Engine) -> Run<'e> {
        Run {
            engine,
            table: engine.new_flow_table(),
            decisions: Vec::new(),
        }
    }

    fn feed(&mut self, link: LinkType, frame: &[u8], ts: Timestamp) -> bool {
        let Ok(ip) = network_layer(link, frame) else {
            return false;
        };
        let seq = self.decisions.len() as u64;
        self.decisions.push(0);
        let d = self.engine.decide(&mut self.table, ip, ts, seq);
        if d.reason != Reason::Held {
            self.decisions[seq as usize] += 1;
        }
        self.released();
        true
    }

    fn released(&mut self) {
        for (seq, d) in self.table.drain_released() {
            assert_ne!(d.reason, Reason::Held);
            self.decisions[seq as usize] += 1;
        }
    }

    /// Ends the run as replay does, and checks that every packet got one decision.
    fn finish(mut self, name: &str) {
        self.table.finish_all();
        self.released();
        let wrong: Vec<(usize, u8)> = (self.decisions.iter().copied().enumerate())
            .filter(|&(_, n)| n != 1)
            .take(5)
            .collect();
        assert!(wrong.is_empty(), "{name}: (seq, decisions) {wrong:?}");
    }
}

/// Feeds every prefix and `FLIPS` flipped copies of the first `limit` packets of `path`.
fn damage(engine: &Engine, path: &Path, limit: usize, rng: &mut Rng, fed: &mut Fed) {
    let name = path.display().to_string();
    let mut run = Run::new(engine);
    let mut reader = CaptureReader::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut tick = 0u64;
    while let Some(Ok(record)) = reader.next_record() {
        if record.number > limit as u64 {
            break;
        }
        fed.packets += 1;
        let (link, frame) = (record.link, record.data.to_vec());
        // Time moves on a little per variant, from the record's own time.
        let mut ts = || {
            tick += 1;
            Timestamp::from_nanos(record.ts.as_nanos().saturating_add(tick * 1000))
        };
        for n in 0..=frame.len() {
            fed.prefixes += 1;
            fed.not_ip += u64::from(!run.feed(link, &frame[..n], ts()));
        }
        for _ in 0..FLIPS {
            let mut bad = frame.clone();
            if bad.is_empty() {
                continue;
            }
            for _ in 0..=rng.below(4) {
                let at = rng.below(bad.len());
                bad[at] ^= 1 << rng.below(8);
            }
            fed.flips += 1;
            fed.not_ip += u64::from(!run.feed(link, &bad, ts()));
        }
    }
    run.finish(&name);
}

fn captures_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_prefix_and_bit_flip_of_the_project_captures_gets_one_decision() {
    let engine = Engine::new(Policy::compile("payload.rules", PAYLOAD_POLICY).unwrap());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps");
    let (mut fed, mut rng) = (Fed::default(), Rng::new(0x5eed_0001));
    let files = captures_in(&dir);
    for file in &files {
        let mut one = Fed::default();
        damage(&engine, file, usize::MAX, &mut rng, &mut one);
        assert!(one.packets > 0, "{}", file.display());
        fed.packets += one.packets;
        fed.prefixes += one.prefixes;
        fed.flips += one.flips;
        fed.not_ip += one.not_ip;
    }
    eprintln!("pcaps/: {} captures, {fed:?}", files.len());
    assert!(files.len() >= 14 && fed.packets >= 600, "{fed:?}");
}

#[test]
fn every_prefix_and_bit_flip_of_the_shared_captures_gets_one_decision() {
    let test = "every_prefix_and_bit_flip_of_the_shared_captures_gets_one_decision";
    if !common::shared(test) {
        return;
    }
    let engine = Engine::new(Policy::compile("payload.rules", PAYLOAD_POLICY).unwrap());
    let (mut fed, mut rng) = (Fed::default(), Rng::new(0x5eed_0002));
    let files = common::captures();
    for file in &files {
        let mut one = Fed::default();
        damage(&engine, file, SHARED_PACKETS, &mut rng, &mut one);
        fed.packets += one.packets;
        fed.prefixes += one.prefixes;
        fed.flips += one.flips;
        fed.not_ip += one.not_ip;
    }
    eprintln!("../shared/pcaps-real: {} captures, {fed:?}", files.len());
    assert!(fed.packets >= 1500, "{fed:?}");
}
