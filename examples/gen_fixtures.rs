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

// ---------------------------------------------------------------------------
// Packet construction
// ---------------------------------------------------------------------------

/// Link layer a packet is framed in.
#[derive(Clone, Copy, Debug)]
enum Link {
    Eth,
    /// 802.1Q tag with this VLAN id.
    Vlan(u16),
    /// 802.1ad outer tag (0x88a8) and 802.1Q inner tag.
    QinQ(u16, u16),
    /// Linux cooked capture v1 (16 bytes).
    Sll,
    /// Linux cooked capture v2 (20 bytes).
    Sll2,
    /// No link header at all.
    Raw,
    /// BSD loopback: 4-byte address family in host (little) endian.
    Null,
}

/// Which side sends: the LAN client (`Out`) or a remote server (`In`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Out,
    In,
}

impl Dir {
    /// (source MAC, destination MAC) for a frame going this way.
    fn macs(self) -> ([u8; 6], [u8; 6]) {
        match self {
            Dir::Out => (CLIENT_MAC, GW_MAC),
            Dir::In => (GW_MAC, CLIENT_MAC),
        }
    }

    fn ttl(self) -> u8 {
        match self {
            Dir::Out => 64,
            Dir::In => 57,
        }
    }
}

/// Transport layer of a packet; its payload is passed separately.
enum L4 {
    Tcp(TcpHeader),
    Udp(u16, u16),
    Icmp4(Icmpv4Type),
    Icmp6(Icmpv6Type),
    /// No transport header known to etherparse: the payload follows the IP
    /// header directly and the IP protocol is this number.
    Proto(IpNumber),
}

/// Link and network parameters of one packet.
struct Hdr {
    link: Link,
    dir: Dir,
    macs: ([u8; 6], [u8; 6]),
    src: IpAddr,
    dst: IpAddr,
    ip_id: u16,
}

/// Appends one complete frame (link header onwards) to `out`.
fn build(out: &mut Vec<u8>, h: &Hdr, l4: L4, payload: &[u8]) -> Res<()> {
    let ttl = h.dir.ttl();
    let ip = match (h.src, h.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => IpHeaders::Ipv4(
            Ipv4Header {
                source: s.octets(),
                destination: d.octets(),
                time_to_live: ttl,
                identification: h.ip_id,
                dont_fragment: true,
                ..Default::default()
            },
            Default::default(),
        ),
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                source: s.octets(),
                destination: d.octets(),
                hop_limit: ttl,
                ..Default::default()
            },
            Default::default(),
        ),
        _ => return Err("source and destination address families differ".into()),
    };
    let (smac, dmac) = h.macs;
    let step = match h.link {
        Link::Eth => PacketBuilder::ethernet2(smac, dmac).ip(ip),
        Link::Vlan(id) => PacketBuilder::ethernet2(smac, dmac)
            .single_vlan(VlanId::try_new(id)?)
            .ip(ip),
        Link::QinQ(outer, inner) => PacketBuilder::ethernet2(smac, dmac)
            .double_vlan(VlanId::try_new(outer)?, VlanId::try_new(inner)?)
            .ip(ip),
        Link::Sll => {
            let ptype = match h.dir {
                Dir::Out => LinuxSllPacketType::OUTGOING,
                Dir::In => LinuxSllPacketType::HOST,
            };
            let mut addr = [0u8; 8];
            addr[..6].copy_from_slice(&smac);
            PacketBuilder::linux_sll(ptype, 6, addr).ip(ip)
        }
        Link::Sll2 => {
            out.extend_from_slice(&sll2_header(h.dir, h.src.is_ipv6(), smac));
            PacketBuilder::ip(ip)
        }
        Link::Null => {
            // AF_INET is 2 everywhere; 24 is the BSD AF_INET6 value.
            let family: u32 = if h.src.is_ipv6() { 24 } else { 2 };
            out.extend_from_slice(&family.to_le_bytes());
            PacketBuilder::ip(ip)
        }
        Link::Raw => PacketBuilder::ip(ip),
    };
    match l4 {
        L4::Tcp(t) => step.tcp_header(t).write(out, payload)?,
        L4::Udp(s, d) => step.udp(s, d).write(out, payload)?,
        L4::Icmp4(t) => step.icmpv4(t).write(out, payload)?,
        L4::Icmp6(t) => step.icmpv6(t).write(out, payload)?,
        L4::Proto(n) => step.write(out, n, payload)?,
    }
    Ok(())
}

/// LINUX_SLL2 header: protocol, reserved, ifindex, ARPHRD, packet type,
/// address length, 8 address bytes (all multi-byte fields big-endian).
fn sll2_header(dir: Dir, v6: bool, sender: [u8; 6]) -> [u8; 20] {
    let mut h = [0u8; 20];
    let proto: u16 = if v6 { 0x86dd } else { 0x0800 };
    h[0..2].copy_from_slice(&proto.to_be_bytes());
    h[4..8].copy_from_slice(&2u32.to_be_bytes()); // ifindex 2 (eth0)
    h[8..10].copy_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
    h[10] = match dir {
        Dir::Out => 4, // PACKET_OUTGOING
        Dir::In => 0,  // PACKET_HOST
    };
    h[11] = 6;
    h[12..18].copy_from_slice(&sender);
    h
}

/// Ethernet II frame around an already built network-layer packet.
fn eth_frame(dir: Dir, ether_type: EtherType, net: &[u8]) -> Vec<u8> {
    let (source, destination) = dir.macs();
    let eth = Ethernet2Header {
        source,
        destination,
        ether_type,
    };
    let mut out = Vec::with_capacity(Ethernet2Header::LEN + net.len());
    out.extend_from_slice(&eth.to_bytes());
    out.extend_from_slice(net);
    out
}

/// A TCP header with realistic windows and, on SYNs, Linux-like options.
fn tcp_header(
    ports: (u16, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    dir: Dir,
    v6: bool,
) -> Res<TcpHeader> {
    let syn = flags & SYN != 0;
    let window = match (syn, dir) {
        (true, Dir::Out) => 64_240,
        (true, Dir::In) => 65_160,
        (false, Dir::Out) => 502,
        (false, Dir::In) => 509,
    };
    let mut t = TcpHeader::new(ports.0, ports.1, seq, window);
    t.fin = flags & FIN != 0;
    t.syn = syn;
    t.rst = flags & RST != 0;
    t.psh = flags & PSH != 0;
    t.ack = flags & ACK != 0;
    if t.ack {
        t.acknowledgment_number = ack;
    }
    if syn {
        t.set_options(&[
            TcpOptionElement::MaximumSegmentSize(if v6 { 1440 } else { 1460 }),
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])?;
    }
    Ok(t)
}

/// Hands out IPv4 identification values, separately per direction.
struct Net {
    out_id: u16,
    in_id: u16,
}

impl Net {
    fn new() -> Net {
        Net {
            out_id: 0x1c40,
            in_id: 0x8a10,
        }
    }

    fn next_id(&mut self, dir: Dir) -> u16 {
        let id = match dir {
            Dir::Out => &mut self.out_id,
            Dir::In => &mut self.in_id,
        };
        *id = id.wrapping_add(1);
        *id
    }

    fn pkt(
        &mut self,
        link: Link,
        dir: Dir,
        src: IpAddr,
        dst: IpAddr,
        l4: L4,
        payload: &[u8],
    ) -> Res<Vec<u8>> {
        let h = Hdr {
            link,
            dir,
            macs: dir.macs(),
            src,
            dst,
            ip_id: self.next_id(dir),
        };
        let mut out = Vec::with_capacity(128 + payload.len());
        build(&mut out, &h, l4, payload)?;
        Ok(out)
    }

    fn udp(&mut self, dir: Dir, src: (IpAddr, u16), dst: (IpAddr, u16), p: &[u8]) -> Res<Vec<u8>> {
        self.pkt(Link::Eth, dir, src.0, dst.0, L4::Udp(src.1, dst.1), p)
    }
}

/// One TCP connection; tracks the next sequence number of each side.
struct Tcp {
    link: Link,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    c_nxt: u32,
    s_nxt: u32,
}

impl Tcp {
    fn new(client: (IpAddr, u16), server: (IpAddr, u16), c_isn: u32, s_isn: u32) -> Tcp {
        Tcp {
            link: Link::Eth,
            client,
            server,
            c_nxt: c_isn,
            s_nxt: s_isn,
        }
    }

    /// Builds the next segment sent by `dir`; SYN, FIN and payload advance
    /// that side's sequence number, and ACK acknowledges everything the
    /// other side has sent so far.
    fn seg(&mut self, net: &mut Net, dir: Dir, flags: u8, payload: &[u8]) -> Res<Vec<u8>> {
        let (src, dst, seq, ack) = match dir {
            Dir::Out => (self.client, self.server, self.c_nxt, self.s_nxt),
            Dir::In => (self.server, self.client, self.s_nxt, self.c_nxt),
        };
        let v6 = src.0.is_ipv6();
        let t = tcp_header((src.1, dst.1), seq, ack, flags, dir, v6)?;
        let advance =
            payload.len() as u32 + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        match dir {
            Dir::Out => self.c_nxt = self.c_nxt.wrapping_add(advance),
            Dir::In => self.s_nxt = self.s_nxt.wrapping_add(advance),
        }
        net.pkt(self.link, dir, src.0, dst.0, L4::Tcp(t), payload)
    }

    /// A retransmission of the client's SYN (same sequence number).
    fn syn_again(&mut self, net: &mut Net) -> Res<Vec<u8>> {
        self.c_nxt = self.c_nxt.wrapping_sub(1);
        self.seg(net, Dir::Out, SYN, &[])
    }
}

// ---------------------------------------------------------------------------
// Payloads
// ---------------------------------------------------------------------------

/// A TXT answer to `query` whose DNS message is exactly `total` bytes long.
fn dns_big_txt_response(query: &[u8], total: usize) -> Vec<u8> {
    let overhead = dns_response(query, 0, &[]).len();
    let mut remaining = total - overhead;
    let text = b"v=outgate-fixture; padding to make the answer exceed one MTU; ";
    let mut rdata = Vec::with_capacity(remaining);
    while remaining > 0 {
        let n = (remaining - 1).min(255);
        rdata.push(n as u8);
        rdata.extend(text.iter().cycle().take(n));
        remaining -= n + 1;
    }
    dns_response(query, 300, &rdata)
}

/// 56 bytes like Linux ping: a timeval, then 0x10, 0x11, ...
fn ping_payload(ts: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(56);
    p.extend_from_slice(&(ts / SEC).to_le_bytes());
    p.extend_from_slice(&((ts % SEC) / US).to_le_bytes());
    p.extend((0x10u8..).take(40));
    p
}

fn echo4(request: bool, id: u16, seq: u16) -> L4 {
    let h = IcmpEchoHeader { id, seq };
    L4::Icmp4(if request {
        Icmpv4Type::EchoRequest(h)
    } else {
        Icmpv4Type::EchoReply(h)
    })
}

fn arp_who_has(target: [u8; 4]) -> Res<Vec<u8>> {
    let arp = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &CLIENT_MAC,
        &[10, 0, 0, 2],
        &[0; 6],
        &target,
    )?;
    let mut out = Vec::with_capacity(42);
    PacketBuilder::ethernet2(CLIENT_MAC, [0xff; 6])
        .arp(arp)
        .write(&mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Capture files
// ---------------------------------------------------------------------------

struct Rec {
    ts: u64,
    iface: u32,
    orig_len: u32,
    data: Vec<u8>,
}

/// Packets of one capture, each with an absolute timestamp in ns.
#[derive(Default)]
struct Cap {
    recs: Vec<Rec>,
}

impl Cap {
    fn add(&mut self, ts: u64, data: Vec<u8>) {
        self.add_on(0, ts, data);
    }

    fn add_on(&mut self, iface: u32, ts: u64, data: Vec<u8>) {
        let orig_len = data.len() as u32;
        self.recs.push(Rec {
            ts,
            iface,
            orig_len,
            data,
        });
    }

    /// Records only the first `keep` bytes; orig_len stays the full length.
    fn add_cut(&mut self, ts: u64, mut data: Vec<u8>, keep: usize) {
        let orig_len = data.len() as u32;
        data.truncate(keep);
        self.recs.push(Rec {
            ts,
            iface: 0,
            orig_len,
            data,
        });
    }

    /// Puts packets in time order (stable: equal times keep insertion order).
    fn sort(&mut self) {
        self.recs.sort_by_key(|r| r.ts);
    }
}

fn pcap_header(datalink: DataLink, endianness: Endianness, res: TsResolution) -> PcapHeader {
    PcapHeader {
        snaplen: SNAPLEN,
        datalink,
        ts_resolution: res,
        endianness,
        ..Default::default()
    }
}

fn write_pcap(path: &Path, header: PcapHeader, cap: &Cap) -> Res<usize> {
    let mut w = PcapWriter::with_header(BufWriter::new(File::create(path)?), header)?;
    for r in &cap.recs {
        if header.ts_resolution == TsResolution::MicroSecond && r.ts % US != 0 {
            return Err(format!("{}: timestamp {} is not whole µs", path.display(), r.ts).into());
        }
        let pkt = PcapPacket::new(Duration::from_nanos(r.ts), r.orig_len, &r.data);
        w.write_packet(&pkt)?;
    }
    w.into_writer().flush()?;
    Ok(cap.recs.len())
}

fn write_eth_pcap(path: &Path, cap: &Cap) -> Res<usize> {
    let header = pcap_header(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::MicroSecond,
    );
    write_pcap(path, header, cap)
}

// ---------------------------------------------------------------------------
// The fixtures
// ---------------------------------------------------------------------------

fn at(ms: u64) -> u64 {
    T0 + ms * MS
}

/// A LAN client's morning: complete flows in both directions, interleaved.
fn office_mix(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut net = Net::new();
    let mut cap = Cap::default();

    // ARP for the gateway.
    cap.add(at(0), arp_who_has([10, 0, 0, 1])?);

    // DNS: example.org A -> 192.0.2.11.
    let dns4 = (ip4(192, 0, 2, 53), 53);
    let q = dns_query(0x1a2b, "example.org", 1, false);
    cap.add(at(5), net.udp(Out, (C4, 50001), dns4, &q)?);
    let r = dns_response(&q, 3600, &[192, 0, 2, 11]);
    cap.add(at(19), net.udp(In, dns4, (C4, 50001), &r)?);

    // HTTPS 40001 -> 192.0.2.10:443, closed 2.4 s later: 10 packets.
    let mut t = Tcp::new(
        (C4, 40001),
        (ip4(192, 0, 2, 10), 443),
        0x3b9a_0001,
        0x7c01_0000,
    );
    cap.add(at(30), t.seg(&mut net, Out, SYN, &[])?);
    cap.add(at(48), t.seg(&mut net, In, SYN | ACK, &[])?);
    cap.add(at(49), t.seg(&mut net, Out, ACK, &[])?);
    let hello = tls_client_hello("www.example.com", 1);
    cap.add(at(50), t.seg(&mut net, Out, PSH | ACK, &hello)?);
    let mut flight = Vec::new();
    tls_server_flight(&mut flight, 1400, 2, &filler(1400, 2));
    cap.add(at(70), t.seg(&mut net, In, ACK, &flight)?);
    let mut fin = vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01]; // ChangeCipherSpec
    tls_app_data(&mut fin, 120, &filler(120, 3));
    cap.add(at(75), t.seg(&mut net, Out, PSH | ACK, &fin)?);
    let mut data = Vec::new();
    tls_app_data(&mut data, 900, &filler(900, 4));
    cap.add(at(95), t.seg(&mut net, In, PSH | ACK, &data)?);
    cap.add(at(2450), t.seg(&mut net, Out, FIN | ACK, &[])?);
    cap.add(at(2468), t.seg(&mut net, In, FIN | ACK, &[])?);
    cap.add(at(2469), t.seg(&mut net, Out, ACK, &[])?);

    // NTP.
    let ntp = (ip4(192, 0, 2, 123), 123);
    let req = ntp_request(at(60));
    cap.add(at(60), net.udp(Out, (C4, 50002), ntp, &req)?);
    let rep = ntp_reply(&req, at(70) + 250 * US, at(70) + 300 * US);
    cap.add(at(81), net.udp(In, ntp, (C4, 50002), &rep)?);

    // HTTP 40002 -> 192.0.2.11:80: 8 packets.
    let mut t = Tcp::new(
        (C4, 40002),
        (ip4(192, 0, 2, 11), 80),
        0x5a17_2000,
        0x0e44_9000,
    );
    let body = "<html><body>outgate fixture</body></html>\n";
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    cap.add(at(110), t.seg(&mut net, Out, SYN, &[])?);
    cap.add(at(126), t.seg(&mut net, In, SYN | ACK, &[])?);
    cap.add(at(127), t.seg(&mut net, Out, ACK, &[])?);
    let get = b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n";
    cap.add(at(128), t.seg(&mut net, Out, PSH | ACK, get)?);
    cap.add(at(150), t.seg(&mut net, In, PSH | ACK, resp.as_bytes())?);
    cap.add(at(160), t.seg(&mut net, Out, FIN | ACK, &[])?);
    cap.add(at(176), t.seg(&mut net, In, FIN | ACK, &[])?);
    cap.add(at(177), t.seg(&mut net, Out, ACK, &[])?);

    // Ping 192.0.2.1, three echoes one second apart, each answered.
    let gw = ip4(192, 0, 2, 1);
    for seq in 1..=3u16 {
        let sent = at(200 + 1000 * u64::from(seq - 1));
        let p = ping_payload(sent);
        cap.add(
            sent,
            net.pkt(Link::Eth, Out, C4, gw, echo4(true, 0x1234, seq), &p)?,
        );
        let back = sent + (13 + u64::from(seq)) * MS;
        cap.add(
            back,
            net.pkt(Link::Eth, In, gw, C4, echo4(false, 0x1234, seq), &p)?,
        );
    }

    // 40003 -> 198.51.100.7:8080: SYN at 0 s, +1 s, +3 s, never answered.
    let mut t = Tcp::new((C4, 40003), (ip4(198, 51, 100, 7), 8080), 0x1111_0000, 0);
    cap.add(at(300), t.seg(&mut net, Out, SYN, &[])?);
    cap.add(at(1300), t.syn_again(&mut net)?);
    cap.add(at(3300), t.syn_again(&mut net)?);

    // 40004 -> 198.51.100.8:6881: refused with RST/ACK.
    let mut t = Tcp::new((C4, 40004), (ip4(198, 51, 100, 8), 6881), 0x2222_0000, 0);
    cap.add(at(350), t.seg(&mut net, Out, SYN, &[])?);
    cap.add(at(368), t.seg(&mut net, In, RST | ACK, &[])?);

    // OpenVPN P_CONTROL_HARD_RESET_CLIENT_V2, retried every 2 s, unanswered.
    let mut ovpn = vec![0x38];
    ovpn.extend_from_slice(&[0x5e, 0xc1, 0x0d, 0x7a, 0x42, 0x99, 0x13, 0x08]); // session id
    ovpn.extend_from_slice(&[0, 0, 0, 0, 0]); // no acks, packet-id 0
    for k in 0..3u64 {
        let p = net.udp(Out, (C4, 50003), (ip4(203, 0, 113, 9), 1194), &ovpn)?;
        cap.add(at(400 + 2000 * k), p);
    }

    // ICMP timestamp request, no reply.
    let ts_msg = TimestampMessage {
        id: 0x1234,
        seq: 1,
        originate_timestamp: (9 * 3600 * 1000 + 450) as u32, // ms since midnight UT
        receive_timestamp: 0,
        transmit_timestamp: 0,
    };
    let l4 = L4::Icmp4(Icmpv4Type::TimestampRequest(ts_msg));
    cap.add(at(450), net.pkt(Link::Eth, Out, C4, gw, l4, &[])?);

    // IPv6 DNS: example.org AAAA -> 2001:db8::10.
    let dns6 = (doc6(0x53), 53);
    let q = dns_query(0x6b2c, "example.org", 28, false);
    cap.add(at(500), net.udp(Out, (C6, 50010), dns6, &q)?);
    let aaaa = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10).octets();
    let r = dns_response(&q, 3600, &aaaa);
    cap.add(at(517), net.udp(In, dns6, (C6, 50010), &r)?);

    // IPv6 HTTPS [fd00::2]:40010 -> [2001:db8::10]:443: 8 packets.
    let mut t = Tcp::new((C6, 40010), (doc6(0x10), 443), 0x6000_0001, 0x9000_0001);
    cap.add(at(520), t.seg(&mut net, Out, SYN, &[])?);
    cap.add(at(540), t.seg(&mut net, In, SYN | ACK, &[])?);
    cap.add(at(541), t.seg(&mut net, Out, ACK, &[])?);
    let hello = tls_client_hello("example.net", 5);
    cap.add(at(542), t.seg(&mut net, Out, PSH | ACK, &hello)?);
    let mut flight = Vec::new();
    tls_server_flight(&mut flight, 1200, 6, &filler(1200, 6));
    cap.add(at(562), t.seg(&mut net, In, PSH | ACK, &flight)?);
    cap.add(at(1700), t.seg(&mut net, Out, FIN | ACK, &[])?);
    cap.add(at(1720), t.seg(&mut net, In, FIN | ACK, &[])?);
    cap.add(at(1721), t.seg(&mut net, Out, ACK, &[])?);

    // IPv6 SYN to [2001:db8::22]:2222, unanswered.
    let mut t = Tcp::new((C6, 40011), (doc6(0x22), 2222), 0x7000_0001, 0);
    cap.add(at(600), t.seg(&mut net, Out, SYN, &[])?);

    cap.sort();
    write_eth_pcap(path, &cap)
}

/// Splits an IPv4 payload into fragments of at most `chunk` bytes (a
/// multiple of 8) and returns each as a raw IPv4 packet.
fn ipv4_fragments(
    base: &Ipv4Header,
    datagram: &[u8],
    first_offset: u16,
    chunk: usize,
    last_is_final: bool,
) -> Res<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = datagram.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let mut h = base.clone();
        let offset = first_offset + (i * chunk / 8) as u16;
        h.fragment_offset = IpFragOffset::try_new(offset)?;
        h.more_fragments = i + 1 < pieces.len() || !last_is_final;
        h.dont_fragment = false;
        h.set_payload_len(piece.len())?;
        h.header_checksum = h.calc_header_checksum();
        let mut p = h.to_bytes().to_vec();
        p.extend_from_slice(piece);
        out.push(p);
    }
    Ok(out)
}

/// Same for IPv6, with a Fragment extension header in every piece.
fn ipv6_fragments(base: &Ipv6Header, id: u32, datagram: &[u8], chunk: usize) -> Res<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = datagram.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let mut h = base.clone();
        h.next_header = IpNumber::IPV6_FRAGMENTATION_HEADER;
        h.set_payload_length(Ipv6FragmentHeader::LEN + piece.len())?;
        let offset = IpFragOffset::try_new((i * chunk / 8) as u16)?;
        let frag = Ipv6FragmentHeader::new(IpNumber::UDP, offset, i + 1 < pieces.len(), id);
        let mut p = h.to_bytes().to_vec();
        p.extend_from_slice(&frag.to_bytes());
        p.extend_from_slice(piece);
        out.push(p);
    }
    Ok(out)
}

fn udp_datagram4(h: &Ipv4Header, sport: u16, dport: u16, payload: &[u8]) -> Res<Vec<u8>> {
    let udp = UdpHeader::with_ipv4_checksum(sport, dport, h, payload)?;
    let mut d = udp.to_bytes().to_vec();
    d.extend_from_slice(payload);
    Ok(d)
}

fn v4_octets(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => unreachable!("IPv4 address expected"),
    }
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => unreachable!("IPv6 address expected"),
    }
}

fn ipv4_base(src: IpAddr, dst: IpAddr, id: u16, ttl: u8) -> Ipv4Header {
    Ipv4Header {
        source: v4_octets(src),
        destination: v4_octets(dst),
        identification: id,
        time_to_live: ttl,
        protocol: IpNumber::UDP,
        ..Default::default()
    }
}

/// IPv4 and IPv6 UDP fragments, an orphan fragment, and a fragmented
/// datagram from the client to a blocked port.
fn fragments(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut net = Net::new();
    let mut cap = Cap::default();

    // IPv4: TXT query with EDNS, 1800-byte UDP answer in two fragments.
    let dns4 = ip4(192, 0, 2, 53);
    let q = dns_query(0x4e21, "example.org", 16, true);
    cap.add(at(0), net.udp(Out, (C4, 50020), (dns4, 53), &q)?);
    let answer = dns_big_txt_response(&q, 1800 - UdpHeader::LEN);
    let base = ipv4_base(dns4, C4, 0x7a11, In.ttl());
    let datagram = udp_datagram4(&base, 53, 50020, &answer)?;
    for (k, p) in ipv4_fragments(&base, &datagram, 0, 1480, true)?
        .iter()
        .enumerate()
    {
        cap.add(
            at(20) + k as u64 * 60 * US,
            eth_frame(In, EtherType::IPV4, p),
        );
    }

    // IPv6: same exchange, fragmented with Fragment headers (1448 + 352).
    let dns6 = doc6(0x53);
    let q = dns_query(0x4e22, "example.org", 16, true);
    cap.add(at(100), net.udp(Out, (C6, 50021), (dns6, 53), &q)?);
    let answer = dns_big_txt_response(&q, 1800 - UdpHeader::LEN);
    let base = Ipv6Header {
        source: v6_octets(dns6),
        destination: v6_octets(C6),
        hop_limit: In.ttl(),
        next_header: IpNumber::UDP,
        ..Default::default()
    };
    let udp = UdpHeader::with_ipv6_checksum(53, 50021, &base, &answer)?;
    let mut datagram = udp.to_bytes().to_vec();
    datagram.extend_from_slice(&answer);
    for (k, p) in ipv6_fragments(&base, 0x5eed_0001, &datagram, 1448)?
        .iter()
        .enumerate()
    {
        cap.add(
            at(118) + k as u64 * 60 * US,
            eth_frame(In, EtherType::IPV6, p),
        );
    }

    // Orphan: a last fragment (offset 100 = byte 800) of a datagram never seen.
    let base = ipv4_base(ip4(198, 51, 100, 99), C4, 0xbeef, In.ttl());
    let tail = filler(200, 7);
    let p = ipv4_fragments(&base, &tail, 100, 1480, true)?;
    cap.add(at(300), eth_frame(In, EtherType::IPV4, &p[0]));

    // Client -> 198.51.100.5:9999, 2000-byte UDP datagram in two fragments.
    let blocked = ip4(198, 51, 100, 5);
    let base = ipv4_base(C4, blocked, 0x3f01, Out.ttl());
    let datagram = udp_datagram4(&base, 50022, 9999, &filler(1992, 8))?;
    for (k, p) in ipv4_fragments(&base, &datagram, 0, 1480, true)?
        .iter()
        .enumerate()
    {
        cap.add(
            at(400) + k as u64 * 20 * US,
            eth_frame(Out, EtherType::IPV4, p),
        );
    }

    write_eth_pcap(path, &cap)
}

/// RFC 1071 Internet checksum.
fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A valid SYN followed by frames whose IP part is broken in various ways.
fn malformed(path: &Path) -> Res<usize> {
    use Dir::Out;
    let mut net = Net::new();
    let mut cap = Cap::default();
    let web = ip4(192, 0, 2, 10);

    let mut t = Tcp::new((C4, 40030), (web, 443), 0x0abc_0001, 0);
    cap.add(at(0), t.seg(&mut net, Out, SYN, &[])?);

    // (a) IPv4 header cut short after 10 bytes.
    let mut h = ipv4_base(C4, web, 0x2001, 64);
    h.protocol = IpNumber::TCP;
    h.dont_fragment = true;
    h.set_payload_len(20)?;
    h.header_checksum = h.calc_header_checksum();
    let full = h.to_bytes();
    cap.add(at(10), eth_frame(Out, EtherType::IPV4, &full[..10]));

    // (b) version nibble 7 on an otherwise sane UDP packet.
    let mut p = net.pkt(Link::Raw, Out, C4, web, L4::Udp(50030, 53), &filler(16, 9))?;
    p[0] = 0x75;
    cap.add(at(20), eth_frame(Out, EtherType::IPV4, &p));

    // (c) IPv4 says TCP but carries only 2 bytes of it.
    let mut h = ipv4_base(C4, web, 0x2003, 64);
    h.protocol = IpNumber::TCP;
    h.dont_fragment = true;
    h.set_payload_len(2)?;
    h.header_checksum = h.calc_header_checksum();
    let mut p = h.to_bytes().to_vec();
    p.extend_from_slice(&40031u16.to_be_bytes());
    cap.add(at(30), eth_frame(Out, EtherType::IPV4, &p));

    // (d) IPv6 says UDP but carries only 3 bytes of it.
    let h6 = Ipv6Header {
        source: v6_octets(C6),
        destination: v6_octets(doc6(0x53)),
        hop_limit: 64,
        next_header: IpNumber::UDP,
        payload_length: 3,
        ..Default::default()
    };
    let mut p = h6.to_bytes().to_vec();
    p.extend_from_slice(&50031u16.to_be_bytes());
    p.push(0);
    cap.add(at(40), eth_frame(Out, EtherType::IPV6, &p));

    // (e) SYN to port 25 captured with a short snaplen: only the ports made it.
    let mut t = Tcp::new((C4, 40032), (ip4(192, 0, 2, 25), 25), 0x0abc_0005, 0);
    let syn = t.seg(&mut net, Out, SYN, &[])?;
    cap.add_cut(at(50), syn, Ethernet2Header::LEN + Ipv4Header::MIN_LEN + 4);

    // (f) IHL = 15 (60-byte header claimed) but only 20 bytes present.
    let mut h = ipv4_base(C4, web, 0x2006, 64);
    h.protocol = IpNumber::TCP;
    h.dont_fragment = true;
    h.total_len = 60;
    let mut p = h.to_bytes().to_vec();
    p[0] = 0x4f;
    p[10..12].copy_from_slice(&[0, 0]);
    let sum = inet_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    cap.add(at(60), eth_frame(Out, EtherType::IPV4, &p));

    write_eth_pcap(path, &cap)
}

/// LLDP frame: chassis id (MAC), port id (interface name), TTL, end.
fn lldp_frame() -> Vec<u8> {
    let mut tlvs = Vec::new();
    let mut tlv = |kind: u16, value: &[u8]| {
        tlvs.extend_from_slice(&((kind << 9) | value.len() as u16).to_be_bytes());
        tlvs.extend_from_slice(value);
    };
    let mut chassis = vec![4]; // subtype: MAC address
    chassis.extend_from_slice(&GW_MAC);
    tlv(1, &chassis);
    tlv(2, b"\x05ge-0/0/1"); // subtype: interface name
    tlv(3, &120u16.to_be_bytes());
    tlv(0, &[]);
    let eth = Ethernet2Header {
        source: GW_MAC,
        destination: [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e],
        ether_type: EtherType(0x88cc),
    };
    let mut out = eth.to_bytes().to_vec();
    out.extend_from_slice(&tlvs);
    out
}

/// pcapng with four interfaces of different link types and resolutions.
fn links(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut net = Net::new();
    let mut cap = Cap::default();

    // IDB0 (Ethernet, ns): SYN in VLAN 10, SYN-ACK in QinQ 100/10.
    let mut t = Tcp::new(
        (C4, 40040),
        (ip4(192, 0, 2, 10), 443),
        0x0400_4000,
        0x0800_8000,
    );
    t.link = Link::Vlan(10);
    cap.add_on(0, at(0) + 123, t.seg(&mut net, Out, SYN, &[])?);
    t.link = Link::QinQ(100, 10);
    cap.add_on(0, at(15) + 456, t.seg(&mut net, In, SYN | ACK, &[])?);

    // IDB1 (Linux SLL, µs): outgoing DNS query.
    let q = dns_query(0x5011, "example.org", 1, false);
    let l4 = L4::Udp(50040, 53);
    let p = net.pkt(Link::Sll, Out, C4, ip4(192, 0, 2, 53), l4, &q)?;
    cap.add_on(1, at(30), p);

    // IDB2 (raw IP, µs): IPv6 SYN.
    let mut t = Tcp::new((C6, 40041), (doc6(0x80), 80), 0x0a00_0001, 0);
    t.link = Link::Raw;
    cap.add_on(2, at(45), t.seg(&mut net, Out, SYN, &[])?);

    // IDB3 (BSD loopback, µs): ping 127.0.0.2.
    let lo = (ip4(127, 0, 0, 1), ip4(127, 0, 0, 2));
    let p = net.pkt(
        Link::Null,
        Out,
        lo.0,
        lo.1,
        echo4(true, 7, 1),
        &ping_payload(at(60)),
    )?;
    cap.add_on(3, at(60), p);

    // IDB0 again: LLDP.
    cap.add_on(0, at(75) + 789, lldp_frame());

    let shb = SectionHeaderBlock {
        endianness: Endianness::Little,
        ..Default::default()
    };
    let mut w = PcapNgWriter::with_section_header(BufWriter::new(File::create(path)?), shb)?;
    let idbs = [
        (DataLink::ETHERNET, "eth0", true),
        (DataLink::LINUX_SLL, "any", false),
        (DataLink::RAW, "tun0", false),
        (DataLink::NULL, "lo0", false),
    ];
    for (linktype, name, nanos) in idbs {
        let mut options = vec![InterfaceDescriptionOption::IfName(Cow::Borrowed(name))];
        if nanos {
            options.push(InterfaceDescriptionOption::IfTsResol(9));
        }
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype,
            snaplen: SNAPLEN,
            options,
        })?;
    }
    for r in &cap.recs {
        // pcap-file 2.0.0 writes `timestamp.as_nanos()` as the raw tick
        // count, whatever if_tsresol says: hand it ticks, not a real Duration.
        let ticks = if idbs[r.iface as usize].2 {
            r.ts
        } else if r.ts % US == 0 {
            r.ts / US
        } else {
            return Err("sub-µs timestamp on a µs interface".into());
        };
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: r.iface,
            timestamp: Duration::from_nanos(ticks),
            original_len: r.orig_len,
            data: Cow::Borrowed(&r.data),
            options: vec![],
        })?;
    }
    w.into_inner().flush()?;
    Ok(cap.recs.len())
}

/// Classic pcap, big-endian, nanosecond timestamps, LINUX_SLL2 frames.
fn sll2_bigendian_nsec(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut net = Net::new();
    let mut cap = Cap::default();
    let srv = ip4(192, 0, 2, 10);

    let mut t = Tcp::new((C4, 40050), (srv, 22), 0x5050_0001, 0x2222_0001);
    t.link = Link::Sll2;
    cap.add(at(0) + 101, t.seg(&mut net, Out, SYN, &[])?);
    cap.add(at(12) + 202, t.seg(&mut net, In, SYN | ACK, &[])?);
    cap.add(at(12) + 303_404, t.seg(&mut net, Out, ACK, &[])?);

    let sip = b"OPTIONS sip:192.0.2.10 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:50050\r\nMax-Forwards: 70\r\nCall-ID: fixture@10.0.0.2\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let p = net.pkt(Link::Sll2, Out, C4, srv, L4::Udp(50050, 5060), sip)?;
    cap.add(at(40) + 505, p);

    let header = pcap_header(
        DataLink::LINUX_SLL2,
        Endianness::Big,
        TsResolution::NanoSecond,
    );
    write_pcap(path, header, &cap)
}

/// One packet per zone pair / protocol for zone-based policies.
fn zones(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut net = Net::new();
    // Packets go out 10 ms apart, in this order.
    let mut pkts: Vec<Vec<u8>> = Vec::new();

    let syns = [
        (40060, ip4(172, 16, 0, 5), 22),
        (40061, ip4(192, 0, 2, 10), 443),
        (40062, ip4(192, 0, 2, 66), 80),
        (40063, ip4(198, 51, 100, 20), 80),
        (40064, ip4(198, 51, 100, 20), 25),
    ];
    for (i, (cport, dst, dport)) in syns.into_iter().enumerate() {
        let mut t = Tcp::new(
            (C4, cport),
            (dst, dport),
            0x6000_0000 + i as u32 * 0x1000,
            0,
        );
        pkts.push(t.seg(&mut net, Out, SYN, &[])?);
    }

    let host = ip4(198, 51, 100, 20);
    let q = dns_query(0x2020, "example.org", 1, false);
    pkts.push(net.udp(Out, (C4, 50060), (host, 53), &q)?);
    let p = ping_payload(at(10 * pkts.len() as u64));
    pkts.push(net.pkt(Link::Eth, Out, C4, host, echo4(true, 0x0600, 1), &p)?);

    let echo6 = L4::Icmp6(Icmpv6Type::EchoRequest(IcmpEchoHeader {
        id: 0x0601,
        seq: 1,
    }));
    pkts.push(net.pkt(Link::Eth, Out, C6, doc6(1), echo6, &p)?);

    // GRE carrying a small IPv4 ICMP packet.
    let mut gre = vec![0x00, 0x00, 0x08, 0x00];
    PacketBuilder::ipv4([10, 200, 0, 1], [10, 200, 0, 2], 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut gre, &filler(32, 10))?;
    let outer = L4::Proto(IpNumber::GRE);
    pkts.push(net.pkt(Link::Eth, Out, C4, ip4(198, 51, 100, 30), outer, &gre)?);

    // Inbound SSH attempt from the net.
    let mut t = Tcp::new((C4, 22), (ip4(192, 0, 2, 77), 40065), 0, 0x7700_0001);
    pkts.push(t.seg(&mut net, In, SYN, &[])?);

    let mut cap = Cap::default();
    for (i, p) in pkts.into_iter().enumerate() {
        cap.add(at(10 * i as u64), p);
    }
    write_eth_pcap(path, &cap)
}

/// Flow timeouts and TCP teardown: UDP gaps of 10 s and 190 s, a reset
/// connection with a late packet, and a new SYN on the same 4-tuple.
fn expiry(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut net = Net::new();
    let mut cap = Cap::default();

    let udp = (ip4(192, 0, 2, 99), 5000);
    for (k, sec) in [0u64, 10, 200].into_iter().enumerate() {
        let p = filler(64, 20 + k as u64);
        cap.add(T0 + sec * SEC, net.udp(Out, (C4, 50070), udp, &p)?);
    }

    let srv = (ip4(192, 0, 2, 10), 443);
    let mut t = Tcp::new((C4, 40070), srv, 0x7070_0001, 0x0707_0001);
    cap.add(at(1), t.seg(&mut net, Out, SYN, &[])?);
    cap.add(at(15), t.seg(&mut net, In, SYN | ACK, &[])?);
    cap.add(at(16), t.seg(&mut net, Out, ACK, &[])?);
    cap.add(at(1000), t.seg(&mut net, Out, RST | ACK, &[])?);
    cap.add(at(1100), t.seg(&mut net, In, ACK, &[])?);
    let mut t = Tcp::new((C4, 40070), srv, 0x7171_0001, 0);
    cap.add(at(5000), t.seg(&mut net, Out, SYN, &[])?);

    cap.sort();
    write_eth_pcap(path, &cap)
}

// ---------------------------------------------------------------------------
// Payload-inspection captures
// ---------------------------------------------------------------------------

/// 2024-03-01T10:00:00Z: where the payload-inspection captures start.
const T1: u64 = T0 + 3600 * SEC;
/// Round trip to a server, as seen from the client.
const RTT: u64 = 12 * MS;
/// How long the client takes to send its next segment.
const TURN: u64 = 100 * US;
/// Quiet time between one flow's last packet and the next flow's SYN.
const FLOW_GAP: u64 = 5 * MS;

/// www.example.org and its address.
const WWW: &str = "www.example.org";
const WWW_IP: IpAddr = ip4(192, 0, 2, 11);

const HTTP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A connection from `client` to `server` whose initial sequence numbers
/// are derived from the client port.
fn flow(client: (IpAddr, u16), server: (IpAddr, u16)) -> Tcp {
    let seed = 0x6f67_6973_6e73_0001 ^ u64::from(client.1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed);
    rng.next();
    let c_isn = rng.next() as u32;
    let s_isn = rng.next() as u32;
    Tcp::new(client, server, c_isn, s_isn)
}

impl Tcp {
    /// Moves `dir`'s next sequence number back by `len`, so that its next
    /// segment retransmits the last `len` bytes.
    fn rewind(&mut self, dir: Dir, len: usize) {
        let nxt = match dir {
            Dir::Out => &mut self.c_nxt,
            Dir::In => &mut self.s_nxt,
        };
        *nxt = nxt.wrapping_sub(len as u32);
    }
}

/// Lays a capture's packets out one after another, one flow at a time.
struct Script {
    net: Net,
    cap: Cap,
    now: u64,
}

impl Script {
    fn new() -> Script {
        Script {
            net: Net::new(),
            cap: Cap::default(),
            now: T1,
        }
    }

    /// `t`'s next segment from `dir`, `after` ns after the previous packet.
    fn tcp(&mut self, after: u64, t: &mut Tcp, dir: Dir, flags: u8, payload: &[u8]) -> Res<()> {
        self.now += after;
        let p = t.seg(&mut self.net, dir, flags, payload)?;
        self.cap.add(self.now, p);
        Ok(())
    }

    fn udp(
        &mut self,
        after: u64,
        dir: Dir,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        payload: &[u8],
    ) -> Res<()> {
        self.now += after;
        let p = self.net.udp(dir, src, dst, payload)?;
        self.cap.add(self.now, p);
        Ok(())
    }

    /// Delay before a new flow's first packet (none for the capture's first).
    fn gap(&self) -> u64 {
        if self.cap.recs.is_empty() {
            0
        } else {
            FLOW_GAP
        }
    }

    /// The client's SYN `after` ns from now, the SYN-ACK, the client's ACK.
    fn open(&mut self, after: u64, t: &mut Tcp) -> Res<()> {
        self.tcp(after, t, Dir::Out, SYN, &[])?;
        self.tcp(RTT, t, Dir::In, SYN | ACK, &[])?;
        self.tcp(TURN, t, Dir::Out, ACK, &[])
    }

    /// The client closes, the server closes, the client acknowledges.
    fn close(&mut self, t: &mut Tcp) -> Res<()> {
        self.tcp(MS, t, Dir::Out, FIN | ACK, &[])?;
        self.tcp(RTT, t, Dir::In, FIN | ACK, &[])?;
        self.tcp(TURN, t, Dir::Out, ACK, &[])
    }

    /// One client segment and the server's bare ACK of it.
    fn send_acked(&mut self, t: &mut Tcp, data: &[u8]) -> Res<()> {
        self.tcp(TURN, t, Dir::Out, PSH | ACK, data)?;
        self.tcp(RTT, t, Dir::In, ACK, &[])
    }

    /// A whole connection: handshake, the client's segments (each one
    /// acknowledged), the server's response if any, FIN both ways.
    fn exchange(&mut self, mut t: Tcp, segments: &[&[u8]], response: &[u8]) -> Res<()> {
        self.open(self.gap(), &mut t)?;
        for s in segments {
            self.send_acked(&mut t, s)?;
        }
        if !response.is_empty() {
            self.tcp(MS, &mut t, Dir::In, PSH | ACK, response)?;
        }
        self.close(&mut t)
    }

    /// Two client segments that arrive in reverse order: `second` first, then `first`.
    fn reordered(&mut self, t: &mut Tcp, first: &[u8], second: &[u8]) -> Res<()> {
        let one = t.seg(&mut self.net, Dir::Out, PSH | ACK, first)?;
        let two = t.seg(&mut self.net, Dir::Out, PSH | ACK, second)?;
        self.now += TURN;
        self.cap.add(self.now, two);
        self.now += US;
        self.cap.add(self.now, one);
        Ok(())
    }

    /// Alternating lines: each client line, then the server's answer.
    fn dialogue(&mut self, t: &mut Tcp, lines: &[(&str, &str)]) -> Res<()> {
        for (ask, answer) in lines {
            self.tcp(TURN, t, Dir::Out, PSH | ACK, ask.as_bytes())?;
            self.tcp(RTT, t, Dir::In, PSH | ACK, answer.as_bytes())?;
        }
        Ok(())
    }

    fn write(&self, path: &Path) -> Res<usize> {
        write_eth_pcap(path, &self.cap)
    }
}

/// An HTTP/1.1 request as curl sends it: `line`, the `host` header lines
/// exactly as given, User-Agent and Accept.
fn http_request(line: &str, host: &[&str]) -> Vec<u8> {
    let mut r = format!("{line}\r\n");
    for h in host {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n");
    r.into_bytes()
}

fn http_get(host: &str) -> Vec<u8> {
    http_request("GET / HTTP/1.1", &[&format!("Host: {host}")])
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Res<usize> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .ok_or_else(|| format!("{:?} not found", String::from_utf8_lossy(needle)).into())
}

/// Re-frames the handshake message of TLS `record` as two records, the
/// first holding the message's first `at` bytes.
fn tls_two_records(record: &[u8], at: usize) -> Vec<u8> {
    let msg = &record[5..];
    let mut out = Vec::with_capacity(record.len() + 5);
    for part in [&msg[..at], &msg[at..]] {
        out.extend_from_slice(&record[..3]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// A TLS server's first flight for the TLS captures.
fn tls_reply(seed: u64) -> Vec<u8> {
    let mut flight = Vec::new();
    tls_server_flight(&mut flight, 600, seed, &filler(600, seed));
    flight
}

/// HTTP requests whose Host (or request target) a host rule must read:
/// names, numeric forms, a proxy URI, CONNECT, a POST, odd header spelling.
fn http_hosts(path: &Path) -> Res<usize> {
    let mut s = Script::new();
    let h80 = ip4(192, 0, 2, 80);
    let odd = ip4(198, 51, 100, 80);
    let get = |target: &str, host: &str| {
        http_request(
            &format!("GET {target} HTTP/1.1"),
            &[&format!("Host: {host}")],
        )
    };

    // (a) by name, (b) numeric, (c) numeric with port to :8080, (d) IPv6 literal.
    s.exchange(flow((C4, 51724), (WWW_IP, 80)), &[&http_get(WWW)], HTTP_OK)?;
    s.exchange(
        flow((C4, 43918), (h80, 80)),
        &[&http_get("192.0.2.80")],
        HTTP_OK,
    )?;
    let req = http_get("192.0.2.80:8080");
    s.exchange(flow((C4, 38261), (h80, 8080)), &[&req], HTTP_OK)?;
    let req = http_get("[2001:db8::80]");
    s.exchange(flow((C6, 55409), (doc6(0x80), 80)), &[&req], HTTP_OK)?;
    // (e) 192.168.1.1 as one decimal number, (f) with a hex first octet.
    s.exchange(
        flow((C4, 46083), (odd, 80)),
        &[&http_get("3232235777")],
        HTTP_OK,
    )?;
    s.exchange(
        flow((C4, 59372), (odd, 80)),
        &[&http_get("0x7f.0.0.1")],
        HTTP_OK,
    )?;
    // (g) absolute URI naming another host than the Host header.
    let req = get("http://198.51.100.9/tunnel", WWW);
    s.exchange(flow((C4, 41157), (WWW_IP, 80)), &[&req], HTTP_OK)?;
    // (h) CONNECT through a proxy on :8080.
    let req = http_request(
        "CONNECT 203.0.113.7:443 HTTP/1.1",
        &["Host: 203.0.113.7:443", "Proxy-Connection: Keep-Alive"],
    );
    let proxy = (ip4(198, 51, 100, 3), 8080);
    let est = b"HTTP/1.1 200 Connection established\r\n\r\n";
    s.exchange(flow((C4, 52896), proxy), &[&req], est)?;
    // (i) a URL path a rule may name.
    let req = get("/cgi-bin/gateway.dll?AsyncPoll", WWW);
    s.exchange(flow((C4, 36514), (WWW_IP, 80)), &[&req], HTTP_OK)?;
    // (j) POST with a 16-byte body.
    let body = "outgate fixture\n";
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: files.example.org\r\nUser-Agent: curl/8.5.0\r\n\
         Accept: */*\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let files = (ip4(192, 0, 2, 12), 80);
    let created = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    s.exchange(flow((C4, 48730), files), &[req.as_bytes()], created)?;
    // (k) header name in mixed case, value padded and in mixed case.
    let req = http_request("GET / HTTP/1.1", &["hOsT:   WWW.Example.ORG  "]);
    s.exchange(flow((C4, 57241), (WWW_IP, 80)), &[&req], HTTP_OK)?;

    s.write(path)
}

/// Requests for Host 192.0.2.80 that only a reassembling, careful parser
/// gets right.
fn http_evasions(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut s = Script::new();
    let srv = (ip4(192, 0, 2, 80), 80);
    let numeric = http_get("192.0.2.80");

    // (a) three segments, the first ending inside the Host value.
    let cut1 = find(&numeric, b".2.80")?;
    let cut2 = find(&numeric, b"Accept")?;
    let parts = [&numeric[..cut1], &numeric[cut1..cut2], &numeric[cut2..]];
    s.exchange(flow((C4, 44619), srv), &parts, HTTP_OK)?;

    // (b) two Host headers; servers must refuse such a request.
    let req = http_request(
        "GET / HTTP/1.1",
        &["Host: www.example.org", "Host: 192.0.2.80"],
    );
    let bad = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    s.exchange(flow((C4, 50237), srv), &[&req], bad)?;

    // (c) an empty ACK after the handshake, then the request.
    let mut t = flow((C4, 39874), srv);
    s.open(s.gap(), &mut t)?;
    s.tcp(MS, &mut t, Out, ACK, &[])?;
    s.send_acked(&mut t, &numeric)?;
    s.tcp(MS, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.close(&mut t)?;

    // (d) the first segment (request line and Host) sent again after the
    // 200 ms retransmission timeout, then the rest.
    let cut = find(&numeric, b"User-Agent")?;
    let mut t = flow((C4, 53102), srv);
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &numeric[..cut])?;
    t.rewind(Out, cut);
    s.tcp(200 * MS, &mut t, Out, PSH | ACK, &numeric[..cut])?;
    s.tcp(RTT, &mut t, In, ACK, &[])?;
    s.send_acked(&mut t, &numeric[cut..])?;
    s.tcp(MS, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.close(&mut t)?;

    // (e) an empty line before the request line.
    let mut req = b"\r\n".to_vec();
    req.extend_from_slice(&numeric);
    s.exchange(flow((C4, 47465), srv), &[&req], HTTP_OK)?;

    // (f) two segments that arrive in reverse order (reordered on the way, as on Wi-Fi).
    let cut = find(&numeric, b".2.80")?;
    let mut t = flow((C4, 51733), srv);
    s.open(s.gap(), &mut t)?;
    s.reordered(&mut t, &numeric[..cut], &numeric[cut..])?;
    s.tcp(RTT, &mut t, In, ACK, &[])?;
    s.tcp(MS, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.close(&mut t)?;

    // (g) the first segment sent again with other bytes at the same sequence numbers: which copy the
    // server keeps depends on its TCP stack, so neither can be trusted.
    let named = http_get("www.example.org");
    let cut = find(&named, b"User-Agent")?;
    let mut forged = named[..cut].to_vec();
    let host = find(&forged, b"www.example.org")?;
    forged[host..host + 15].copy_from_slice(b"192.0.2.80:0080");
    let mut t = flow((C4, 42268), srv);
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &named[..cut])?;
    t.rewind(Out, cut);
    s.tcp(TURN, &mut t, Out, PSH | ACK, &forged)?;
    s.send_acked(&mut t, &named[cut..])?;
    s.tcp(MS, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.close(&mut t)?;

    s.write(path)
}

/// TCP connections the capture holds only from their middle (they began before it started), and one
/// that begins in it.
fn midstream(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut s = Script::new();
    // (a) HTTPS already running: the server's data comes first.
    let mut t = flow((C4, 50412), (WWW_IP, 443));
    s.tcp(0, &mut t, In, PSH | ACK, &filler(600, 1))?;
    s.tcp(TURN, &mut t, Out, ACK, &[])?;
    s.tcp(MS, &mut t, Out, PSH | ACK, &filler(80, 2))?;
    // (b) an SSH session already running, to a port the policy closes.
    let mut t = flow((C4, 47120), (ip4(198, 51, 100, 22), 22));
    s.tcp(FLOW_GAP, &mut t, Out, PSH | ACK, &filler(48, 3))?;
    s.tcp(RTT, &mut t, In, PSH | ACK, &filler(48, 4))?;
    // (c) a new SSH connection to the same server: this one the policy blocks.
    let mut t = flow((C4, 47121), (ip4(198, 51, 100, 22), 22));
    s.tcp(FLOW_GAP, &mut t, Out, SYN, &[])?;
    t.rewind(Out, 1);
    s.tcp(SEC, &mut t, Out, SYN, &[])?;
    // (d) plain HTTP already running, the server's data first.
    let mut t = flow((C4, 39900), (ip4(192, 0, 2, 80), 80));
    s.tcp(FLOW_GAP, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.tcp(TURN, &mut t, Out, ACK, &[])?;
    // (e) a peer-to-peer connection from the client's port 1500 to a peer's port 40000, the peer's
    // data first: the ports alone point at the peer as the client; `--lan 10.0.0.0/8` knows better.
    let mut t = flow((C4, 1500), (ip4(198, 51, 100, 7), 40000));
    s.tcp(FLOW_GAP, &mut t, In, PSH | ACK, &filler(100, 5))?;
    s.tcp(TURN, &mut t, Out, ACK, &[])?;
    s.write(path)
}

/// A small LAN's minute for `outgate learn`: four clients in 10.0.0.0/24 (and fd00::2), a LAN server
/// 10.0.0.10. Ports used often, by several clients; ports used seldom or by one client; ICMP echo
/// and timestamp; GRE; connections from the net to the LAN server, and between LAN hosts; and
/// connections seen from their middle, to a port they would otherwise open. It spans under two
/// minutes, the pings last, so that no flow times out: what expiry counts would then depend on the
/// worker count.
fn learn_lan(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    const STEP: u64 = 5 * SEC;
    let lan = |n| ip4(10, 0, 0, n);
    let (a, b, c, d) = (lan(2), lan(3), lan(4), lan(5));
    let server = lan(10);
    let mut s = Script::new();
    s.now = T0 + 20 * SEC;

    // (a) HTTPS: three connections from three clients, two names; two more at the end.
    let cdn = ip4(192, 0, 2, 12);
    let hellos = [
        (a, 41001, WWW_IP, WWW, 501),
        (b, 41002, WWW_IP, WWW, 502),
        (c, 41003, cdn, "cdn.example.net", 503),
    ];
    for (client, port, srv, sni, seed) in hellos {
        let hello = tls_client_hello(sni, seed);
        s.exchange(
            flow((client, port), (srv, 443)),
            &[&hello],
            &tls_reply(seed),
        )?;
    }

    // (b) HTTP: three requests from three clients, one to a numeric host.
    s.now += STEP;
    let gets = [
        (a, 42001, WWW_IP, WWW),
        (d, 42002, WWW_IP, WWW),
        (b, 42003, ip4(198, 51, 100, 80), "198.51.100.80"),
    ];
    for (client, port, srv, host) in gets {
        s.exchange(flow((client, port), (srv, 80)), &[&http_get(host)], HTTP_OK)?;
    }

    // (c) DNS from three clients.
    s.now += STEP;
    let dns = (ip4(192, 0, 2, 53), 53);
    for (k, client) in [a, b, c].into_iter().enumerate() {
        let q = dns_query(0x4c00 + k as u16, "example.org", 1, false);
        s.udp(FLOW_GAP, Out, (client, 50100 + k as u16), dns, &q)?;
        let r = dns_response(&q, 3600, &[192, 0, 2, 11]);
        s.udp(RTT, In, dns, (client, 50100 + k as u16), &r)?;
    }

    // (d) XMPP: four connections, all from one client.
    s.now += STEP;
    for port in 43001..=43004 {
        let mut t = flow((d, port), (ip4(198, 51, 100, 22), 5222));
        s.open(FLOW_GAP, &mut t)?;
        s.close(&mut t)?;
    }

    // (e) one connection to 8443.
    s.now += STEP;
    let mut t = flow((b, 43101), (ip4(203, 0, 113, 8), 8443));
    s.open(0, &mut t)?;
    s.close(&mut t)?;

    // (f) GRE to a tunnel endpoint: only an `all` rule could open it.
    s.now += STEP;
    for k in 0..2u64 {
        let mut gre = vec![0x00, 0x00, 0x08, 0x00];
        PacketBuilder::ipv4([10, 201, 0, 1], [10, 201, 0, 2], 64)
            .icmpv4_echo_request(2, k as u16)
            .write(&mut gre, &filler(32, 40 + k))?;
        let outer = L4::Proto(IpNumber::GRE);
        s.now += SEC;
        let p = s
            .net
            .pkt(Link::Eth, Out, d, ip4(198, 51, 100, 30), outer, &gre)?;
        s.cap.add(s.now, p);
    }

    // (g) SSH from the net to the LAN server, three outside clients: inbound.
    s.now += STEP;
    for (k, outside) in [50u8, 51, 52].into_iter().enumerate() {
        let mut t = flow((ip4(203, 0, 113, outside), 44001 + k as u16), (server, 22));
        s.open(FLOW_GAP, &mut t)?;
        s.close(&mut t)?;
    }

    // (h) SMB between LAN hosts: two clients, four connections.
    s.now += STEP;
    for (k, client) in [b, c, b, c].into_iter().enumerate() {
        let mut t = flow((client, 45001 + k as u16), (server, 445));
        s.open(FLOW_GAP, &mut t)?;
        s.close(&mut t)?;
    }

    // (i) IMAPS sessions already running when the capture began, from three clients: the server's
    // data first, then the client's acknowledgement.
    s.now += STEP;
    for (k, client) in [a, b, c].into_iter().enumerate() {
        let mut t = flow((client, 46001 + k as u16), (ip4(192, 0, 2, 93), 993));
        s.tcp(FLOW_GAP, &mut t, In, PSH | ACK, &filler(200, 60 + k as u64))?;
        s.tcp(TURN, &mut t, Out, ACK, &[])?;
    }

    // (j) HTTPS a minute later: a SYN nobody answers (so no name is seen), and IPv6.
    s.now = T0 + 70 * SEC;
    let mut t = flow((a, 41004), (ip4(192, 0, 2, 7), 443));
    s.tcp(0, &mut t, Out, SYN, &[])?;
    let hello = tls_client_hello(WWW, 505);
    s.exchange(
        flow((C6, 41005), (doc6(0x10), 443)),
        &[&hello],
        &tls_reply(505),
    )?;

    // (k) ping from three clients, each answered; an ICMP timestamp request, unanswered.
    s.now += STEP;
    let gw = ip4(192, 0, 2, 1);
    for (k, client) in [a, c, d].into_iter().enumerate() {
        let id = 0x4100 + k as u16;
        let p = ping_payload(s.now);
        s.now += FLOW_GAP;
        let out = s
            .net
            .pkt(Link::Eth, Out, client, gw, echo4(true, id, 1), &p)?;
        s.cap.add(s.now, out);
        s.now += RTT;
        let back = s
            .net
            .pkt(Link::Eth, In, gw, client, echo4(false, id, 1), &p)?;
        s.cap.add(s.now, back);
    }
    let ts_msg = TimestampMessage {
        id: 0x4200,
        seq: 1,
        originate_timestamp: (9 * 3600 * 1000 + 75 * 1000) as u32, // ms since midnight UT
        receive_timestamp: 0,
        transmit_timestamp: 0,
    };
    let l4 = L4::Icmp4(Icmpv4Type::TimestampRequest(ts_msg));
    s.now += FLOW_GAP;
    let p = s.net.pkt(Link::Eth, Out, a, gw, l4, &[])?;
    s.cap.add(s.now, p);
    s.write(path)
}

/// TLS 1.3 ClientHellos whose SNI a rule must find: plain, absent,
/// numeric, split over records, split over segments, over IPv6.
fn tls_hellos(path: &Path) -> Res<usize> {
    let mut s = Script::new();

    // (a) SNI www.example.org, (b) no SNI, (c) SNI "192.0.2.44".
    let hello = tls_client_hello(WWW, 301);
    s.exchange(flow((C4, 45811), (WWW_IP, 443)), &[&hello], &tls_reply(401))?;
    let hello = tls_client_hello_opt(None, 302);
    let srv = (ip4(192, 0, 2, 43), 443);
    s.exchange(flow((C4, 38092), srv), &[&hello], &tls_reply(402))?;
    let hello = tls_client_hello("192.0.2.44", 303);
    let srv = (ip4(192, 0, 2, 44), 443);
    s.exchange(flow((C4, 54376), srv), &[&hello], &tls_reply(403))?;

    // (d) two handshake records in one segment, split inside the name.
    let hello = tls_client_hello(WWW, 304);
    let name = find(&hello, WWW.as_bytes())?;
    let records = tls_two_records(&hello, name + 7 - 5);
    s.exchange(
        flow((C4, 41723), (WWW_IP, 443)),
        &[&records],
        &tls_reply(404),
    )?;

    // (e) three segments: one cut inside the extension's length field,
    // one inside the name ("www.exa" | "mple.org").
    let hello = tls_client_hello(WWW, 305);
    let name = find(&hello, WWW.as_bytes())?;
    let (cut1, cut2) = (name - 9 + 3, name + 7);
    let parts = [&hello[..cut1], &hello[cut1..cut2], &hello[cut2..]];
    s.exchange(flow((C4, 49958), (WWW_IP, 443)), &parts, &tls_reply(405))?;

    // (f) IPv6.
    let hello = tls_client_hello("tunnel.example.net", 306);
    let srv = (doc6(0x443), 443);
    s.exchange(flow((C6, 36647), srv), &[&hello], &tls_reply(406))?;

    s.write(path)
}

/// SSH binary packet (unencrypted, block size 8) around `payload`.
fn ssh_packet(payload: &[u8], seed: u64) -> Vec<u8> {
    let mut pad = 8 - (5 + payload.len()) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut p = Vec::with_capacity(5 + payload.len() + pad);
    p.extend_from_slice(&((1 + payload.len() + pad) as u32).to_be_bytes());
    p.push(pad as u8);
    p.extend_from_slice(payload);
    p.extend_from_slice(&filler(pad, seed));
    p
}

fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// SSH_MSG_KEXINIT with these key exchange and host key algorithms.
fn ssh_kexinit(kex: &str, host_key: &str, seed: u64) -> Vec<u8> {
    let cipher = "chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
    let mac =
        "umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com";
    let comp = "none,zlib@openssh.com";
    let mut p = vec![20];
    p.extend_from_slice(&filler(16, seed)); // cookie
    for list in [kex, host_key, cipher, cipher, mac, mac, comp, comp, "", ""] {
        ssh_string(&mut p, list.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 0, 0, 0]); // no guessed packet, reserved
    ssh_packet(&p, seed + 1)
}

/// OpenVPN over TCP: a 2-byte length, then the packet.
fn ovpn_tcp(packet: &[u8]) -> Vec<u8> {
    let mut out = (packet.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(packet);
    out
}

/// WireGuard handshake initiation (148 bytes) or response (92 bytes).
fn wg_handshake(initiation: bool, sender: u32, receiver: u32, seed: u64) -> Vec<u8> {
    let (kind, len) = if initiation { (1, 148) } else { (2, 92) };
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(&sender.to_le_bytes());
    if !initiation {
        p.extend_from_slice(&receiver.to_le_bytes());
    }
    // Ephemeral key, sealed fields and MAC1; MAC2 stays zero (no cookie).
    p.extend_from_slice(&filler(len - 16 - p.len(), seed));
    p.resize(len, 0);
    p
}

/// QUIC v1 long-header Initial: DCID of 8 bytes, no SCID, no token, the
/// rest opaque, padded to a 1200-byte datagram.
fn quic_initial(seed: u64) -> Vec<u8> {
    const DATAGRAM: usize = 1200;
    let mut p = vec![0xc3, 0, 0, 0, 1, 8];
    p.extend_from_slice(&filler(8, seed)); // DCID
    p.extend_from_slice(&[0, 0]); // SCID length, token length
    let rest = DATAGRAM - p.len() - 2;
    p.extend_from_slice(&(0x4000 | rest as u16).to_be_bytes()); // 2-byte varint
    p.extend_from_slice(&filler(rest, seed + 1));
    p
}

/// Protocols spoken on ports that usually carry something else.
fn ports_apps(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut s = Script::new();

    // (a) SSH on 443: client banner first, then the key exchange in clear.
    let mut t = flow((C4, 52318), (ip4(203, 0, 113, 22), 443));
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, b"SSH-2.0-OpenSSH_9.2p1\r\n")?;
    let banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
    s.tcp(RTT, &mut t, In, PSH | ACK, banner)?;
    let kex = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256,ext-info-c";
    let keys = "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256";
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ssh_kexinit(kex, keys, 510))?;
    let kex = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256";
    let keys = "rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256,ssh-ed25519";
    s.tcp(RTT, &mut t, In, PSH | ACK, &ssh_kexinit(kex, keys, 520))?;
    let mut init = vec![30]; // SSH_MSG_KEX_ECDH_INIT
    ssh_string(&mut init, &filler(32, 530));
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ssh_packet(&init, 531))?;
    let mut host_key = Vec::new();
    ssh_string(&mut host_key, b"ssh-ed25519");
    ssh_string(&mut host_key, &filler(32, 540));
    let mut sig = Vec::new();
    ssh_string(&mut sig, b"ssh-ed25519");
    ssh_string(&mut sig, &filler(64, 541));
    let mut reply = vec![31]; // SSH_MSG_KEX_ECDH_REPLY
    ssh_string(&mut reply, &host_key);
    ssh_string(&mut reply, &filler(32, 542));
    ssh_string(&mut reply, &sig);
    let mut flight = ssh_packet(&reply, 543);
    flight.extend_from_slice(&ssh_packet(&[21], 544)); // SSH_MSG_NEWKEYS
    s.tcp(RTT, &mut t, In, PSH | ACK, &flight)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ssh_packet(&[21], 545))?;
    s.tcp(RTT, &mut t, In, ACK, &[])?;
    s.close(&mut t)?;

    // (b) OpenVPN over TCP 443: hard resets both ways, the client's ACK.
    let client_sid = filler(8, 550);
    let server_sid = filler(8, 551);
    let mut reset = vec![7 << 3]; // P_CONTROL_HARD_RESET_CLIENT_V2, key id 0
    reset.extend_from_slice(&client_sid);
    reset.extend_from_slice(&[0, 0, 0, 0, 0]); // no acks, packet id 0
    let mut reset_back = vec![8 << 3]; // P_CONTROL_HARD_RESET_SERVER_V2
    reset_back.extend_from_slice(&server_sid);
    reset_back.extend_from_slice(&[1, 0, 0, 0, 0]); // acks packet 0
    reset_back.extend_from_slice(&client_sid);
    reset_back.extend_from_slice(&[0, 0, 0, 0]);
    let mut ack = vec![5 << 3]; // P_ACK_V1
    ack.extend_from_slice(&client_sid);
    ack.extend_from_slice(&[1, 0, 0, 0, 0]);
    ack.extend_from_slice(&server_sid);
    let mut t = flow((C4, 40471), (ip4(203, 0, 113, 94), 443));
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ovpn_tcp(&reset))?;
    s.tcp(RTT, &mut t, In, PSH | ACK, &ovpn_tcp(&reset_back))?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ovpn_tcp(&ack))?;
    s.tcp(RTT, &mut t, In, ACK, &[])?;
    s.close(&mut t)?;

    // (c) plain HTTP to 443, (d) TLS to 80.
    s.exchange(flow((C4, 58803), (WWW_IP, 443)), &[&http_get(WWW)], HTTP_OK)?;
    let hello = tls_client_hello(WWW, 560);
    s.exchange(flow((C4, 37129), (WWW_IP, 80)), &[&hello], &tls_reply(561))?;

    // (e) SOCKS5 to 1080: greeting, then CONNECT 198.51.100.9:80.
    let mut t = flow((C4, 46692), (ip4(203, 0, 113, 10), 1080));
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &[5, 1, 0])?;
    s.tcp(RTT, &mut t, In, PSH | ACK, &[5, 0])?;
    s.tcp(
        TURN,
        &mut t,
        Out,
        PSH | ACK,
        &[5, 1, 0, 1, 198, 51, 100, 9, 0, 80],
    )?;
    let bound = [5, 0, 0, 1, 203, 0, 113, 10, 0xa1, 0x2f];
    s.tcp(RTT, &mut t, In, PSH | ACK, &bound)?;
    s.close(&mut t)?;

    // (f) WireGuard handshakes to udp 51820 and to udp 443.
    for (cport, server, sender) in [
        (43785, (ip4(203, 0, 113, 51), 51820), 0x1f2e_3d4c),
        (60214, (ip4(203, 0, 113, 52), 443), 0x5b6a_7988),
    ] {
        let seed = u64::from(sender);
        let init = wg_handshake(true, sender, 0, seed);
        s.udp(s.gap(), Out, (C4, cport), server, &init)?;
        let resp = wg_handshake(false, sender ^ 0xffff, sender, seed + 1);
        s.udp(RTT, In, server, (C4, cport), &resp)?;
    }

    // (g) QUIC v1 Initial to udp 443, unanswered.
    let initial = quic_initial(570);
    s.udp(
        s.gap(),
        Out,
        (C4, 54127),
        (ip4(198, 51, 100, 43), 443),
        &initial,
    )?;

    // (h) DNS.
    let dns = (ip4(192, 0, 2, 53), 53);
    let q = dns_query(0x3c5d, WWW, 1, false);
    s.udp(s.gap(), Out, (C4, 39551), dns, &q)?;
    let r = dns_response(&q, 300, &v4_octets(WWW_IP));
    s.udp(RTT, In, dns, (C4, 39551), &r)?;

    // (i) control: HTTPS as it should be.
    let hello = tls_client_hello(WWW, 580);
    s.exchange(flow((C4, 48096), (WWW_IP, 443)), &[&hello], &tls_reply(581))?;

    s.write(path)
}

/// The server's side of a download, `first` ns from now: `data` in
/// segments of at most 1400 bytes, the client acknowledging every second
/// one, then the server's FIN, the client's FIN and the last ACK.
fn ftp_data(s: &mut Script, t: &mut Tcp, first: u64, data: &[u8]) -> Res<()> {
    use Dir::{In, Out};
    for (i, chunk) in data.chunks(1400).enumerate() {
        s.tcp(if i == 0 { first } else { 50 * US }, t, In, ACK, chunk)?;
        if i % 2 == 1 {
            s.tcp(TURN, t, Out, ACK, &[])?;
        }
    }
    s.tcp(50 * US, t, In, FIN | ACK, &[])?;
    s.tcp(TURN, t, Out, FIN | ACK, &[])?;
    s.tcp(RTT, t, In, ACK, &[])
}

const FTP_LOGIN: [(&str, &str); 3] = [
    ("USER demo\r\n", "331 Please specify the password.\r\n"),
    ("PASS fixture\r\n", "230 Login successful.\r\n"),
    ("TYPE I\r\n", "200 Switching to Binary mode.\r\n"),
];

/// Passive FTP (PASV and EPSV), a connection to a port never announced,
/// and an active-mode (PORT) download.
fn ftp_passive(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut s = Script::new();
    let file = filler(3800, 600);
    let opening = "150 Opening BINARY mode data connection for file.bin (3800 bytes).\r\n";
    let done = "226 Transfer complete.\r\n";
    let bye = "221 Goodbye.\r\n";

    // Each session: handshake, 220, login, the mode dialogue, RETR and 150,
    // the data connection, 226, QUIT and 221, close.
    let srv4 = ip4(192, 0, 2, 21);
    let srv6 = doc6(0x21);
    let passive = [
        (
            (C4, 51533),
            srv4,
            (
                "PASV\r\n",
                "227 Entering Passive Mode (192,0,2,21,195,80).\r\n",
            ),
            (C4, 52174),
            50000,
        ),
        (
            (C6, 53690),
            srv6,
            (
                "EPSV\r\n",
                "229 Entering Extended Passive Mode (|||50001|)\r\n",
            ),
            (C6, 54215),
            50001,
        ),
    ];
    for (client, server, mode, data_client, data_port) in passive {
        let mut ctl = flow(client, (server, 21));
        s.open(s.gap(), &mut ctl)?;
        s.tcp(MS, &mut ctl, In, PSH | ACK, b"220 Welcome\r\n")?;
        s.dialogue(&mut ctl, &FTP_LOGIN)?;
        s.dialogue(&mut ctl, &[mode, ("RETR file.bin\r\n", opening)])?;
        let mut data = flow(data_client, (server, data_port));
        s.open(TURN, &mut data)?;
        ftp_data(&mut s, &mut data, RTT, &file)?;
        s.tcp(MS, &mut ctl, In, PSH | ACK, done.as_bytes())?;
        s.dialogue(&mut ctl, &[("QUIT\r\n", bye)])?;
        s.close(&mut ctl)?;
    }

    // 2 s later: a SYN to a port no 227/229 announced, unanswered.
    let mut t = flow((C4, 55048), (srv4, 50002));
    s.tcp(2 * SEC, &mut t, Out, SYN, &[])?;

    // Active mode: after PORT, the server connects from :20 to 10.0.0.2:51210.
    let mut ctl = flow((C4, 56312), (srv4, 21));
    s.open(SEC, &mut ctl)?;
    s.tcp(MS, &mut ctl, In, PSH | ACK, b"220 Welcome\r\n")?;
    s.dialogue(&mut ctl, &FTP_LOGIN)?;
    let port = (
        "PORT 10,0,0,2,200,10\r\n",
        "200 PORT command successful.\r\n",
    );
    s.dialogue(&mut ctl, &[port, ("RETR file.bin\r\n", opening)])?;
    let mut data = flow((C4, 51210), (srv4, 20));
    s.tcp(MS, &mut data, In, SYN, &[])?;
    s.tcp(TURN, &mut data, Out, SYN | ACK, &[])?;
    s.tcp(RTT, &mut data, In, ACK, &[])?;
    ftp_data(&mut s, &mut data, 50 * US, &file)?;
    s.tcp(MS, &mut ctl, In, PSH | ACK, done.as_bytes())?;
    s.dialogue(&mut ctl, &[("QUIT\r\n", bye)])?;
    s.close(&mut ctl)?;

    s.write(path)
}

// ---------------------------------------------------------------------------
// Benchmark capture: the library's synthetic traffic (`outgate bench --synthetic` writes the same)
// ---------------------------------------------------------------------------

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
