//! Two gateways in network namespaces, for tests/live_failover.rs: a client and a server on either
//! side of gateways A and B (two switches, a sync link between the gateways), each gateway running
//! outgate, conntrackd (when asked) and keepalived with the configurations of `systemd/two-gateways/`.
//!
//! ```text
//! client 192.168.1.10 -- lan switch -- A lan0 .2 / B lan0 .3 (virtual 192.168.1.1)
//!                                      A sync0 192.168.255.1 -- B sync0 .2
//! server 203.0.113.10 -- wan switch -- A wan0 .2 / B wan0 .3 (virtual 203.0.113.1)
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::shape::UPDOWN;
use super::{Lab, kill_all_in, outgate_bin, queue_stats, run, wait_for};

pub const STREAM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/stream.py");
pub const CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/two-gateways");

pub const SERVER: &str = "203.0.113.10";
pub const LAN_VIRTUAL: &str = "192.168.1.1";

/// A config of `systemd/two-gateways` as gateway `node` runs it: on gw-b, a line marked `# gw-b: VALUE`
/// takes VALUE in place of its own (README's rule). The paths two gateways on one machine cannot share
/// (conntrackd's lock, control socket and log; the notify script) are moved into the lab.
pub fn config(lab: &Lab, file: &str, node: &str) -> String {
    let text = std::fs::read_to_string(format!("{CONFIGS}/{file}")).expect("systemd/two-gateways");
    let mut out = String::new();
    for line in text.lines() {
        let line = match line.split_once("# gw-b: ") {
            Some((head, value)) if node == "b" => {
                let indent = &head[..head.len() - head.trim_start().len()];
                let key = head.split_whitespace().next().expect("a keyword");
                format!("{indent}{key} {}", value.trim())
            }
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let dir = lab.dir.path().display();
    out.replace(
        "/var/lock/conntrack.lock",
        &format!("{dir}/conntrackd-{node}.lock"),
    )
    .replace(
        "/var/run/conntrackd.ctl",
        &format!("{dir}/conntrackd-{node}.ctl"),
    )
    .replace(
        "LogFile on",
        &format!("LogFile {dir}/conntrackd-{node}.log"),
    )
    .replace(
        "/usr/local/sbin/outgate-failover",
        &format!("{dir}/failover-{node}"),
    )
}

/// Gateway `node`'s address on the sync link.
pub fn sync_address(node: &str) -> &'static str {
    if node == "a" {
        "192.168.255.1"
    } else {
        "192.168.255.2"
    }
}

/// `outgate check --policy FILE --against` both gateways, run on `node`: (exit code, stdout).
pub fn check_against(p: &Pair, node: &str, file: &std::path::Path) -> (Option<i32>, String) {
    let o = p.lab.try_sh(
        &p.ns(node),
        &format!(
            "{} check --policy {} --against 192.168.255.1:9717 --against 192.168.255.2:9717",
            outgate_bin(),
            file.display()
        ),
    );
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// The lab: client, two switches, the two gateways, the server.
pub struct Pair {
    pub lab: Lab,
    pub client: String,
    pub a: String,
    pub b: String,
    pub server: String,
    /// Whether conntrackd runs on the gateways.
    sync: bool,
    /// Each gateway's services, as the lab's children, in the order they started.
    running: std::collections::HashMap<String, Vec<(&'static str, usize)>>,
}

impl Pair {
    pub fn new(sync: bool) -> Pair {
        let mut lab = Lab::new();
        let client = lab.host("c");
        let lan = lab.host("ls");
        let a = lab.host("ga");
        let b = lab.host("gb");
        let wan = lab.host("ws");
        let server = lab.host("s");
        for sw in [&lan, &wan] {
            lab.sh(
                sw,
                "ip link add br0 type bridge mcast_snooping 0 && ip link set dev br0 up",
            );
        }
        let p = Pair {
            lab,
            client,
            a,
            b,
            server,
            sync,
            running: Default::default(),
        };
        for (ns, dev, sw, port) in [
            (&p.client, "lan0", &lan, "c"),
            (&p.a, "lan0", &lan, "a"),
            (&p.b, "lan0", &lan, "b"),
            (&p.a, "wan0", &wan, "a"),
            (&p.b, "wan0", &wan, "b"),
            (&p.server, "wan0", &wan, "s"),
        ] {
            p.veth(ns, dev, sw, port);
            p.lab.sh(sw, &format!("ip link set dev {port} master br0"));
        }
        p.veth(&p.a, "sync0", &p.b, "sync0");
        let addresses = [
            (&p.client, "lan0 192.168.1.10"),
            (&p.server, "wan0 203.0.113.10"),
            (&p.a, "lan0 192.168.1.2"),
            (&p.a, "wan0 203.0.113.2"),
            (&p.a, "sync0 192.168.255.1"),
            (&p.b, "lan0 192.168.1.3"),
            (&p.b, "wan0 203.0.113.3"),
            (&p.b, "sync0 192.168.255.2"),
        ];
        for (ns, spec) in addresses {
            let (dev, addr) = spec.split_once(' ').expect("device and address");
            p.lab.sh(ns, &format!("ip addr add {addr}/24 dev {dev}"));
        }
        p.lab.sh(&p.client, "ip route add default via 192.168.1.1");
        p.lab
            .sh(&p.server, "ip route add 192.168.1.0/24 via 203.0.113.1");
        for g in [&p.a, &p.b] {
            p.lab.forwarding(g);
        }
        p
    }

    /// The lab with its servers, both gateways started, A master and B a backup with its gate shut.
    pub fn up(sync: bool, policy: &str) -> Pair {
        let mut p = Pair::new(sync);
        p.serve();
        p.install(policy);
        p.start("a");
        wait_for(Duration::from_secs(10), || p.holds("a"))
            .expect("A, the higher priority, holds the virtual address");
        p.start("b");
        wait_for(Duration::from_secs(10), || p.gate_shut("b"))
            .expect("B, the backup, shuts its gate (outgate-failover backup)");
        assert!(p.gate_open("a"), "A, the master, forwards");
        p
    }

    /// A dies; B takes the address and, once outgate-failover master has run, forwards.
    pub fn fail_over(&self) {
        let crash = Instant::now();
        self.crash("a");
        wait_for(Duration::from_secs(15), || self.holds("b")).expect("B takes the virtual address");
        let took = crash.elapsed().as_secs_f64();
        wait_for(Duration::from_secs(10), || self.gate_open("b")).expect("B opens its gate");
        let open = crash.elapsed().as_secs_f64();
        eprintln!(
            "failover: B holds the address {took:.2} s after A died, forwards after {open:.2} s"
        );
        assert!(open < 8.0, "B forwards only {open:.2} s after A died");
    }

    /// A veth pair: `dev` in `ns`, `peer` in `peer_ns`, both up.
    pub fn veth(&self, ns: &str, dev: &str, peer_ns: &str, peer: &str) {
        let tmp = format!("{}t", self.lab.id);
        run(&format!(
            "ip link add {tmp}1 netns {ns} type veth peer name {tmp}2 netns {peer_ns}"
        ));
        self.lab.sh(
            ns,
            &format!("ip link set dev {tmp}1 name {dev} && ip link set dev {dev} up"),
        );
        self.lab.sh(
            peer_ns,
            &format!("ip link set dev {tmp}2 name {peer} && ip link set dev {peer} up"),
        );
    }

    pub fn ns(&self, node: &str) -> String {
        if node == "a" { &self.a } else { &self.b }.clone()
    }

    /// The servers: files on 80 and 8080, the SSH-like line stream on 22.
    pub fn serve(&mut self) {
        let www = self.lab.dir.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("big"), vec![b'x'; 6_000_000]).unwrap();
        std::fs::write(www.join("shaped"), vec![b'x'; 2_500_000]).unwrap();
        let server = self.server.clone();
        self.lab.spawn(
            &server,
            &format!("python3 {UPDOWN} {} 80 8080", www.display()),
        );
        let log = self.lab.path("stream.log");
        self.lab.spawn(
            &server,
            &format!("python3 {STREAM} serve {} 22", log.display()),
        );
        for port in [80, 8080, 22] {
            self.lab.wait_listening(&server, "tcp", port);
        }
        self.lab.udp_echo(&server, 5000);
    }

    /// Each gateway's policy and ruleset (with the policy's traffic classes), and configuration files.
    pub fn install(&self, policy: &str) {
        let policy = self.lab.write("policy.rules", policy);
        for node in ["a", "b"] {
            let ns = self.ns(node);
            self.lab.sh(
                &ns,
                &format!(
                    "{} rules --apply --mode gateway --lan lan0 --wan wan0 --queues 0 --policy {}",
                    outgate_bin(),
                    policy.display()
                ),
            );
            self.lab.write(
                &format!("keepalived-{node}.conf"),
                &config(&self.lab, "keepalived.conf", node),
            );
            self.lab.write(
                &format!("conntrackd-{node}.conf"),
                &config(&self.lab, "conntrackd.conf", node),
            );
            let conf = self.lab.path(&format!("conntrackd-{node}.conf"));
            let script = self.lab.write(
                &format!("failover-{node}"),
                &format!(
                    "#!/bin/sh\nCONNTRACKD_CONF={} LOCK={} exec {CONFIGS}/outgate-failover \"$@\"\n",
                    conf.display(),
                    self.lab.path(&format!("failover-{node}.lock")).display()
                ),
            );
            run(&format!("chmod 755 {}", script.display()));
        }
    }

    /// Starts gateway `node` as it boots: conntrackd (when synchronising), outgate, keepalived.
    pub fn start(&mut self, node: &str) {
        let ns = self.ns(node);
        let dir = self.lab.dir.path().display().to_string();
        let mut running = Vec::new();
        if self.sync {
            let _ = std::fs::remove_file(format!("{dir}/conntrackd-{node}.lock"));
            let _ = std::fs::remove_file(format!("{dir}/conntrackd-{node}.ctl"));
            let i = self
                .lab
                .spawn(&ns, &format!("conntrackd -C {dir}/conntrackd-{node}.conf"));
            running.push(("conntrackd", i));
            let ctl = format!("{dir}/conntrackd-{node}.ctl");
            wait_for(Duration::from_secs(10), || {
                std::path::Path::new(&ctl).exists()
            })
            .unwrap_or_else(|| panic!("conntrackd on {node} did not start"));
        }
        let outgate = self.spawn_outgate(node);
        running.push(("outgate", outgate));
        let keepalived = self.lab.spawn(
            &ns,
            &format!(
                "keepalived -n -l -D -P -f {dir}/keepalived-{node}.conf -p {dir}/keepalived-{node}.pid \
                 -r {dir}/vrrp-{node}.pid"
            ),
        );
        running.push(("keepalived", keepalived));
        self.running.insert(node.to_string(), running);
    }

    /// Starts outgate on `node` and waits until it has bound its queue; returns the lab's child.
    fn spawn_outgate(&mut self, node: &str) -> usize {
        let ns = self.ns(node);
        let dir = self.lab.dir.path().display().to_string();
        let i = self.lab.spawn(
            &ns,
            &format!(
                "{} run --policy {dir}/policy.rules --queues 0 --log {dir}/flows-{node}.jsonl \
                 --metrics {}:9717 2>>{dir}/outgate-{node}.err",
                outgate_bin(),
                sync_address(node)
            ),
        );
        wait_for(Duration::from_secs(10), || {
            queue_stats(&self.lab, &ns, 0).is_some()
        })
        .unwrap_or_else(|| panic!("outgate on {node} did not bind its queue"));
        i
    }

    /// `node`'s outgate dies (`kill -9`) and stays down; nothing else of the gateway does.
    pub fn kill_outgate(&mut self, node: &str) {
        let i = self.service(node, "outgate");
        let child = self.lab.child(i);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// `node`'s outgate started again, as systemd would.
    pub fn restart_outgate(&mut self, node: &str) {
        let i = self.spawn_outgate(node);
        if let Some(running) = self.running.get_mut(node) {
            for entry in running.iter_mut().filter(|(name, _)| *name == "outgate") {
                entry.1 = i;
            }
        }
    }

    /// The lab's child of `node`'s service `name`.
    fn service(&self, node: &str, name: &str) -> usize {
        self.running[node]
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, i)| i)
            .unwrap_or_else(|| panic!("{node} runs no {name}"))
    }

    /// Stops `node`'s services as a shutdown does (SIGTERM, the last started first); returns those that
    /// did not exit 0 within 10 s.
    pub fn stop(&mut self, node: &str) -> Vec<String> {
        let mut failed = Vec::new();
        for (name, i) in self
            .running
            .remove(node)
            .unwrap_or_default()
            .into_iter()
            .rev()
        {
            let child = self.lab.child(i);
            run(&format!("kill -TERM {}", child.id()));
            let mut status = None;
            let _ = wait_for(Duration::from_secs(10), || {
                status = child.try_wait().ok().flatten();
                status.is_some()
            });
            match status {
                Some(s) if s.success() => {}
                other => failed.push(format!("{node}'s {name}: {other:?}")),
            }
        }
        failed
    }

    /// What `node`'s keepalived wrote (its log), for a failure's message.
    pub fn keepalived_log(&mut self, node: &str) -> String {
        let i = self.service(node, "keepalived");
        self.lab.stderr_of(i)
    }

    /// Gateway `node` dies: every process in it killed, its links down; what a crash leaves (the
    /// virtual addresses keepalived held, the conntrack table) stays until [`Pair::reboot`].
    pub fn crash(&self, node: &str) {
        let ns = self.ns(node);
        if let Err(e) = kill_all_in(&ns) {
            panic!("{node} cannot crash: {e}");
        }
        for dev in ["lan0", "wan0", "sync0"] {
            self.lab.sh(&ns, &format!("ip link set dev {dev} down"));
        }
    }

    /// Gateway `node` comes back as after a reboot: no virtual address, an empty conntrack table, the
    /// ruleset in place (outgate-rules.service), links up, then its services.
    pub fn reboot(&mut self, node: &str) {
        let ns = self.ns(node);
        self.lab.sh(
            &ns,
            "ip addr del 192.168.1.1/32 dev lan0 2>/dev/null; ip addr del 203.0.113.1/32 dev wan0 2>/dev/null; \
             conntrack -F 2>/dev/null; true",
        );
        // /run is empty after a reboot: the pid files of the killed keepalived go (its pid lives on as
        // the lab's unreaped child, and keepalived would take it for itself still running).
        for file in ["keepalived", "vrrp"] {
            let _ = std::fs::remove_file(self.lab.path(&format!("{file}-{node}.pid")));
        }
        for dev in ["lan0", "wan0", "sync0"] {
            self.lab.sh(&ns, &format!("ip link set dev {dev} up"));
        }
        self.start(node);
    }

    /// Whether `node` holds the LAN's virtual address.
    pub fn holds(&self, node: &str) -> bool {
        let o = self
            .lab
            .try_sh(&self.ns(node), "ip -4 -o addr show dev lan0");
        String::from_utf8_lossy(&o.stdout).contains(&format!("{LAN_VIRTUAL}/32"))
    }

    /// Whether outgate-failover's gate is shut on `node`, for IPv4 and for IPv6.
    fn gates(&self, node: &str) -> [bool; 2] {
        ["iptables", "ip6tables"].map(|ipt| {
            let o = self
                .lab
                .try_sh(&self.ns(node), &format!("{ipt} -t raw -S PREROUTING"));
            String::from_utf8_lossy(&o.stdout).contains("outgate-failover-gate")
        })
    }

    /// Whether `node`'s gate is shut, for both families.
    pub fn gate_shut(&self, node: &str) -> bool {
        self.gates(node) == [true, true]
    }

    /// Whether `node`'s gate is open, for both families.
    pub fn gate_open(&self, node: &str) -> bool {
        self.gates(node) == [false, false]
    }

    /// `node`'s metrics, from the address the pair compares their policies on (the sync link).
    pub fn metrics(&self, node: &str) -> String {
        let o = self.lab.try_sh(
            &self.ns(node),
            &format!("curl -s http://{}:9717/metrics", sync_address(node)),
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `node`'s flow log: the decision lines (end lines left out).
    pub fn decisions(&self, node: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.lab.path(&format!("flows-{node}.jsonl")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
            .filter(|v| v["end"] != true)
            .collect()
    }

    /// A client command in the background, its output piped.
    pub fn client(&self, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.client])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the client's command")
    }
}

pub fn output(child: Child, what: &str) -> String {
    let o = child.wait_with_output().expect("wait");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what} failed ({}): {out}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The longest silence on the stream's connection, as its server saw it (seconds).
/// Waits for the stream client `stream` to end and checks that the server logged every line it sent;
/// returns the server's log (a line per message, its arrival time third).
pub fn stream_arrived_whole(p: &Pair, stream: Child) -> String {
    let sent: serde_json::Value =
        serde_json::from_str(&output(stream, "the stream")).expect("stream.py's JSON");
    let log = std::fs::read_to_string(p.lab.path("stream.log")).unwrap_or_default();
    assert_eq!(
        Some(log.lines().count() as u64),
        sent["22"]["sent"].as_u64(),
        "every line of the stream arrived"
    );
    log
}

/// Whether the two-gateway tests can run here: root and keepalived, and conntrackd when `sync`
/// (otherwise the test says it was skipped; in CI it fails).
pub fn can_run(name: &str, sync: bool) -> bool {
    super::root(name)
        && super::tool(name, "keepalived")
        && (!sync || super::tool(name, "conntrackd"))
}

pub fn longest_silence(log: &str) -> f64 {
    let times: Vec<f64> = log
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect();
    times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
}
