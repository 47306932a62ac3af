//! Fixtures at the edges: malformed packets, link layers, byte order, zones, expiry.

use super::*;

/// A valid SYN followed by frames whose IP part is broken in various ways.
pub(crate) fn malformed(path: &Path) -> Res<usize> {
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
pub(crate) fn lldp_frame() -> Vec<u8> {
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
pub(crate) fn links(path: &Path) -> Res<usize> {
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
pub(crate) fn sll2_bigendian_nsec(path: &Path) -> Res<usize> {
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
pub(crate) fn zones(path: &Path) -> Res<usize> {
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
pub(crate) fn expiry(path: &Path) -> Res<usize> {
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
