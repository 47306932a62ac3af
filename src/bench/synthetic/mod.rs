//! Synthetic office traffic for throughput benchmarks: `outgate bench --synthetic N` and
//! `gen_fixtures --bench N FILE` both write their captures here.
//!
//! The mix is an office's outbound traffic as the ports see it: half HTTPS (a real TLS 1.3 ClientHello
//! naming one of 16 hosts, then records both ways), a fifth plain HTTP (GET with a Host), DNS, NTP, SSH,
//! and a few flows each of an HTTP proxy, RDP, BitTorrent and OpenVPN. Every flow is complete: the TCP
//! ones from SYN to the last ACK, the UDP ones a request and its answers. Clients are 10.0.0.0/16, servers
//! 2,000 addresses of 198.18.0.0/15 (half the flows go to 100 popular ones), all IPv4 in Ethernet frames;
//! up to 10,000 flows are open at once, their packets interleaved at random, 5 to 100 µs apart.
//!
//! Contract: the same [`SyntheticConfig`] gives the same bytes (a fixed-seed xorshift is the only
//! randomness). Exactly `packets` frames are made, over exactly `flows` flows whenever the flows' shortest
//! forms fit into the packets (a TCP flow needs 8 packets, a UDP one 2) and the flows' lengths can be
//! stretched to fill them; otherwise over as many flows as fit, or more flows of the same mix when the
//! asked ones cannot fill the packets. The flows' lengths keep the mix's proportions (long HTTPS and SSH
//! flows, short HTTP and proxy ones), scaled to the packets per flow asked.

mod flow;
pub mod payload;

use std::path::Path;

use crate::Timestamp;
use crate::replay::writer::{CaptureWriter, WriteError};
use flow::{Flow, Payloads};
use payload::Rng;

/// Packets per flow when no flow count is asked: 1,000,000 packets over 100,000 flows.
pub const PACKETS_PER_FLOW: u64 = 10;

const US: u64 = 1_000;
/// The first packet's time: 2024-03-01T09:00:00Z in nanoseconds since the Unix epoch.
const T0: u64 = 1_709_283_600 * 1_000_000_000;
/// "outgate!"
const SEED: u64 = 0x6f75_7467_6174_6521;
const MAX_OPEN: u64 = 10_000;

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticConfig {
    pub packets: u64,
    pub flows: u64,
}

impl SyntheticConfig {
    /// `packets` packets over one flow per [`PACKETS_PER_FLOW`] packets.
    pub fn new(packets: u64) -> SyntheticConfig {
        SyntheticConfig {
            packets,
            flows: (packets / PACKETS_PER_FLOW).max(1),
        }
    }

    /// The same packets over `flows` flows.
    pub fn with_flows(self, flows: u64) -> SyntheticConfig {
        SyntheticConfig { flows, ..self }
    }
}

/// What a generated capture holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Generated {
    pub packets: u64,
    /// Flows started (all of them complete when the asked flows fit, see the module's contract).
    pub flows: u64,
    /// Bytes of frames (link header onwards).
    pub bytes: u64,
    /// Time from the first packet to the last.
    pub span_ns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    #[error(transparent)]
    Write(#[from] WriteError),
    /// etherparse refused a frame (cannot happen with this module's payloads, which are at most 1,400
    /// bytes; reported rather than hidden).
    #[error("cannot build a synthetic frame: {0}")]
    Build(String),
    /// `stop` said so (Ctrl-C): the file is incomplete.
    #[error("interrupted")]
    Stopped,
}

/// Writes the synthetic traffic to `path` as an Ethernet pcap.
pub fn write_capture(path: &Path, cfg: SyntheticConfig) -> Result<Generated, SyntheticError> {
    write_capture_until(path, cfg, || false)
}

/// [`write_capture`], asking `stop` every 65,536 frames whether to give up ([`SyntheticError::Stopped`]).
pub fn write_capture_until(
    path: &Path,
    cfg: SyntheticConfig,
    stop: impl Fn() -> bool,
) -> Result<Generated, SyntheticError> {
    let mut w = CaptureWriter::create_ethernet(path)?;
    let mut traffic = Synthetic::new(cfg);
    let mut frame = Vec::with_capacity(2048);
    let mut bytes = 0u64;
    let mut last = Timestamp::from_nanos(T0);
    while let Some(ts) = traffic.next_frame(&mut frame)? {
        if traffic.emitted.is_multiple_of(65_536) && stop() {
            return Err(SyntheticError::Stopped);
        }
        w.write(ts, &frame, frame.len() as u32)?;
        bytes += frame.len() as u64;
        last = ts;
    }
    w.finish()?;
    Ok(Generated {
        packets: traffic.emitted,
        flows: traffic.started,
        bytes,
        span_ns: last.as_nanos() - T0,
    })
}

/// The traffic, one frame at a time.
pub(crate) struct Synthetic {
    rng: Rng,
    payloads: Payloads,
    /// Flows not started yet, in order.
    plan: std::vec::IntoIter<Planned>,
    open: Vec<Flow>,
    max_open: usize,
    packets: u64,
    emitted: u64,
    started: u64,
    ts: u64,
    scratch: Vec<u8>,
}

impl Synthetic {
    pub fn new(cfg: SyntheticConfig) -> Synthetic {
        let mut rng = Rng(SEED);
        let plan = plan(&mut rng, cfg);
        Synthetic {
            rng,
            payloads: Payloads::new(),
            plan: plan.into_iter(),
            open: Vec::new(),
            max_open: (cfg.packets / 20).clamp(1, MAX_OPEN) as usize,
            packets: cfg.packets,
            emitted: 0,
            started: 0,
            ts: T0,
            scratch: Vec::with_capacity(2048),
        }
    }

    /// Flows started so far.
    #[cfg(test)]
    pub(crate) fn flows_started(&self) -> u64 {
        self.started
    }

    /// Replaces `out` with the next frame and gives its time; `None` after the last.
    pub(crate) fn next_frame(
        &mut self,
        out: &mut Vec<u8>,
    ) -> Result<Option<Timestamp>, SyntheticError> {
        if self.emitted >= self.packets {
            return Ok(None);
        }
        // Ramp up to `max_open` flows, one new flow per 2 packets; after that a finished flow is
        // replaced by the next one.
        if self.open.len() < self.max_open
            && (self.emitted & 1 == 0 || self.open.is_empty())
            && let Some(flow) = self.start_flow()
        {
            self.open.push(flow);
        }
        let idx = self.rng.below(self.open.len() as u64) as usize;
        out.clear();
        let ip_id = self.emitted as u16;
        let Some(flow) = self.open.get_mut(idx) else {
            return Ok(None); // only when nothing can start, which `start_flow` rules out
        };
        flow.next_packet(out, &mut self.rng, ip_id, &self.payloads, &mut self.scratch)
            .map_err(|e| SyntheticError::Build(e.to_string()))?;
        let done = flow.done();
        if done {
            match self.start_flow() {
                Some(next) => self.open[idx] = next,
                None => {
                    self.open.swap_remove(idx);
                }
            }
        }
        self.emitted += 1;
        self.ts += self.rng.range(5, 100) * US;
        Ok(Some(Timestamp::from_nanos(self.ts)))
    }

    /// The next planned flow; past the plan, a fresh one of the mix only when no flow is open (the
    /// asked flows could not fill the packets).
    fn start_flow(&mut self) -> Option<Flow> {
        let planned = match self.plan.next() {
            Some(p) => p,
            None if self.open.is_empty() => draw(&mut self.rng),
            None => return None,
        };
        self.started += 1;
        Some(Flow::new(&mut self.rng, self.started - 1, planned))
    }
}

/// What a benchmark flow carries; decides its port and its first payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum App {
    Https,
    Http,
    Dns,
    Ntp,
    Ssh,
    HttpProxy,
    Rdp,
    BitTorrent,
    OpenVpn,
}

impl App {
    fn udp(self) -> bool {
        matches!(self, App::Dns | App::Ntp | App::OpenVpn)
    }

    /// Packets beyond the counted ones: the TCP handshake (3) and close (3).
    fn overhead(self) -> u64 {
        if self.udp() { 0 } else { 6 }
    }

    /// The fewest counted packets: the client's first payload and the server's answer. DNS and NTP
    /// flows are always exactly that.
    fn min(self) -> u64 {
        2
    }

    fn stretches(self) -> bool {
        !matches!(self, App::Dns | App::Ntp)
    }
}

/// A flow before it starts: its app and its counted packets (data packets for TCP, all for UDP).
#[derive(Clone, Copy, Debug)]
struct Planned {
    app: App,
    n: u64,
}

/// One flow of the mix, its length as an office's.
fn draw(rng: &mut Rng) -> Planned {
    let (app, n) = match rng.below(100) {
        0..=49 => (App::Https, rng.range(8, 44)),
        50..=69 => (App::Http, rng.range(2, 20)),
        70..=79 => (App::Dns, 2),
        80..=81 => (App::Ntp, 2),
        82..=84 => (App::Ssh, rng.range(10, 60)),
        _ => match rng.below(4) {
            0 => (App::HttpProxy, rng.range(2, 10)),
            1 => (App::Rdp, rng.range(4, 20)),
            2 => (App::BitTorrent, rng.range(2, 12)),
            _ => (App::OpenVpn, rng.range(3, 9)),
        },
    };
    Planned { app, n }
}

/// `cfg.flows` flows of the mix whose lengths add up to `cfg.packets`: each flow gets its shortest form,
/// and the packets left are shared among the flows that can stretch in proportion to how long the mix
/// made them. Flows that do not fit even in their shortest forms are left out.
fn plan(rng: &mut Rng, cfg: SyntheticConfig) -> Vec<Planned> {
    let mut plan = Vec::with_capacity(cfg.flows.min(cfg.packets) as usize);
    let mut shortest = 0u64;
    for _ in 0..cfg.flows.min(cfg.packets) {
        let p = draw(rng);
        let need = p.app.overhead() + p.app.min();
        if shortest + need > cfg.packets {
            break;
        }
        shortest += need;
        plan.push(p);
    }
    let left = u128::from(cfg.packets - shortest);
    let weight = |p: &Planned| u128::from(p.n - p.app.min() + 1);
    let total: u128 = plan.iter().filter(|p| p.app.stretches()).map(weight).sum();
    if total == 0 {
        return plan;
    }
    let mut given = 0u128;
    let mut extra = Vec::with_capacity(plan.len());
    for p in &plan {
        let e = if p.app.stretches() {
            left * weight(p) / total
        } else {
            0
        };
        given += e;
        extra.push(e);
    }
    // The rounding's remainder (fewer than the stretching flows), one packet each to the first ones.
    let mut remainder = left - given;
    for (p, e) in plan.iter_mut().zip(extra) {
        let one = u128::from(remainder > 0 && p.app.stretches());
        remainder -= one;
        p.n = p.app.min() + (e + one) as u64;
    }
    plan
}

#[cfg(test)]
mod tests;
