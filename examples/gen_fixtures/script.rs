//! Payload-inspection captures: their clock, TCP scripts, HTTP and TLS helpers.

use super::*;

/// 2024-03-01T10:00:00Z: where the payload-inspection captures start.
pub(crate) const T1: u64 = T0 + 3600 * SEC;
/// Round trip to a server, as seen from the client.
pub(crate) const RTT: u64 = 12 * MS;
/// How long the client takes to send its next segment.
pub(crate) const TURN: u64 = 100 * US;
/// Quiet time between one flow's last packet and the next flow's SYN.
pub(crate) const FLOW_GAP: u64 = 5 * MS;

/// www.example.org and its address.
pub(crate) const WWW: &str = "www.example.org";
pub(crate) const WWW_IP: IpAddr = ip4(192, 0, 2, 11);

pub(crate) const HTTP_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A connection from `client` to `server` whose initial sequence numbers
/// are derived from the client port.
pub(crate) fn flow(client: (IpAddr, u16), server: (IpAddr, u16)) -> Tcp {
    let seed = 0x6f67_6973_6e73_0001 ^ u64::from(client.1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rng = Rng(seed);
    rng.next();
    let c_isn = rng.next() as u32;
    let s_isn = rng.next() as u32;
    Tcp::new(client, server, c_isn, s_isn)
}

impl Tcp {
    /// Moves `dir`'s next sequence number back by `len`, so that its next
    /// segment retransmits the last `len` bytes.
    pub(crate) fn rewind(&mut self, dir: Dir, len: usize) {
        let nxt = match dir {
            Dir::Out => &mut self.c_nxt,
            Dir::In => &mut self.s_nxt,
        };
        *nxt = nxt.wrapping_sub(len as u32);
    }
}

/// Lays a capture's packets out one after another, one flow at a time.
pub(crate) struct Script {
    pub(crate) net: Net,
    pub(crate) cap: Cap,
    pub(crate) now: u64,
}

impl Script {
    pub(crate) fn new() -> Script {
        Script {
            net: Net::new(),
            cap: Cap::default(),
            now: T1,
        }
    }

    /// `t`'s next segment from `dir`, `after` ns after the previous packet.
    pub(crate) fn tcp(
        &mut self,
        after: u64,
        t: &mut Tcp,
        dir: Dir,
        flags: u8,
        payload: &[u8],
    ) -> Res<()> {
        self.now += after;
        let p = t.seg(&mut self.net, dir, flags, payload)?;
        self.cap.add(self.now, p);
        Ok(())
    }

    pub(crate) fn udp(
        &mut self,
        after: u64,
        dir: Dir,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        payload: &[u8],
    ) -> Res<()> {
        self.now += after;
        let p = self.net.udp(dir, src, dst, payload)?;
        self.cap.add(self.now, p);
        Ok(())
    }

    /// Delay before a new flow's first packet (none for the capture's first).
    pub(crate) fn gap(&self) -> u64 {
        if self.cap.recs.is_empty() {
            0
        } else {
            FLOW_GAP
        }
    }

    /// The client's SYN `after` ns from now, the SYN-ACK, the client's ACK.
    pub(crate) fn open(&mut self, after: u64, t: &mut Tcp) -> Res<()> {
        self.tcp(after, t, Dir::Out, SYN, &[])?;
        self.tcp(RTT, t, Dir::In, SYN | ACK, &[])?;
        self.tcp(TURN, t, Dir::Out, ACK, &[])
    }

    /// The client closes, the server closes, the client acknowledges.
    pub(crate) fn close(&mut self, t: &mut Tcp) -> Res<()> {
        self.tcp(MS, t, Dir::Out, FIN | ACK, &[])?;
        self.tcp(RTT, t, Dir::In, FIN | ACK, &[])?;
        self.tcp(TURN, t, Dir::Out, ACK, &[])
    }

    /// One client segment and the server's bare ACK of it.
    pub(crate) fn send_acked(&mut self, t: &mut Tcp, data: &[u8]) -> Res<()> {
        self.tcp(TURN, t, Dir::Out, PSH | ACK, data)?;
        self.tcp(RTT, t, Dir::In, ACK, &[])
    }

    /// A whole connection: handshake, the client's segments (each one
    /// acknowledged), the server's response if any, FIN both ways.
    pub(crate) fn exchange(&mut self, mut t: Tcp, segments: &[&[u8]], response: &[u8]) -> Res<()> {
        self.open(self.gap(), &mut t)?;
        for s in segments {
            self.send_acked(&mut t, s)?;
        }
        if !response.is_empty() {
            self.tcp(MS, &mut t, Dir::In, PSH | ACK, response)?;
        }
        self.close(&mut t)
    }

    /// Two client segments that arrive in reverse order: `second` first, then `first`.
    pub(crate) fn reordered(&mut self, t: &mut Tcp, first: &[u8], second: &[u8]) -> Res<()> {
        let one = t.seg(&mut self.net, Dir::Out, PSH | ACK, first)?;
        let two = t.seg(&mut self.net, Dir::Out, PSH | ACK, second)?;
        self.now += TURN;
        self.cap.add(self.now, two);
        self.now += US;
        self.cap.add(self.now, one);
        Ok(())
    }

    /// Alternating lines: each client line, then the server's answer.
    pub(crate) fn dialogue(&mut self, t: &mut Tcp, lines: &[(&str, &str)]) -> Res<()> {
        for (ask, answer) in lines {
            self.tcp(TURN, t, Dir::Out, PSH | ACK, ask.as_bytes())?;
            self.tcp(RTT, t, Dir::In, PSH | ACK, answer.as_bytes())?;
        }
        Ok(())
    }

    pub(crate) fn write(&self, path: &Path) -> Res<usize> {
        write_eth_pcap(path, &self.cap)
    }
}

/// An HTTP/1.1 request as curl sends it: `line`, the `host` header lines
/// exactly as given, User-Agent and Accept.
pub(crate) fn http_request(line: &str, host: &[&str]) -> Vec<u8> {
    let mut r = format!("{line}\r\n");
    for h in host {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n");
    r.into_bytes()
}

pub(crate) fn http_get(host: &str) -> Vec<u8> {
    http_request("GET / HTTP/1.1", &[&format!("Host: {host}")])
}

/// Where `needle` first occurs in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Res<usize> {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .ok_or_else(|| format!("{:?} not found", String::from_utf8_lossy(needle)).into())
}

/// Re-frames the handshake message of TLS `record` as two records, the
/// first holding the message's first `at` bytes.
pub(crate) fn tls_two_records(record: &[u8], at: usize) -> Vec<u8> {
    let msg = &record[5..];
    let mut out = Vec::with_capacity(record.len() + 5);
    for part in [&msg[..at], &msg[at..]] {
        out.extend_from_slice(&record[..3]);
        out.extend_from_slice(&(part.len() as u16).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// A TLS server's first flight for the TLS captures.
pub(crate) fn tls_reply(seed: u64) -> Vec<u8> {
    let mut flight = Vec::new();
    tls_server_flight(&mut flight, 600, seed, &filler(600, seed));
    flight
}
