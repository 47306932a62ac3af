//! Payloads the fixtures carry: DNS, ping, ARP.

use super::*;

/// A TXT answer to `query` whose DNS message is exactly `total` bytes long.
pub(crate) fn dns_big_txt_response(query: &[u8], total: usize) -> Vec<u8> {
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
pub(crate) fn ping_payload(ts: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(56);
    p.extend_from_slice(&(ts / SEC).to_le_bytes());
    p.extend_from_slice(&((ts % SEC) / US).to_le_bytes());
    p.extend((0x10u8..).take(40));
    p
}

pub(crate) fn echo4(request: bool, id: u16, seq: u16) -> L4 {
    let h = IcmpEchoHeader { id, seq };
    L4::Icmp4(if request {
        Icmpv4Type::EchoRequest(h)
    } else {
        Icmpv4Type::EchoReply(h)
    })
}

pub(crate) fn arp_who_has(target: [u8; 4]) -> Res<Vec<u8>> {
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
