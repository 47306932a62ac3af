//! One queue's worker: receive a batch, decide each packet, give every packet exactly one verdict.
//!
//! A decided flow's packet gets NF_REPEAT with outgate's mark bits set to the verdict; the ruleset saves
//! them into the conntrack mark and acts on them, so the flow's later packets stay in the kernel. A
//! packet of a flow still waiting for its first payload gets NF_REPEAT with the pending value, which the
//! ruleset passes on to the admin's later rules without saving it, so the next packet comes up too. A
//! malformed packet or orphan fragment must not decide the conntrack entry it belongs to: pending when
//! `option malformed` accepts it, else a plain NF_DROP.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use crossbeam_channel::TrySendError;

use super::Live;
use super::logger::{LogMsg, Sink};
use super::metrics::QueueCounters;
use super::queue::{Queue, QueueError, QueuedPacket, Verdict as NfVerdict, VerdictMsg};
use super::reload::InForce;
use crate::flow::{FlowRecord, FlowTable, Message};
use crate::log::{DnsLine, FlowLine, HttpLine, IcmpLine, LogLine, TlsLine, rfc3339};
use crate::rules::Marks;
use crate::{Action, Decision, Reason, Timestamp, Verdict};

/// The kernel verdict and mark for a decision whose packets get `applied` (see [`Live::applied`]);
/// `per_message`: the decision is one message's, not its flow's (see `policy::terms`).
fn kernel_verdict(
    d: Decision,
    applied: Action,
    old_mark: u32,
    marks: Marks,
    per_message: bool,
) -> (NfVerdict, Option<u32>) {
    // Outgate's bits (verdict and class) are written whole; other software's are kept.
    let with = |bits: u32| Some((old_mark & !marks.full_mask()) | bits);
    match (d.reason, applied.verdict) {
        // Passed but undecided (still waiting for the first payload; or malformed under `option
        // malformed ACCEPT`, which must not decide its connection): REPEAT with the pending value, which
        // the ruleset sends on to the admin's later rules without saving it. A plain ACCEPT would end
        // the hook's table, past those rules.
        (Reason::Inspecting, _)
        | (Reason::Malformed(_) | Reason::OrphanFragment, Verdict::Accept) => {
            (NfVerdict::Repeat, with(marks.pending()))
        }
        (Reason::Malformed(_) | Reason::OrphanFragment, _) => (NfVerdict::Drop, None),
        // One message's decision (policy::terms): the flow's next message must come up too, so
        // nothing is saved: passed as pending, or dropped here (REJECT too: it is this message's).
        _ if per_message => match applied.verdict.passes() {
            true => (NfVerdict::Repeat, with(marks.pending())),
            false => (NfVerdict::Drop, None),
        },
        (_, _) => (NfVerdict::Repeat, with(marks.action(applied))),
    }
}

/// One packet's answer: its id, the kernel verdict, and the mark to set.
type Answer = (u32, NfVerdict, Option<u32>);

/// A fault a test build can inject (`OUTGATE_TEST_FAULT=panic:N` or `hang:N`): the worker of queue N
/// panics, or stops answering, at its first packet, to show what a dead or stuck worker leads to.
/// Release builds never read it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Panic,
    Hang,
}

fn injected_fault(queue: u16) -> Fault {
    if !cfg!(debug_assertions) {
        return Fault::None;
    }
    let wanted = std::env::var("OUTGATE_TEST_FAULT").unwrap_or_default();
    match wanted.split_once(':') {
        Some(("panic", q)) if q == queue.to_string() => Fault::Panic,
        Some(("hang", q)) if q == queue.to_string() => Fault::Hang,
        _ => Fault::None,
    }
}

/// Runs until `stop` is set, then drains what the socket holds and returns. A socket that fails for
/// good (closed under the daemon, or any error but ENOBUFS) is an error: without it the queue is gone,
/// so the daemon must end and be restarted rather than run on filtering nothing.
pub(super) fn run(queue: &mut Queue, index: usize, live: &Live) -> Result<(), String> {
    queue.set_nonblocking(true);
    let fault = injected_fault(live.metrics.queues[index].queue);
    let mut in_force = live.policy.load_full();
    let mut table = in_force.engine.new_flow_table();
    table.keep_created(true);
    table.keep_messages(live.sinks[Sink::Dns as usize] || live.sinks[Sink::Icmp as usize]);
    table.offloaded(true);
    // Held packets wait in the kernel's queue, which every new flow shares: at most half of it.
    table.set_max_held((live.queue_maxlen / 2) as usize);
    // Under --audit nothing is enforced: payload packets pass while their flow is read.
    table.set_hold(!live.audit);
    let mut packets: Vec<QueuedPacket> = Vec::with_capacity(64);
    let mut answers: Vec<Answer> = Vec::with_capacity(64);
    // The marks of packets held back, for their verdict (a verdict's mark replaces the packet's).
    let mut held_marks: HashMap<u64, u32> = HashMap::new();
    let counters = &live.metrics.queues[index];
    let now = || Timestamp::from_nanos(live.started.elapsed().as_nanos() as u64);
    loop {
        let stopping = live.stop.load(Relaxed);
        answers.clear();
        // The policy in force, for this round; a reload is taken up here, between batches.
        if live.policy.load().generation != in_force.generation {
            in_force = live.policy.load_full();
            table.policy_changed(in_force.engine.policy().options().flows);
        }
        live.beat(index, in_force.generation);
        let engine = &in_force.engine;
        if !stopping {
            // Wake up now and then to notice a stop request or a reload, and to end waits that ran out.
            match queue.poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Err(e) => return Err(format!("its socket failed: {e}")),
                Ok(false) => {
                    table.tick(now());
                    release(&mut table, &mut held_marks, &mut answers, index, live);
                    answer(queue, &answers, &table, counters);
                    log_created(&mut table, index, live, &in_force);
                    continue;
                }
            }
        }
        packets.clear();
        match queue.recv_batch(&mut packets) {
            Err(QueueError::Overrun) => {
                counters.enobufs.fetch_add(1, Relaxed);
                continue;
            }
            Ok(0) | Err(_) if stopping => {
                // Held packets get their flows' `inspect-limit` before the queue is let go.
                table.finish_all();
                release(&mut table, &mut held_marks, &mut answers, index, live);
                answer(queue, &answers, &table, counters);
                log_created(&mut table, index, live, &in_force);
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => return Err(format!("its socket failed: {e}")),
        }
        if !packets.is_empty() {
            match fault {
                Fault::None => {}
                Fault::Panic => panic!("fault injected by OUTGATE_TEST_FAULT"),
                Fault::Hang => loop {
                    std::thread::sleep(Duration::from_secs(1));
                },
            }
        }
        for p in &packets {
            let id = u64::from(p.id);
            let decision = engine.decide(&mut table, &p.payload, now(), id);
            let per_message = table.last_per_message();
            // Packets held back for their flow's first payload get its decision, before this one.
            release(&mut table, &mut held_marks, &mut answers, index, live);
            if decision.reason == Reason::Held {
                held_marks.insert(id, p.mark);
                continue;
            }
            live.metrics.count_packet(index, decision);
            let applied = live.applied(decision);
            let (v, mark) = kernel_verdict(decision, applied, p.mark, live.marks, per_message);
            answers.push((p.id, v, mark));
        }
        answer(queue, &answers, &table, counters);
        log_created(&mut table, index, live, &in_force);
    }
}

/// Answers for the held packets whose flows were decided.
fn release(
    table: &mut FlowTable,
    held_marks: &mut HashMap<u64, u32>,
    answers: &mut Vec<Answer>,
    index: usize,
    live: &Live,
) {
    for (id, d) in table.drain_released() {
        live.metrics.count_packet(index, d);
        let old = held_marks.remove(&id).unwrap_or(0);
        let (v, mark) = kernel_verdict(d, live.applied(d), old, live.marks, false);
        answers.push((id as u32, v, mark));
    }
}

/// Sends the answers. A batch verdict covers every queued id up to its own, so none is used while
/// packets are held back.
fn answer(queue: &mut Queue, answers: &[Answer], table: &FlowTable, counters: &QueueCounters) {
    counters.held.store(table.held() as u64, Relaxed);
    counters
        .inspections_evicted
        .store(table.stats().inspections_evicted, Relaxed);
    counters.flows_evicted.store(table.stats().evicted, Relaxed);
    if !answers.is_empty() && send_verdicts(queue, answers, table.held() == 0).is_err() {
        counters.verdict_errors.fetch_add(1, Relaxed);
    }
}

/// Counts, logs and remembers the flows decided since the last call. What a payload showed is kept for a
/// reload to decide the flow again on the same grounds; a new connection decided without one clears what
/// an earlier connection on the same 4-tuple showed.
fn log_created(table: &mut FlowTable, index: usize, live: &Live, in_force: &InForce) {
    log_messages(table, live, in_force);
    let needs_payload = in_force.engine.policy().needs_payload();
    for rec in table.drain_created() {
        let d = rec.flow.decision;
        let enforced = live.applied(d) == d.action();
        live.metrics
            .count_flow(index, in_force, d, rec.flow.midstream(), enforced);
        if let Some(log) = &live.log {
            log_flow(live, in_force, log, &rec);
        }
        if needs_payload {
            live.remember(index, rec);
        }
    }
}

/// Sends a decided flow's lines to the logger: never waits, counts what the channel cannot take.
fn log_flow(
    live: &Live,
    in_force: &InForce,
    log: &crossbeam_channel::Sender<LogMsg>,
    rec: &FlowRecord,
) {
    let policy = in_force.engine.policy();
    let wall = |t: Timestamp| live.wall(t);
    let flow_line = || {
        let mut line = FlowLine::new(policy, rec).audited(live.audit);
        line.first_ts = wall(rec.flow.first_ts);
        line.ts = Some(rfc3339(Timestamp::from_nanos(super::unix_nanos(
            SystemTime::now(),
        ))));
        serde_json::to_string(&line)
    };
    let [flows, http, tls, dns, _] = live.sinks;
    let lines = [
        flows.then(|| (Sink::Flows, flow_line())),
        dns.then(|| DnsLine::tcp_flow(policy, rec, wall))
            .flatten()
            .map(|l| (Sink::Dns, serde_json::to_string(&l.audited(live.audit)))),
        http.then(|| HttpLine::new(policy, rec, wall))
            .flatten()
            .map(|l| (Sink::Http, serde_json::to_string(&l.audited(live.audit)))),
        tls.then(|| TlsLine::new(policy, rec, wall))
            .flatten()
            .map(|l| (Sink::Tls, serde_json::to_string(&l.audited(live.audit)))),
    ];
    for (sink, text) in lines.into_iter().flatten() {
        send_line(live, log, sink, text);
    }
}

/// Hands one line to the logger: never waits, counts what the channel cannot take.
fn send_line(
    live: &Live,
    log: &crossbeam_channel::Sender<LogMsg>,
    sink: Sink,
    text: serde_json::Result<String>,
) {
    let Ok(text) = text else { return };
    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
        log.try_send(LogMsg::Line(sink, text))
    {
        live.metrics.log_dropped.fetch_add(1, Relaxed);
    }
}

/// Logs the DNS queries and echo requests decided one by one since the last call.
fn log_messages(table: &mut FlowTable, live: &Live, in_force: &InForce) {
    let Some(log) = &live.log else {
        table.drain_messages();
        return;
    };
    let policy = in_force.engine.policy();
    let wall = |t: Timestamp| live.wall(t);
    let [_, _, _, dns, icmp] = live.sinks;
    for rec in table.drain_messages() {
        let line = match &rec.message {
            Message::Dns(_) if dns => DnsLine::message(policy, &rec, wall)
                .map(|l| (Sink::Dns, serde_json::to_string(&l.audited(live.audit)))),
            Message::Echo(_) if icmp => IcmpLine::message(policy, &rec, wall)
                .map(|l| (Sink::Icmp, serde_json::to_string(&l.audited(live.audit)))),
            _ => None,
        };
        if let Some((sink, text)) = line {
            send_line(live, log, sink, text);
        }
    }
}

/// Sends the verdicts in order, in one system call: with `batch`, a run of equal verdicts in rising id
/// order as one batch message (it covers every packet up to its last id, all of which are in the run or
/// already answered), else one message a packet.
fn send_verdicts(queue: &mut Queue, verdicts: &[Answer], batch: bool) -> Result<(), QueueError> {
    let mut msgs = Vec::with_capacity(verdicts.len());
    let mut start = 0;
    while start < verdicts.len() {
        let (_, v, mark) = verdicts[start];
        let mut end = start + 1;
        while batch
            && end < verdicts.len()
            && verdicts[end].1 == v
            && verdicts[end].2 == mark
            && verdicts[end].0 > verdicts[end - 1].0
        {
            end += 1;
        }
        msgs.push(VerdictMsg {
            id: verdicts[end - 1].0,
            verdict: v,
            mark,
            batch: end - start > 1,
        });
        start = end;
    }
    queue.send_verdicts(&msgs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::Malformed;

    #[test]
    fn verdicts_carry_marks_and_undecided_packets_the_pending_value() {
        let rule = |v| Decision::new(v, Reason::Rule(0));
        let kv = |d: Decision, old, m| kernel_verdict(d, d.enforced_action(), old, m, false);
        let m = Marks::DEFAULT;
        assert_eq!(
            kv(rule(Verdict::Accept), 0, m),
            (NfVerdict::Repeat, Some(0x100))
        );
        // Outgate's bits, verdict (0xf00) and class (0xf000), are written whole; the rest is kept.
        assert_eq!(
            kv(rule(Verdict::Reject), 0xf00f, m),
            (NfVerdict::Repeat, Some(0x000f | 0x300))
        );
        let high = Marks::new(0xf000).expect("valid mask");
        assert_eq!(
            kv(rule(Verdict::Drop), 0xffff, high),
            (NfVerdict::Repeat, Some(0x2fff))
        );
        let bad = |v| Decision::new(v, Reason::Malformed(Malformed::BadIpHeader));
        assert_eq!(kv(bad(Verdict::Drop), 0, m), (NfVerdict::Drop, None));
        // Passed but undecided: REPEAT with the pending value, so the admin's later rules still see them
        // (a plain ACCEPT would end the hook's table), other bits of the mark kept.
        let pending = Some(0x000f | 0x400);
        assert_eq!(
            kv(bad(Verdict::Accept), 0xf00f, m),
            (NfVerdict::Repeat, pending)
        );
        let inspecting = Decision::new(Verdict::Accept, Reason::Inspecting);
        assert_eq!(kv(inspecting, 0xf00f, m), (NfVerdict::Repeat, pending));
        assert_eq!(kv(inspecting, 0, high), (NfVerdict::Repeat, Some(0x4000)));
        // What the packets get decides: an audited DROP line whose flows the rest of the policy accepts,
        // and under --audit a malformed packet the policy drops, are passed.
        let audited = Decision {
            applied: Some(Action::ACCEPT),
            ..rule(Verdict::Drop)
        };
        assert_eq!(kv(audited, 0, m), (NfVerdict::Repeat, Some(0x100)));
        assert_eq!(
            kernel_verdict(bad(Verdict::Drop), Action::ACCEPT, 0, m, false),
            (NfVerdict::Repeat, Some(0x400))
        );
        let shaped = Decision::new(Verdict::Shape, Reason::Rule(0));
        assert_eq!(
            kv(shaped, 0, m),
            (NfVerdict::Repeat, Some(0x1100)),
            "accepted, into its class (class 0 is value 1)"
        );
        let bulk = Decision { class: 1, ..shaped };
        assert_eq!(kv(bulk, 0xf00f, m), (NfVerdict::Repeat, Some(0x210f)));
        // One message's decision is never saved: passed as pending, or dropped here.
        let message = |v| kernel_verdict(rule(v), Action::of(v), 0xf00f, m, true);
        assert_eq!(message(Verdict::Accept), (NfVerdict::Repeat, pending));
        assert_eq!(message(Verdict::Reject), (NfVerdict::Drop, None));
    }
}
