//! Captures for `learn`, TLS hellos, application protocols on odd ports, FTP.

use super::*;

/// A small LAN's minute for `outgate learn`: four clients in 10.0.0.0/24 (and fd00::2), a LAN server
/// 10.0.0.10. Ports used often, by several clients; ports used seldom or by one client; ICMP echo
/// and timestamp; GRE; connections from the net to the LAN server, and between LAN hosts; and
/// connections seen from their middle, to a port they would otherwise open. It spans under two
/// minutes, the pings last, so that no flow times out: what expiry counts would then depend on the
/// worker count.
pub(crate) fn learn_lan(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    const STEP: u64 = 5 * SEC;
    let lan = |n| ip4(10, 0, 0, n);
    let (a, b, c, d) = (lan(2), lan(3), lan(4), lan(5));
    let server = lan(10);
    let mut s = Script::new();
    s.now = T0 + 20 * SEC;

    // (a) HTTPS: three connections from three clients, two names; two more at the end.
    let cdn = ip4(192, 0, 2, 12);
    let hellos = [
        (a, 41001, WWW_IP, WWW, 501),
        (b, 41002, WWW_IP, WWW, 502),
        (c, 41003, cdn, "cdn.example.net", 503),
    ];
    for (client, port, srv, sni, seed) in hellos {
        let hello = tls_client_hello(sni, seed);
        s.exchange(
            flow((client, port), (srv, 443)),
            &[&hello],
            &tls_reply(seed),
        )?;
    }

    // (b) HTTP: three requests from three clients, one to a numeric host.
    s.now += STEP;
    let gets = [
        (a, 42001, WWW_IP, WWW),
        (d, 42002, WWW_IP, WWW),
        (b, 42003, ip4(198, 51, 100, 80), "198.51.100.80"),
    ];
    for (client, port, srv, host) in gets {
        s.exchange(flow((client, port), (srv, 80)), &[&http_get(host)], HTTP_OK)?;
    }

    // (c) DNS from three clients.
    s.now += STEP;
    let dns = (ip4(192, 0, 2, 53), 53);
    for (k, client) in [a, b, c].into_iter().enumerate() {
        let q = dns_query(0x4c00 + k as u16, "example.org", 1, false);
        s.udp(FLOW_GAP, Out, (client, 50100 + k as u16), dns, &q)?;
        let r = dns_response(&q, 3600, &[192, 0, 2, 11]);
        s.udp(RTT, In, dns, (client, 50100 + k as u16), &r)?;
    }

    // (d) XMPP: four connections, all from one client.
    s.now += STEP;
    for port in 43001..=43004 {
        let mut t = flow((d, port), (ip4(198, 51, 100, 22), 5222));
        s.open(FLOW_GAP, &mut t)?;
        s.close(&mut t)?;
    }

    // (e) one connection to 8443.
    s.now += STEP;
    let mut t = flow((b, 43101), (ip4(203, 0, 113, 8), 8443));
    s.open(0, &mut t)?;
    s.close(&mut t)?;

    // (f) GRE to a tunnel endpoint: only an `all` rule could open it.
    s.now += STEP;
    for k in 0..2u64 {
        let mut gre = vec![0x00, 0x00, 0x08, 0x00];
        PacketBuilder::ipv4([10, 201, 0, 1], [10, 201, 0, 2], 64)
            .icmpv4_echo_request(2, k as u16)
            .write(&mut gre, &filler(32, 40 + k))?;
        let outer = L4::Proto(IpNumber::GRE);
        s.now += SEC;
        let p = s
            .net
            .pkt(Link::Eth, Out, d, ip4(198, 51, 100, 30), outer, &gre)?;
        s.cap.add(s.now, p);
    }

    // (g) SSH from the net to the LAN server, three outside clients: inbound.
    s.now += STEP;
    for (k, outside) in [50u8, 51, 52].into_iter().enumerate() {
        let mut t = flow((ip4(203, 0, 113, outside), 44001 + k as u16), (server, 22));
        s.open(FLOW_GAP, &mut t)?;
        s.close(&mut t)?;
    }

    // (h) SMB between LAN hosts: two clients, four connections.
    s.now += STEP;
    for (k, client) in [b, c, b, c].into_iter().enumerate() {
        let mut t = flow((client, 45001 + k as u16), (server, 445));
        s.open(FLOW_GAP, &mut t)?;
        s.close(&mut t)?;
    }

    // (i) IMAPS sessions already running when the capture began, from three clients: the server's
    // data first, then the client's acknowledgement.
    s.now += STEP;
    for (k, client) in [a, b, c].into_iter().enumerate() {
        let mut t = flow((client, 46001 + k as u16), (ip4(192, 0, 2, 93), 993));
        s.tcp(FLOW_GAP, &mut t, In, PSH | ACK, &filler(200, 60 + k as u64))?;
        s.tcp(TURN, &mut t, Out, ACK, &[])?;
    }

    // (j) HTTPS a minute later: a SYN nobody answers (so no name is seen), and IPv6.
    s.now = T0 + 70 * SEC;
    let mut t = flow((a, 41004), (ip4(192, 0, 2, 7), 443));
    s.tcp(0, &mut t, Out, SYN, &[])?;
    let hello = tls_client_hello(WWW, 505);
    s.exchange(
        flow((C6, 41005), (doc6(0x10), 443)),
        &[&hello],
        &tls_reply(505),
    )?;

    // (k) ping from three clients, each answered; an ICMP timestamp request, unanswered.
    s.now += STEP;
    let gw = ip4(192, 0, 2, 1);
    for (k, client) in [a, c, d].into_iter().enumerate() {
        let id = 0x4100 + k as u16;
        let p = ping_payload(s.now);
        s.now += FLOW_GAP;
        let out = s
            .net
            .pkt(Link::Eth, Out, client, gw, echo4(true, id, 1), &p)?;
        s.cap.add(s.now, out);
        s.now += RTT;
        let back = s
            .net
            .pkt(Link::Eth, In, gw, client, echo4(false, id, 1), &p)?;
        s.cap.add(s.now, back);
    }
    let ts_msg = TimestampMessage {
        id: 0x4200,
        seq: 1,
        originate_timestamp: (9 * 3600 * 1000 + 75 * 1000) as u32, // ms since midnight UT
        receive_timestamp: 0,
        transmit_timestamp: 0,
    };
    let l4 = L4::Icmp4(Icmpv4Type::TimestampRequest(ts_msg));
    s.now += FLOW_GAP;
    let p = s.net.pkt(Link::Eth, Out, a, gw, l4, &[])?;
    s.cap.add(s.now, p);
    s.write(path)
}

/// TLS 1.3 ClientHellos whose SNI a rule must find: plain, absent,
/// numeric, split over records, split over segments, over IPv6.
pub(crate) fn tls_hellos(path: &Path) -> Res<usize> {
    let mut s = Script::new();

    // (a) SNI www.example.org, (b) no SNI, (c) SNI "192.0.2.44".
    let hello = tls_client_hello(WWW, 301);
    s.exchange(flow((C4, 45811), (WWW_IP, 443)), &[&hello], &tls_reply(401))?;
    let hello = tls_client_hello_opt(None, 302);
    let srv = (ip4(192, 0, 2, 43), 443);
    s.exchange(flow((C4, 38092), srv), &[&hello], &tls_reply(402))?;
    let hello = tls_client_hello("192.0.2.44", 303);
    let srv = (ip4(192, 0, 2, 44), 443);
    s.exchange(flow((C4, 54376), srv), &[&hello], &tls_reply(403))?;

    // (d) two handshake records in one segment, split inside the name.
    let hello = tls_client_hello(WWW, 304);
    let name = find(&hello, WWW.as_bytes())?;
    let records = tls_two_records(&hello, name + 7 - 5);
    s.exchange(
        flow((C4, 41723), (WWW_IP, 443)),
        &[&records],
        &tls_reply(404),
    )?;

    // (e) three segments: one cut inside the extension's length field,
    // one inside the name ("www.exa" | "mple.org").
    let hello = tls_client_hello(WWW, 305);
    let name = find(&hello, WWW.as_bytes())?;
    let (cut1, cut2) = (name - 9 + 3, name + 7);
    let parts = [&hello[..cut1], &hello[cut1..cut2], &hello[cut2..]];
    s.exchange(flow((C4, 49958), (WWW_IP, 443)), &parts, &tls_reply(405))?;

    // (f) IPv6.
    let hello = tls_client_hello("tunnel.example.net", 306);
    let srv = (doc6(0x443), 443);
    s.exchange(flow((C6, 36647), srv), &[&hello], &tls_reply(406))?;

    s.write(path)
}

/// SSH binary packet (unencrypted, block size 8) around `payload`.
pub(crate) fn ssh_packet(payload: &[u8], seed: u64) -> Vec<u8> {
    let mut pad = 8 - (5 + payload.len()) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut p = Vec::with_capacity(5 + payload.len() + pad);
    p.extend_from_slice(&((1 + payload.len() + pad) as u32).to_be_bytes());
    p.push(pad as u8);
    p.extend_from_slice(payload);
    p.extend_from_slice(&filler(pad, seed));
    p
}

pub(crate) fn ssh_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// SSH_MSG_KEXINIT with these key exchange and host key algorithms.
pub(crate) fn ssh_kexinit(kex: &str, host_key: &str, seed: u64) -> Vec<u8> {
    let cipher = "chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
    let mac =
        "umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com";
    let comp = "none,zlib@openssh.com";
    let mut p = vec![20];
    p.extend_from_slice(&filler(16, seed)); // cookie
    for list in [kex, host_key, cipher, cipher, mac, mac, comp, comp, "", ""] {
        ssh_string(&mut p, list.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 0, 0, 0]); // no guessed packet, reserved
    ssh_packet(&p, seed + 1)
}

/// OpenVPN over TCP: a 2-byte length, then the packet.
pub(crate) fn ovpn_tcp(packet: &[u8]) -> Vec<u8> {
    let mut out = (packet.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(packet);
    out
}

/// WireGuard handshake initiation (148 bytes) or response (92 bytes).
pub(crate) fn wg_handshake(initiation: bool, sender: u32, receiver: u32, seed: u64) -> Vec<u8> {
    let (kind, len) = if initiation { (1, 148) } else { (2, 92) };
    let mut p = vec![kind, 0, 0, 0];
    p.extend_from_slice(&sender.to_le_bytes());
    if !initiation {
        p.extend_from_slice(&receiver.to_le_bytes());
    }
    // Ephemeral key, sealed fields and MAC1; MAC2 stays zero (no cookie).
    p.extend_from_slice(&filler(len - 16 - p.len(), seed));
    p.resize(len, 0);
    p
}

/// A QUIC v1 client Initial: RFC 9001 §A.2's, as the RFC prints it (a 1200-byte datagram whose
/// ClientHello names example.com), so that the engine decrypts and reads it as it reads a real one.
pub(crate) fn quic_initial() -> Vec<u8> {
    let hex: String = include_str!("../../src/inspect/quic/rfc9001_a2_client_initial.hex")
        .split_whitespace()
        .collect();
    (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Protocols spoken on ports that usually carry something else.
pub(crate) fn ports_apps(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut s = Script::new();

    // (a) SSH on 443: client banner first, then the key exchange in clear.
    let mut t = flow((C4, 52318), (ip4(203, 0, 113, 22), 443));
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, b"SSH-2.0-OpenSSH_9.2p1\r\n")?;
    let banner = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
    s.tcp(RTT, &mut t, In, PSH | ACK, banner)?;
    let kex = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,diffie-hellman-group14-sha256,ext-info-c";
    let keys = "ssh-ed25519,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256";
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ssh_kexinit(kex, keys, 510))?;
    let kex = "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256";
    let keys = "rsa-sha2-512,rsa-sha2-256,ecdsa-sha2-nistp256,ssh-ed25519";
    s.tcp(RTT, &mut t, In, PSH | ACK, &ssh_kexinit(kex, keys, 520))?;
    let mut init = vec![30]; // SSH_MSG_KEX_ECDH_INIT
    ssh_string(&mut init, &filler(32, 530));
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ssh_packet(&init, 531))?;
    let mut host_key = Vec::new();
    ssh_string(&mut host_key, b"ssh-ed25519");
    ssh_string(&mut host_key, &filler(32, 540));
    let mut sig = Vec::new();
    ssh_string(&mut sig, b"ssh-ed25519");
    ssh_string(&mut sig, &filler(64, 541));
    let mut reply = vec![31]; // SSH_MSG_KEX_ECDH_REPLY
    ssh_string(&mut reply, &host_key);
    ssh_string(&mut reply, &filler(32, 542));
    ssh_string(&mut reply, &sig);
    let mut flight = ssh_packet(&reply, 543);
    flight.extend_from_slice(&ssh_packet(&[21], 544)); // SSH_MSG_NEWKEYS
    s.tcp(RTT, &mut t, In, PSH | ACK, &flight)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ssh_packet(&[21], 545))?;
    s.tcp(RTT, &mut t, In, ACK, &[])?;
    s.close(&mut t)?;

    // (b) OpenVPN over TCP 443: hard resets both ways, the client's ACK.
    let client_sid = filler(8, 550);
    let server_sid = filler(8, 551);
    let mut reset = vec![7 << 3]; // P_CONTROL_HARD_RESET_CLIENT_V2, key id 0
    reset.extend_from_slice(&client_sid);
    reset.extend_from_slice(&[0, 0, 0, 0, 0]); // no acks, packet id 0
    let mut reset_back = vec![8 << 3]; // P_CONTROL_HARD_RESET_SERVER_V2
    reset_back.extend_from_slice(&server_sid);
    reset_back.extend_from_slice(&[1, 0, 0, 0, 0]); // acks packet 0
    reset_back.extend_from_slice(&client_sid);
    reset_back.extend_from_slice(&[0, 0, 0, 0]);
    let mut ack = vec![5 << 3]; // P_ACK_V1
    ack.extend_from_slice(&client_sid);
    ack.extend_from_slice(&[1, 0, 0, 0, 0]);
    ack.extend_from_slice(&server_sid);
    let mut t = flow((C4, 40471), (ip4(203, 0, 113, 94), 443));
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ovpn_tcp(&reset))?;
    s.tcp(RTT, &mut t, In, PSH | ACK, &ovpn_tcp(&reset_back))?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &ovpn_tcp(&ack))?;
    s.tcp(RTT, &mut t, In, ACK, &[])?;
    s.close(&mut t)?;

    // (c) plain HTTP to 443, (d) TLS to 80.
    s.exchange(flow((C4, 58803), (WWW_IP, 443)), &[&http_get(WWW)], HTTP_OK)?;
    let hello = tls_client_hello(WWW, 560);
    s.exchange(flow((C4, 37129), (WWW_IP, 80)), &[&hello], &tls_reply(561))?;

    // (e) SOCKS5 to 1080: greeting, then CONNECT 198.51.100.9:80.
    let mut t = flow((C4, 46692), (ip4(203, 0, 113, 10), 1080));
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &[5, 1, 0])?;
    s.tcp(RTT, &mut t, In, PSH | ACK, &[5, 0])?;
    s.tcp(
        TURN,
        &mut t,
        Out,
        PSH | ACK,
        &[5, 1, 0, 1, 198, 51, 100, 9, 0, 80],
    )?;
    let bound = [5, 0, 0, 1, 203, 0, 113, 10, 0xa1, 0x2f];
    s.tcp(RTT, &mut t, In, PSH | ACK, &bound)?;
    s.close(&mut t)?;

    // (f) WireGuard handshakes to udp 51820 and to udp 443.
    for (cport, server, sender) in [
        (43785, (ip4(203, 0, 113, 51), 51820), 0x1f2e_3d4c),
        (60214, (ip4(203, 0, 113, 52), 443), 0x5b6a_7988),
    ] {
        let seed = u64::from(sender);
        let init = wg_handshake(true, sender, 0, seed);
        s.udp(s.gap(), Out, (C4, cport), server, &init)?;
        let resp = wg_handshake(false, sender ^ 0xffff, sender, seed + 1);
        s.udp(RTT, In, server, (C4, cport), &resp)?;
    }

    // (g) QUIC v1 Initial to udp 443, unanswered.
    let initial = quic_initial();
    s.udp(
        s.gap(),
        Out,
        (C4, 54127),
        (ip4(198, 51, 100, 43), 443),
        &initial,
    )?;

    // (h) DNS.
    let dns = (ip4(192, 0, 2, 53), 53);
    let q = dns_query(0x3c5d, WWW, 1, false);
    s.udp(s.gap(), Out, (C4, 39551), dns, &q)?;
    let r = dns_response(&q, 300, &v4_octets(WWW_IP));
    s.udp(RTT, In, dns, (C4, 39551), &r)?;

    // (i) control: HTTPS as it should be.
    let hello = tls_client_hello(WWW, 580);
    s.exchange(flow((C4, 48096), (WWW_IP, 443)), &[&hello], &tls_reply(581))?;

    s.write(path)
}

/// The server's side of a download, `first` ns from now: `data` in
/// segments of at most 1400 bytes, the client acknowledging every second
/// one, then the server's FIN, the client's FIN and the last ACK.
pub(crate) fn ftp_data(s: &mut Script, t: &mut Tcp, first: u64, data: &[u8]) -> Res<()> {
    use Dir::{In, Out};
    for (i, chunk) in data.chunks(1400).enumerate() {
        s.tcp(if i == 0 { first } else { 50 * US }, t, In, ACK, chunk)?;
        if i % 2 == 1 {
            s.tcp(TURN, t, Out, ACK, &[])?;
        }
    }
    s.tcp(50 * US, t, In, FIN | ACK, &[])?;
    s.tcp(TURN, t, Out, FIN | ACK, &[])?;
    s.tcp(RTT, t, In, ACK, &[])
}

pub(crate) const FTP_LOGIN: [(&str, &str); 3] = [
    ("USER demo\r\n", "331 Please specify the password.\r\n"),
    ("PASS fixture\r\n", "230 Login successful.\r\n"),
    ("TYPE I\r\n", "200 Switching to Binary mode.\r\n"),
];

/// Passive FTP (PASV and EPSV), a connection to a port never announced,
/// and an active-mode (PORT) download.
pub(crate) fn ftp_passive(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut s = Script::new();
    let file = filler(3800, 600);
    let opening = "150 Opening BINARY mode data connection for file.bin (3800 bytes).\r\n";
    let done = "226 Transfer complete.\r\n";
    let bye = "221 Goodbye.\r\n";

    // Each session: handshake, 220, login, the mode dialogue, RETR and 150,
    // the data connection, 226, QUIT and 221, close.
    let srv4 = ip4(192, 0, 2, 21);
    let srv6 = doc6(0x21);
    let passive = [
        (
            (C4, 51533),
            srv4,
            (
                "PASV\r\n",
                "227 Entering Passive Mode (192,0,2,21,195,80).\r\n",
            ),
            (C4, 52174),
            50000,
        ),
        (
            (C6, 53690),
            srv6,
            (
                "EPSV\r\n",
                "229 Entering Extended Passive Mode (|||50001|)\r\n",
            ),
            (C6, 54215),
            50001,
        ),
    ];
    for (client, server, mode, data_client, data_port) in passive {
        let mut ctl = flow(client, (server, 21));
        s.open(s.gap(), &mut ctl)?;
        s.tcp(MS, &mut ctl, In, PSH | ACK, b"220 Welcome\r\n")?;
        s.dialogue(&mut ctl, &FTP_LOGIN)?;
        s.dialogue(&mut ctl, &[mode, ("RETR file.bin\r\n", opening)])?;
        let mut data = flow(data_client, (server, data_port));
        s.open(TURN, &mut data)?;
        ftp_data(&mut s, &mut data, RTT, &file)?;
        s.tcp(MS, &mut ctl, In, PSH | ACK, done.as_bytes())?;
        s.dialogue(&mut ctl, &[("QUIT\r\n", bye)])?;
        s.close(&mut ctl)?;
    }

    // 2 s later: a SYN to a port no 227/229 announced, unanswered.
    let mut t = flow((C4, 55048), (srv4, 50002));
    s.tcp(2 * SEC, &mut t, Out, SYN, &[])?;

    // Active mode: after PORT, the server connects from :20 to 10.0.0.2:51210.
    let mut ctl = flow((C4, 56312), (srv4, 21));
    s.open(SEC, &mut ctl)?;
    s.tcp(MS, &mut ctl, In, PSH | ACK, b"220 Welcome\r\n")?;
    s.dialogue(&mut ctl, &FTP_LOGIN)?;
    let port = (
        "PORT 10,0,0,2,200,10\r\n",
        "200 PORT command successful.\r\n",
    );
    s.dialogue(&mut ctl, &[port, ("RETR file.bin\r\n", opening)])?;
    let mut data = flow((C4, 51210), (srv4, 20));
    s.tcp(MS, &mut data, In, SYN, &[])?;
    s.tcp(TURN, &mut data, Out, SYN | ACK, &[])?;
    s.tcp(RTT, &mut data, In, ACK, &[])?;
    ftp_data(&mut s, &mut data, 50 * US, &file)?;
    s.tcp(MS, &mut ctl, In, PSH | ACK, done.as_bytes())?;
    s.dialogue(&mut ctl, &[("QUIT\r\n", bye)])?;
    s.close(&mut ctl)?;

    s.write(path)
}
