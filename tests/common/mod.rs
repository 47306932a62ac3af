//! Shared test helpers: the real captures' folder, and test hosts in network namespaces this test
//! run creates itself, joined by veth pairs.
//!
//! Every name carries the process id and a counter, so tests run in parallel and never touch anything
//! they did not make. Dropping a [`Lab`] kills what it started and deletes its namespaces.
#![allow(dead_code)]

pub mod gateways;
pub mod learn;
pub mod netns;
pub mod shape;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The real captures written by others, read in place (CI has `../shared` beside the clone).
pub fn real_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps-real")
}

/// Every capture in [`real_dir`], sorted; fails when the folder is missing or thin.
pub fn captures() -> Vec<PathBuf> {
    let dir = real_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the real captures live beside the project)",
                dir.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 30,
        "expected the shared captures, found {}",
        files.len()
    );
    files
}

pub fn outgate_bin() -> &'static str {
    env!("CARGO_BIN_EXE_outgate")
}

/// Whether a test that needs `need` can run here (`ok`). When it cannot, the test says so on stderr
/// (written past the test harness's capture, so `cargo test` shows it) and the caller returns early.
/// In CI (`CI` set) nothing may be skipped: the test fails instead, naming what is missing.
pub fn can_run(test: &str, ok: bool, need: &str) -> bool {
    if ok {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs {need}, and CI must run every test"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs {need}");
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Live tests need root (network namespaces, iptables, NFQUEUE); CI is root.
pub fn root(test: &str) -> bool {
    can_run(
        test,
        is_root(),
        "root (network namespaces, iptables, NFQUEUE)",
    )
}

/// Tests of the real captures need `../shared/pcaps-real` beside the project, as CI has it.
pub fn shared(test: &str) -> bool {
    can_run(
        test,
        real_dir().is_dir(),
        "../shared/pcaps-real beside the project",
    )
}

/// Tests that run a program the project does not build (`systemd-analyze`, say).
pub fn tool(test: &str, program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
    can_run(test, found, &format!("{program} in PATH"))
}

/// Fails loudly when not root: the labs are only made by tests that checked [`root`] first.
pub fn require_root() {
    assert!(is_root(), "the live tests need root (CI runs them as root)");
}

/// Runs a command on the host, panicking with its output if it fails.
pub fn run(cmd: &str) -> String {
    let o = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    assert!(
        o.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A set of namespaces for one test.
pub struct Lab {
    pub id: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    pub dir: tempfile::TempDir,
}

/// The two ends of a link between namespaces, with their addresses.
#[derive(Clone, Debug)]
pub struct Link {
    pub a_if: String,
    pub b_if: String,
    pub a4: String,
    pub b4: String,
    pub a6: String,
    pub b6: String,
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        let id = format!(
            "og{}x{}",
            std::process::id() % 100_000,
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Lab {
            id,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A new namespace with loopback up; returns its name.
    pub fn host(&mut self, role: &str) -> String {
        let ns = format!("{}{role}", self.id);
        run(&format!("ip netns add {ns}"));
        self.namespaces.push(ns.clone());
        self.sh(&ns, "ip link set lo up");
        ns
    }

    /// Joins two namespaces with a veth pair on subnet `n` (10.200.n.0/24, fd00:200:n::/64).
    pub fn link(&mut self, a: &str, b: &str, n: u8) -> Link {
        let (a_if, b_if) = (format!("{}a{n}", self.id), format!("{}b{n}", self.id));
        run(&format!(
            "ip link add {a_if} netns {a} type veth peer name {b_if} netns {b}"
        ));
        let l = Link {
            a4: format!("10.200.{n}.1"),
            b4: format!("10.200.{n}.2"),
            a6: format!("fd00:200:{n}::1"),
            b6: format!("fd00:200:{n}::2"),
            a_if,
            b_if,
        };
        for (ns, ifname, v4, v6) in [(a, &l.a_if, &l.a4, &l.a6), (b, &l.b_if, &l.b4, &l.b6)] {
            self.sh(ns, &format!("ip addr add {v4}/24 dev {ifname}"));
            self.sh(ns, &format!("ip addr add {v6}/64 dev {ifname} nodad"));
            self.sh(ns, &format!("ip link set {ifname} up"));
        }
        l
    }

    /// Makes `ns` a router between its links.
    pub fn forwarding(&self, ns: &str) {
        self.sh(
            ns,
            "sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
        );
    }

    /// Runs `cmd` in `ns`; panics with its output if it fails.
    pub fn sh(&self, ns: &str, cmd: &str) -> String {
        run(&format!(
            "ip netns exec {ns} sh -c '{}'",
            cmd.replace('\'', "'\\''")
        ))
    }

    /// Runs `cmd` in `ns` and returns its output whatever its exit status.
    pub fn try_sh(&self, ns: &str, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", cmd])
            .output()
            .expect("ip netns exec")
    }

    /// Starts `cmd` in `ns` in the background; it is killed when the lab is dropped. Its stderr goes
    /// to a file of the lab, never a pipe: a pipe nobody reads fills after 64 KiB and then blocks the
    /// child at its next write (python's http.server logs each request to stderr, and stopped
    /// answering after some 600 requests).
    pub fn spawn(&mut self, ns: &str, cmd: &str) -> usize {
        let i = self.children.len();
        let err = std::fs::File::create(self.stderr_path(i)).expect("the child's stderr file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &format!("exec {cmd}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("spawn");
        self.children.push(child);
        i
    }

    fn stderr_path(&self, i: usize) -> PathBuf {
        self.path(&format!("stderr.{i}"))
    }

    pub fn child(&mut self, i: usize) -> &mut Child {
        &mut self.children[i]
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr_of(&mut self, i: usize) -> String {
        let bytes = std::fs::read(self.stderr_path(i)).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// An HTTP server (python's http.server, dual stack) on `port` in `ns`, serving `dir`.
    pub fn http_server(&mut self, ns: &str, port: u16, dir: &Path) {
        self.spawn(
            ns,
            &format!(
                "python3 -m http.server {port} --bind :: --directory {}",
                dir.display()
            ),
        );
        self.wait_listening(ns, "tcp", port);
    }

    /// A UDP echo server on `port` in `ns` (both families).
    pub fn udp_echo(&mut self, ns: &str, port: u16) {
        let script = format!(
            "import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\ns.bind(('::',{port}))\n\
             while True:\n d,a=s.recvfrom(65535)\n s.sendto(d,a)\n"
        );
        let p = self.write(&format!("udp_echo_{port}.py"), &script);
        self.spawn(ns, &format!("python3 {}", p.display()));
        self.wait_listening(ns, "udp", port);
    }

    /// Waits until something listens on `port` in `ns`.
    pub fn wait_listening(&self, ns: &str, proto: &str, port: u16) {
        let flag = if proto == "tcp" { "-tln" } else { "-uln" };
        wait_for(Duration::from_secs(10), || {
            let o = self.try_sh(ns, &format!("ss -H {flag} sport = :{port}"));
            !String::from_utf8_lossy(&o.stdout).trim().is_empty()
        })
        .unwrap_or_else(|| panic!("nothing listens on {proto} {port} in {ns}"));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            // What a child left behind (a shell's own child): nothing outlives the lab.
            let _ = kill_all_in(ns);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Kills every process in namespace `ns` with SIGKILL, listing them again until none is left: a
/// process that exits between the listing and its kill is no failure, and one forked meanwhile
/// (keepalived starts its health check every second) is caught by the next round. Zombies are not
/// listed. Errs with what is still there after two seconds.
pub fn kill_all_in(ns: &str) -> Result<(), String> {
    let mut pids = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let listing = Command::new("ip")
            .args(["netns", "pids", ns])
            .output()
            .map_err(|e| format!("ip netns pids {ns}: {e}"))?;
        pids = String::from_utf8_lossy(&listing.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in &pids {
            // A pid gone by now is what we wanted; its error says nothing.
            let _ = Command::new("kill")
                .args(["-9", pid])
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "still running in {ns} after kill -9: {}",
        pids.join(" ")
    ))
}

/// Polls `f` until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// One line of /proc/net/netfilter/nfnetlink_queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub queue_total: u64,
    pub queue_dropped: u64,
    pub user_dropped: u64,
    /// The last packet id handed out: how many packets the queue has seen.
    pub id_sequence: u64,
}

pub fn queue_stats(lab: &Lab, ns: &str, queue: u16) -> Option<QueueStats> {
    let o = lab.try_sh(ns, "cat /proc/net/netfilter/nfnetlink_queue");
    String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        (f.first() == Some(&u64::from(queue))).then(|| QueueStats {
            queue_total: f[2],
            queue_dropped: f[5],
            user_dropped: f[6],
            id_sequence: f[7],
        })
    })
}

static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The filter's hosts: where outgate runs, the client, the server, and the client's view of the server.
pub struct Setup {
    pub lab: Lab,
    /// Where the ruleset and the daemon run.
    pub filter: String,
    pub client: String,
    pub server: String,
    pub server4: String,
    pub server6: String,
    pub mode: &'static str,
    pub extra: String,
}

/// Host mode: the client filters its own OUTPUT.
pub fn host_mode() -> Setup {
    let mut lab = Lab::new();
    let client = lab.host("c");
    let server = lab.host("s");
    let l: Link = lab.link(&client, &server, 1);
    Setup {
        filter: client.clone(),
        client,
        server,
        server4: l.b4,
        server6: l.b6,
        mode: "host",
        extra: String::new(),
        lab,
    }
}

/// Gateway mode: LAN client -> gateway (filters FORWARD) -> WAN server.
pub fn gateway_mode() -> Setup {
    let mut lab = Lab::new();
    let client = lab.host("l");
    let gw = lab.host("g");
    let server = lab.host("w");
    let lan = lab.link(&client, &gw, 1);
    let wan = lab.link(&gw, &server, 2);
    lab.forwarding(&gw);
    lab.sh(
        &client,
        &format!(
            "ip route add default via {} && ip -6 route add default via {}",
            lan.b4, lan.b6
        ),
    );
    lab.sh(
        &server,
        &format!(
            "ip route add default via {} && ip -6 route add default via {}",
            wan.a4, wan.a6
        ),
    );
    let extra = format!("--lan {} --wan {}", lan.b_if, wan.a_if);
    Setup {
        filter: gw,
        client,
        server,
        server4: wan.b4,
        server6: wan.b6,
        mode: "gateway",
        extra,
        lab,
    }
}

impl Setup {
    pub fn rules(&self, action: &str, fail: &str) {
        let cmd = format!(
            "{} rules --mode {} {} --queues 0 {fail} {action}",
            outgate_bin(),
            self.mode,
            self.extra
        );
        self.lab.sh(&self.filter, &cmd);
    }

    /// Starts the daemon and waits until its queue is bound; returns the child index.
    pub fn daemon(&mut self, policy: &str, args: &str) -> usize {
        let policy = self.lab.write("policy.rules", policy);
        let log = self.lab.path("flows.jsonl");
        let cmd = format!(
            "{} run --policy {} --queues 0 --log {} {args}",
            outgate_bin(),
            policy.display(),
            log.display()
        );
        let i = self.lab.spawn(&self.filter.clone(), &cmd);
        let (lab, ns) = (&self.lab, &self.filter);
        if wait_for(Duration::from_secs(10), || {
            queue_stats(lab, ns, 0).is_some()
        })
        .is_none()
        {
            let _ = self.lab.child(i).kill();
            panic!("the daemon did not bind queue 0: {}", self.lab.stderr_of(i));
        }
        i
    }

    /// Starts the daemon like [`Setup::daemon`], its stderr going to `daemon.err` in the lab (read it with
    /// [`Setup::daemon_err`] while it runs). The policy is the lab's `policy.rules`, written first.
    pub fn daemon_logged(&mut self, policy: &str, args: &str) -> usize {
        let err = self.lab.path("daemon.err");
        self.daemon(policy, &format!("{args} 2>>{}", err.display()))
    }

    /// What the daemon started with [`Setup::daemon_logged`] wrote to stderr so far.
    pub fn daemon_err(&self) -> String {
        std::fs::read_to_string(self.lab.path("daemon.err")).unwrap_or_default()
    }

    /// The daemon's metrics (it must run with `--metrics 127.0.0.1:9717`).
    pub fn metrics(&self) -> String {
        let o = self
            .lab
            .try_sh(&self.filter, "curl -s http://127.0.0.1:9717/metrics");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// curl from the client: (exit code, seconds, body).
    pub fn curl(&self, host: &str, port: u16, path: &str) -> (i32, f64, String) {
        let url = if host.contains(':') {
            format!("http://[{host}]:{port}{path}")
        } else {
            format!("http://{host}:{port}{path}")
        };
        let start = Instant::now();
        let o = self.lab.try_sh(
            &self.client,
            &format!("curl -sS --max-time 4 --connect-timeout 2 {url}"),
        );
        (
            o.status.code().unwrap_or(-1),
            start.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    }

    /// The decision lines of the daemon's flow log (one per flow decided).
    pub fn flows_log(&self) -> Vec<serde_json::Value> {
        self.flow_log_lines(false)
    }

    /// The end lines of the daemon's flow log (`"end": true`: one per decided flow the kernel ended).
    pub fn end_lines(&self) -> Vec<serde_json::Value> {
        self.flow_log_lines(true)
    }

    fn flow_log_lines(&self, ends: bool) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.lab.path("flows.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).expect("one JSON object per line")
            })
            .filter(|v| (v["end"] == true) == ends)
            .collect()
    }
}

/// The value of the first metric line that starts with `prefix` (name and labels), if any.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Compiles `tests/tools/udp_blast.c` once per test process; returns the binary's path.
pub fn udp_blast() -> String {
    let bin = std::env::temp_dir().join(format!("outgate-udp-blast-{}", std::process::id()));
    if !bin.exists() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/udp_blast.c");
        let ok = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&bin)
            .arg(src)
            .status()
            .expect("cc");
        assert!(ok.success(), "compiling {src}");
    }
    bin.display().to_string()
}

/// The sum of every sample of metric `name` (all label sets).
pub fn total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Setup {
    /// A directory in the lab holding one page, `x` ("x\n"), for the server's HTTP server.
    pub fn www_dir(&self) -> PathBuf {
        let dir = self.lab.dir.path().join("www");
        std::fs::create_dir_all(&dir).expect("www");
        std::fs::write(dir.join("x"), "x\n").expect("www/x");
        dir
    }

    /// The server's HTTP server on port 80 (python's http.server), serving [`Setup::www_dir`].
    pub fn www(&mut self) {
        let dir = self.www_dir();
        self.lab.http_server(&self.server.clone(), 80, &dir);
    }

    /// Routes 10.202.0.0/16 from the client to the server, which owns it whole (a local route on its
    /// loopback), and gives the client the agent's source address 10.201.0.1, so that [`Setup::udp_flows`] makes each datagram a new flow without a socket each.
    pub fn any_net(&self) {
        self.lab
            .sh(&self.server, "ip route add local 10.202.0.0/16 dev lo");
        self.lab.sh(
            &self.client,
            &format!(
                "ip addr add 10.201.0.1/32 dev lo && ip route add 10.202.0.0/16 via {} \
                 && ping -c 1 -W 2 {} >/dev/null",
                self.server4, self.server4
            ),
        );
        // A burst of new flows can crowd ARP out of the link for a moment (the connects of that moment
        // fail with "no route to host"): the two ends know each other for good.
        let pin = "ip -4 neigh show | while read a _ d _ m _; do \
                   ip neigh change $a dev $d lladdr $m nud permanent; done";
        self.lab.sh(&self.client, pin);
        self.lab.sh(&self.server, pin);
    }

    /// One UDP datagram to port 53 of each of `flows` addresses of 10.202.0.0/16 (after
    /// [`Setup::any_net`]): `flows` new flows, as `outgate bench --live` makes them.
    pub fn udp_flows(&self, flows: u32) {
        let out = self.lab.sh(
            &self.client,
            &format!("{} bench-agent udp --flows {flows}", outgate_bin()),
        );
        let done: serde_json::Value = serde_json::from_str(out.trim()).expect("the agent's JSON");
        assert_eq!(
            done["sent"],
            u64::from(flows),
            "the agent sent them all: {out}"
        );
    }
}
