//! `Packet`: an L3/L4 view of one IP packet.
//!
//! Promise: [`Packet::parse`] never panics, whatever the bytes. It reads what the buffer holds: a packet cut
//! short (an NFQUEUE copy range, a pcap snaplen) still yields its addresses, and its ports as soon as the
//! first four transport bytes are there. Only a packet whose IP header itself cannot be read, or whose
//! transport header is too short to name its ports (or ICMP type), is [`Malformed`].
//!
//! The IP layer (IPv4 options, IPv6 extension headers, inconsistent length fields) is parsed by etherparse's
//! lax slices. The transport fields the filter needs sit at fixed offsets (RFC 9293 §3.1, RFC 768, RFC 792,
//! RFC 4443 §2.1), so they are read with bounds-checked `get`, which keeps truncated headers usable.
//! Checksums are not verified: captures taken with checksum offload carry wrong ones, and the kernel has
//! already verified what it hands to NFQUEUE.

use std::net::IpAddr;

use etherparse::{IpNumber, Ipv6ExtensionSlice, LaxIpSlice};

/// Why a packet could not be read far enough to be decided on. Counted, never an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Malformed {
    /// The IP header is missing, cut short, or not IPv4/IPv6.
    BadIpHeader,
    /// IPv4 options whose lengths do not add up (RFC 791 §3.1); the kernel drops such packets on input.
    BadIpOptions,
    /// The transport header is too short to hold the ports (TCP/UDP) or the type (ICMP).
    TruncatedTransport,
}

impl Malformed {
    /// A stable lower-case name, used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Malformed::BadIpHeader => "bad-ip-header",
            Malformed::BadIpOptions => "bad-ip-options",
            Malformed::TruncatedTransport => "truncated-transport",
        }
    }
}

/// The fragment header of a fragmented packet (IPv4 flags/offset, or an IPv6 Fragment extension header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub id: u32,
    /// Offset in 8-byte units; 0 for the first fragment, which carries the transport header.
    pub offset: u16,
    pub more: bool,
}

/// TCP header flags the flow table cares about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// The transport view of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `seq` and `flags` are `None` when the header was cut short before them.
    Tcp {
        sport: u16,
        dport: u16,
        seq: Option<u32>,
        flags: Option<TcpFlags>,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMPv4 or ICMPv6 (see [`Packet::ip_proto`]); `ident` is the echo identifier, when the message has one.
    Icmp {
        icmp_type: u8,
        code: u8,
        ident: Option<u16>,
    },
    /// A non-first fragment: its transport header travelled in the first fragment.
    LaterFragment,
    /// Any other IP protocol (GRE, ESP, 6in4, ...): no ports.
    Other,
}

/// One parsed IP packet, borrowing the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub ip_proto: u8,
    pub transport: Transport,
    pub fragment: Option<Fragment>,
    /// Transport payload as far as it was captured (empty for non-first fragments and `Other`).
    pub payload: &'a [u8],
    /// Length on the wire: from the IP header's length field when it is consistent, else the bytes held.
    pub wire_len: u32,
}

impl Packet<'static> {
    /// A packet of headers only, for asking the policy about a flow known by its addresses and ports
    /// (a conntrack entry, say) rather than by a packet.
    pub fn headers(src: IpAddr, dst: IpAddr, ip_proto: u8, transport: Transport) -> Self {
        Packet {
            src,
            dst,
            ip_proto,
            transport,
            fragment: None,
            payload: &[],
            wire_len: 0,
        }
    }
}

impl Packet<'_> {
    /// The same packet as if its receiver had sent it (addresses and ports swapped): for asking the
    /// policy about a flow whose first packet seen came from its responder.
    pub fn reversed(&self) -> Self {
        let transport = match self.transport {
            Transport::Tcp {
                sport,
                dport,
                seq,
                flags,
            } => Transport::Tcp {
                sport: dport,
                dport: sport,
                seq,
                flags,
            },
            Transport::Udp { sport, dport } => Transport::Udp {
                sport: dport,
                dport: sport,
            },
            other => other,
        };
        Packet {
            src: self.dst,
            dst: self.src,
            transport,
            ..*self
        }
    }
}

pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMPV6: u8 = 58;

impl<'a> Packet<'a> {
    /// Parses the IPv4 or IPv6 packet at the start of `bytes`.
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<Packet<'a>, Malformed> {
        match plain(bytes) {
            Some((src, dst, ip_proto, l4, wire_len)) => {
                let (transport, payload) = parse_transport(IpNumber(ip_proto), l4)?;
                Ok(Packet {
                    src,
                    dst,
                    ip_proto,
                    transport,
                    fragment: None,
                    payload,
                    wire_len,
                })
            }
            None => Self::parse_lax(bytes),
        }
    }

    /// Any packet, through etherparse's lax slices (options, extension headers, fragments, lengths that
    /// disagree with the bytes held).
    fn parse_lax(bytes: &'a [u8]) -> Result<Packet<'a>, Malformed> {
        // An error inside the IPv6 extension headers leaves `ip` usable up to that header; the payload is
        // then the unparsed rest, and its "protocol" the header that failed, which is what we report.
        let (ip, _ext_err) = LaxIpSlice::from_slice(bytes).map_err(|_| Malformed::BadIpHeader)?;
        if let LaxIpSlice::Ipv4(v4) = &ip {
            check_ipv4_options(v4.header().options())?;
        }
        let payload = ip.payload();
        let ip_proto = payload.ip_number.0;
        let fragment = fragment_of(&ip);
        let l4 = payload.payload;
        // The length on the wire is what the header claims when the claim is plausible: a capture cut at
        // its snaplen (or a short NFQUEUE copy range) holds fewer bytes than went out.
        let wire_len = match &ip {
            LaxIpSlice::Ipv4(v4) => {
                let h = v4.header();
                let claimed = usize::from(h.total_len());
                if claimed >= h.slice().len() {
                    claimed
                } else {
                    bytes.len()
                }
            }
            LaxIpSlice::Ipv6(v6) => match v6.header().payload_length() {
                0 => bytes.len(), // a jumbogram or an unset field
                n => 40 + usize::from(n),
            },
        };
        let later_fragment = fragment.is_some_and(|f| f.offset != 0);
        let (transport, app) = if later_fragment {
            (Transport::LaterFragment, &[][..])
        } else {
            parse_transport(payload.ip_number, l4)?
        };
        Ok(Packet {
            src: ip.source_addr(),
            dst: ip.destination_addr(),
            ip_proto,
            transport,
            fragment,
            payload: app,
            wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
        })
    }

    /// Source and destination ports (TCP and UDP), else `None`.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.transport {
            Transport::Tcp { sport, dport, .. } | Transport::Udp { sport, dport } => {
                Some((sport, dport))
            }
            _ => None,
        }
    }
}

/// The common case read at fixed offsets: an IPv4 header without options, or an IPv6 header followed
/// directly by TCP, UDP or ICMPv6, not fragmented, whose length field is consistent with the bytes held
/// (RFC 791 §3.1, RFC 8200 §3). Answers (source, destination, protocol, transport bytes, length on the
/// wire) exactly as [`Packet::parse_lax`] would; `None` leaves every other packet to it.
#[inline]
fn plain(b: &[u8]) -> Option<(IpAddr, IpAddr, u8, &[u8], u32)> {
    match *b.first()? {
        0x45 => {
            let total = usize::from(be16(b, 2)?);
            let frag = be16(b, 6)? & 0x3fff; // MF and the offset; DF does not fragment
            let proto = *b.get(9)?;
            if total < 20 || frag != 0 || proto == IpNumber::AUTHENTICATION_HEADER.0 {
                return None;
            }
            let src: [u8; 4] = b.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = b.get(16..20)?.try_into().ok()?;
            let l4 = b.get(20..total)?;
            Some((src.into(), dst.into(), proto, l4, total as u32))
        }
        v if v >> 4 == 6 => {
            let proto = *b.get(6)?;
            let len = usize::from(be16(b, 4)?);
            if len == 0 || !matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_ICMPV6) {
                return None;
            }
            let src: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = b.get(24..40)?.try_into().ok()?;
            let l4 = b.get(40..40 + len)?;
            Some((src.into(), dst.into(), proto, l4, (40 + len) as u32))
        }
        _ => None,
    }
}

/// RFC 791 §3.1: an option is End (0), No-op (1), or type, length (>= 2, covering itself), data. Options
/// of a fixed or structured size must have it: Security (130, RFC 1108: 11), Stream ID (136: 4), the route
/// options (7, 131, 137: 3 + 4n), Timestamp (68: at least 4) and Router Alert (148, RFC 2113: 4).
fn check_ipv4_options(mut opts: &[u8]) -> Result<(), Malformed> {
    while let Some(&kind) = opts.first() {
        if kind == 0 {
            return Ok(());
        }
        if kind == 1 {
            opts = &opts[1..];
            continue;
        }
        let len = usize::from(*opts.get(1).ok_or(Malformed::BadIpOptions)?);
        let fits = match kind {
            130 => len == 11,
            136 | 148 => len == 4,
            7 | 131 | 137 => len >= 3 && (len - 3) % 4 == 0,
            68 => len >= 4,
            _ => len >= 2,
        };
        if !fits || len > opts.len() {
            return Err(Malformed::BadIpOptions);
        }
        opts = &opts[len..];
    }
    Ok(())
}

fn fragment_of(ip: &LaxIpSlice<'_>) -> Option<Fragment> {
    match ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let offset = h.fragments_offset().value();
            (offset != 0 || h.more_fragments()).then(|| Fragment {
                id: u32::from(h.identification()),
                offset,
                more: h.more_fragments(),
            })
        }
        LaxIpSlice::Ipv6(v6) => {
            // Only the headers the lax parse checked: etherparse's iterator goes on to the header the
            // last one names even when the parse stopped before it (a chain cut short), and reads it
            // unchecked past the packet. So stop once the checked bytes are walked.
            let exts = v6.extensions();
            let checked = exts.slice().len();
            let mut walked = 0;
            let mut headers = exts.clone().into_iter();
            while walked < checked {
                let ext = headers.next()?;
                walked += ext_len(&ext);
                match ext {
                    // RFC 8200 §4.5: an "atomic" fragment (offset 0, M clear) is a whole packet;
                    // treat it as one.
                    Ipv6ExtensionSlice::Fragment(f) if f.is_fragmenting_payload() => {
                        return Some(Fragment {
                            id: f.identification(),
                            offset: f.fragment_offset().value(),
                            more: f.more_fragments(),
                        });
                    }
                    _ => {}
                }
            }
            None
        }
    }
}

/// The bytes one IPv6 extension header takes (at least 1, so a walk over them always ends).
fn ext_len(ext: &Ipv6ExtensionSlice<'_>) -> usize {
    let len = match ext {
        Ipv6ExtensionSlice::HopByHop(h)
        | Ipv6ExtensionSlice::Routing(h)
        | Ipv6ExtensionSlice::DestinationOptions(h) => h.slice().len(),
        Ipv6ExtensionSlice::Fragment(f) => f.slice().len(),
        Ipv6ExtensionSlice::Authentication(a) => a.slice().len(),
    };
    len.max(1)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// Reads the fixed-offset transport fields; returns the transport and its payload (as far as captured).
#[inline]
fn parse_transport(proto: IpNumber, l4: &[u8]) -> Result<(Transport, &[u8]), Malformed> {
    let ports = || Some((be16(l4, 0)?, be16(l4, 2)?));
    match proto.0 {
        PROTO_TCP => {
            let (sport, dport) = ports().ok_or(Malformed::TruncatedTransport)?;
            // RFC 9293 §3.1: data offset is the high nibble of byte 12, flags are byte 13.
            let flags = l4.get(13).map(|&f| TcpFlags {
                fin: f & 0x01 != 0,
                syn: f & 0x02 != 0,
                rst: f & 0x04 != 0,
                ack: f & 0x10 != 0,
            });
            let seq = l4
                .get(4..8)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let header_len = l4.get(12).map_or(l4.len(), |&b| usize::from(b >> 4) * 4);
            let payload = l4.get(header_len.max(20)..).unwrap_or(&[]);
            Ok((
                Transport::Tcp {
                    sport,
                    dport,
                    seq,
                    flags,
                },
                payload,
            ))
        }
        PROTO_UDP => {
            let (sport, dport) = ports().ok_or(Malformed::TruncatedTransport)?;
            Ok((Transport::Udp { sport, dport }, l4.get(8..).unwrap_or(&[])))
        }
        PROTO_ICMP | PROTO_ICMPV6 => {
            let icmp_type = *l4.first().ok_or(Malformed::TruncatedTransport)?;
            let code = l4.get(1).copied().unwrap_or(0);
            let ident = if has_echo_ident(proto.0, icmp_type) {
                be16(l4, 4)
            } else {
                None
            };
            Ok((
                Transport::Icmp {
                    icmp_type,
                    code,
                    ident,
                },
                l4.get(8..).unwrap_or(&[]),
            ))
        }
        _ => Ok((Transport::Other, &[][..])),
    }
}

/// Query/reply ICMP messages that carry an identifier (RFC 792 echo, timestamp, information; RFC 4443 §4
/// echo): both directions of one exchange share it, so it keys the flow.
pub(crate) fn has_echo_ident(ip_proto: u8, icmp_type: u8) -> bool {
    match ip_proto {
        PROTO_ICMP => matches!(icmp_type, 0 | 8 | 13 | 14 | 15 | 16),
        PROTO_ICMPV6 => matches!(icmp_type, 128 | 129),
        _ => false,
    }
}

/// A hash of the packet's two addresses, the same in both directions, for pinning flows to workers.
///
/// Only the addresses are hashed: a later fragment carries no ports, yet must reach the worker that saw its
/// first fragment. Reads just the fixed address fields, so it is cheap enough for the dispatching thread;
/// bytes that are not IPv4/IPv6 hash to 0 (the worker that gets them decides them as malformed).
pub(crate) fn dispatch_hash(bytes: &[u8]) -> u64 {
    let (a, b) = match bytes.first().map(|b| b >> 4) {
        Some(4) => (bytes.get(12..16), bytes.get(16..20)),
        Some(6) => (bytes.get(8..24), bytes.get(24..40)),
        _ => (None, None),
    };
    let (Some(a), Some(b)) = (a, b) else { return 0 };
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    // FNV-1a: stable across runs and platforms, which keeps replay deterministic.
    lo.iter().chain(hi).fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// An IPv6 extension chain cut short: Destination Options names a Routing header that is not
    /// there. etherparse's lax parse keeps the headers it checked, but its iterator over them goes on
    /// to the missing one (an unchecked read past the packet: an abort in test builds, undefined
    /// behaviour in release). Found by review; any hostile IPv6 packet could carry it.
    #[test]
    fn a_truncated_ipv6_extension_chain_is_read_safely() {
        let mut b = vec![0x60, 0, 0, 0, 0, 16, 60, 64];
        b.extend([0x20; 16]);
        b.extend([0x30; 16]);
        b.extend([43, 0, 1, 4, 0, 0, 0, 0]); // Destination Options -> Routing, which is missing
        let p = Packet::parse(&b);
        assert!(p.as_ref().map_or(true, |p| p.fragment.is_none()), "{p:?}");
        // The same with a fragment header first: it is still read.
        let mut f = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        f.extend([0x20; 16]);
        f.extend([0x30; 16]);
        f.extend([60, 0, 0, 9, 0, 0, 0, 7]); // Fragment (offset 1, more) -> Destination Options
        f.extend([43, 0, 1, 4, 0, 0, 0, 0]); // Destination Options -> Routing, which is missing
        let p = Packet::parse(&f).expect("a fragment");
        let frag = p.fragment.expect("the fragment header is read");
        assert_eq!((frag.id, frag.offset, frag.more), (7, 1, true));
    }

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 2], [93, 184, 216, 34], 64)
            .tcp(51514, 80, 1, 1000)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn tcp_ipv4_ports_flags_payload() {
        let bytes = tcp_v4(b"GET / HTTP/1.1\r\n");
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.src, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(p.ports(), Some((51514, 80)));
        match p.transport {
            Transport::Tcp { flags: Some(f), .. } => assert!(f.syn && !f.ack),
            t => panic!("{t:?}"),
        }
        assert_eq!(p.payload, b"GET / HTTP/1.1\r\n");
        assert!(matches!(p.transport, Transport::Tcp { seq: Some(1), .. }));
    }

    #[test]
    fn truncated_tcp_keeps_ports() {
        let bytes = tcp_v4(b"");
        // IPv4 header (20) + the four port bytes only: ports known, flags not.
        let p = Packet::parse(&bytes[..24]).unwrap();
        assert_eq!(p.ports(), Some((51514, 80)));
        assert!(matches!(p.transport, Transport::Tcp { flags: None, .. }));
        assert_eq!(
            Packet::parse(&bytes[..22]),
            Err(Malformed::TruncatedTransport)
        );
    }

    #[test]
    fn ipv4_options_must_add_up() {
        assert_eq!(check_ipv4_options(&[1, 1, 0, 0]), Ok(()));
        assert_eq!(
            check_ipv4_options(&[7, 7, 4, 0, 0, 0, 0, 0]),
            Ok(()),
            "record route, one slot"
        );
        assert_eq!(
            check_ipv4_options(&[7, 11, 4, 0, 0, 0, 0, 0]),
            Err(Malformed::BadIpOptions),
            "past the header"
        );
        assert_eq!(
            check_ipv4_options(&[130, 2, 0, 0]),
            Err(Malformed::BadIpOptions),
            "security needs 11"
        );
        assert_eq!(check_ipv4_options(&[148, 4, 0, 0]), Ok(()), "router alert");
        assert_eq!(
            check_ipv4_options(&[7, 1, 0, 0]),
            Err(Malformed::BadIpOptions),
            "length under 2"
        );
        assert_eq!(
            check_ipv4_options(&[1, 1, 1, 7]),
            Err(Malformed::BadIpOptions),
            "no length byte"
        );
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(Packet::parse(&[]), Err(Malformed::BadIpHeader));
        assert_eq!(Packet::parse(&[0x45, 0, 0]), Err(Malformed::BadIpHeader));
        assert_eq!(Packet::parse(&[0x70; 40]), Err(Malformed::BadIpHeader));
    }

    #[test]
    fn udp_ipv6_and_icmp_echo() {
        let mut out = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(5353, 53)
            .write(&mut out, b"q")
            .unwrap();
        let p = Packet::parse(&out).unwrap();
        assert_eq!((p.ip_proto, p.ports()), (PROTO_UDP, Some((5353, 53))));

        let mut out = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .icmpv4_echo_request(0x1234, 1)
            .write(&mut out, b"x")
            .unwrap();
        let p = Packet::parse(&out).unwrap();
        assert_eq!(
            p.transport,
            Transport::Icmp {
                icmp_type: 8,
                code: 0,
                ident: Some(0x1234)
            }
        );
    }

    #[test]
    fn ipv4_fragments() {
        let mut first = tcp_v4(&[0u8; 64]);
        // Set MF on the first fragment (flags byte 6, bit 0x20), id 7.
        first[4..6].copy_from_slice(&7u16.to_be_bytes());
        first[6] = 0x20;
        let p = Packet::parse(&first).unwrap();
        assert_eq!(
            p.fragment,
            Some(Fragment {
                id: 7,
                offset: 0,
                more: true
            })
        );
        assert_eq!(p.ports(), Some((51514, 80)));

        let mut later = first.clone();
        later[6] = 0x00;
        later[7] = 10; // offset 10 * 8 bytes, last fragment
        let p = Packet::parse(&later).unwrap();
        assert_eq!(
            p.fragment,
            Some(Fragment {
                id: 7,
                offset: 10,
                more: false
            })
        );
        assert_eq!(p.transport, Transport::LaterFragment);
    }

    #[test]
    fn dispatch_hash_is_symmetric() {
        let mut back = Vec::new();
        PacketBuilder::ipv4([93, 184, 216, 34], [10, 0, 0, 2], 64)
            .tcp(80, 51514, 1, 1)
            .write(&mut back, &[])
            .unwrap();
        assert_eq!(dispatch_hash(&tcp_v4(b"")), dispatch_hash(&back));
        assert_ne!(dispatch_hash(&tcp_v4(b"")), 0);
        assert_eq!(dispatch_hash(&[0x45, 0]), 0);
    }

    #[test]
    fn the_fixed_offset_path_reads_what_etherparse_reads() {
        let mut samples = vec![tcp_v4(b"hello"), tcp_v4(b"")];
        let v6 = || PacketBuilder::ipv6([0x20; 16], [0x30; 16], 64);
        for b in [
            PacketBuilder::ipv4([10, 0, 0, 2], [1, 2, 3, 4], 64).udp(5353, 53),
            v6().udp(40000, 443),
        ] {
            let mut out = Vec::new();
            b.write(&mut out, b"payload").unwrap();
            samples.push(out);
        }
        let mut out = Vec::new();
        v6().tcp(40000, 443, 7, 100)
            .syn()
            .write(&mut out, b"x")
            .unwrap();
        samples.push(out);
        let mut out = Vec::new();
        v6().icmpv6_echo_request(9, 1)
            .write(&mut out, b"ping")
            .unwrap();
        samples.push(out);
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 2], [1, 2, 3, 4], 64)
            .icmpv4_echo_request(9, 1)
            .write(&mut out, b"ping")
            .unwrap();
        samples.push(out);
        let same = |b: &[u8]| assert_eq!(Packet::parse(b), Packet::parse_lax(b), "{b:02x?}");
        let mut fast = 0;
        for bytes in &samples {
            for n in 0..=bytes.len() {
                same(&bytes[..n]);
                fast += usize::from(plain(&bytes[..n]).is_some());
            }
            // Every header byte set to values that change the path taken (version, lengths, flags).
            for i in 0..bytes.len().min(48) {
                for v in [0u8, 1, 0x20, 0x3f, 0x40, 0x45, 0x46, 0x60, 0xff] {
                    let mut b = bytes.clone();
                    b[i] = v;
                    same(&b);
                }
            }
        }
        assert!(fast >= samples.len(), "the fixed-offset path is taken");
    }

    #[test]
    fn every_prefix_and_bit_flip_is_safe() {
        let bytes = tcp_v4(b"hello");
        for n in 0..=bytes.len() {
            let _ = Packet::parse(&bytes[..n]);
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                let _ = Packet::parse(&b);
            }
        }
    }
}
