//! ICMP echo data (RFC 792 echo and echo reply, RFC 4443 §4.1-4.2): what `size=` and the ICMP log read.
//!
//! `ping` fills its data with a known pattern: iputils and the BSDs write a timestamp (8 or 16 bytes)
//! and then each byte equal to its offset in the data (`0x10 0x11 ...`); Windows writes
//! `abcdefghijklmnopqrstuvw` over and over. Its default size is 56 bytes (Linux, macOS, the BSDs) or
//! 32 (Windows). A tunnel (ptunnel, icmptunnel, ...) carries other bytes, usually more of them.

use serde::{Deserialize, Serialize};

/// One echo request's or reply's data, summarised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// Whether this is an echo request (type 8, ICMPv6 128), not a reply.
    pub request: bool,
    pub ident: u16,
    /// Bytes of data after the 8-byte ICMP header; `u32::MAX` for the first fragment of a packet
    /// that was fragmented (its length is not known from it).
    pub size: u32,
    /// Shannon entropy of the data's bytes, in hundredths of a bit per byte (0..=800).
    pub entropy: u16,
    /// Whether the data is ping's fill (see the module docs).
    pub ping_fill: bool,
    /// FNV-1a (64 bits) of the data: a reply that echoes its request has the request's digest.
    pub digest: u64,
}

/// Windows ping's fill.
const WINDOWS_FILL: &[u8] = b"abcdefghijklmnopqrstuvw";

impl Echo {
    /// Summarises the data of an echo message. `fragmented`: the packet was the first of several
    /// fragments, so `data` is not all of it.
    pub fn new(request: bool, ident: u16, data: &[u8], fragmented: bool) -> Echo {
        let size = if fragmented {
            u32::MAX
        } else {
            u32::try_from(data.len()).unwrap_or(u32::MAX)
        };
        Echo {
            request,
            ident,
            size,
            entropy: entropy(data),
            ping_fill: ping_fill(data),
            digest: fnv1a(data),
        }
    }
}

/// Shannon entropy in hundredths of a bit per byte.
pub fn entropy(data: &[u8]) -> u16 {
    if data.is_empty() {
        return 0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let n = data.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    (bits * 100.0).round().clamp(0.0, 800.0) as u16
}

/// Whether `data` is ping's fill: Windows' alphabet, or (past a timestamp of at most 16 bytes) each
/// byte equal to its offset modulo 256. Empty data is ping's too (`ping -s 0`).
fn ping_fill(data: &[u8]) -> bool {
    if data.is_empty() {
        return true;
    }
    if data
        .iter()
        .zip(WINDOWS_FILL.iter().cycle())
        .all(|(a, b)| a == b)
    {
        return true;
    }
    // A timestamp of 8 (32-bit time_t) or 16 bytes, then the offsets; data shorter than the
    // timestamp is the timestamp alone.
    [8usize, 16].iter().any(|&skip| {
        data.iter()
            .enumerate()
            .skip(skip)
            .all(|(i, &b)| b == (i % 256) as u8)
    })
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// iputils ping's 56 bytes: a 16-byte struct timeval, then 0x10..=0x37.
    fn iputils() -> Vec<u8> {
        let mut d = vec![0x5e, 0x1a, 0, 0, 0, 0, 0, 0, 0x40, 0xe2, 1, 0, 0, 0, 0, 0];
        d.extend(16u8..56);
        d
    }

    #[test]
    fn ping_fill_is_recognised() {
        assert!(ping_fill(&iputils()));
        assert!(ping_fill(b"abcdefghijklmnopqrstuvwabcdefghi"));
        assert!(ping_fill(&iputils()[..10]), "only the timestamp");
        let mut other = iputils();
        other[30] ^= 0xff;
        assert!(!ping_fill(&other));
        // ptunnel's header starts with its magic 0xd5200880.
        assert!(!ping_fill(&[
            0xd5, 0x20, 0x08, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
    }

    #[test]
    fn entropy_bounds() {
        assert_eq!(entropy(&[]), 0);
        assert_eq!(entropy(&[7; 100]), 0);
        assert_eq!(entropy(&[0, 1]), 100);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(entropy(&all), 800);
    }

    #[test]
    fn a_fragment_has_no_known_size() {
        let e = Echo::new(true, 1, &iputils(), true);
        assert_eq!(e.size, u32::MAX);
        let whole = Echo::new(true, 1, &iputils(), false);
        assert_eq!(whole.size, 56);
        assert_eq!(whole.digest, Echo::new(false, 1, &iputils(), false).digest);
    }
}
