//! Holding the line, live: the ways around the filter a student would try, each against the real daemon
//! on real NFQUEUE, through a gateway in network namespaces, with real clients and servers.
//!
//! What the server receives is counted in the server's own namespace (iptables counters on its INPUT),
//! so "the server sees nothing" is the kernel's word, not the daemon's.

mod common;

use std::time::Duration;

use common::{Setup, gateway_mode, host_mode, serial};

/// Counts, in `ns`, the TCP packets arriving for `port`: (all, with payload). Packets of the raw client
/// and of the clients here carry no IP options and no TCP options beyond timestamps after the SYN, so a
/// packet without payload is at most 52 bytes long.
fn count_arrivals(s: &Setup, ns: &str, port: u16) {
    for (tag, extra) in [
        ("all", ""),
        ("payload", "! --syn -m length --length 53:65535"),
    ] {
        s.lab.sh(
            ns,
            &format!(
                "iptables -I INPUT -p tcp --dport {port} {extra} -m comment --comment og-{tag}"
            ),
        );
    }
}

fn arrivals(s: &Setup, ns: &str) -> (u64, u64) {
    let listing = s.lab.sh(ns, "iptables -nvxL INPUT");
    let count = |tag: &str| {
        listing
            .lines()
            .find(|l| l.contains(&format!("og-{tag} ")) || l.ends_with(&format!("og-{tag} */")))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no og-{tag} counter in {listing}"))
    };
    (count("all"), count("payload"))
}

const WEB: &str = "\
policy loc net DROP
DROP   loc net tcp 80 host=numeric
ACCEPT loc net tcp 80
";

/// A request whose two segments arrive in reverse order is read whole: the named host is served, the
/// numeric one is dropped without the server receiving a byte of it.
#[test]
fn a_request_in_reverse_order_reaches_its_decision() {
    if !common::root("a_request_in_reverse_order_reaches_its_decision") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let www = s.lab.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("hello.txt"), "hello\n").unwrap();
    s.lab.http_server(&s.server.clone(), 80, &www);
    count_arrivals(&s, &s.server.clone(), 80);
    s.rules("--apply", "");
    s.daemon(WEB, "");
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/tcp_reorder.py");
    let client4 = "10.200.1.1";
    let raw = |host: &str, sport: u16| -> serde_json::Value {
        // The client's kernel knows nothing of the raw connection: keep it from resetting it.
        s.lab.sh(
            &s.client,
            &format!("iptables -A OUTPUT -p tcp --sport {sport} --tcp-flags RST RST -j DROP"),
        );
        let request =
            format!("GET /hello.txt HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n");
        let cut = "GET /hello.txt HTTP/1.1\r\nHost: ".len() + 4;
        let out = s.lab.sh(
            &s.client,
            &format!(
                "python3 {tool} {client4} {} 80 {sport} '{request}' {cut}",
                s.server4
            ),
        );
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let named = raw("www.example.org", 41001);
    assert_eq!(named["connected"], true, "{named}");
    assert!(
        named["response"]
            .as_str()
            .unwrap()
            .starts_with("HTTP/1.0 200"),
        "the named host is served although its segments came in reverse order: {named}"
    );
    let before = arrivals(&s, &s.server);
    let numeric = raw(&s.server4.clone(), 41002);
    assert_eq!(numeric["connected"], true, "{numeric}");
    assert_eq!(numeric["response"], "", "{numeric}");
    let after = arrivals(&s, &s.server);
    assert!(
        after.0 > before.0,
        "the handshake reached the server: {before:?} {after:?}"
    );
    assert_eq!(
        after.1, before.1,
        "no segment of the dropped request reached the server, in either order"
    );
    let log = s.flows_log();
    assert!(
        log.iter().any(|f| f["src"] == format!("{client4}:41002")
            && f["verdict"] == "drop"
            && f["reason"] == "rule"),
        "the numeric host was read and dropped by its rule, not by the inspection limit: {log:#?}"
    );
}

/// Who ends the accepted first connection of [`reuse_after_reset`], with a reset.
#[derive(Clone, Copy, PartialEq)]
enum Resets {
    Client,
    Server,
}

/// A ClientHello the policy accepts on a connection from port 45678, a reset from `who`, and the same
/// 4-tuple again, 0.3 s later, speaking SSH: the second connection must be a new flow, read on its own,
/// and dropped, whoever reset the first.
fn reuse_after_reset(mut s: Setup, who: Resets) {
    let got = s.lab.path("received.txt");
    // The server records the first bytes of every connection, one line each; when `who` is the
    // server, it resets a connection once it has read them.
    let server = s.lab.write(
        "record.py",
        &format!(
            "import socket,struct,threading\n\
             l=socket.socket(socket.AF_INET6);l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             l.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0);l.bind(('::',443));l.listen(16)\n\
             def serve(c):\n first=b''\n c.settimeout(1)\n try:\n  while len(first)<64:\n   d=c.recv(64)\n   if not d: break\n   first+=d\n except OSError: pass\n \
             open('{}','a').write(first[:8].hex()+'\\n')\n \
             if {}: c.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0));c.close()\n\
             while True:\n c,_=l.accept();threading.Thread(target=serve,args=(c,)).start()\n",
            got.display(),
            if who == Resets::Server { "True" } else { "False" },
        ),
    );
    s.lab
        .spawn(&s.server.clone(), &format!("python3 {}", server.display()));
    s.lab.wait_listening(&s.server.clone(), "tcp", 443);
    s.rules("--apply", "");
    s.daemon("policy loc net DROP\nACCEPT loc net tcp 443 app=tls\n", "");
    // A real ClientHello, made by python's ssl module without a socket, then the same source port again.
    let client = s.lab.write(
        "reuse.py",
        &format!(
            "import socket,ssl,struct,time\n\
             ctx=ssl.create_default_context();ctx.check_hostname=False;ctx.verify_mode=ssl.CERT_NONE\n\
             out=ssl.MemoryBIO();tls=ctx.wrap_bio(ssl.MemoryBIO(),out,server_hostname='www.example.org')\n\
             try: tls.do_handshake()\n\
             except ssl.SSLWantReadError: pass\n\
             hello=out.read()\n\
             def connect():\n s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n s.bind(('0.0.0.0',45678));s.settimeout(3);s.connect(('{srv}',443));return s\n\
             a=connect();a.sendall(hello)\n\
             if {client_resets}:\n time.sleep(0.5);a.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0))\n\
             else:\n try: a.recv(1)\n except OSError: pass\n\
             a.close()\n\
             time.sleep(0.3)\n\
             b=connect();b.sendall(b'SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n');time.sleep(1.5)\n\
             print('sent')\n",
            srv = s.server4,
            client_resets = if who == Resets::Client { "True" } else { "False" },
        ),
    );
    let out = s
        .lab
        .try_sh(&s.client, &format!("python3 {}", client.display()));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("sent"),
        "the client ran: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(300));
    let received = std::fs::read_to_string(&got).unwrap_or_default();
    assert!(
        received.lines().any(|l| l.starts_with("16030")),
        "the ClientHello was accepted and reached the server: {received:?}"
    );
    assert!(
        !received.lines().any(|l| l.starts_with(
            &"SSH-"
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )),
        "{} mode: SSH on the reused 4-tuple reached the server: {received:?}",
        s.mode
    );
    let log = s.flows_log();
    let on_port: Vec<_> = log
        .iter()
        .filter(|f| f["src"].as_str().is_some_and(|v| v.ends_with(":45678")))
        .map(|f| {
            (
                f["verdict"].as_str().unwrap_or(""),
                f["app"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        on_port,
        [("accept", "tls"), ("drop", "ssh")],
        "two flows on one 4-tuple, each read on its own: {log:#?}"
    );
}

/// The client resets its accepted connection and reconnects from the same port (conntrack itself
/// starts a new entry for that SYN).
#[test]
fn a_reused_four_tuple_is_a_new_flow() {
    if !common::root("a_reused_four_tuple_is_a_new_flow") {
        return;
    }
    let _g = serial();
    reuse_after_reset(gateway_mode(), Resets::Client);
}

/// The server resets the accepted connection (a confederate server can do so on purpose), and the client
/// reconnects from the same port within conntrack's close timeout (10 s): conntrack keeps the old entry
/// for that SYN, and its saved ACCEPT must not carry over to the new connection.
#[test]
fn a_port_reused_after_the_server_reset_an_accepted_flow_is_decided_anew() {
    if !common::root("a_port_reused_after_the_server_reset_an_accepted_flow_is_decided_anew") {
        return;
    }
    let _g = serial();
    reuse_after_reset(host_mode(), Resets::Server);
    reuse_after_reset(gateway_mode(), Resets::Server);
}

/// A flow waiting for its first payload passes through outgate's chain to the admin's own rules: a DROP
/// after outgate's jump stops it, and the server sees no packet at all.
#[test]
fn packets_under_inspection_still_meet_the_admins_rules() {
    if !common::root("packets_under_inspection_still_meet_the_admins_rules") {
        return;
    }
    let _g = serial();
    for mut s in [host_mode(), gateway_mode()] {
        let dir = s.lab.dir.path().to_path_buf();
        s.lab.http_server(&s.server.clone(), 443, &dir);
        count_arrivals(&s, &s.server.clone(), 443);
        s.rules("--apply", "");
        let hook = if s.mode == "host" {
            "OUTPUT"
        } else {
            "FORWARD"
        };
        // The admin's blocklist entry, after outgate's jump (outgate inserts itself first).
        s.lab.sh(
            &s.filter,
            &format!(
                "iptables -A {hook} -d {} -p tcp --dport 443 -j DROP",
                s.server4
            ),
        );
        s.daemon("policy loc net DROP\nACCEPT loc net tcp 443 app=tls\n", "");
        let o = s.lab.try_sh(
            &s.client,
            &format!(
                "curl -sk --max-time 3 --connect-timeout 2 https://{}/",
                s.server4
            ),
        );
        assert_ne!(
            o.status.code(),
            Some(0),
            "{} mode: the connection must fail",
            s.mode
        );
        assert_eq!(
            arrivals(&s, &s.server),
            (0, 0),
            "{} mode: the admin's DROP stops the SYN of a flow outgate is still reading",
            s.mode
        );
        s.rules("--remove", "");
    }
}
