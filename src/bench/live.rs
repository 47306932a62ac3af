//! `outgate bench --live`: the live filter measured on this machine, beside the kernel alone.
//!
//! For each queue count the bench builds a fresh pair of network namespaces of its own ([`net`]), so no
//! conntrack entry or TIME_WAIT socket of one case weighs on the next, and measures the same four things
//! twice: with the kernel alone (an ACCEPT rule with a conntrack match where outgate's ruleset hooks,
//! no queue), then with outgate's ruleset and daemon on that many queues:
//! 1. new flows: one UDP datagram to each of `flows` destinations, counted where they arrive;
//! 2. new TCP connections per second, closed loop (connect, close, repeat) on a few threads;
//! 3. bulk TCP through one connection (for outgate: a decided flow the kernel passes by itself);
//! 4. connect time (SYN to SYN-ACK, one after another), median and p99.
//!
//! The traffic comes from this binary's hidden `bench-agent` subcommand ([`agent`]) run inside the
//! namespaces with `ip netns exec`.

pub mod agent;
pub mod net;
pub mod report;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use agent::{BulkDone, ConnectDone, LatencyDone, UdpDone};
use net::Net;
pub use report::{Case, Report, Row};

/// What `outgate bench --live` was asked for.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// The queue counts to measure, in order (each binds queues 0 to n-1).
    pub queues: Vec<u16>,
    /// New UDP flows (one datagram each) per case.
    pub flows: u32,
    /// Seconds of each TCP case (connection rate, bulk).
    pub tcp_secs: f64,
    /// Connects timed one after another for the latency.
    pub samples: u32,
    /// Client threads of the connection-rate case.
    pub threads: u32,
    /// Client threads sending the new UDP flows.
    pub senders: u32,
    /// The daemon's policy (None: the built-in one).
    pub policy: Option<PathBuf>,
    /// This binary, run in the namespaces as daemon, ruleset tool and agent.
    pub exe: PathBuf,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// Bytes of each new-flow datagram's payload.
pub const PAYLOAD: usize = 64;

/// Refuses to start without root or without `ip` and `iptables`.
pub fn preflight() -> Result<(), String> {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    });
    if !root {
        return Err("bench --live needs root: it makes network namespaces, runs iptables and binds NFQUEUE (try sudo)".into());
    }
    for program in ["ip", "iptables"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()));
        if !found {
            return Err(format!(
                "bench --live needs `{program}` in PATH (Debian: apt-get install iproute2 iptables)"
            ));
        }
    }
    Ok(())
}

/// Runs every case and returns the report. The namespaces are gone when it returns, whatever happened;
/// on SIGINT or SIGTERM they are removed and the process exits with 130.
pub fn run(cfg: &LiveConfig) -> Result<Report, String> {
    preflight()?;
    net::on_signal_clean_up()?;
    let mut rows = Vec::new();
    let total = cfg.queues.len() * 2;
    for (i, &queues) in cfg.queues.iter().enumerate() {
        for (j, case) in [Case::Kernel, Case::Outgate].into_iter().enumerate() {
            let step = i * 2 + j + 1;
            if cfg.progress {
                eprintln!("[{step}/{total}] {queues} queue(s): {}", case.name());
            }
            match measure(cfg, queues, case, step as u32) {
                Ok(row) => rows.push(row),
                // The signal handler removes what is left and ends the process.
                Err(_) if net::interrupted() => loop {
                    std::thread::sleep(Duration::from_secs(1));
                },
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Report::new(cfg, rows))
}

/// One case in a fresh pair of namespaces.
fn measure(cfg: &LiveConfig, queues: u16, case: Case, n: u32) -> Result<Row, String> {
    let net = Net::new(n)?;
    let server = Agent::serve(cfg, &net)?;
    let daemon = match case {
        Case::Kernel => {
            net.exec(
                &net.client,
                &[
                    "iptables",
                    "-w",
                    "-I",
                    "OUTPUT",
                    "1",
                    "-o",
                    &net.client_if,
                    "-m",
                    "conntrack",
                    "--ctdir",
                    "ORIGINAL",
                    "-j",
                    "ACCEPT",
                ],
            )?;
            None
        }
        Case::Outgate => Some(Daemon::start(cfg, &net, queues)?),
    };
    let mut row = Row::new(case, queues);
    let counters = |d: &Option<Daemon>| d.as_ref().map(Daemon::queue_counters).transpose();
    let before = counters(&daemon)?;

    step(cfg, "new flows (UDP)");
    let (udp, delivered, secs) = blast(cfg, &net, &server)?;
    row.udp(udp, delivered, secs);
    if let (Some(before), Some(after)) = (before, counters(&daemon)?) {
        row.queue_dropped = Some(after.0.saturating_sub(before.0));
        row.user_dropped = Some(after.1.saturating_sub(before.1));
    }

    step(cfg, "new TCP connections");
    let connect: ConnectDone = agent(
        &net,
        cfg,
        &[
            "connect",
            "--threads",
            &cfg.threads.to_string(),
            "--secs",
            &cfg.tcp_secs.to_string(),
        ],
    )?;
    row.connections(&connect);

    step(cfg, "bulk TCP");
    let bulk: BulkDone = agent(&net, cfg, &["bulk", "--secs", &cfg.tcp_secs.to_string()])?;
    row.bulk(&bulk);

    step(cfg, "connect time");
    let latency: LatencyDone = agent(&net, cfg, &["latency", "--count", &cfg.samples.to_string()])?;
    row.latency(&latency);

    if let Some(daemon) = daemon {
        daemon.stop()?;
    }
    drop(server);
    drop(net);
    Ok(row)
}

fn step(cfg: &LiveConfig, what: &str) {
    if cfg.progress {
        eprintln!("      {what}");
    }
}

/// Runs one agent task in the client namespace and reads its JSON line.
fn agent<T: DeserializeOwned>(net: &Net, cfg: &LiveConfig, args: &[&str]) -> Result<T, String> {
    let exe = cfg.exe.to_string_lossy();
    let mut full = vec!["netns", "exec", net.client.as_str(), &exe, "bench-agent"];
    full.extend(args);
    let out = net::run_guarded("ip", &full)?;
    serde_json::from_str(out.trim())
        .map_err(|e| format!("bench-agent {} answered {out:?}: {e}", args[0]))
}

/// The UDP blast: what the agent sent, what arrived, over how long.
fn blast(cfg: &LiveConfig, net: &Net, server: &Agent) -> Result<(UdpDone, u64, f64), String> {
    let rx = || server.rx_packets(&net.server_if);
    let udp: UdpDone = agent(
        net,
        cfg,
        &[
            "udp",
            "--flows",
            &cfg.flows.to_string(),
            "--payload",
            &PAYLOAD.to_string(),
            "--senders",
            &cfg.senders.to_string(),
        ],
    )?;
    // What is still queued arrives after the sender is done: wait until nothing more comes.
    let sent_end = Instant::now();
    let (mut last, mut changed) = (rx()?, sent_end);
    while changed.elapsed() < Duration::from_millis(300)
        && sent_end.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(5));
        let now = rx()?;
        if now != last {
            (last, changed) = (now, Instant::now());
        }
    }
    let delivered = server.udp_counted(net)?;
    let secs = udp.secs + changed.duration_since(sent_end).as_secs_f64();
    Ok((udp, delivered, secs))
}

/// The server agent: listens until dropped.
struct Agent {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Agent {
    fn serve(cfg: &LiveConfig, net: &Net) -> Result<Agent, String> {
        let exe = cfg.exe.to_string_lossy();
        let mut child = net::spawn(
            Net::command(&net.server, &exe, &["bench-agent", "serve"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| format!("cannot start the server agent: {e}"))?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = child.kill();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            let _ = child.wait();
            return Err(format!("the server agent did not start: {}", err.trim()));
        }
        Ok(Agent { child, stdin })
    }

    /// Packets received on the server's veth (read through /proc/PID/net of a process inside).
    fn rx_packets(&self, ifname: &str) -> Result<u64, String> {
        let path = format!("/proc/{}/net/dev", self.child.id());
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{ifname}:")))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{path}: no counters for {ifname}"))
    }

    /// The blast's datagrams the server's INPUT rule counted.
    fn udp_counted(&self, net: &Net) -> Result<u64, String> {
        let out = net.exec(&net.server, &["iptables", "-w", "-nvxL", "INPUT", "1"])?;
        out.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("cannot read the server's packet counter from {out:?}"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `outgate run` in the client namespace, with its ruleset.
struct Daemon {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Daemon {
    fn start(cfg: &LiveConfig, net: &Net, queues: u16) -> Result<Daemon, String> {
        let exe = cfg.exe.to_string_lossy();
        let range = format!("0-{}", queues.saturating_sub(1));
        let policy = cfg
            .policy
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let mut rules = vec![
            exe.as_ref(),
            "rules",
            "--mode",
            "host",
            "--wan",
            &net.client_if,
            "--queues",
            &range,
            "--apply",
        ];
        let mut run = vec![exe.as_ref(), "run", "--queues", &range];
        if let Some(p) = &policy {
            rules.extend(["--policy", p]);
            run.extend(["--policy", p]);
        }
        net.exec(&net.client, &rules)?;
        let mut child = net::spawn(
            Net::command(&net.client, run[0], &run[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
        let (tx, rx) = mpsc::channel();
        if let Some(err) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut said = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains(" on NFQUEUE ") => break,
                Ok(line) => said.push(line),
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the daemon did not start filtering: {}",
                        said.join("\n")
                    ));
                }
            }
        }
        Ok(Daemon { child, stderr: rx })
    }

    /// `queue_dropped` and `user_dropped` summed over the queues of the client namespace.
    fn queue_counters(&self) -> Result<(u64, u64), String> {
        let path = format!("/proc/{}/net/netfilter/nfnetlink_queue", self.child.id());
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        Ok(parse_queue_counters(&text))
    }

    /// SIGTERM, as systemd stops it; an error if it did not stop cleanly.
    fn stop(mut self) -> Result<(), String> {
        net::run("kill", &["-TERM", &self.child.id().to_string()])?;
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for the daemon: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            let said: Vec<String> = self.stderr.try_iter().collect();
            Err(format!(
                "the daemon exited with {status}: {}",
                said.join("\n")
            ))
        }
    }
}

/// Sums `queue_dropped` and `user_dropped` (the 6th and 7th fields) of /proc/net/netfilter/nfnetlink_queue.
fn parse_queue_counters(text: &str) -> (u64, u64) {
    text.lines().fold((0, 0), |(q, u), line| {
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        match (f.get(5), f.get(6)) {
            (Some(a), Some(b)) => (q + a, u + b),
            _ => (q, u),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_counters_sum_over_queues() {
        let text = "    0  12345     0 2 65531     3     4      900  1\n    1  12346     2 2 65531     10     0      800  1\n";
        assert_eq!(parse_queue_counters(text), (13, 4));
        assert_eq!(parse_queue_counters(""), (0, 0));
    }
}
