//! The first fixtures: an office mix, IPv4 and IPv6 fragments.

use super::*;

pub(crate) fn at(ms: u64) -> u64 {
    T0 + ms * MS
}

/// A LAN client's morning: complete flows in both directions, interleaved.
pub(crate) fn office_mix(path: &Path) -> Res<usize> {
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
pub(crate) fn ipv4_fragments(
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
pub(crate) fn ipv6_fragments(
    base: &Ipv6Header,
    id: u32,
    datagram: &[u8],
    chunk: usize,
) -> Res<Vec<Vec<u8>>> {
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

pub(crate) fn udp_datagram4(
    h: &Ipv4Header,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Res<Vec<u8>> {
    let udp = UdpHeader::with_ipv4_checksum(sport, dport, h, payload)?;
    let mut d = udp.to_bytes().to_vec();
    d.extend_from_slice(payload);
    Ok(d)
}

pub(crate) fn v4_octets(a: IpAddr) -> [u8; 4] {
    match a {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => unreachable!("IPv4 address expected"),
    }
}

pub(crate) fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(_) => unreachable!("IPv6 address expected"),
    }
}

pub(crate) fn ipv4_base(src: IpAddr, dst: IpAddr, id: u16, ttl: u8) -> Ipv4Header {
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
pub(crate) fn fragments(path: &Path) -> Res<usize> {
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
pub(crate) fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
