//! `outgate probe`, live: the daemon logs a real httptunnel client (htc) reaching GNU httptunnel's
//! server (hts), a client posting to a server that answers garbage, and a browser-like GET to a real
//! web server (python's http.server with an index page). The probe, run on the gateway, marks hts and
//! the garbage server suspect and clears the web server; a second round 21 h later (the clock moved
//! with the hidden `--now`) confirms the two into the confederates file, which the running policy
//! reads with `host=@FILE`: after a reload the confederates are dropped and the web server is not.
//!
//! Needs root plus httptunnel (hts, htc), curl and python3 (`.ci/run` installs them).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{gateway_mode, outgate_bin, serial, wait_for};

/// Everything open on the three ports, but the confederates the probe confirms.
const POLICY: &str = "\
policy loc net DROP
DROP   loc net tcp 80,8080,8888 host=@confederates.txt  # written by outgate probe
ACCEPT loc net tcp 80,8080,8888
";

const HTS: &str = "10.200.2.2";
const GARBAGE: &str = "10.200.2.3";
const WEB: &str = "10.200.2.4";

/// A server that answers every connection with bytes that are not HTTP, then closes.
const GARBAGE_SERVER: &str = "\
import socket, threading
def answer(c):
    c.settimeout(10)
    try:
        c.recv(4096)
        c.sendall(bytes(range(256)) * 4)
    except OSError:
        pass
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('10.200.2.3', 8080))
s.listen(16)
while True:
    threading.Thread(target=answer, args=(s.accept()[0],), daemon=True).start()
";

fn probe(s: &common::Setup, args: &str) -> String {
    let cmd = format!(
        "{} probe --state {} --confederates {} --interval 0 {args} {}",
        outgate_bin(),
        s.lab.path("probe.json").display(),
        s.lab.path("confederates.txt").display(),
        s.lab.path("http.jsonl").display(),
    );
    s.lab.sh(&s.filter, &cmd)
}

fn statuses(s: &common::Setup) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(s.lab.path("probe.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    let servers = state["servers"].as_object().unwrap();
    servers
        .iter()
        .map(|(k, v)| (k.clone(), v["status"].as_str().unwrap().to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn hosts(s: &common::Setup) -> Vec<String> {
    std::fs::read_to_string(s.lab.path("confederates.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn probe_confirms_httptunnel_and_garbage_and_clears_a_web_server() {
    let test = "probe_confirms_httptunnel_and_garbage_and_clears_a_web_server";
    if !common::root(test)
        || !common::tool(test, "hts")
        || !common::tool(test, "htc")
        || !common::tool(test, "python3")
    {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let (srv, cli) = (s.server.clone(), s.client.clone());
    let wan_if = format!("{}b2", s.lab.id);
    s.lab.sh(
        &srv,
        &format!("ip addr add {GARBAGE}/24 dev {wan_if} && ip addr add {WEB}/24 dev {wan_if}"),
    );
    let www = s.lab.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        www.join("index.html"),
        "<!DOCTYPE html>\n<html><head><title>School</title></head><body>Welcome</body></html>\n",
    )
    .unwrap();
    s.lab.http_server(&srv, 80, &www);
    let mut hts = s
        .lab
        .spawn(&srv, &format!("hts -w -F 127.0.0.1:9 {HTS}:8888"));
    s.lab.wait_listening(&srv, "tcp", 8888);
    let script = s.lab.write("garbage.py", GARBAGE_SERVER);
    s.lab.spawn(&srv, &format!("python3 {}", script.display()));
    s.lab.wait_listening(&srv, "tcp", 8080);

    s.lab.write("confederates.txt", "");
    s.rules("--apply", "");
    let http_log = s.lab.path("http.jsonl");
    let d = s.daemon_logged(POLICY, &format!("--http-log {}", http_log.display()));

    // The tunnel: htc listens on the client, and a program talks through it.
    let htc = s.lab.spawn(&cli, &format!("htc -w -F 2222 {HTS}:8888"));
    s.lab.wait_listening(&cli, "tcp", 2222);
    s.lab.sh(
        &cli,
        "python3 -c 'import socket,time; c=socket.create_connection((\"127.0.0.1\",2222)); \
         c.sendall(b\"hello through the tunnel\"); time.sleep(1)'",
    );
    for _ in 0..2 {
        s.lab.try_sh(
            &cli,
            &format!("curl -sS --max-time 3 -X POST -d up=1 http://{GARBAGE}:8080/upload"),
        );
    }
    let (code, _, page) = s.curl(WEB, 80, "/");
    assert_eq!(
        (code, page.contains("Welcome")),
        (0, true),
        "the web page: {page}"
    );
    let logged = |host: &str| {
        std::fs::read_to_string(&http_log)
            .unwrap_or_default()
            .contains(&format!("\"host\":\"{host}"))
    };
    wait_for(Duration::from_secs(5), || {
        logged(HTS) && logged(GARBAGE) && logged(WEB)
    })
    .unwrap_or_else(|| {
        panic!(
            "the HTTP log names all three servers: {}",
            std::fs::read_to_string(&http_log).unwrap_or_default()
        )
    });
    let _ = s.lab.child(htc).kill();
    // The probe runs later (daily): hts has no tunnel open then.
    let mut fresh_hts = |s: &mut common::Setup| {
        let _ = s.lab.child(hts).kill();
        let _ = s.lab.child(hts).wait();
        hts = s
            .lab
            .spawn(&srv, &format!("hts -w -F 127.0.0.1:9 {HTS}:8888"));
        s.lab.wait_listening(&srv, "tcp", 8888);
    };
    fresh_hts(&mut s);

    // Without --allow the lab's private addresses are never probed.
    let dry = probe(&s, "--dry-run --now 2026-12-01T03:00:00Z");
    assert!(
        dry.contains(&format!(
            "skip {HTS}:8888: not probed: {HTS} is private (10.0.0.0/8)"
        )),
        "{dry}"
    );
    assert!(
        !s.lab.path("probe.json").exists(),
        "a dry run writes nothing"
    );

    let allow = "--allow 10.200.2.0/24";
    let round1 = probe(&s, &format!("{allow} --now 2026-12-01T03:00:00Z"));
    assert_eq!(
        statuses(&s),
        pairs(&[
            ("10.200.2.2:8888", "suspect"),
            ("10.200.2.3:8080", "suspect"),
            ("10.200.2.4:80", "cleared"),
        ]),
        "{round1}"
    );
    println!("{round1}");
    // hts (Debian's httptunnel 3.3) to a GET: headers promising 102400 bytes of text/html, then
    // nothing while the connection stays open.
    assert!(
        round1.contains(": endless (HTTP 200, text/html, 0 of 102400 body bytes"),
        "hts's evidence: {round1}"
    );
    assert!(hosts(&s).is_empty(), "{round1}");
    assert!(
        round1.contains("GET /: not_http (not HTTP"),
        "the garbage server's evidence: {round1}"
    );

    // An hour later nothing is probed again.
    let early = probe(&s, &format!("{allow} --now 2026-12-01T04:00:00Z"));
    assert_eq!(
        early.matches("at most one probe per 20 h").count(),
        3,
        "{early}"
    );

    fresh_hts(&mut s);
    let round2 = probe(&s, &format!("{allow} --now 2026-12-02T00:00:00Z"));
    assert_eq!(
        statuses(&s),
        pairs(&[
            ("10.200.2.2:8888", "confirmed"),
            ("10.200.2.3:8080", "confirmed"),
            ("10.200.2.4:80", "cleared"),
        ]),
        "{round2}"
    );
    println!("{round2}");
    assert_eq!(hosts(&s), [HTS, GARBAGE], "{round2}");

    // The policy reads the list: check accepts it, and the daemon, reloaded, drops the confederates.
    let policy = s.lab.path("policy.rules");
    let o = Command::new(outgate_bin())
        .args(["check", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid = s.lab.child(d).id();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    wait_for(Duration::from_secs(5), || {
        s.daemon_err().contains("reload: policy")
    })
    .unwrap_or_else(|| panic!("the reload is reported: {}", s.daemon_err()));
    let (code, _, _) = s.curl(GARBAGE, 8080, "/blocked");
    assert_eq!(code, 28, "a confederate is dropped (curl times out)");
    let dropped = std::fs::read_to_string(&http_log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["url"] == "/blocked")
        .expect("the blocked request is logged");
    assert_eq!(
        (&dropped["verdict"], &dropped["rule"]),
        (&"drop".into(), &format!("{}:2", policy.display()).into()),
        "{dropped}"
    );
    let (code, _, page) = s.curl(WEB, 80, "/");
    assert_eq!(
        (code, page.contains("Welcome")),
        (0, true),
        "the web server is not"
    );
}
