use super::*;
use crate::{Engine, Policy};
use std::time::UNIX_EPOCH;

/// A policy with rules, a zone pair's default and two classes; its file name needs escaping.
const POLICY: &str = "\
option shape-rate 2mbit
class bulk 500kbit
policy loc net DROP
ACCEPT loc net tcp 443
SHAPE loc net tcp 8001
SHAPE(bulk) loc net tcp 8002 app=http
";

/// Fixed counters on two queues (numbers no test binds, so the kernel's columns stay empty), and
/// a reload that failed (`failed`) or none yet.
fn fixture(failed: bool) -> (Metrics, InForce) {
    let metrics = Metrics::new([64_999, 65_001].into_iter(), Arc::default());
    for (i, c) in metrics.queues.iter().enumerate() {
        let n = 10 * (i as u64 + 1);
        c.packets.store(n + 1, Relaxed);
        for (j, v) in c.verdicts.iter().enumerate() {
            v.store(n + 2 + j as u64, Relaxed);
        }
        c.malformed.store(n + 6, Relaxed);
        c.flows_offloaded.store(n + 7, Relaxed);
        c.flows_midstream.store(n + 8, Relaxed);
        c.flows_not_enforced.store(n + 9, Relaxed);
        c.enobufs.store(n + 10, Relaxed);
        c.verdict_errors.store(n + 11, Relaxed);
        c.held.store(n + 12, Relaxed);
        c.inspections_evicted.store(n + 13, Relaxed);
        c.flows_evicted.store(n + 14, Relaxed);
    }
    metrics.log_dropped.store(41, Relaxed);
    metrics.reloads.store(42, Relaxed);
    metrics.reloads_refused.store(43, Relaxed);
    metrics.ruleset_repairs.store(44, Relaxed);
    metrics.flow_ends.store(45, Relaxed);
    metrics.flow_end_overruns.store(46, Relaxed);
    metrics.flow_ends_unreadable.store(47, Relaxed);
    metrics.flow_ends_dropped.store(48, Relaxed);
    if failed {
        metrics.record_reload(LastReload {
            at: Some(UNIX_EPOCH + Duration::new(1_764_546_100, 500_000_000)),
            error: Some("dir/a\"b\\c.rules:3:1: unknown word `x`\nand more".into()),
            held: Held {
                checked: 5,
                changed: 3,
                cut: 2,
                gone: 1,
                failed: 0,
            },
        });
    }
    let policy = Policy::compile("dir/a\"b\\c.rules", POLICY).expect("the test policy compiles");
    let mut in_force = InForce::new(Engine::new(policy), 7);
    in_force.loaded = UNIX_EPOCH + Duration::new(1_764_546_000, 123_456_789);
    for (i, c) in in_force.rule_flows.iter().enumerate() {
        c.store(100 + i as u64, Relaxed);
    }
    for (i, c) in in_force.policy_flows.iter().enumerate() {
        c.store(200 + i as u64, Relaxed);
    }
    in_force.no_policy_flows.store(300, Relaxed);
    for (i, c) in in_force.shaped_flows.iter().enumerate() {
        c.store(400 + i as u64, Relaxed);
    }
    (metrics, in_force)
}

/// The exposition is the one the hand-written text gave for the same counters (the files beside this
/// one, written by it before `prometheus-client` took over; the flow-end counters, added since, at
/// their end), line for line. One difference the crate brings: a fractional value may end in another
/// last digit (`dtoa`'s shortest form, not Rust's), so values are compared as the numbers they read
/// back as. The policy's hash in the files is the one of
/// its version: a hash of the parsed policy's form, which changes when a term is added, so the files
/// say `HASH` and the policy's own hash takes its place.
#[test]
fn exposition_is_what_the_hand_written_text_was() {
    let same = |new: &str, old: &str| {
        let hash = Policy::compile("x", POLICY).expect("the test policy compiles");
        let old = old.replace("sha256:HASH", hash.hash());
        let old = old.as_str();
        assert_eq!(new.lines().count(), old.lines().count(), "{new}");
        for (n, o) in new.lines().zip(old.lines()) {
            if o.starts_with('#') {
                assert_eq!(n, o);
                continue;
            }
            let (n_series, n_value) = n.rsplit_once(' ').unwrap_or((n, ""));
            let (o_series, o_value) = o.rsplit_once(' ').unwrap_or((o, ""));
            assert_eq!(n_series, o_series);
            assert_eq!(
                n_value.parse::<f64>().ok(),
                o_value.parse::<f64>().ok(),
                "{n} / {o}"
            );
        }
    };
    let (m, f) = fixture(true);
    same(
        &m.render(&f, &[true, false], false),
        include_str!("metrics-failed-reload.prom"),
    );
    let (m, f) = fixture(false);
    same(
        &m.render(&f, &[false, true], true),
        include_str!("metrics-fresh-audit.prom"),
    );
}

/// A Prometheus text parser reads every sample, with the type its family declares.
#[test]
fn exposition_parses_as_prometheus_text() {
    let (m, f) = fixture(true);
    let text = m.render(&f, &[true, false], false);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    let sample_lines = text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(scrape.samples.len(), sample_lines);
    let value = |name: &str, label: Option<(&str, &str)>| {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
        s.value.clone()
    };
    use prometheus_parse::Value::{Counter, Gauge};
    assert_eq!(
        value("outgate_packets_total", Some(("queue", "65001"))),
        Counter(21.0)
    );
    assert_eq!(
        value("outgate_verdicts_total", Some(("verdict", "shape"))),
        Counter(15.0)
    );
    assert_eq!(
        value("outgate_held_packets", Some(("queue", "64999"))),
        Gauge(22.0)
    );
    assert_eq!(
        value("outgate_worker_up", Some(("queue", "65001"))),
        Gauge(0.0)
    );
    assert_eq!(
        value("outgate_policy_loaded_timestamp_seconds", None),
        Gauge(1_764_546_000.123_456_7)
    );
    assert_eq!(value("outgate_reload_last_error_info", None), Gauge(1.0));
    assert_eq!(
        value("outgate_shaped_flows_total", Some(("class", "bulk"))),
        Counter(401.0)
    );
    assert_eq!(
        value("outgate_log_lines_dropped_total", None),
        Counter(41.0)
    );
    for s in &scrape.samples {
        let family = if text.contains(&format!("# TYPE {} counter\n", s.metric)) {
            "counter"
        } else {
            "gauge"
        };
        match (&s.value, family) {
            (Counter(_), "counter") | (Gauge(_), "gauge") => {}
            (v, t) => panic!("{}: {v:?} under TYPE {t}", s.metric),
        }
    }
}
