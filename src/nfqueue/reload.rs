//! The policy in force, swapped whole on reload, and the flows already in the kernel held to it.
//!
//! Promises:
//! - A policy is read and compiled off the packet path (the reload thread); one that fails to compile
//!   never replaces the one in force: its errors (`FILE:LINE:COL: message`) go to stderr and to the
//!   metrics, and the old policy keeps working.
//! - The swap is atomic (`arc-swap`): every packet is decided by one policy, the old or the new. Each
//!   worker moves to the new one at its next batch, and announces that it did.
//! - After a reload, and at the start, the flows the kernel already answers from their conntrack mark
//!   are decided again under the policy in force ([`hold_flows`]): the conntrack table is read, each
//!   entry whose mark holds a verdict is decided from its original tuple, with the first payload the
//!   daemon read when it first decided it (see [`Memory`]), and where the verdict changes, the mark is
//!   rewritten over ctnetlink. A flow both policies allow is not touched (no packet of it is lost); a
//!   flow the new policy drops or rejects is cut at its next packet.
//! - A flow whose decision needs its first payload, which the daemon no longer knows (it was decided
//!   before this daemon started, or forgotten to keep memory bounded), gets `option midstream` — unless
//!   the previous daemon left a state file saying that the very same policy decided it ([`State`]).
//! - An FTP data connection (conntrack entry with a master) follows its control connection.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::conntrack::{Conntrack, ConntrackError, Entry, Tuple};
use super::logger::{LogMsg, Sink};
use super::metrics::LastReload;
use super::{Live, RunConfig};
use crate::flow::FlowKey;
use crate::inspect::Payload;
use crate::packet::{Packet, Transport};
use crate::policy::until::{self, Expiry};
use crate::rules::Marks;
use crate::{Action, Decision, Engine, Policy, Reason, Timestamp, Verdict};

/// A compiled policy in force, with what is counted per line of it; replaced whole on reload.
pub(crate) struct InForce {
    pub engine: Engine,
    /// 1 for the policy the daemon started with, then one more per successful reload.
    pub generation: u64,
    pub loaded: SystemTime,
    /// New flows per rule (index = rule id), per policy line, and for the no-policy fallback.
    pub rule_flows: Vec<AtomicU64>,
    pub policy_flows: Vec<AtomicU64>,
    pub no_policy_flows: AtomicU64,
    /// New flows the policy shapes, by class (index = the policy's class).
    pub shaped_flows: Vec<AtomicU64>,
}

impl InForce {
    pub fn new(engine: Engine, generation: u64) -> InForce {
        let counters = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        let policy = engine.policy();
        InForce {
            rule_flows: counters(policy.rules().len()),
            policy_flows: counters(policy.pair_policies().len()),
            no_policy_flows: AtomicU64::new(0),
            shaped_flows: counters(policy.classes().len()),
            engine,
            generation,
            loaded: SystemTime::now(),
        }
    }

    /// Counts a newly decided flow under the line that decided it.
    pub(crate) fn count_flow(&self, d: Decision) {
        let counter = match d.reason {
            Reason::Rule(i) => self.rule_flows.get(i as usize),
            Reason::Policy(i) => self.policy_flows.get(i as usize),
            Reason::NoPolicy => Some(&self.no_policy_flows),
            _ => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Relaxed);
        }
        if d.verdict == Verdict::Shape
            && let Some(c) = self.shaped_flows.get(usize::from(d.class))
        {
            c.fetch_add(1, Relaxed);
        }
    }
}

/// What one worker read of the flows it decided by their first payload: kept so that a reload can
/// decide them again on the same grounds. Bounded; at the bound the older half is forgotten (those
/// flows fall to `option midstream` at the next reload, if a payload rule still concerns them).
pub struct Memory {
    flows: HashMap<FlowKey, (Timestamp, Payload)>,
    max: usize,
}

impl Memory {
    pub fn new(max: usize) -> Memory {
        Memory {
            flows: HashMap::new(),
            max: max.max(2),
        }
    }

    pub(crate) fn remember(&mut self, key: FlowKey, at: Timestamp, payload: Payload) {
        if self.flows.len() >= self.max && !self.flows.contains_key(&key) {
            let mut ages: Vec<Timestamp> = self.flows.values().map(|(t, _)| *t).collect();
            let half = ages.len() / 2;
            let (_, cut, _) = ages.select_nth_unstable(half);
            let cut = *cut;
            self.flows.retain(|_, (t, _)| *t > cut);
        }
        self.flows.insert(key, (at, payload));
    }

    /// A new connection on `key` was decided without its payload: what was read of an earlier one on
    /// the same 4-tuple no longer applies.
    pub(crate) fn forget(&mut self, key: &FlowKey) {
        self.flows.remove(key);
    }

    pub fn get(&self, key: &FlowKey) -> Option<&Payload> {
        self.flows.get(key).map(|(_, p)| p)
    }

    pub fn entries(&self) -> impl Iterator<Item = (&FlowKey, &Payload)> {
        self.flows.iter().map(|(k, (_, p))| (k, p))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// A packet of a conntrack tuple's direction (headers only), to ask the policy about it.
pub(crate) fn packet_of(t: &Tuple) -> Packet<'static> {
    let transport = match (t.proto, t.icmp) {
        (6, _) => Transport::Tcp {
            sport: t.sport,
            dport: t.dport,
            seq: None,
            flags: None,
        },
        (17, _) => Transport::Udp {
            sport: t.sport,
            dport: t.dport,
        },
        (1 | 58, Some(icmp)) => Transport::Icmp {
            icmp_type: icmp.icmp_type,
            code: icmp.code,
            ident: Some(icmp.id),
        },
        _ => Transport::Other,
    };
    Packet::headers(t.src, t.dst, t.proto, transport)
}

/// What the kernel does with a decided flow: accept (in a traffic class, or none), drop or reject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KernelAction {
    verdict: Verdict,
    class: Option<u8>,
}

impl KernelAction {
    fn of(a: Action) -> KernelAction {
        KernelAction {
            verdict: a.verdict.in_kernel(),
            class: (a.verdict == Verdict::Shape).then_some(a.class),
        }
    }

    fn action(self) -> Action {
        match self.class {
            Some(class) => Action {
                verdict: Verdict::Shape,
                class,
            },
            None => Action {
                verdict: self.verdict,
                class: 0,
            },
        }
    }
}

/// What holding the kernel's flows to the policy did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Conntrack entries whose mark holds a verdict of outgate's.
    pub checked: u64,
    /// Entries whose verdict changed (and whose mark was rewritten).
    pub changed: u64,
    /// Of those, entries the policy now drops or rejects: cut at their next packet.
    pub cut: u64,
    /// Entries that ended between reading the table and rewriting their mark.
    pub gone: u64,
    /// Rewrites the kernel refused.
    pub failed: u64,
}

/// Decides every flow the kernel answers from its conntrack mark again, under `engine`, and rewrites
/// the marks whose verdict changed. `payload_of` finds the first payload the daemon read of a flow;
/// `applied` says what a decision's packets get (its enforced action, or under `--audit` accepted).
/// `trust_unknown`: a flow a payload rule concerns whose payload is not known keeps its verdict (the same
/// policy decided it, see [`State`]) instead of getting `option midstream`.
pub fn hold_flows(
    engine: &Engine,
    marks: Marks,
    payload_of: impl Fn(&FlowKey) -> Option<Payload>,
    applied: impl Fn(Decision) -> Action,
    trust_unknown: bool,
    at: Timestamp,
) -> Result<Held, ConntrackError> {
    let mut ct = Conntrack::open()?;
    let dump = ct.dump()?;
    let mut held = Held::default();
    let mut updates: Vec<(&Entry, u32)> = Vec::new();
    for entry in &dump.entries {
        let Some(verdict) = marks.decode(entry.mark) else {
            continue;
        };
        let old = KernelAction {
            verdict,
            class: marks
                .decode_class(entry.mark)
                .filter(|_| verdict == Verdict::Accept),
        };
        held.checked += 1;
        // An expected connection (FTP data) stands or falls with the connection that announced it.
        let tuple = entry.master.as_ref().unwrap_or(&entry.orig);
        let p = packet_of(tuple);
        let payload = FlowKey::of(&p).and_then(|(key, _)| payload_of(&key));
        let decision = engine.redecide(&p, payload.as_ref(), at);
        let new = match decision.reason {
            Reason::Midstream if trust_unknown => old,
            _ => KernelAction::of(applied(decision)),
        };
        if new != old {
            held.changed += 1;
            if new.verdict != Verdict::Accept {
                held.cut += 1;
            }
            updates.push((entry, marks.action(new.action())));
        }
    }
    if !updates.is_empty() {
        let done = ct.set_marks(&updates, marks.full_mask())?;
        held.gone = done.gone;
        held.failed = done.failed;
    }
    Ok(held)
}

/// What a daemon leaves for the next one (`run --state FILE`): the policy that decided the flows in the
/// kernel, the outgate version that read it, and (written at a clean stop) what the first payloads of
/// the flows a payload rule decided showed. At the next start, a flow whose payload is there is decided
/// again on it; one whose payload is not keeps its verdict only when the policy and version are the same
/// (else `option midstream`). A daemon killed with -9 leaves the state of its last start or reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub policy_hash: String,
    pub version: String,
    pub flows: Vec<(FlowKey, Payload)>,
}

impl State {
    pub(crate) fn current(engine: &Engine) -> State {
        State {
            policy_hash: engine.policy().hash().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            flows: Vec::new(),
        }
    }

    /// Whether the flows in the kernel were decided by the very same policy, read by the same outgate.
    fn same_policy(&self, other: &State) -> bool {
        self.policy_hash == other.policy_hash && self.version == other.version
    }

    /// The state a file holds, with at most `max` flows; `None` when it is missing or its first line
    /// does not read (then nothing is trusted). Flow lines that do not read are skipped.
    pub fn read(path: &Path, max: usize) -> Option<State> {
        let text = std::fs::read_to_string(path).ok()?;
        let mut lines = text.lines();
        let head: serde_json::Value = serde_json::from_str(lines.next()?).ok()?;
        let flows = lines
            .filter_map(|l| serde_json::from_str::<(FlowKey, Payload)>(l).ok())
            .take(max)
            .collect();
        Some(State {
            policy_hash: head.get("policy_hash")?.as_str()?.to_string(),
            version: head.get("version")?.as_str()?.to_string(),
            flows,
        })
    }

    /// Writes the file whole or not at all (a temporary file renamed over it): a JSON line with the
    /// policy hash and version, then one line a flow.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = PathBuf::from(format!("{}.new", path.display()));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let head = serde_json::json!({"policy_hash": self.policy_hash, "version": self.version});
        writeln!(out, "{head}")?;
        for flow in &self.flows {
            writeln!(out, "{}", serde_json::to_string(flow)?)?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// Holds the kernel's flows to the policy the daemon starts with: a flow a payload rule concerns keeps its
/// verdict only when the state file says the same policy (and outgate version) decided it.
pub(super) fn hold_at_start(live: &Live, state: Option<&Path>) {
    let in_force = live.policy.load();
    let current = State::current(&in_force.engine);
    let max = in_force.engine.policy().options().flows.max_flows;
    let saved = state.and_then(|p| State::read(p, max));
    let trusted = saved.as_ref().is_some_and(|s| s.same_policy(&current));
    if let Some(saved) = saved.filter(|s| s.version == current.version) {
        let mut restored = live.restored.lock().unwrap_or_else(|e| e.into_inner());
        for (key, payload) in saved.flows {
            restored.remember(key, Timestamp::default(), payload);
        }
        live.restored_any.store(!restored.is_empty(), Relaxed);
    }
    let outcome = hold_and_report(live, &in_force.engine, trusted, "start");
    if let (Some(path), None) = (state, &outcome.error) {
        save_state(&current, path);
    }
    live.metrics.record_reload(outcome);
}

/// At a clean stop: the policy in force and every payload remembered, for the next daemon.
pub(super) fn save_at_stop(live: &Live, path: &Path) {
    let mut state = State::current(&live.policy.load().engine);
    for memory in live.memories.iter().chain(std::iter::once(&live.restored)) {
        let memory = memory.lock().unwrap_or_else(|e| e.into_inner());
        state
            .flows
            .extend(memory.entries().map(|(k, p)| (*k, p.clone())));
    }
    save_state(&state, path);
}

/// What the reload thread is asked to do.
pub enum Request {
    /// SIGHUP: re-read `--policy`.
    Reload,
    /// `outgate try`: switch to the policy `text` (read from the file `name` by the client), and back
    /// to `--policy` unless confirmed within `timeout`.
    Try {
        name: String,
        text: String,
        timeout: Duration,
        reply: Sender<String>,
    },
    /// `outgate try --confirm`: keep the policy being tried.
    Confirm { reply: Sender<String> },
}

/// A policy being tried, and when it is given up.
struct Trial {
    name: String,
    hash: String,
    until: Instant,
}

/// The reload thread: every change of policy is made here, one at a time, until the daemon stops. A
/// policy being tried that is not confirmed in time is given up: `--policy` is read again.
pub(super) fn serve(live: &Live, requests: &Receiver<Request>, cfg: &RunConfig) {
    let mut trial: Option<Trial> = None;
    let mut expiry: Option<Expiry> = None;
    while !live.stop.load(Relaxed) {
        // A line of the policy in force expired (`until=`): the flows it passed are held to the
        // policy as it stands now, as a reload would, so that an exception ends when it says.
        let now = live.unix_now();
        if let Some(at) = expiry
            && now.as_nanos() / 1_000_000_000 >= at
        {
            eprintln!(
                "outgate: a line expired at {} (until=): holding the kernel's flows to the policy as it stands",
                until::show(at)
            );
            let in_force = live.policy.load();
            let outcome = hold_and_report(live, &in_force.engine, false, "expiry");
            live.metrics.record_reload(outcome);
        }
        expiry = live.policy.load().engine.policy().next_expiry(now);
        let wait = trial.as_ref().map_or(Duration::from_millis(200), |t| {
            t.until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200))
        });
        match requests.recv_timeout(wait) {
            Ok(Request::Reload) => {
                if let Some(t) = trial.take() {
                    eprintln!("outgate: try: a reload ends the trial of {}", t.name);
                }
                reload(live, cfg);
            }
            Ok(Request::Try {
                name,
                text,
                timeout,
                reply,
            }) => {
                let answer = match Policy::compile(&name, &text) {
                    Err(errors) => {
                        let list = crate::policy::error_list(&errors);
                        format!("error: {}", list.replace('\n', "; "))
                    }
                    Ok(policy) => {
                        let hash = policy.hash().to_string();
                        switch_to(live, cfg, policy, "try");
                        trial = Some(Trial {
                            name: name.clone(),
                            hash: hash.clone(),
                            until: Instant::now() + timeout,
                        });
                        format!(
                            "ok: trying {name} ({hash}); back to {} in {} s unless `outgate try --confirm`",
                            cfg.policy_path
                                .as_ref()
                                .map_or("the built-in policy".to_string(), |p| p
                                    .display()
                                    .to_string()),
                            timeout.as_secs()
                        )
                    }
                };
                let _ = reply.send(answer);
            }
            Ok(Request::Confirm { reply }) => {
                let answer = match trial.take() {
                    Some(t) => {
                        eprintln!("outgate: try: {} confirmed", t.name);
                        format!(
                            "confirmed\t{}\t{}\t{}",
                            t.hash,
                            t.name,
                            cfg.policy_path
                                .as_ref()
                                .map_or("-".to_string(), |p| p.display().to_string())
                        )
                    }
                    None => "error: no policy is being tried".to_string(),
                };
                let _ = reply.send(answer);
            }
            Err(RecvTimeoutError::Timeout) => {
                if trial.as_ref().is_some_and(|t| Instant::now() >= t.until)
                    && let Some(t) = trial.take()
                {
                    eprintln!(
                        "outgate: try: {} was not confirmed in time: back to the policy of --policy",
                        t.name
                    );
                    reload(live, cfg);
                }
            }
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Re-reads `--policy`; swaps it in if it compiles and differs; reopens the logs.
fn reload(live: &Live, cfg: &RunConfig) {
    let loaded = match &cfg.policy_path {
        Some(path) => Policy::load(path),
        None => Ok(Policy::builtin()),
    };
    match loaded {
        Err(e) => {
            let text = e.to_string();
            for line in text.lines() {
                eprintln!("outgate: reload refused, the policy in force stays: {line}");
            }
            live.metrics.reloads_refused.fetch_add(1, Relaxed);
            live.metrics.record_reload(LastReload {
                at: Some(SystemTime::now()),
                error: Some(text),
                held: Held::default(),
            });
        }
        Ok(policy) => {
            if policy.hash() == live.policy.load().engine.policy().hash() {
                eprintln!(
                    "outgate: reload: {} is unchanged ({})",
                    policy.file(),
                    policy.hash()
                );
            } else {
                switch_to(live, cfg, policy, "reload");
            }
            live.metrics.reloads.fetch_add(1, Relaxed);
        }
    }
    if let Some(log) = &live.log {
        let _ = log.send(LogMsg::Reopen);
    }
}

/// Swaps `policy` in, waits until every worker runs it, and holds the kernel's flows to it.
fn switch_to(live: &Live, cfg: &RunConfig, policy: Policy, when: &str) {
    // SHAPE sends flows to classes the ruleset's traffic control must have: say so when it does not
    // (they would pass at full speed), as at the start.
    if let Ok(Some(installed)) = crate::rules::installed()
        && let Some(warning) = installed.shaping_mismatch(policy.classes())
    {
        eprintln!("outgate: {when}: warning: {warning}");
    }
    let generation = live.policy.load().generation + 1;
    let messages = live.sinks[Sink::Dns as usize] || live.sinks[Sink::Icmp as usize];
    let engine = Engine::new(policy)
        .with_clock(live.unix_start())
        .with_messages(messages);
    live.policy
        .store(Arc::new(InForce::new(engine, generation)));
    // Flows decided under the old policy reach the kernel before the table is read.
    live.wait_for_generation(generation, Duration::from_secs(2));
    let in_force = live.policy.load();
    let outcome = hold_and_report(live, &in_force.engine, false, when);
    if let (Some(path), None) = (&cfg.state, &outcome.error) {
        save_state(&State::current(&in_force.engine), path);
    }
    live.metrics.record_reload(outcome);
}

/// Holds the kernel's flows to `engine`'s policy and says what that did, on stderr and as the outcome.
fn hold_and_report(live: &Live, engine: &Engine, trust_unknown: bool, when: &str) -> LastReload {
    let policy = engine.policy();
    let held = hold_flows(
        engine,
        live.marks,
        |key| live.recall(key),
        |d| live.applied(d),
        trust_unknown,
        live.unix_now(),
    );
    let mut outcome = LastReload {
        at: Some(SystemTime::now()),
        ..LastReload::default()
    };
    match held {
        Ok(h) => {
            eprintln!(
                "outgate: {when}: policy {} ({}) in force; flows in the kernel: {} checked, {} decided again, {} cut{}",
                policy.file(),
                policy.hash(),
                h.checked,
                h.changed,
                h.cut,
                if h.failed > 0 {
                    format!(", {} the kernel refused to re-mark", h.failed)
                } else {
                    String::new()
                }
            );
            outcome.held = h;
        }
        Err(e) => {
            let text = format!(
                "cannot read or re-mark the kernel's flows (conntrack): {e}; flows decided before keep their verdicts"
            );
            eprintln!("outgate: {when}: {text}");
            outcome.error = Some(text);
        }
    }
    outcome
}

fn save_state(state: &State, path: &Path) {
    if let Err(e) = state.write(path) {
        eprintln!(
            "outgate: {}: cannot write the state (a restart will hold payload-decided flows to option midstream): {e}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests;
