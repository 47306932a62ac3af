//! Payload-inspection captures: HTTP hosts, evasions, flows seen from their middle.

use super::*;

/// HTTP requests whose Host (or request target) a host rule must read:
/// names, numeric forms, a proxy URI, CONNECT, a POST, odd header spelling.
pub(crate) fn http_hosts(path: &Path) -> Res<usize> {
    let mut s = Script::new();
    let h80 = ip4(192, 0, 2, 80);
    let odd = ip4(198, 51, 100, 80);
    let get = |target: &str, host: &str| {
        http_request(
            &format!("GET {target} HTTP/1.1"),
            &[&format!("Host: {host}")],
        )
    };

    // (a) by name, (b) numeric, (c) numeric with port to :8080, (d) IPv6 literal.
    s.exchange(flow((C4, 51724), (WWW_IP, 80)), &[&http_get(WWW)], HTTP_OK)?;
    s.exchange(
        flow((C4, 43918), (h80, 80)),
        &[&http_get("192.0.2.80")],
        HTTP_OK,
    )?;
    let req = http_get("192.0.2.80:8080");
    s.exchange(flow((C4, 38261), (h80, 8080)), &[&req], HTTP_OK)?;
    let req = http_get("[2001:db8::80]");
    s.exchange(flow((C6, 55409), (doc6(0x80), 80)), &[&req], HTTP_OK)?;
    // (e) 192.168.1.1 as one decimal number, (f) with a hex first octet.
    s.exchange(
        flow((C4, 46083), (odd, 80)),
        &[&http_get("3232235777")],
        HTTP_OK,
    )?;
    s.exchange(
        flow((C4, 59372), (odd, 80)),
        &[&http_get("0x7f.0.0.1")],
        HTTP_OK,
    )?;
    // (g) absolute URI naming another host than the Host header.
    let req = get("http://198.51.100.9/tunnel", WWW);
    s.exchange(flow((C4, 41157), (WWW_IP, 80)), &[&req], HTTP_OK)?;
    // (h) CONNECT through a proxy on :8080.
    let req = http_request(
        "CONNECT 203.0.113.7:443 HTTP/1.1",
        &["Host: 203.0.113.7:443", "Proxy-Connection: Keep-Alive"],
    );
    let proxy = (ip4(198, 51, 100, 3), 8080);
    let est = b"HTTP/1.1 200 Connection established\r\n\r\n";
    s.exchange(flow((C4, 52896), proxy), &[&req], est)?;
    // (i) a URL path a rule may name.
    let req = get("/cgi-bin/gateway.dll?AsyncPoll", WWW);
    s.exchange(flow((C4, 36514), (WWW_IP, 80)), &[&req], HTTP_OK)?;
    // (j) POST with a 16-byte body.
    let body = "outgate fixture\n";
    let req = format!(
        "POST /upload HTTP/1.1\r\nHost: files.example.org\r\nUser-Agent: curl/8.5.0\r\n\
         Accept: */*\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let files = (ip4(192, 0, 2, 12), 80);
    let created = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
    s.exchange(flow((C4, 48730), files), &[req.as_bytes()], created)?;
    // (k) header name in mixed case, value padded and in mixed case.
    let req = http_request("GET / HTTP/1.1", &["hOsT:   WWW.Example.ORG  "]);
    s.exchange(flow((C4, 57241), (WWW_IP, 80)), &[&req], HTTP_OK)?;

    s.write(path)
}

/// Requests for Host 192.0.2.80 that only a reassembling, careful parser
/// gets right.
pub(crate) fn http_evasions(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut s = Script::new();
    let srv = (ip4(192, 0, 2, 80), 80);
    let numeric = http_get("192.0.2.80");

    // (a) three segments, the first ending inside the Host value.
    let cut1 = find(&numeric, b".2.80")?;
    let cut2 = find(&numeric, b"Accept")?;
    let parts = [&numeric[..cut1], &numeric[cut1..cut2], &numeric[cut2..]];
    s.exchange(flow((C4, 44619), srv), &parts, HTTP_OK)?;

    // (b) two Host headers; servers must refuse such a request.
    let req = http_request(
        "GET / HTTP/1.1",
        &["Host: www.example.org", "Host: 192.0.2.80"],
    );
    let bad = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    s.exchange(flow((C4, 50237), srv), &[&req], bad)?;

    // (c) an empty ACK after the handshake, then the request.
    let mut t = flow((C4, 39874), srv);
    s.open(s.gap(), &mut t)?;
    s.tcp(MS, &mut t, Out, ACK, &[])?;
    s.send_acked(&mut t, &numeric)?;
    s.tcp(MS, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.close(&mut t)?;

    // (d) the first segment (request line and Host) sent again after the
    // 200 ms retransmission timeout, then the rest.
    let cut = find(&numeric, b"User-Agent")?;
    let mut t = flow((C4, 53102), srv);
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &numeric[..cut])?;
    t.rewind(Out, cut);
    s.tcp(200 * MS, &mut t, Out, PSH | ACK, &numeric[..cut])?;
    s.tcp(RTT, &mut t, In, ACK, &[])?;
    s.send_acked(&mut t, &numeric[cut..])?;
    s.tcp(MS, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.close(&mut t)?;

    // (e) an empty line before the request line.
    let mut req = b"\r\n".to_vec();
    req.extend_from_slice(&numeric);
    s.exchange(flow((C4, 47465), srv), &[&req], HTTP_OK)?;

    // (f) two segments that arrive in reverse order (reordered on the way, as on Wi-Fi).
    let cut = find(&numeric, b".2.80")?;
    let mut t = flow((C4, 51733), srv);
    s.open(s.gap(), &mut t)?;
    s.reordered(&mut t, &numeric[..cut], &numeric[cut..])?;
    s.tcp(RTT, &mut t, In, ACK, &[])?;
    s.tcp(MS, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.close(&mut t)?;

    // (g) the first segment sent again with other bytes at the same sequence numbers: which copy the
    // server keeps depends on its TCP stack, so neither can be trusted.
    let named = http_get("www.example.org");
    let cut = find(&named, b"User-Agent")?;
    let mut forged = named[..cut].to_vec();
    let host = find(&forged, b"www.example.org")?;
    forged[host..host + 15].copy_from_slice(b"192.0.2.80:0080");
    let mut t = flow((C4, 42268), srv);
    s.open(s.gap(), &mut t)?;
    s.tcp(TURN, &mut t, Out, PSH | ACK, &named[..cut])?;
    t.rewind(Out, cut);
    s.tcp(TURN, &mut t, Out, PSH | ACK, &forged)?;
    s.send_acked(&mut t, &named[cut..])?;
    s.tcp(MS, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.close(&mut t)?;

    s.write(path)
}

/// TCP connections the capture holds only from their middle (they began before it started), and one
/// that begins in it.
pub(crate) fn midstream(path: &Path) -> Res<usize> {
    use Dir::{In, Out};
    let mut s = Script::new();
    // (a) HTTPS already running: the server's data comes first.
    let mut t = flow((C4, 50412), (WWW_IP, 443));
    s.tcp(0, &mut t, In, PSH | ACK, &filler(600, 1))?;
    s.tcp(TURN, &mut t, Out, ACK, &[])?;
    s.tcp(MS, &mut t, Out, PSH | ACK, &filler(80, 2))?;
    // (b) an SSH session already running, to a port the policy closes.
    let mut t = flow((C4, 47120), (ip4(198, 51, 100, 22), 22));
    s.tcp(FLOW_GAP, &mut t, Out, PSH | ACK, &filler(48, 3))?;
    s.tcp(RTT, &mut t, In, PSH | ACK, &filler(48, 4))?;
    // (c) a new SSH connection to the same server: this one the policy blocks.
    let mut t = flow((C4, 47121), (ip4(198, 51, 100, 22), 22));
    s.tcp(FLOW_GAP, &mut t, Out, SYN, &[])?;
    t.rewind(Out, 1);
    s.tcp(SEC, &mut t, Out, SYN, &[])?;
    // (d) plain HTTP already running, the server's data first.
    let mut t = flow((C4, 39900), (ip4(192, 0, 2, 80), 80));
    s.tcp(FLOW_GAP, &mut t, In, PSH | ACK, HTTP_OK)?;
    s.tcp(TURN, &mut t, Out, ACK, &[])?;
    // (e) a peer-to-peer connection from the client's port 1500 to a peer's port 40000, the peer's
    // data first: the ports alone point at the peer as the client; `--lan 10.0.0.0/8` knows better.
    let mut t = flow((C4, 1500), (ip4(198, 51, 100, 7), 40000));
    s.tcp(FLOW_GAP, &mut t, In, PSH | ACK, &filler(100, 5))?;
    s.tcp(TURN, &mut t, Out, ACK, &[])?;
    s.write(path)
}
