//! The bench's private network: a client and a server namespace joined by a veth pair, named with the
//! bench's process id. Nothing outside them is touched. [`Net::drop`] stops every process in them and
//! deletes them; [`on_signal_clean_up`] does the same on SIGINT or SIGTERM before exiting.

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::agent::{ANY_NET, CLIENT_ADDR, SERVER_ADDR};

/// The namespaces alive now, for the signal handler: it deletes them and exits.
static ALIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Set when SIGINT or SIGTERM came: the handler is cleaning up and will end the process.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT or SIGTERM came. A Ctrl-C reaches the bench's children too, so a case can fail
/// because of it: the caller then waits for the handler to end the process rather than report that.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// One client/server pair of namespaces.
pub struct Net {
    pub client: String,
    pub server: String,
    /// The client's end of the veth pair (the ruleset's --wan).
    pub client_if: String,
    pub server_if: String,
}

/// Runs a program, returning its stdout, or an error naming it with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output();
    finish(program, args, out)
}

/// [`run`] for a program that runs in one of the bench's namespaces, started through [`spawn`] so
/// that it cannot start after a signal's handler swept them.
pub(crate) fn run_guarded(program: &str, args: &[&str]) -> Result<String, String> {
    let child = spawn(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .map_err(|e| format!("cannot run {program}: {e}"))?;
    finish(program, args, child.wait_with_output())
}

/// A finished program's stdout, or an error naming it with its stderr.
fn finish(
    program: &str,
    args: &[&str],
    out: std::io::Result<std::process::Output>,
) -> Result<String, String> {
    let out = out.map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    /// Makes the pair numbered `n` in this process: client 10.201.0.1, server 10.201.0.2, and the
    /// server owning 10.202.0.0/16 on its loopback (the client routes it over the veth).
    pub fn new(n: u32) -> Result<Net, String> {
        let pid = std::process::id();
        let net = Net {
            client: format!("outgate-bench-{pid}-{n}c"),
            server: format!("outgate-bench-{pid}-{n}s"),
            client_if: format!("ogb{pid}c{n}"),
            server_if: format!("ogb{pid}s{n}"),
        };
        if net.client_if.len() > 15 {
            return Err(format!(
                "interface name {} is too long (process id {pid})",
                net.client_if
            ));
        }
        // Registered and built under the lock: a signal's handler, which holds it from its sweep to the
        // process's exit, either finds both namespaces whole or none of them made.
        let mut alive = lock_alive();
        if alive.iter().any(|n| n == "!") {
            return Err("interrupted".into());
        }
        alive.extend([net.client.clone(), net.server.clone()]);
        let built = net.build();
        drop(alive);
        // On an error `net` drops here, and its Drop takes away what was made.
        built.map(|()| net)
    }

    fn build(&self) -> Result<(), String> {
        let (c, s) = (self.client.as_str(), self.server.as_str());
        let (ci, si) = (self.client_if.as_str(), self.server_if.as_str());
        run("ip", &["netns", "add", c])?;
        run("ip", &["netns", "add", s])?;
        run(
            "ip",
            &[
                "link", "add", ci, "netns", c, "type", "veth", "peer", "name", si, "netns", s,
            ],
        )?;
        let any = format!("{}.{}.0.0/16", ANY_NET[0], ANY_NET[1]);
        let (ca, sa) = (format!("{CLIENT_ADDR}/24"), format!("{SERVER_ADDR}/24"));
        let server = SERVER_ADDR.to_string();
        for (ns, args) in [
            (c, vec!["addr", "add", ca.as_str(), "dev", ci]),
            (s, vec!["addr", "add", sa.as_str(), "dev", si]),
            (c, vec!["link", "set", "lo", "up"]),
            (s, vec!["link", "set", "lo", "up"]),
            (c, vec!["link", "set", ci, "up"]),
            (s, vec!["link", "set", si, "up"]),
            (s, vec!["route", "add", "local", any.as_str(), "dev", "lo"]),
            (
                c,
                vec!["route", "add", any.as_str(), "via", server.as_str()],
            ),
        ] {
            let mut full = vec!["-n", ns];
            full.extend(args);
            run("ip", &full)?;
        }
        // No IPv6 chatter on the veth (router solicitations would count as delivered packets); the
        // client reuses ports of connections in TIME_WAIT, as a busy host does.
        let no_v6 = |ifname: &str| format!("net.ipv6.conf.{ifname}.disable_ipv6=1");
        self.exec(c, &["sysctl", "-qw", &no_v6(ci), "net.ipv4.tcp_tw_reuse=1"])?;
        self.exec(s, &["sysctl", "-qw", &no_v6(si)])?;
        // The blast's datagrams are counted as they arrive and dropped there: no socket, no ICMP back.
        let port = super::agent::UDP_PORT.to_string();
        self.exec(
            s,
            &[
                "iptables", "-w", "-A", "INPUT", "-p", "udp", "--dport", &port, "-j", "DROP",
            ],
        )?;
        Ok(())
    }

    /// Runs `args` in namespace `ns`.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let mut full = vec!["netns", "exec", ns];
        full.extend(args);
        run("ip", &full)
    }

    /// A command that runs `program args` in namespace `ns` (`ip` execs it: the child's pid is its own).
    pub fn command(ns: &str, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]).args(args);
        cmd
    }
}

/// Spawns `cmd` (a process in one of the bench's namespaces) unless a signal's handler is cleaning up:
/// the handler holds the lock until the process exits, so nothing starts after its sweep and outlives
/// the bench in a namespace whose name is gone.
pub fn spawn(cmd: &mut Command) -> Result<std::process::Child, String> {
    let alive = lock_alive();
    if alive.iter().any(|n| n == "!") {
        return Err("interrupted".into());
    }
    cmd.spawn().map_err(|e| e.to_string())
}

impl Drop for Net {
    fn drop(&mut self) {
        drop_now(self);
    }
}

fn lock_alive() -> std::sync::MutexGuard<'static, Vec<String>> {
    ALIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn drop_now(net: &Net) {
    let mut alive = lock_alive();
    for ns in [&net.client, &net.server] {
        stop_all(ns);
    }
    for ns in [&net.client, &net.server] {
        delete(ns);
    }
    alive.retain(|n| n != &net.client && n != &net.server);
}

/// Stops every process in `ns` (SIGTERM, then SIGKILL after two seconds).
fn stop_all(ns: &str) {
    for signal in ["-TERM", "-KILL"] {
        let pids = pids(ns);
        if pids.is_empty() {
            return;
        }
        let mut args = vec![signal];
        args.extend(pids.iter().map(String::as_str));
        let _ = run("kill", &args);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) && !self::pids(ns).is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn pids(ns: &str) -> Vec<String> {
    run("ip", &["netns", "pids", ns])
        .map(|out| out.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn delete(ns: &str) {
    if run("ip", &["netns", "del", ns]).is_err() {
        // Already gone, or never made: nothing else of ours can be left.
    }
}

/// Handles SIGINT, SIGTERM, SIGHUP (a closed terminal or SSH session) and SIGQUIT from now on: stops
/// what runs in the bench's namespaces, deletes them, and exits with 130.
pub fn on_signal_clean_up() -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let mut alive = lock_alive();
            let names = std::mem::replace(&mut *alive, vec!["!".to_string()]);
            for ns in &names {
                stop_all(ns);
            }
            for ns in &names {
                delete(ns);
            }
            eprintln!("outgate: bench interrupted (signal {signal}): its namespaces are removed");
            std::process::exit(130);
        }
    });
    Ok(())
}
