//! Deterministic generator for outgate's test captures.
//!
//! ```text
//! cargo run --example gen_fixtures -- OUT_DIR
//! cargo run --release --example gen_fixtures -- --bench [PACKETS [FLOWS]] FILE
//! ```
//!
//! The first form writes the fixture captures described in `pcaps/README.md`
//! into OUT_DIR. The second writes a synthetic office-traffic capture of
//! PACKETS packets (default 1,000,000) over FLOWS flows (default one per 10
//! packets) for throughput benchmarks: the library's
//! `outgate::bench::synthetic`, which `outgate bench --synthetic` replays.
//!
//! Every run produces the same bytes: timestamps are fixed (starting at
//! 2024-03-01T09:00:00Z, 10:00:00Z for the payload-inspection captures)
//! and the only randomness is a fixed-seed xorshift.

use std::borrow::Cow;
use std::error::Error;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use etherparse::icmpv4::TimestampMessage;
use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, Ethernet2Header, IcmpEchoHeader, Icmpv4Type,
    Icmpv6Type, IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv6FragmentHeader, Ipv6Header,
    LinuxSllPacketType, PacketBuilder, TcpHeader, TcpOptionElement, UdpHeader, VlanId,
};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::SectionHeaderBlock;
use pcap_file::{DataLink, Endianness, TsResolution};

use outgate::bench::synthetic::payload::{
    Rng, dns_query, dns_response, filler, ntp_reply, ntp_request, tls_app_data, tls_client_hello,
    tls_client_hello_opt, tls_server_flight,
};
use outgate::bench::synthetic::{self, SyntheticConfig};

mod apps;
mod basics;
mod capture;
mod edges;
mod http;
mod packet;
mod payload;
mod script;

use apps::*;
use basics::*;
use capture::*;
use edges::*;
use http::*;
use packet::*;
use payload::*;
use script::*;

type Res<T> = Result<T, Box<dyn Error>>;

/// 2024-03-01T09:00:00Z in nanoseconds since the Unix epoch.
const T0: u64 = 1_709_283_600 * SEC;
const US: u64 = 1_000;
const MS: u64 = 1_000_000;
const SEC: u64 = 1_000_000_000;

const SNAPLEN: u32 = 65_535;
const BENCH_DEFAULT_PACKETS: u64 = 1_000_000;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

const C4: IpAddr = ip4(10, 0, 0, 2);
const C6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2));

// TCP flag bits, as on the wire.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

const fn ip4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// 2001:db8::`last`
const fn doc6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x0db8, 0, 0, 0, 0, 0, last))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gen_fixtures: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, file] if flag == "--bench" => bench(BENCH_DEFAULT_PACKETS, None, Path::new(file)),
        [flag, n, file] if flag == "--bench" => bench(parse_count(n)?, None, Path::new(file)),
        [flag, n, flows, file] if flag == "--bench" => {
            bench(parse_count(n)?, Some(parse_count(flows)?), Path::new(file))
        }
        [dir] if !dir.starts_with('-') => fixtures(Path::new(dir)),
        _ => {
            Err("usage: gen_fixtures OUT_DIR | gen_fixtures --bench [PACKETS [FLOWS]] FILE".into())
        }
    }
}

fn parse_count(s: &str) -> Res<u64> {
    let digits: String = s.chars().filter(|c| *c != '_' && *c != ',').collect();
    let n: u64 = digits.parse().map_err(|_| format!("bad count {s:?}"))?;
    if n == 0 {
        return Err("counts must be positive".into());
    }
    Ok(n)
}

fn fixtures(dir: &Path) -> Res<()> {
    fs::create_dir_all(dir)?;
    type Gen = fn(&Path) -> Res<usize>;
    let all: [(&str, Gen); 14] = [
        ("office_mix.pcap", office_mix),
        ("fragments.pcap", fragments),
        ("malformed.pcap", malformed),
        ("links.pcapng", links),
        ("sll2_bigendian_nsec.pcap", sll2_bigendian_nsec),
        ("zones.pcap", zones),
        ("expiry.pcap", expiry),
        ("http_hosts.pcap", http_hosts),
        ("http_evasions.pcap", http_evasions),
        ("tls_hellos.pcap", tls_hellos),
        ("ports_apps.pcap", ports_apps),
        ("ftp_passive.pcap", ftp_passive),
        ("midstream.pcap", midstream),
        ("learn_lan.pcap", learn_lan),
    ];
    for (name, generate) in all {
        let path = dir.join(name);
        let count = generate(&path)?;
        println!("{:<40} {count:>3} packets", path.display());
    }
    Ok(())
}

fn bench(packets: u64, flows: Option<u64>, path: &Path) -> Res<()> {
    let started = Instant::now();
    let mut cfg = SyntheticConfig::new(packets);
    if let Some(flows) = flows {
        cfg = cfg.with_flows(flows);
    }
    let made = synthetic::write_capture(path, cfg)?;
    println!(
        "{}: {} packets, {} flows ({:.1} packets per flow), {:.1} MB of frames, {:.1} s of traffic, \
         generated in {:.2?}",
        path.display(),
        made.packets,
        made.flows,
        made.packets as f64 / made.flows.max(1) as f64,
        made.bytes as f64 / 1e6,
        made.span_ns as f64 / SEC as f64,
        started.elapsed()
    );
    Ok(())
}
