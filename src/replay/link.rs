//! Link-layer unwrapping: from a captured frame to the IPv4/IPv6 header inside it.
//!
//! Contract: `network_layer` never panics on any input and never allocates; its result borrows
//! from the frame.
//! Frames too short for their link-layer header are `Truncated`, frames that carry something
//! other than IPv4/IPv6 (ARP, LLDP, netlink, ...) are `NotIp`. The IP header itself is not
//! checked beyond its version nibble where the link layer does not say which IP it is.

use std::fmt;

use etherparse::{EtherType, Ethernet2HeaderSlice, SingleVlanHeaderSlice};

/// The link layer a record's bytes start with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    Ethernet,
    /// Raw IP, version given by the first nibble (LINKTYPE_RAW 101, and DLT_RAW 12 / 14).
    Raw,
    Ipv4,
    Ipv6,
    LinuxSll,
    LinuxSll2,
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback: 4-byte address family in network byte order.
    Loop,
    Other(u32),
}

impl LinkType {
    /// Maps a LINKTYPE_ value as found in pcap and pcapng headers.
    pub(crate) fn from_linktype(value: u32) -> Self {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            // 12 and 14 are DLT_RAW's values on some platforms, written raw into old files.
            12 | 14 | 101 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    /// Short name, as tcpdump and capinfos spell them.
    pub fn name(&self) -> String {
        match self {
            LinkType::Ethernet => "EN10MB".to_string(),
            LinkType::Raw => "RAW".to_string(),
            LinkType::Ipv4 => "IPV4".to_string(),
            LinkType::Ipv6 => "IPV6".to_string(),
            LinkType::LinuxSll => "LINUX_SLL".to_string(),
            LinkType::LinuxSll2 => "LINUX_SLL2".to_string(),
            LinkType::Null => "NULL".to_string(),
            LinkType::Loop => "LOOP".to_string(),
            LinkType::Other(n) => format!("link type {n}"),
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Why a frame has no IP packet for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("frame too short for its link-layer header")]
    Truncated,
    #[error("not an IPv4 or IPv6 packet")]
    NotIp,
    #[error("unsupported link type")]
    UnsupportedLinkType,
}

/// Linux ARPHRD_ types whose SLL protocol field is not an ethertype.
const ARPHRD_FRAD: u16 = 770;
const ARPHRD_IEEE80211_RADIOTAP: u16 = 803;
const ARPHRD_NETLINK: u16 = 824;

/// Address families that mean IPv4 / IPv6 in NULL and LOOP headers. AF_INET6 differs between
/// systems: 10 on Linux, 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on macOS.
const AF_INET: u32 = 2;
const AF_INET6: [u32; 4] = [10, 24, 28, 30];

/// Returns the bytes of `frame` starting at its IPv4/IPv6 header.
pub fn network_layer(link: LinkType, frame: &[u8]) -> Result<&[u8], LinkError> {
    match link {
        LinkType::Ethernet => {
            let eth = Ethernet2HeaderSlice::from_slice(frame).map_err(|_| LinkError::Truncated)?;
            let rest = frame.get(eth.slice().len()..).ok_or(LinkError::Truncated)?;
            after_ether_type(eth.ether_type(), rest)
        }
        LinkType::Raw => match frame.first().map(|b| b >> 4) {
            None => Err(LinkError::Truncated),
            Some(4 | 6) => Ok(frame),
            Some(_) => Err(LinkError::NotIp),
        },
        LinkType::Ipv4 | LinkType::Ipv6 => non_empty(frame),
        // 16 bytes: packet type, ARPHRD type, address length, address (8), protocol.
        LinkType::LinuxSll => {
            let hatype = be16(frame, 2)?;
            sll_payload(
                hatype,
                be16(frame, 14)?,
                frame.get(16..).ok_or(LinkError::Truncated)?,
            )
        }
        // 20 bytes: protocol, reserved, interface index (4), ARPHRD type, packet type,
        // address length, address (8).
        LinkType::LinuxSll2 => {
            let hatype = be16(frame, 8)?;
            let rest = frame.get(20..).ok_or(LinkError::Truncated)?;
            sll_payload(hatype, be16(frame, 0)?, rest)
        }
        LinkType::Null | LinkType::Loop => {
            let family: [u8; 4] = frame
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or(LinkError::Truncated)?;
            let rest = frame.get(4..).ok_or(LinkError::Truncated)?;
            // NULL is in the byte order of the host that captured, which we do not know; the
            // families are small numbers, so reading both ways cannot confuse one with another.
            let mut families = [u32::from_be_bytes(family), u32::from_le_bytes(family)];
            if link == LinkType::Loop {
                families[1] = families[0];
            }
            if families.contains(&AF_INET) || families.iter().any(|f| AF_INET6.contains(f)) {
                non_empty(rest)
            } else {
                Err(LinkError::NotIp)
            }
        }
        LinkType::Other(_) => Err(LinkError::UnsupportedLinkType),
    }
}

/// Follows any stack of 802.1Q / 802.1ad / 0x9100 VLAN tags to an IP header.
fn after_ether_type(mut ether_type: EtherType, mut rest: &[u8]) -> Result<&[u8], LinkError> {
    loop {
        match ether_type {
            EtherType::IPV4 | EtherType::IPV6 => return non_empty(rest),
            EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME => {
                // Each tag consumes 4 bytes, so the loop ends with the frame.
                let tag =
                    SingleVlanHeaderSlice::from_slice(rest).map_err(|_| LinkError::Truncated)?;
                ether_type = tag.ether_type();
                rest = rest.get(tag.slice().len()..).ok_or(LinkError::Truncated)?;
            }
            _ => return Err(LinkError::NotIp),
        }
    }
}

/// SLL/SLL2 payload. etherparse's `LinuxSllHeaderSlice` is not used: it rejects ARPHRD types it
/// does not know, among them loopback (772) and tun (65534), which are common in `-i any` captures.
fn sll_payload(hatype: u16, protocol: u16, rest: &[u8]) -> Result<&[u8], LinkError> {
    match hatype {
        ARPHRD_NETLINK | ARPHRD_IEEE80211_RADIOTAP | ARPHRD_FRAD => Err(LinkError::NotIp),
        _ => after_ether_type(EtherType(protocol), rest),
    }
}

fn be16(frame: &[u8], at: usize) -> Result<u16, LinkError> {
    let bytes = frame.get(at..at + 2).ok_or(LinkError::Truncated)?;
    bytes
        .try_into()
        .map(u16::from_be_bytes)
        .map_err(|_| LinkError::Truncated)
}

/// An IP header cannot be empty: a link header with nothing after it is a truncated frame.
fn non_empty(ip: &[u8]) -> Result<&[u8], LinkError> {
    if ip.is_empty() {
        Err(LinkError::Truncated)
    } else {
        Ok(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LinkError::{NotIp, Truncated};

    const IP4: &[u8] = &[0x45, 0, 0, 20];
    const IP6: &[u8] = &[0x60, 0, 0, 0];

    fn eth(ether_types_and_tags: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0xff; 12]; // destination, source
        frame.extend_from_slice(ether_types_and_tags);
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn ethernet_and_vlan_stacks() {
        let frame = eth(&[0x08, 0x00], IP4);
        assert_eq!(network_layer(LinkType::Ethernet, &frame), Ok(IP4));
        let frame = eth(&[0x86, 0xdd], IP6);
        assert_eq!(network_layer(LinkType::Ethernet, &frame), Ok(IP6));
        // 802.1Q, QinQ (802.1ad outer + 802.1Q inner), 0x9100 + 0x8100, and three deep.
        for tags in [
            &[0x81, 0x00, 0x00, 0x05, 0x08, 0x00][..],
            &[0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00],
            &[0x91, 0x00, 0x00, 0x64, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00],
            &[
                0x88, 0xa8, 0, 1, 0x91, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00,
            ],
        ] {
            assert_eq!(
                network_layer(LinkType::Ethernet, &eth(tags, IP4)),
                Ok(IP4),
                "{tags:x?}"
            );
        }
        assert_eq!(
            network_layer(LinkType::Ethernet, &eth(&[0x08, 0x06], &[0; 28])),
            Err(NotIp)
        ); // ARP
        assert_eq!(
            network_layer(LinkType::Ethernet, &eth(&[0x88, 0xcc], &[0; 9])),
            Err(NotIp)
        ); // LLDP
        assert_eq!(
            network_layer(LinkType::Ethernet, &eth(&[0x00, 0x40], &[0; 64])),
            Err(NotIp)
        ); // 802.3 length
        let qinq_arp = eth(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x06], &[0; 28]);
        assert_eq!(network_layer(LinkType::Ethernet, &qinq_arp), Err(NotIp));
        // Truncated: inside the Ethernet header, inside a tag, and with nothing after the header.
        assert_eq!(network_layer(LinkType::Ethernet, &[0; 13]), Err(Truncated));
        assert_eq!(
            network_layer(LinkType::Ethernet, &eth(&[0x81, 0x00, 0, 5, 0x08], &[])),
            Err(Truncated)
        );
        assert_eq!(
            network_layer(LinkType::Ethernet, &eth(&[0x88, 0xa8, 0, 1], &[])),
            Err(Truncated)
        );
        assert_eq!(
            network_layer(LinkType::Ethernet, &eth(&[0x08, 0x00], &[])),
            Err(Truncated)
        );
        assert_eq!(network_layer(LinkType::Ethernet, &[]), Err(Truncated));
    }

    #[test]
    fn link_type_codes_and_names() {
        let named = [
            (1, "EN10MB"),
            (101, "RAW"),
            (12, "RAW"),
            (14, "RAW"),
            (0, "NULL"),
        ];
        for (code, name) in named.into_iter().chain([(108, "LOOP"), (113, "LINUX_SLL")]) {
            assert_eq!(LinkType::from_linktype(code).to_string(), name);
        }
        assert_eq!(LinkType::from_linktype(276), LinkType::LinuxSll2);
        assert_eq!(LinkType::from_linktype(228).name(), "IPV4");
        assert_eq!(LinkType::from_linktype(229).name(), "IPV6");
        assert_eq!(LinkType::from_linktype(147).to_string(), "link type 147");
    }

    #[test]
    fn raw_ip() {
        assert_eq!(network_layer(LinkType::Raw, IP4), Ok(IP4));
        assert_eq!(network_layer(LinkType::Raw, IP6), Ok(IP6));
        assert_eq!(network_layer(LinkType::Raw, &[0x50, 0]), Err(NotIp));
        assert_eq!(network_layer(LinkType::Raw, &[]), Err(Truncated));
        assert_eq!(network_layer(LinkType::Ipv4, IP4), Ok(IP4));
        assert_eq!(network_layer(LinkType::Ipv6, IP6), Ok(IP6));
        assert_eq!(network_layer(LinkType::Ipv6, &[]), Err(Truncated));
        assert_eq!(
            network_layer(LinkType::Other(147), IP4),
            Err(LinkError::UnsupportedLinkType)
        );
    }

    #[test]
    fn linux_cooked() {
        // SLL: packet type 4 (outgoing), ARPHRD 772 (loopback: etherparse would refuse it).
        let mut sll = vec![0, 4, 0x03, 0x04, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(IP4);
        assert_eq!(network_layer(LinkType::LinuxSll, &sll), Ok(IP4));
        sll[2..4].copy_from_slice(&[0xff, 0xfe]); // ARPHRD_NONE (tun)
        sll[14..16].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(network_layer(LinkType::LinuxSll, &sll), Ok(IP4)); // protocol decides, not nibble
        sll[2..4].copy_from_slice(&[0x03, 0x38]); // netlink: protocol is a netlink family
        sll[14..16].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(network_layer(LinkType::LinuxSll, &sll), Err(NotIp));
        sll[2..4].copy_from_slice(&[0x00, 0x01]);
        sll[14..16].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(network_layer(LinkType::LinuxSll, &sll), Err(NotIp));
        let mut tagged = sll[..14].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0, 7, 0x86, 0xdd]);
        tagged.extend_from_slice(IP6);
        assert_eq!(network_layer(LinkType::LinuxSll, &tagged), Ok(IP6));
        assert_eq!(
            network_layer(LinkType::LinuxSll, &sll[..15]),
            Err(Truncated)
        );
        sll[14..16].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            network_layer(LinkType::LinuxSll, &sll[..16]),
            Err(Truncated)
        );
        // SLL2: protocol first, ARPHRD at 8.
        let mut sll2 = vec![
            0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(IP6);
        assert_eq!(network_layer(LinkType::LinuxSll2, &sll2), Ok(IP6));
        sll2[8..10].copy_from_slice(&[0x03, 0x38]);
        assert_eq!(network_layer(LinkType::LinuxSll2, &sll2), Err(NotIp));
        assert_eq!(
            network_layer(LinkType::LinuxSll2, &sll2[..19]),
            Err(Truncated)
        );
    }

    #[test]
    fn bsd_loopback() {
        for (family, ip) in [(2u32, IP4), (10, IP6), (24, IP6), (28, IP6), (30, IP6)] {
            for header in [family.to_le_bytes(), family.to_be_bytes()] {
                let frame = [&header[..], ip].concat();
                assert_eq!(network_layer(LinkType::Null, &frame), Ok(ip), "{header:?}");
            }
            let frame = [&family.to_be_bytes()[..], ip].concat();
            assert_eq!(network_layer(LinkType::Loop, &frame), Ok(ip));
            let frame = [&family.to_le_bytes()[..], ip].concat();
            assert_eq!(
                network_layer(LinkType::Loop, &frame),
                Err(NotIp),
                "LOOP is big-endian"
            );
        }
        assert_eq!(
            network_layer(LinkType::Null, &[7, 0, 0, 0, 0x45]),
            Err(NotIp)
        );
        assert_eq!(network_layer(LinkType::Null, &[2, 0, 0]), Err(Truncated));
        assert_eq!(network_layer(LinkType::Null, &[2, 0, 0, 0]), Err(Truncated));
        assert_eq!(network_layer(LinkType::Loop, &[0, 0, 0]), Err(Truncated));
    }

    #[test]
    fn real_captures_unwrap_to_ip() {
        use crate::replay::capture::CaptureReader;
        let Some(dir) = crate::testutil::shared_captures("real_captures_unwrap_to_ip") else {
            return;
        };
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        // Files whose every packet must unwrap to IP of a known version (by link type).
        let expect: &[(&str, &[(LinkType, u8)])] = &[
            ("http_connect_simple_null.pcap", &[(LinkType::Null, 4)]),
            (
                "pcapng_2idb_ether_and_null.pcapng",
                &[(LinkType::Ethernet, 4), (LinkType::Null, 4)],
            ),
            ("ipv6_frag_tcp_rawip6.pcap", &[(LinkType::Ipv6, 6)]),
            (
                "http_get_numeric_host_port_rawip.pcapng",
                &[(LinkType::Raw, 4)],
            ),
        ];
        let mut checked = 0;
        for path in entries.map(|e| e.unwrap().path()) {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let Ok(mut reader) = CaptureReader::open(&path) else {
                continue;
            };
            let wanted = expect.iter().find(|(n, _)| *n == name).map(|(_, w)| *w);
            let mut seen = Vec::new();
            while let Some(Ok(record)) = reader.next_record() {
                let result = network_layer(record.link, record.data);
                assert!(
                    matches!(result, Ok(_) | Err(NotIp | Truncated)),
                    "{name} #{}: {result:?}",
                    record.number
                );
                if let Some(wanted) = wanted {
                    let ip = result.unwrap_or_else(|e| panic!("{name} #{}: {e}", record.number));
                    let version = ip[0] >> 4;
                    assert!(
                        wanted.contains(&(record.link, version)),
                        "{name} #{}: {:?} v{version}",
                        record.number,
                        record.link
                    );
                    seen.push((record.link, version));
                }
            }
            if let Some(wanted) = wanted {
                assert!(
                    wanted.iter().all(|w| seen.contains(w)),
                    "{name}: saw {seen:?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, expect.len());
    }
}
