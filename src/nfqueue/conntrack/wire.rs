//! ctnetlink messages: reading a conntrack entry, writing a mark update. Every read is bounds-checked
//! and never panics; an entry that does not read is `None`, never half an entry.
//!
//! Reference: `linux/netfilter/nfnetlink_conntrack.h`; what the kernel writes is
//! ctnetlink_fill_info() and what it reads ctnetlink_parse_tuple_filter() in
//! net/netfilter/nf_conntrack_netlink.c. Every value is in network order except CTA_PROTO_NUM and the
//! ICMP type and code, single bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::super::netlink::{
    Attrs, NLM_F_ACK, NLM_F_REQUEST, NlMsg, be16, be32, begin_msg, begin_nest, end_msg, end_nest,
    put_attr, put_be16, put_be32, put_u8, u8_attr,
};
use super::{Counters, Entry, IcmpTuple, Tuple};

pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
/// An entry: the answer to a dump, and the request that creates or updates one.
pub const IPCTNL_MSG_CT_NEW: u16 = NFNL_SUBSYS_CTNETLINK << 8;
pub const IPCTNL_MSG_CT_GET: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | 1;
/// An entry that ended: the destroy event (and the request that deletes one).
pub const IPCTNL_MSG_CT_DELETE: u16 = (NFNL_SUBSYS_CTNETLINK << 8) | 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_MARK: u16 = 8;
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_ID: u16 = 12;
const CTA_TUPLE_MASTER: u16 = 14;
const CTA_ZONE: u16 = 18;
const CTA_TIMESTAMP: u16 = 20;
const CTA_MARK_MASK: u16 = 21;

const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;

const CTA_TIMESTAMP_START: u16 = 1;
const CTA_TIMESTAMP_STOP: u16 = 2;

const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;

const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;

const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTO_ICMP_ID: u16 = 4;
const CTA_PROTO_ICMP_TYPE: u16 = 5;
const CTA_PROTO_ICMP_CODE: u16 = 6;
const CTA_PROTO_ICMPV6_ID: u16 = 7;
const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
const CTA_PROTO_ICMPV6_CODE: u16 = 9;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// The longest update [`put_update`] writes: headers (20), an IPv6 ICMP tuple (4 + 44 + 36), CTA_ZONE,
/// CTA_MARK and CTA_MARK_MASK (8 each).
pub const UPDATE_MAX_LEN: usize = 128;

/// Reads an IPCTNL_MSG_CT_NEW message of a dump, or an IPCTNL_MSG_CT_DELETE event.
pub fn parse_entry(msg: NlMsg<'_>) -> Option<Entry> {
    let (_, _, attrs) = msg.nfgen()?;
    let (mut orig, mut reply, mut master) = (None, None, None);
    let (mut mark, mut id, mut zone, mut status) = (0, None, None, 0);
    let (mut counts_orig, mut counts_reply) = (None, None);
    let (mut start, mut stop) = (None, None);
    for attr in attrs {
        let (ty, data) = attr.ok()?;
        match ty {
            CTA_TUPLE_ORIG => orig = Some(parse_tuple(data)?),
            CTA_TUPLE_REPLY => reply = Some(parse_tuple(data)?.0),
            CTA_TUPLE_MASTER => master = Some(parse_tuple(data)?.0),
            CTA_MARK => mark = be32(data)?,
            CTA_ID => id = Some(be32(data)?),
            CTA_ZONE => zone = Some(be16(data)?),
            CTA_STATUS => status = be32(data)?,
            CTA_COUNTERS_ORIG => counts_orig = Some(parse_counters(data)?),
            CTA_COUNTERS_REPLY => counts_reply = Some(parse_counters(data)?),
            CTA_TIMESTAMP => (start, stop) = parse_timestamp(data)?,
            _ => {}
        }
    }
    let (orig, orig_zone) = orig?;
    // The kernel writes both directions or neither (ctnetlink_dump_acct).
    let counters = counts_orig.zip(counts_reply).map(|(o, r)| Counters {
        orig_packets: o.0,
        orig_bytes: o.1,
        reply_packets: r.0,
        reply_bytes: r.1,
    });
    Some(Entry {
        orig,
        reply,
        master,
        mark,
        id,
        // CTA_ZONE is the zone of both directions; a zone of the original direction only comes inside
        // its tuple (ctnetlink_dump_zone_id). Either is the zone the original tuple is found in.
        zone: zone.or(orig_zone).unwrap_or(0),
        status,
        counters,
        start,
        stop,
    })
}

/// Reads a nest of two 64-bit values, attributes `first` and `second`, each present or not; `None`
/// when an attribute does not read.
fn be64_pair(nest: &[u8], first: u16, second: u16) -> Option<(Option<u64>, Option<u64>)> {
    let (mut a, mut b) = (None, None);
    for attr in Attrs::new(nest) {
        let (ty, data) = attr.ok()?;
        if ty == first {
            a = Some(be64(data)?);
        } else if ty == second {
            b = Some(be64(data)?);
        }
    }
    Some((a, b))
}

/// Reads a CTA_COUNTERS_* nest: (packets, bytes), 64-bit each, both needed (ctnetlink_dump_counters
/// writes CTA_COUNTERS_PACKETS and CTA_COUNTERS_BYTES; the 32-bit forms are from before Linux 2.6.32).
fn parse_counters(nest: &[u8]) -> Option<(u64, u64)> {
    let (packets, bytes) = be64_pair(nest, CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES)?;
    Some((packets?, bytes?))
}

/// Reads a CTA_TIMESTAMP nest: start (always written) and stop (written once the entry ended), in
/// nanoseconds since the Unix epoch (ktime_get_real_ns()).
fn parse_timestamp(nest: &[u8]) -> Option<(Option<u64>, Option<u64>)> {
    be64_pair(nest, CTA_TIMESTAMP_START, CTA_TIMESTAMP_STOP)
}

fn be64(d: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(<[u8; 8]>::try_from(d).ok()?))
}

/// Reads a CTA_TUPLE_* nest: the tuple, and the CTA_TUPLE_ZONE it carries if any.
fn parse_tuple(nest: &[u8]) -> Option<(Tuple, Option<u16>)> {
    let (mut src, mut dst, mut zone) = (None, None, None);
    let (mut proto, mut sport, mut dport) = (None, 0, 0);
    let (mut icmp_type, mut icmp_code, mut icmp_id) = (None, None, None);
    for attr in Attrs::new(nest) {
        let (ty, data) = attr.ok()?;
        match ty {
            CTA_TUPLE_IP => {
                for attr in Attrs::new(data) {
                    let (ty, data) = attr.ok()?;
                    match ty {
                        CTA_IP_V4_SRC => src = Some(ipv4(data)?),
                        CTA_IP_V4_DST => dst = Some(ipv4(data)?),
                        CTA_IP_V6_SRC => src = Some(ipv6(data)?),
                        CTA_IP_V6_DST => dst = Some(ipv6(data)?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for attr in Attrs::new(data) {
                    let (ty, data) = attr.ok()?;
                    match ty {
                        CTA_PROTO_NUM => proto = Some(u8_attr(data)?),
                        CTA_PROTO_SRC_PORT => sport = be16(data)?,
                        CTA_PROTO_DST_PORT => dport = be16(data)?,
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => icmp_id = Some(be16(data)?),
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            icmp_type = Some(u8_attr(data)?)
                        }
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                            icmp_code = Some(u8_attr(data)?)
                        }
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => zone = Some(be16(data)?),
            _ => {}
        }
    }
    let (src, dst, proto) = (src?, dst?, proto?);
    if src.is_ipv4() != dst.is_ipv4() {
        return None;
    }
    // The kernel writes all three for ICMP and ICMPv6 (icmp_tuple_to_nlattr), ports for the others
    // that have them (TCP, UDP, UDP-Lite, SCTP, DCCP, and GRE's keys), nothing else for the rest.
    let icmp = match proto {
        IPPROTO_ICMP | IPPROTO_ICMPV6 => Some(IcmpTuple {
            icmp_type: icmp_type?,
            code: icmp_code?,
            id: icmp_id?,
        }),
        _ => None,
    };
    let tuple = Tuple {
        src,
        dst,
        proto,
        sport,
        dport,
        icmp,
    };
    Some((tuple, zone))
}

fn ipv4(d: &[u8]) -> Option<IpAddr> {
    Some(Ipv4Addr::from(<[u8; 4]>::try_from(d).ok()?).into())
}

fn ipv6(d: &[u8]) -> Option<IpAddr> {
    Some(Ipv6Addr::from(<[u8; 16]>::try_from(d).ok()?).into())
}

/// The request of a dump of every entry of both families.
pub fn put_dump(b: &mut Vec<u8>, seq: u32) {
    use super::super::netlink::NLM_F_DUMP;
    let m = begin_msg(
        b,
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        libc::AF_UNSPEC as u8,
        0,
    );
    end_msg(b, m);
}

/// An update of `entry`'s mark, answered with an ACK or an error: the bits of `mask` become those of
/// `value`, the others stay.
///
/// What the kernel does with it (net/netfilter/nf_conntrack_netlink.c, Linux 6.18):
/// - IPCTNL_MSG_CT_NEW without NLM_F_CREATE is an update: ctnetlink_new_conntrack() looks the entry
///   up by CTA_TUPLE_ORIG in the zone of CTA_ZONE (zone 0 without it) and answers ENOENT when it is
///   not there; without NLM_F_EXCL it calls ctnetlink_change_conntrack().
/// - ctnetlink_change_mark() honours CTA_MARK_MASK on an update: `new = (old & ~mask) ^ value`. The
///   value is XORed, not ORed, so a bit of `value` outside `mask` would flip that bit of the old mark:
///   the value must be masked before it is sent, as here.
/// - CTA_ID is not checked on an update (only ctnetlink_del_conntrack() compares it), so none is sent:
///   if the entry ended and a new connection took the same tuple, the new entry is the one updated.
/// - CTA_TUPLE_MASTER is refused on an update (EOPNOTSUPP), and CTA_ZONE is refused (EOPNOTSUPP) by a
///   kernel without CONFIG_NF_CONNTRACK_ZONES, so it is only sent for a zone other than 0.
pub fn put_update(b: &mut Vec<u8>, seq: u32, entry: &Entry, value: u32, mask: u32) {
    let family = if entry.orig.src.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let m = begin_msg(
        b,
        IPCTNL_MSG_CT_NEW,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family as u8,
        0,
    );
    put_tuple(b, CTA_TUPLE_ORIG, &entry.orig);
    if entry.zone != 0 {
        put_be16(b, CTA_ZONE, entry.zone);
    }
    put_be32(b, CTA_MARK, value & mask);
    put_be32(b, CTA_MARK_MASK, mask);
    end_msg(b, m);
}

/// A tuple as ctnetlink_parse_tuple() reads it: both addresses, the protocol, and the ports or the
/// ICMP type, code and id. Ports are sent for every protocol but ICMP: a protocol without them
/// (ESP, say) ignores them, as the kernel has no nlattr_to_tuple for it.
fn put_tuple(b: &mut Vec<u8>, ty: u16, t: &Tuple) {
    let tuple = begin_nest(b, ty);
    let ip = begin_nest(b, CTA_TUPLE_IP);
    for (addr, v4, v6) in [
        (t.src, CTA_IP_V4_SRC, CTA_IP_V6_SRC),
        (t.dst, CTA_IP_V4_DST, CTA_IP_V6_DST),
    ] {
        match addr {
            IpAddr::V4(a) => put_attr(b, v4, &a.octets()),
            IpAddr::V6(a) => put_attr(b, v6, &a.octets()),
        }
    }
    end_nest(b, ip);
    let proto = begin_nest(b, CTA_TUPLE_PROTO);
    put_u8(b, CTA_PROTO_NUM, t.proto);
    match t.icmp {
        Some(icmp) => {
            let (id, ty, code) = if t.proto == IPPROTO_ICMPV6 {
                (
                    CTA_PROTO_ICMPV6_ID,
                    CTA_PROTO_ICMPV6_TYPE,
                    CTA_PROTO_ICMPV6_CODE,
                )
            } else {
                (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE)
            };
            put_be16(b, id, icmp.id);
            put_u8(b, ty, icmp.icmp_type);
            put_u8(b, code, icmp.code);
        }
        None => {
            put_be16(b, CTA_PROTO_SRC_PORT, t.sport);
            put_be16(b, CTA_PROTO_DST_PORT, t.dport);
        }
    }
    end_nest(b, proto);
    end_nest(b, tuple);
}
