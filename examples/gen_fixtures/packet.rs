//! Packet construction: link layers, IP and transport headers, TCP flows.

use super::*;

/// Link layer a packet is framed in.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Link {
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
pub(crate) enum Dir {
    Out,
    In,
}

impl Dir {
    /// (source MAC, destination MAC) for a frame going this way.
    pub(crate) fn macs(self) -> ([u8; 6], [u8; 6]) {
        match self {
            Dir::Out => (CLIENT_MAC, GW_MAC),
            Dir::In => (GW_MAC, CLIENT_MAC),
        }
    }

    pub(crate) fn ttl(self) -> u8 {
        match self {
            Dir::Out => 64,
            Dir::In => 57,
        }
    }
}

/// Transport layer of a packet; its payload is passed separately.
pub(crate) enum L4 {
    Tcp(TcpHeader),
    Udp(u16, u16),
    Icmp4(Icmpv4Type),
    Icmp6(Icmpv6Type),
    /// No transport header known to etherparse: the payload follows the IP
    /// header directly and the IP protocol is this number.
    Proto(IpNumber),
}

/// Link and network parameters of one packet.
pub(crate) struct Hdr {
    pub(crate) link: Link,
    pub(crate) dir: Dir,
    pub(crate) macs: ([u8; 6], [u8; 6]),
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) ip_id: u16,
}

/// Appends one complete frame (link header onwards) to `out`.
pub(crate) fn build(out: &mut Vec<u8>, h: &Hdr, l4: L4, payload: &[u8]) -> Res<()> {
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
pub(crate) fn sll2_header(dir: Dir, v6: bool, sender: [u8; 6]) -> [u8; 20] {
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
pub(crate) fn eth_frame(dir: Dir, ether_type: EtherType, net: &[u8]) -> Vec<u8> {
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
pub(crate) fn tcp_header(
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
pub(crate) struct Net {
    pub(crate) out_id: u16,
    pub(crate) in_id: u16,
}

impl Net {
    pub(crate) fn new() -> Net {
        Net {
            out_id: 0x1c40,
            in_id: 0x8a10,
        }
    }

    pub(crate) fn next_id(&mut self, dir: Dir) -> u16 {
        let id = match dir {
            Dir::Out => &mut self.out_id,
            Dir::In => &mut self.in_id,
        };
        *id = id.wrapping_add(1);
        *id
    }

    pub(crate) fn pkt(
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

    pub(crate) fn udp(
        &mut self,
        dir: Dir,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        p: &[u8],
    ) -> Res<Vec<u8>> {
        self.pkt(Link::Eth, dir, src.0, dst.0, L4::Udp(src.1, dst.1), p)
    }
}

/// One TCP connection; tracks the next sequence number of each side.
pub(crate) struct Tcp {
    pub(crate) link: Link,
    pub(crate) client: (IpAddr, u16),
    pub(crate) server: (IpAddr, u16),
    pub(crate) c_nxt: u32,
    pub(crate) s_nxt: u32,
}

impl Tcp {
    pub(crate) fn new(client: (IpAddr, u16), server: (IpAddr, u16), c_isn: u32, s_isn: u32) -> Tcp {
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
    pub(crate) fn seg(
        &mut self,
        net: &mut Net,
        dir: Dir,
        flags: u8,
        payload: &[u8],
    ) -> Res<Vec<u8>> {
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
    pub(crate) fn syn_again(&mut self, net: &mut Net) -> Res<Vec<u8>> {
        self.c_nxt = self.c_nxt.wrapping_sub(1);
        self.seg(net, Dir::Out, SYN, &[])
    }
}
