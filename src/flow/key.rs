//! `FlowKey`: a flow's identity, the same for both directions, and which end sent a packet.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr};

use crate::packet::{Packet, Transport, has_echo_ident};

/// A flow's identity, the same for both directions.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct FlowKey {
    // Addresses as IPv4-mapped 128-bit numbers in two words: compared and hashed as words, not as
    // byte slices, 8-byte aligned (a u128 would pad the entry to 16), and ports kept apart from them
    // so that the key packs into 40 bytes.
    lo_addr: [u64; 2],
    hi_addr: [u64; 2],
    lo_port: u16,
    hi_port: u16,
    proto: u8,
    /// For ICMP query/reply exchanges, the request type (echo, timestamp, ...), so that two exchanges
    /// with the same identifier stay apart; 0 otherwise.
    exchange: u8,
}

/// Five words, the last holding ports, protocol and exchange: hashed on every packet, so it is kept to
/// five hasher rounds (the derived form adds slice lengths and a round per small field). Equal keys
/// write equal words, as `Eq` requires.
impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.lo_addr[0]);
        state.write_u64(self.lo_addr[1]);
        state.write_u64(self.hi_addr[0]);
        state.write_u64(self.hi_addr[1]);
        state.write_u64(
            u64::from(self.lo_port)
                | u64::from(self.hi_port) << 16
                | u64::from(self.proto) << 32
                | u64::from(self.exchange) << 40,
        );
    }
}

/// Which end of a [`FlowKey`] sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Lo,
    Hi,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }
}

pub(super) fn addr16(a: IpAddr) -> [u64; 2] {
    let n = match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    };
    [(n >> 64) as u64, n as u64]
}

fn addr_of(b: [u64; 2]) -> IpAddr {
    let v6 = Ipv6Addr::from((u128::from(b[0]) << 64) | u128::from(b[1]));
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}

impl FlowKey {
    /// The key of a packet and the side that sent it. `None` for a later fragment (no transport header):
    /// see [`super::FlowTable::follow_fragment`].
    #[inline]
    pub fn of(p: &Packet<'_>) -> Option<(FlowKey, Side)> {
        let (sport, dport, exchange) = match p.transport {
            Transport::Tcp { sport, dport, .. } | Transport::Udp { sport, dport } => {
                (sport, dport, 0)
            }
            // Request and reply carry the same identifier, so both directions meet in one entry.
            Transport::Icmp {
                ident: Some(id),
                icmp_type,
                ..
            } if has_echo_ident(p.ip_proto, icmp_type) => {
                (id, id, request_type(p.ip_proto, icmp_type))
            }
            Transport::Icmp { icmp_type, .. } => (u16::from(icmp_type), u16::from(icmp_type), 0),
            Transport::Other => (0, 0, 0),
            Transport::LaterFragment => return None,
        };
        let s = (addr16(p.src), sport);
        let d = (addr16(p.dst), dport);
        let proto = p.ip_proto;
        let (lo, hi, side) = if s <= d {
            (s, d, Side::Lo)
        } else {
            (d, s, Side::Hi)
        };
        let key = FlowKey {
            lo_addr: lo.0,
            hi_addr: hi.0,
            lo_port: lo.1,
            hi_port: hi.1,
            proto,
            exchange,
        };
        Some((key, side))
    }

    pub fn proto(&self) -> u8 {
        self.proto
    }

    /// The endpoint on `side` as (address, port); the "port" of ICMP flows is the echo id or the type.
    pub fn endpoint(&self, side: Side) -> (IpAddr, u16) {
        let (a, port) = match side {
            Side::Lo => (self.lo_addr, self.lo_port),
            Side::Hi => (self.hi_addr, self.hi_port),
        };
        (addr_of(a), port)
    }
}

/// The request type of an ICMP query/reply pair (RFC 792: echo 8/0, timestamp 13/14, information 15/16;
/// RFC 4443: echo 128/129).
fn request_type(ip_proto: u8, icmp_type: u8) -> u8 {
    match (ip_proto, icmp_type) {
        (1, 0) => 8,
        (1, 14) => 13,
        (1, 16) => 15,
        (58, 129) => 128,
        (_, t) => t,
    }
}
