//! `outgate probe`: the confederate test, automated. Takes the suspect HTTP hosts of the logs (the
//! report's numeric hosts, POST-only hosts and odd URLs), asks each server for the logged URL and
//! then for `/` as a browser would, and keeps in a state file what each server answered.
//!
//! A real web page to `GET /` clears a server for a week. Nothing, an answer that is not HTTP, a
//! binary body, or a body that never ends (GNU httptunnel's `hts` answers any GET with headers
//! promising 100 KiB, then holds the connection for the tunnel) makes it a suspect; a suspect that
//! fails again at least 20 h later is confirmed, and the hosts of confirmed servers are written to
//! the confederates file, one a line, for a policy's `host=@FILE`. See [`state`] for the rules. A
//! suspect gets that second round even when the logs of the run no longer name it; other servers
//! are probed only when the logs name them.
//!
//! Safety, as promised in the README: only run when asked (never from `run`); only GET, with no
//! body and no cookie; a User-Agent naming outgate; at most one probe per server per 20 h, at most
//! `max_servers` servers per run, `interval` between two servers; 64 KiB read and 5 s / 10 s time
//! limits per request ([`fetch::Limits`]); no address in a special range ([`address`]) unless an
//! `--allow` network holds it. A name is resolved once and the probe connects to the address
//! checked, so DNS cannot swap it for another.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::inspect::host::{Host, parse_host};
use crate::report::{HttpSuspect, http_suspects};

pub mod address;
pub mod answer;
pub mod fetch;
pub mod state;

use address::Allow;
use answer::classify;
use fetch::Limits;
use state::{MIN_GAP, Probe, Request, State, Status, Time, confederates_text};

/// A logged URL longer than this is not requested (only `/` is).
const MAX_URL: usize = 2048;

/// What `outgate probe` was asked to do.
#[derive(Clone, Debug)]
pub struct ProbeConfig {
    pub logs: Vec<PathBuf>,
    pub state: PathBuf,
    pub confederates: Option<PathBuf>,
    pub dry_run: bool,
    pub allow: Allow,
    /// The time to act at; the system clock when `None` (tests move it).
    pub now: Option<Time>,
    pub max_servers: usize,
    /// The pause between two servers' probes.
    pub interval: Duration,
    /// Appended to the User-Agent (an address to write to).
    pub contact: Option<String>,
    pub limits: Limits,
}

/// A suspect as a server to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    /// `HOST:PORT` (IPv6 in brackets): the state's key.
    key: String,
    /// The host for the confederates file (IPv6 bare).
    host: String,
    /// The Host header sent.
    header: String,
    port: u16,
    name: Option<String>,
    ip: Option<IpAddr>,
    /// The address the client reached, preferred among the name's addresses.
    logged: Option<SocketAddr>,
    url: String,
    why: Vec<String>,
    cites: Vec<String>,
}

/// The server of a suspect, or why it cannot be probed.
fn target(s: &HttpSuspect) -> Result<Target, String> {
    let logged: Option<SocketAddr> = s.server.as_deref().and_then(|a| a.parse().ok());
    let (host, port) = match s.host.strip_prefix("(no Host: ") {
        Some(_) => match logged {
            Some(a) => (Host::Ip(a.ip()), Some(a.port())),
            None => return Err("no Host and no server address logged".into()),
        },
        None => parse_host(&s.host).ok_or_else(|| "not a host name or address".to_string())?,
    };
    let port = port.or(logged.map(|a| a.port())).unwrap_or(80);
    let (bare, bracketed, name, ip) = match host {
        Host::Name(n) => (n.clone(), n.clone(), Some(n), None),
        Host::Ip(a @ IpAddr::V6(_)) => (a.to_string(), format!("[{a}]"), None, Some(a)),
        Host::Ip(a) => (a.to_string(), a.to_string(), None, Some(a)),
    };
    Ok(Target {
        key: format!("{bracketed}:{port}"),
        header: if port == 80 {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        },
        host: bare,
        port,
        name,
        ip,
        logged,
        url: s.url.clone(),
        why: s.why.clone(),
        cites: s.cites.clone(),
    })
}

/// A suspect of the state as the logs would name it: its key as the host, the URL its last probe
/// asked for.
fn second_round(key: &str, server: &state::Server) -> HttpSuspect {
    let url = server
        .probes
        .last()
        .and_then(|p| p.requests.first())
        .and_then(|r| r.request.strip_prefix("GET "))
        .unwrap_or("/");
    let since = server.first_failure.unwrap_or(server.since);
    HttpSuspect {
        host: key.to_string(),
        server: None,
        url: url.to_string(),
        why: vec![format!(
            "suspect since {since}, not in these logs: second round"
        )],
        cites: Vec::new(),
    }
}

/// The logged URL, when it is safe and useful to request: origin-form, printable ASCII, not `/`.
fn url_to_request(url: &str) -> Option<&str> {
    (url.starts_with('/')
        && url != "/"
        && url.len() <= MAX_URL
        && url.bytes().all(|b| (0x21..0x7f).contains(&b)))
    .then_some(url)
}

/// The address to connect to: the IP, or of the name's addresses the logged one if allowed, else
/// the first allowed; `Err` says why none.
fn choose(
    t: &Target,
    allow: &Allow,
    resolve: &dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
) -> Result<SocketAddr, String> {
    let candidates = match (t.ip, &t.name) {
        (Some(ip), _) => vec![SocketAddr::new(ip, t.port)],
        (None, Some(name)) => {
            resolve(name, t.port).map_err(|e| format!("cannot resolve {name}: {e}"))?
        }
        (None, None) => Vec::new(),
    };
    let mut refused = Vec::new();
    let mut allowed = Vec::new();
    for a in candidates {
        match allow.refuse(a.ip()) {
            Some(why) => refused.push(why),
            None => allowed.push(a),
        }
    }
    let logged = t.logged.filter(|l| allowed.contains(l));
    logged
        .or_else(|| allowed.first().copied())
        .ok_or_else(|| match refused.is_empty() {
            true => "no address".to_string(),
            false => format!("not probed: {}", refused.join("; ")),
        })
}

fn system_resolve(name: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    (name, port).to_socket_addrs().map(|a| a.collect())
}

fn now_secs() -> Time {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Time(i64::try_from(secs).unwrap_or(i64::MAX))
}

fn read_state(path: &Path) -> Result<State, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => State::parse(&path.display().to_string(), &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(format!("{}: cannot read: {e}", path.display())),
    }
}

/// Takes the lock of the state file `STATE.lock` (made beside it; the lock goes with the process),
/// or says which other run holds it.
fn lock(state: &Path) -> Result<std::fs::File, String> {
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: cannot open the lock: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "{}: another outgate probe is running on this state (it holds {})",
            state.display(),
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("{}: cannot lock: {e}", path.display()))
        }
    }
}

/// Writes `text` to `path` through a temporary file beside it, so a reader never sees half.
fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: cannot write: {e}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| err(&e))?;
    tmp.write_all(text.as_bytes()).map_err(|e| err(&e))?;
    tmp.persist(path).map_err(|e| err(&e.error))?;
    Ok(())
}

/// The User-Agent of every request.
pub fn user_agent(contact: Option<&str>) -> String {
    let contact = contact.map_or(String::new(), |c| format!("; contact: {c}"));
    format!(
        "outgate-probe/{} (checks a server its network's clients used; one probe per 20 h{contact})",
        env!("CARGO_PKG_VERSION")
    )
}

/// Runs the probe, writing what it does to `out`. Errors: a log or the state file unreadable, a
/// file not writable.
pub fn run(cfg: &ProbeConfig, out: &mut dyn Write) -> Result<(), String> {
    run_with(cfg, out, &system_resolve)
}

fn run_with(
    cfg: &ProbeConfig,
    out: &mut dyn Write,
    resolve: &dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
) -> Result<(), String> {
    let mut say =
        |line: String| writeln!(out, "{line}").map_err(|e| format!("cannot write to stdout: {e}"));
    let now = cfg.now.unwrap_or_else(now_secs);
    // Held until the state is written: a second probe at the same time would probe the same servers
    // again (past the one probe per 20 h) and write over what this one writes.
    let _lock = if cfg.dry_run {
        None
    } else {
        Some(lock(&cfg.state)?)
    };
    let mut state = read_state(&cfg.state)?;
    let suspects = http_suspects(&cfg.logs).map_err(|e| e.to_string())?;
    let would = if cfg.dry_run { "would " } else { "" };
    say(format!(
        "outgate probe at {now}: {} suspect HTTP host(s) in {} log(s){}",
        suspects.len(),
        cfg.logs.len(),
        if cfg.dry_run {
            "; dry run: nothing is sent, nothing written"
        } else {
            ""
        }
    ))?;
    for key in state.expire(now) {
        say(format!("{would}drop {key}: no new evidence for 30 days"))?;
    }

    // One target per server, whatever spellings of its host the logs used.
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    for s in &suspects {
        match target(s) {
            Ok(t) => match targets.get_mut(&t.key) {
                Some(have) => {
                    have.why.extend(t.why);
                    have.cites.extend(t.cites);
                }
                None => {
                    targets.insert(t.key.clone(), t);
                }
            },
            Err(why) => say(format!("skip {}: {why}", s.host))?,
        }
    }
    // A suspect gets its second round even when these logs no longer name it.
    for (key, server) in &state.servers {
        if server.status == Status::Suspect
            && !targets.contains_key(key)
            && let Ok(t) = target(&second_round(key, server))
        {
            targets.insert(t.key.clone(), t);
        }
    }

    let ua = user_agent(cfg.contact.as_deref());
    let mut probed = 0usize;
    for t in targets.values() {
        if let Err(not_due) = state.due(&t.key, now) {
            say(format!("skip {}: {not_due}", t.key))?;
            continue;
        }
        if probed >= cfg.max_servers {
            say(format!(
                "skip {}: {} servers probed this run (--max-servers); next run",
                t.key, cfg.max_servers
            ))?;
            continue;
        }
        let addr = match choose(t, &cfg.allow, resolve) {
            Ok(a) => a,
            Err(why) => {
                say(format!("skip {}: {why}", t.key))?;
                continue;
            }
        };
        let url = url_to_request(&t.url);
        let plan = match url {
            Some(u) => format!("GET {u}, then GET /"),
            None => "GET /".to_string(),
        };
        if cfg.dry_run {
            say(format!(
                "would probe {} at {addr}: {plan} ({})",
                t.key,
                t.why.join("; ")
            ))?;
            probed += 1;
            continue;
        }
        if probed > 0 && !cfg.interval.is_zero() {
            std::thread::sleep(cfg.interval);
        }
        probed += 1;
        let mut requests = Vec::new();
        let mut ask = |target: &str| {
            let fetched = fetch::get(
                addr,
                &fetch::request_text(&t.header, target, &ua),
                cfg.limits,
            );
            let a = classify(&fetched);
            requests.push(Request {
                request: format!("GET {target}"),
                answer: a.class.name().to_string(),
                evidence: a.evidence.clone(),
            });
            a
        };
        if let Some(u) = url {
            ask(u);
        }
        let root = ask("/");
        let verdict = answer::verdict(&root);
        let text: Vec<String> = requests
            .iter()
            .map(|r| format!("{}: {} ({})", r.request, r.answer, r.evidence))
            .collect();
        let status = state.record(
            &t.key,
            &t.host,
            t.port,
            Probe {
                at: now,
                address: addr.to_string(),
                requests,
                verdict,
                why: t.why.clone(),
                cites: t.cites.clone(),
            },
        );
        let next = match status {
            Status::Cleared => format!(", until {}", now.plus(state::CLEARED_FOR)),
            Status::Suspect => format!(", probed again after {}", now.plus(MIN_GAP)),
            _ => String::new(),
        };
        say(format!(
            "probed {} at {addr}: {}; {} -> {}{next}",
            t.key,
            text.join("; "),
            verdict.name(),
            status.name(),
        ))?;
    }

    let confederates = state.confederates();
    say(format!(
        "confederates: {}",
        if confederates.is_empty() {
            "none".to_string()
        } else {
            confederates.join(" ")
        }
    ))?;
    if cfg.dry_run {
        return Ok(());
    }
    write_atomic(&cfg.state, &state.text())?;
    if let Some(path) = &cfg.confederates {
        write_atomic(path, &confederates_text(&state, now))?;
        say(format!(
            "wrote {} ({} host(s)); reload the daemon to apply it",
            path.display(),
            confederates.len()
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
