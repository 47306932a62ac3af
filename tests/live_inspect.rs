//! Seeing through tunnels, live, through the gateway: HTTP host and URL rules with curl against a real
//! HTTP server, and the protocol spoken on 443 with a real sshd and a real TLS server (openssl s_server).
//!
//! Needs root plus curl, python3, openssh-server/-client and openssl (`.ci/run` installs them).

mod common;

use common::{Setup, gateway_mode, serial};

/// Web through the gateway, but not to numeric hosts nor to a tunnelling program's URL; on 443 only TLS.
const POLICY: &str = "\
policy loc net DROP
DROP   loc net tcp 80 host=numeric        # real web servers have names
DROP   loc net tcp 80 url=gateway.dll?    # a tunnelling program's polling URL
DROP   loc net tcp 80 method=PUT,DELETE   # no uploads past the proxy
ACCEPT loc net tcp 80
DROP   loc net tcp 443 sni=tunnel.example.net  # a known confederate server
ACCEPT loc net tcp 443 app=tls
DROP   loc net tcp 443                    # SSH or a VPN moved to 443
";

/// `outgate report --format json` over the daemon's flow and HTTP logs.
fn report(s: &Setup) -> serde_json::Value {
    let logs = ["flows.jsonl", "http.jsonl"].map(|f| s.lab.path(f).display().to_string());
    let o = std::process::Command::new(common::outgate_bin())
        .args(["report", "--format", "json"])
        .args(&logs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The daemon's options for these tests: the HTTP log beside the flow log.
fn logs(s: &Setup) -> String {
    format!("--http-log {}", s.lab.path("http.jsonl").display())
}

fn www(s: &Setup) -> std::path::PathBuf {
    let dir = s.lab.dir.path().join("www");
    std::fs::create_dir_all(dir.join("cgi-bin")).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello\n").unwrap();
    std::fs::write(dir.join("cgi-bin/gateway.dll"), "poll\n").unwrap();
    dir
}

#[test]
fn http_hosts_and_urls_through_the_gateway() {
    if !common::root("http_hosts_and_urls_through_the_gateway") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let dir = www(&s);
    s.lab.http_server(&s.server.clone(), 80, &dir);
    s.rules("--apply", "");
    let log_args = logs(&s);
    s.daemon(POLICY, &log_args);
    let curl = |args: &str| {
        let o = s
            .lab
            .try_sh(&s.client, &format!("curl -sS --max-time 3 {args}"));
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let named = format!("--resolve www.example.org:80:{}", s.server4);
    assert_eq!(
        curl(&format!("{named} http://www.example.org/hello.txt")),
        (0, "hello\n".into()),
        "a named host passes"
    );
    assert_eq!(
        curl(&format!(
            "-H 'Host: www.example.org' http://{}/hello.txt",
            s.server4
        ))
        .0,
        0,
        "so does a Host header"
    );
    assert_eq!(
        curl(&format!("http://{}/hello.txt", s.server4)).0,
        28,
        "a numeric host is dropped: curl times out"
    );
    assert_eq!(
        curl(&format!("-g http://[{}]/hello.txt", s.server6)).0,
        28,
        "an IPv6 literal host too"
    );
    let poll = format!("{named} 'http://www.example.org/cgi-bin/gateway.dll?AsyncPoll'");
    assert_eq!(curl(&poll).0, 28, "gateway.dll? is dropped");
    let put = format!("{named} -X PUT -d x http://www.example.org/hello.txt");
    assert_eq!(curl(&put).0, 28, "method=PUT is dropped");

    let log = s.flows_log();
    let rule_of = |host: &str| -> Vec<String> {
        log.iter()
            .filter(|f| f["dst"].as_str().is_some_and(|d| d.contains(host)))
            .map(|f| {
                format!(
                    "{} {}",
                    f["verdict"].as_str().unwrap(),
                    f["rule"].as_str().unwrap_or("-")
                )
            })
            .collect()
    };
    let v4 = rule_of(&s.server4);
    assert_eq!(
        v4.iter().filter(|r| r.ends_with("policy.rules:5")).count(),
        2,
        "{v4:?}"
    );
    assert!(
        v4.iter()
            .any(|r| r.starts_with("drop") && r.ends_with("policy.rules:2")),
        "{v4:?}"
    );
    assert!(
        v4.iter()
            .any(|r| r.starts_with("drop") && r.ends_with("policy.rules:3")),
        "{v4:?}"
    );
    assert!(
        v4.iter()
            .any(|r| r.starts_with("drop") && r.ends_with("policy.rules:4")),
        "{v4:?}"
    );

    // The report on these logs names the numeric host and the client that asked for it.
    let r = report(&s);
    let numeric = r["numeric_hosts"].as_array().unwrap();
    assert!(
        numeric.iter().any(|h| h["host"] == s.server4.as_str()),
        "{numeric:#?}"
    );
    let client = r["clients"][0]["client"].as_str().unwrap();
    assert!(
        client.starts_with("10.200.1.") || client.starts_with("fd00:200:1:"),
        "{r:#}"
    );
    let odd = r["odd_http"].as_array().unwrap();
    assert!(
        odd.iter().any(|o| o["url"]
            .as_str()
            .is_some_and(|u| u.contains("gateway.dll?"))),
        "{r:#}"
    );
    s.rules("--remove", "");
}

#[test]
fn ssh_on_443_is_dropped_while_tls_passes() {
    if !common::root("ssh_on_443_is_dropped_while_tls_passes") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    s.rules("--apply", "");
    let log_args = logs(&s);
    s.daemon(POLICY, &log_args);
    let server = s.server.clone();

    // A real sshd on 443. The client has no key, so without the filter it would get as far as
    // "Permission denied"; with it, the banner exchange never completes.
    let keys = s.lab.dir.path().join("ssh");
    std::fs::create_dir_all(&keys).unwrap();
    let key = keys.join("host_ed25519");
    common::run(&format!(
        "ssh-keygen -q -t ed25519 -N '' -f {}",
        key.display()
    ));
    std::fs::create_dir_all("/run/sshd").unwrap();
    let sshd = s.lab.spawn(
        &server,
        &format!(
            "/usr/sbin/sshd -D -e -p 443 -h {} -o PidFile=none -o UsePAM=no",
            key.display()
        ),
    );
    s.lab.wait_listening(&server, "tcp", 443);
    let ssh = s.lab.try_sh(
        &s.client,
        &format!(
            "timeout 8 ssh -p 443 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o ConnectTimeout=3 -o ServerAliveInterval=1 -o ServerAliveCountMax=2 nobody@{} true",
            s.server4
        ),
    );
    let err = String::from_utf8_lossy(&ssh.stderr);
    assert_ne!(ssh.status.code(), Some(0));
    assert!(
        !err.contains("Permission denied"),
        "ssh reached the server: {err}"
    );
    assert!(
        err.contains("timed out") || err.contains("banner exchange"),
        "{err}"
    );
    let _ = s.lab.child(sshd).kill();
    let _ = s.lab.child(sshd).wait();

    // A real TLS server on the same port: a real TLS client gets its page.
    let cert = s.lab.dir.path().join("cert.pem");
    let pkey = s.lab.dir.path().join("key.pem");
    common::run(&format!(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=www.example.org \
         -keyout {} -out {} 2>/dev/null",
        pkey.display(),
        cert.display()
    ));
    s.lab.spawn(
        &server,
        &format!(
            "openssl s_server -quiet -accept 443 -www -cert {} -key {}",
            cert.display(),
            pkey.display()
        ),
    );
    s.lab.wait_listening(&server, "tcp", 443);
    let o = s.lab.try_sh(
        &s.client,
        &format!(
            "curl -sk --max-time 5 --resolve www.example.org:443:{} https://www.example.org/",
            s.server4
        ),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "TLS on 443 passes: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("s_server"),
        "the page comes from openssl s_server"
    );
    // The same server under a name the policy lists as a confederate: dropped on its ClientHello.
    let o = s.lab.try_sh(
        &s.client,
        &format!(
            "curl -sk --max-time 3 --resolve tunnel.example.net:443:{} https://tunnel.example.net/",
            s.server4
        ),
    );
    assert_eq!(
        o.status.code(),
        Some(28),
        "sni=tunnel.example.net is dropped"
    );

    let log = s.flows_log();
    let on_443: Vec<String> = log
        .iter()
        .filter(|f| f["dst"].as_str().is_some_and(|d| d.ends_with(":443")))
        .map(|f| {
            format!(
                "{} {}",
                f["verdict"].as_str().unwrap(),
                f["rule"].as_str().unwrap_or("-")
            )
        })
        .collect();
    let has = |verdict: &str, line: &str| {
        on_443
            .iter()
            .any(|r| r.starts_with(verdict) && r.ends_with(line))
    };
    assert!(has("drop", "policy.rules:8"), "ssh: {on_443:?}");
    assert!(has("accept", "policy.rules:7"), "tls: {on_443:?}");
    assert!(has("drop", "policy.rules:6"), "sni: {on_443:?}");

    // The report on these logs names SSH on 443 and the client that spoke it.
    let r = report(&s);
    let ssh = r["wrong_port"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["app"] == "ssh" && w["port"] == 443);
    let ssh = ssh.unwrap_or_else(|| panic!("no ssh on 443 in {r:#}"));
    assert!(
        ssh["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("10.200.1.")),
        "{ssh:#}"
    );
    assert!(
        r["clients"][0]["client"]
            .as_str()
            .unwrap()
            .starts_with("10.200.1."),
        "{r:#}"
    );
    s.rules("--remove", "");
}

/// A passive FTP download through a gateway whose policy opens only port 21: the kernel's FTP helper
/// (installed by `outgate rules`) admits exactly the announced data connection, PASV and EPSV, IPv4 and
/// IPv6; another high port stays closed.
#[test]
fn passive_ftp_through_a_default_deny_gateway() {
    if !common::root("passive_ftp_through_a_default_deny_gateway") {
        return;
    }
    let _g = serial();
    let mut s = gateway_mode();
    let root = s.lab.dir.path().join("ftp");
    std::fs::create_dir_all(&root).unwrap();
    let body: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    std::fs::write(root.join("file.txt"), &body).unwrap();
    let server = s.server.clone();
    // Debian's python3 carries pyftpdlib (python3-pyftpdlib); anonymous, read-only, passive ports 50000+.
    s.lab.spawn(
        &server,
        &format!(
            "/usr/bin/python3 -m pyftpdlib -i :: -p 21 -d {} -r 50000-50020",
            root.display()
        ),
    );
    s.lab.wait_listening(&server, "tcp", 21);
    s.lab.http_server(&server, 50019, &root);
    s.rules("--apply", "");
    s.daemon(
        "policy loc net DROP\nACCEPT loc net tcp 21 # FTP control only\n",
        "",
    );

    let fetch = |url: &str, extra: &str| {
        let o = s
            .lab
            .try_sh(&s.client, &format!("curl -sS --max-time 10 {extra} {url}"));
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).len(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let url4 = format!("ftp://{}/file.txt", s.server4);
    let url6 = format!("ftp://[{}]/file.txt", s.server6);
    for (url, extra, what) in [
        (&url4, "--disable-epsv", "PASV"),
        (&url4, "", "EPSV"),
        (&url6, "", "EPSV over IPv6"),
    ] {
        let (code, len, err) = fetch(url, extra);
        assert_eq!((code, len), (Some(0), body.len()), "{what}: {err}");
    }
    // A high port nobody announced: closed.
    let (code, _, _) = fetch(
        &format!("http://{}:50019/file.txt", s.server4),
        "--connect-timeout 2",
    );
    assert_eq!(code, Some(28), "an unannounced data port stays closed");
    s.rules("--remove", "");
}
