//! One flow of the synthetic mix being sent: its packets' directions, flags and payloads, and the
//! Ethernet frames around them.

use etherparse::{IpHeaders, Ipv4Header, PacketBuilder, TcpHeader, TcpOptionElement};

use super::payload::{
    Rng, dns_query, dns_response, filler, ntp_reply, ntp_request, tls_app_data, tls_client_hello,
    tls_server_flight,
};
use super::{App, Planned, T0, US};

const MS: u64 = 1_000_000;
const SERVERS: u64 = 2_000;
const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const NAMES: [&str; 16] = [
    "www.example.com",
    "cdn.example.net",
    "mail.example.org",
    "api.example.com",
    "update.example.net",
    "docs.example.org",
    "static.example.com",
    "login.example.net",
    "video.example.org",
    "files.example.com",
    "chat.example.net",
    "news.example.org",
    "img.example.com",
    "sync.example.net",
    "calendar.example.org",
    "telemetry.example.com",
];

// TCP flag bits, as on the wire.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Which side sends: the LAN client (`Out`) or the server (`In`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Out,
    In,
}

/// One flow being sent.
pub(super) struct Flow {
    app: App,
    client: [u8; 4],
    client_mac: [u8; 6],
    server: [u8; 4],
    cport: u16,
    sport: u16,
    /// Index into NAMES (SNI / Host).
    name: usize,
    /// Packets sent so far and in total.
    step: u64,
    total: u64,
    /// Percentage of data packets (after the first exchange) sent by the server.
    server_share: u64,
    c_len: (u64, u64),
    s_len: (u64, u64),
    c_nxt: u32,
    s_nxt: u32,
}

/// Server `i` of 198.18.0.0/15: 250 hosts (last octet 2..=251) in each of 198.18.{0,64,128,192} and
/// 198.19.{0,64,128,192}.
fn server(i: u64) -> [u8; 4] {
    let block = i / 250;
    [
        198,
        18 + (block / 4) as u8,
        ((block % 4) * 64) as u8,
        (i % 250 + 2) as u8,
    ]
}

impl Flow {
    pub(super) fn new(rng: &mut Rng, serial: u64, planned: Planned) -> Flow {
        // Half the flows go to 100 popular servers, the rest anywhere.
        let server_index = if rng.below(2) == 0 {
            rng.below(100)
        } else {
            rng.below(SERVERS)
        };
        let (a, b) = (rng.below(256) as u8, rng.range(1, 254) as u8);
        // (port, server share %, client sizes, server sizes)
        let (sport, share, c_len, s_len) = match planned.app {
            App::Https => (443, 70, (60, 600), (200, 1400)),
            App::Http => (80, 75, (0, 0), (60, 1400)),
            App::Dns => (53, 50, (0, 0), (0, 0)),
            App::Ntp => (123, 50, (0, 0), (0, 0)),
            App::Ssh => (22, 50, (60, 200), (60, 300)),
            App::HttpProxy => (8080, 75, (0, 0), (60, 1400)),
            App::Rdp => (3389, 50, (60, 300), (60, 1400)),
            App::BitTorrent => (6881, 50, (60, 1400), (60, 1400)),
            App::OpenVpn => (1194, 50, (60, 300), (60, 1400)),
        };
        Flow {
            app: planned.app,
            client: [10, 0, a, b],
            client_mac: [0x02, 0x00, 10, 0, a, b],
            server: server(server_index),
            cport: 32_768 + (serial % 28_232) as u16,
            sport,
            name: rng.below(NAMES.len() as u64) as usize,
            step: 0,
            total: planned.n + planned.app.overhead(),
            server_share: share,
            c_len,
            s_len,
            c_nxt: rng.next() as u32,
            s_nxt: rng.next() as u32,
        }
    }

    /// Direction, TCP flags and payload of packet `k` of a TCP flow. The client speaks first (k = 3),
    /// the server answers (k = 4), then data flows both ways; payloads that need building go to
    /// `scratch`.
    fn tcp_step<'a>(
        &self,
        k: u64,
        rng: &mut Rng,
        pl: &'a Payloads,
        scratch: &'a mut Vec<u8>,
    ) -> (Dir, u8, &'a [u8]) {
        let data = self.total - 6;
        let none: &[u8] = &[];
        match k {
            0 => return (Dir::Out, SYN, none),
            1 => return (Dir::In, SYN | ACK, none),
            2 => return (Dir::Out, ACK, none),
            k if k == 3 + data => return (Dir::Out, FIN | ACK, none),
            k if k == 4 + data => return (Dir::In, FIN | ACK, none),
            k if k > 4 + data => return (Dir::Out, ACK, none),
            _ => {}
        }
        let push = PSH | ACK;
        if k == 3 {
            let first: &[u8] = match self.app {
                App::Https => &pl.client_hellos[self.name],
                App::Http => &pl.http_gets[self.name],
                App::HttpProxy => &pl.proxy_gets[self.name],
                App::Ssh => &pl.ssh_client,
                App::Rdp => &pl.rdp_request,
                App::BitTorrent => &pl.bt_handshake,
                App::Dns | App::Ntp | App::OpenVpn => none,
            };
            return (Dir::Out, push, first);
        }
        let dir = if k == 4 || rng.below(100) < self.server_share {
            Dir::In
        } else {
            Dir::Out
        };
        if dir == Dir::Out && matches!(self.app, App::Http | App::HttpProxy) {
            return (Dir::Out, ACK, none); // HTTP clients only acknowledge
        }
        let (lo, hi) = match dir {
            Dir::Out => self.c_len,
            Dir::In => self.s_len,
        };
        let len = rng.range(lo, hi) as usize;
        scratch.clear();
        match (self.app, k) {
            (App::Https, 4) => tls_server_flight(scratch, len, k, &pl.filler),
            (App::Https, _) => tls_app_data(scratch, len, &pl.filler),
            (App::Http | App::HttpProxy, 4) => {
                scratch.extend_from_slice(&pl.http_head);
                let body = len.saturating_sub(pl.http_head.len());
                scratch.extend_from_slice(&pl.filler[..body]);
            }
            (App::Ssh, 4) => return (dir, push, &pl.ssh_server),
            (App::Rdp, 4) => return (dir, push, &pl.rdp_confirm),
            (App::BitTorrent, 4) => return (dir, push, &pl.bt_handshake),
            _ => return (dir, push, &pl.filler[..len]),
        }
        (dir, push, scratch)
    }

    /// Direction and payload of packet `k` of a UDP flow (client first, then strictly alternating).
    fn udp_step<'a>(&self, k: u64, rng: &mut Rng, pl: &'a Payloads) -> (Dir, &'a [u8]) {
        let dir = if k & 1 == 0 { Dir::Out } else { Dir::In };
        let payload: &[u8] = match (self.app, dir, k) {
            (App::Dns, Dir::Out, _) => &pl.dns_q,
            (App::Dns, Dir::In, _) => &pl.dns_r,
            (App::Ntp, Dir::Out, _) => &pl.ntp_q,
            (App::Ntp, Dir::In, _) => &pl.ntp_r,
            (_, Dir::Out, 0) => &pl.ovpn_client,
            (_, Dir::In, 1) => &pl.ovpn_server,
            (_, Dir::Out, _) => &pl.filler[..rng.range(self.c_len.0, self.c_len.1) as usize],
            (_, Dir::In, _) => &pl.filler[..rng.range(self.s_len.0, self.s_len.1) as usize],
        };
        (dir, payload)
    }

    /// Appends this flow's next frame to `out`.
    pub(super) fn next_packet(
        &mut self,
        out: &mut Vec<u8>,
        rng: &mut Rng,
        ip_id: u16,
        pl: &Payloads,
        scratch: &mut Vec<u8>,
    ) -> Result<(), etherparse::err::packet::BuildWriteError> {
        let k = self.step;
        self.step += 1;
        let udp = self.app.udp();
        let (dir, flags, payload) = if udp {
            let (dir, payload) = self.udp_step(k, rng, pl);
            (dir, 0, payload)
        } else {
            self.tcp_step(k, rng, pl, scratch)
        };
        let (src, dst, (smac, dmac), sp, dp, ttl) = match dir {
            Dir::Out => (
                self.client,
                self.server,
                (self.client_mac, GW_MAC),
                self.cport,
                self.sport,
                64,
            ),
            Dir::In => (
                self.server,
                self.client,
                (GW_MAC, self.client_mac),
                self.sport,
                self.cport,
                57,
            ),
        };
        let ip = Ipv4Header {
            source: src,
            destination: dst,
            time_to_live: ttl,
            identification: ip_id,
            dont_fragment: true,
            ..Default::default()
        };
        let step = PacketBuilder::ethernet2(smac, dmac).ip(IpHeaders::Ipv4(ip, Default::default()));
        if udp {
            return step.udp(sp, dp).write(out, payload);
        }
        let (seq, ack) = match dir {
            Dir::Out => (self.c_nxt, self.s_nxt),
            Dir::In => (self.s_nxt, self.c_nxt),
        };
        let advance = payload.len() as u32 + u32::from(flags & (SYN | FIN) != 0);
        match dir {
            Dir::Out => self.c_nxt = self.c_nxt.wrapping_add(advance),
            Dir::In => self.s_nxt = self.s_nxt.wrapping_add(advance),
        }
        step.tcp_header(tcp_header((sp, dp), seq, ack, flags, dir))
            .write(out, payload)
    }

    pub(super) fn done(&self) -> bool {
        self.step >= self.total
    }
}

/// A TCP header with Linux's windows and, on SYNs, its options.
fn tcp_header(ports: (u16, u16), seq: u32, ack: u32, flags: u8, dir: Dir) -> TcpHeader {
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
    t.psh = flags & PSH != 0;
    t.ack = flags & ACK != 0;
    if t.ack {
        t.acknowledgment_number = ack;
    }
    if syn {
        // 12 bytes of options: always within TCP's 40.
        let _ = t.set_options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ]);
    }
    t
}

/// Payloads built once and reused by every packet.
pub(super) struct Payloads {
    filler: Vec<u8>,
    client_hellos: Vec<Vec<u8>>,
    http_gets: Vec<Vec<u8>>,
    proxy_gets: Vec<Vec<u8>>,
    http_head: Vec<u8>,
    dns_q: Vec<u8>,
    dns_r: Vec<u8>,
    ntp_q: [u8; 48],
    ntp_r: [u8; 48],
    ssh_client: Vec<u8>,
    ssh_server: Vec<u8>,
    rdp_request: Vec<u8>,
    rdp_confirm: Vec<u8>,
    bt_handshake: Vec<u8>,
    ovpn_client: Vec<u8>,
    ovpn_server: Vec<u8>,
}

impl Payloads {
    pub(super) fn new() -> Payloads {
        let http_get = |host: &str| {
            format!(
                "GET /index.html HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0\r\nAccept: */*\r\n\r\n"
            )
            .into_bytes()
        };
        let proxy_get = |host: &str| {
            format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nProxy-Connection: keep-alive\r\n\r\n")
                .into_bytes()
        };
        let q = dns_query(0xbe7c, "www.example.com", 1, false);
        let ntp_q = ntp_request(T0);
        let mut bt = b"\x13BitTorrent protocol".to_vec();
        bt.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x05]); // reserved bits
        bt.extend_from_slice(&filler(20, 50)); // info hash
        bt.extend_from_slice(b"-qB4630-");
        bt.extend_from_slice(&filler(12, 51)); // peer id
        let cookie = b"Cookie: mstshash=user\r\n";
        let mut rdp = vec![0x03, 0x00, 0x00, (11 + cookie.len() + 8) as u8];
        rdp.extend_from_slice(&[(6 + cookie.len() + 8) as u8, 0xe0, 0, 0, 0, 0, 0]);
        rdp.extend_from_slice(cookie);
        rdp.extend_from_slice(&[0x01, 0x00, 0x08, 0x00, 0x03, 0x00, 0x00, 0x00]);
        let mut ovpn_client = vec![0x38];
        ovpn_client.extend_from_slice(&filler(8, 52));
        ovpn_client.extend_from_slice(&[0, 0, 0, 0, 0]);
        let mut ovpn_server = vec![0x40];
        ovpn_server.extend_from_slice(&filler(8, 53));
        ovpn_server.push(1);
        ovpn_server.extend_from_slice(&[0, 0, 0, 0]);
        ovpn_server.extend_from_slice(&ovpn_client[1..9]);
        ovpn_server.extend_from_slice(&[0, 0, 0, 0]);
        Payloads {
            filler: filler(1400, 42),
            client_hellos: (0..NAMES.len())
                .map(|i| tls_client_hello(NAMES[i], 100 + i as u64))
                .collect(),
            http_gets: NAMES.iter().map(|h| http_get(h)).collect(),
            proxy_gets: NAMES.iter().map(|h| proxy_get(h)).collect(),
            http_head: b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n".to_vec(),
            dns_r: dns_response(&q, 300, &[198, 18, 0, 2]),
            dns_q: q,
            ntp_r: ntp_reply(&ntp_q, T0 + 5 * MS, T0 + 5 * MS + 40 * US),
            ntp_q,
            ssh_client: b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n".to_vec(),
            ssh_server: b"SSH-2.0-OpenSSH_8.9p1 Debian-3\r\n".to_vec(),
            rdp_request: rdp,
            rdp_confirm: vec![3, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0, 2, 0, 8, 0, 0, 0, 0, 0],
            bt_handshake: bt,
            ovpn_client,
            ovpn_server,
        }
    }
}
