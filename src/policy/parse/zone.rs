//! Networks and zones: [`Cidr`], the `zone` line, and SRC/DST as rule and policy lines name them.

use std::fmt;
use std::net::IpAddr;

use super::{Fail, LineParser, Token};

/// An IPv4 or IPv6 network; IPv4 is held as its IPv4-mapped IPv6 form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: u128,
    prefix: u8,
    v4: bool,
}

fn mapped(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Cidr {
    /// Parses `ADDR` or `ADDR/PREFIX`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = match prefix {
            None => max,
            Some(p) => p
                .parse()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("bad prefix length '/{p}' (expected 0 to {max})"))?,
        };
        let prefix = if addr.is_ipv4() { prefix + 96 } else { prefix };
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(prefix))
        };
        Ok(Cidr {
            net: mapped(addr) & mask,
            prefix,
            v4: addr.is_ipv4(),
        })
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        if a.is_ipv4() != self.v4 {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        mapped(a) & mask == self.net
    }
}

/// `10.0.0.0/8`, `fd00::/8`: the network as a policy's `zone` line writes it (host bits cleared).
impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v4 {
            let a = std::net::Ipv4Addr::from(self.net as u32);
            write!(f, "{a}/{}", self.prefix - 96)
        } else {
            let a = std::net::Ipv6Addr::from(self.net);
            write!(f, "{a}/{}", self.prefix)
        }
    }
}

/// A zone in a rule or policy line: one zone (index into [`Parsed::zones`](super::Parsed::zones)) or `all`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneSel {
    All,
    Zone(usize),
}

impl ZoneSel {
    pub fn covers(self, zone: usize) -> bool {
        matches!(self, ZoneSel::All) || self == ZoneSel::Zone(zone)
    }
}

/// SRC or DST of a rule: a zone, optionally narrowed to some networks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub zone: ZoneSel,
    /// Empty: the whole zone.
    pub nets: Vec<Cidr>,
}

impl Endpoint {
    pub fn contains(&self, a: IpAddr) -> bool {
        self.nets.is_empty() || self.nets.iter().any(|n| n.contains(a))
    }
}

/// A declared zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub nets: Vec<Cidr>,
    pub line: u32,
}

impl LineParser<'_> {
    pub(super) fn zone(&self, t: &Token<'_>) -> Result<ZoneSel, Fail> {
        if t.text.eq_ignore_ascii_case("all") {
            return Ok(ZoneSel::All);
        }
        match self.zone_names.iter().position(|z| z == t.text) {
            Some(i) => Ok(ZoneSel::Zone(i)),
            None => Err((
                t.col,
                format!(
                    "unknown zone '{}' (expected one of: {}, all)",
                    t.text,
                    self.zone_names.join(", ")
                ),
            )),
        }
    }

    pub(super) fn endpoint(&self, t: &Token<'_>) -> Result<Endpoint, Fail> {
        let (zone, nets) = match t.text.split_once(':') {
            // An IPv6 address has colons too: only the first colon after a zone name splits.
            Some((z, nets))
                if !z.is_empty() && !z.contains(['.', '/']) && z.parse::<u16>().is_err() =>
            {
                (z, Some(nets))
            }
            _ => (t.text, None),
        };
        let zone = self.zone(&Token {
            text: zone,
            col: t.col,
        })?;
        let nets = match nets {
            None => Vec::new(),
            Some(list) => {
                let col = t.col + t.text.find(':').unwrap_or(0) as u32 + 1;
                list.split(',')
                    .map(Cidr::parse)
                    .collect::<Result<_, _>>()
                    .map_err(|e| (col, e))?
            }
        };
        Ok(Endpoint { zone, nets })
    }

    /// `zone NAME CIDR[,CIDR...]` (the name itself was collected in the first pass).
    pub(super) fn zone_line(&self, toks: &[Token<'_>]) -> Result<Zone, Fail> {
        let [_, name, nets] = toks else {
            let col = toks.get(3).map_or(toks[0].col, |t| t.col);
            return Err((col, "expected 'zone NAME CIDR[,CIDR...]'".into()));
        };
        if name.text.eq_ignore_ascii_case("all")
            || !name
                .text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err((
                name.col,
                format!(
                    "'{}' cannot name a zone (letters, digits, '-' and '_'; not 'all')",
                    name.text
                ),
            ));
        }
        let nets = nets
            .text
            .split(',')
            .map(Cidr::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| (nets.col, e))?;
        Ok(Zone {
            name: name.text.to_string(),
            nets,
            line: self.line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::a01:203".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            !Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            !Cidr::parse("::/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn cidr_prints_as_a_zone_line_writes_it() {
        for (given, shown) in [
            ("10.1.2.3/16", "10.1.0.0/16"),
            ("192.0.2.7", "192.0.2.7/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("fd00::2/8", "fd00::/8"),
            ("2001:db8::1", "2001:db8::1/128"),
        ] {
            let c = Cidr::parse(given).unwrap();
            assert_eq!(c.to_string(), shown);
            assert_eq!(Cidr::parse(shown).unwrap(), c, "{shown} reads back");
        }
    }
}
