//! Beacons, long connections and the per-client suspicion score.
//!
//! The beacon score is RITA's (activecm/rita-legacy, `pkg/beacon/analyzer.go`), learnt from its
//! source and written anew: for the connections of one (client address, server address) pair,
//! timestamps in whole seconds and the bytes the client sent,
//!
//! - quartiles are the sorted values at index `round(q * (n - 1))` (round half up);
//! - **skew** is Bowley's, `(Q1 + Q3 - 2 Q2) / (Q3 - Q1)`, taken as 0 when `Q3 = Q1`, `Q2 = Q1` or
//!   `Q2 = Q3`; its score is `1 - |skew|`;
//! - **dispersion** is the median absolute deviation about the median (MADM, the median by the same
//!   index rule); its score is `1 - MADM / 30` for intervals (seconds) and `1 - MADM / 32` for sizes
//!   (bytes), not below 0;
//! - the **connection count score** is `count / (span / 10)`, at most 1, `span` being the seconds from
//!   the first to the last connection of the whole input (1 when the span is 0);
//! - the **time coverage** is the pair's own first-to-last seconds over that span (0 when it is 0);
//! - the **data size score** (smallness) is `1 - mode / 65535`, not below 0, `mode` being the most
//!   frequent size (the smallest of equally frequent ones);
//! - the timestamp score is the mean of interval skew, interval dispersion, connection count and
//!   coverage scores; the size score the mean of size skew, size dispersion and smallness; the beacon
//!   score the mean of all seven. Each is rounded up to 3 decimals, as RITA does (float noise
//!   below 1e-9 thousandths is not rounded up).
//!
//! RITA's versions differ in one part: one used the connection count score, a later one the time
//! coverage, each as the third timestamp part (mean of six). Both are kept here, so the timestamp
//! score has four parts and the beacon score seven. Pairs with fewer than [`BEACON_MIN`] connections
//! are not scored: 20, a little below RITA's default (its later versions score pairs of more than 23
//! connections), so that the shorter logs of a replay are scored too.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Serialize, Serializer};

use super::classify::{addr_key, split_endpoint};
use super::input::TimingIn;
use super::read::{Cite, Cites};
use super::text::{Row, cite_text, clean, grid, heading};
use super::{CITES, Client, FileLines};
use crate::calendar::parse_rfc3339;

#[cfg(test)]
#[path = "beacon_tests.rs"]
mod tests;
#[path = "beacon_text.rs"]
mod text;

pub(in crate::report) use text::table;

/// Connections a pair needs before it is scored (see the module docs).
pub(super) const BEACON_MIN: usize = 20;
/// Pairs listed in the beacons section.
pub(super) const BEACONS_SHOWN: usize = 20;
/// A beacon score from which the pair counts towards its client's suspicion.
pub(super) const BEACON_SUSPECT: u32 = 800;
/// A connection lasting this many seconds or more is long.
pub(super) const LONG_SECS: f64 = 3600.0;
/// Long connections listed.
pub(super) const LONG_SHOWN: usize = 20;
/// Suspicion weight of one long connection, and of one evidence item of the other sections, in
/// thousandths.
pub(super) const LONG_WEIGHT: u32 = 500;
pub(super) const ITEM_WEIGHT: u32 = 250;

/// A score in thousandths, written as a number with 3 decimals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(super) struct Milli(pub(super) u32);

impl Serialize for Milli {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(self.0) / 1000.0)
    }
}

impl std::fmt::Display for Milli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// A score in `[0, 1]` rounded up to thousandths (RITA's `ceil(x * 1000) / 1000`).
fn milli(x: f64) -> Milli {
    let m = (x * 1000.0 - 1e-9).ceil().clamp(0.0, 1000.0);
    // In [0, 1000]: the cast is exact.
    Milli(m as u32)
}

/// What RITA's formulas give for one pair; see the module docs. Its numbers are never NaN (every
/// division is by a non-zero value), so equality is an equivalence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct Scores {
    pub(super) ts_skew: f64,
    pub(super) ts_dispersion: u64,
    pub(super) ts_mode: u64,
    pub(super) conn_count_score: f64,
    pub(super) coverage: f64,
    pub(super) ds_skew: f64,
    pub(super) ds_dispersion: u64,
    pub(super) ds_mode: u64,
    pub(super) ts_score: Milli,
    pub(super) ds_score: Milli,
    pub(super) score: Milli,
}

/// The value at quantile `q` of sorted `v` (not empty), RITA's index rule.
fn quantile(v: &[u64], q: f64) -> u64 {
    let last = v.len().saturating_sub(1);
    // Non-negative and at most `last`: the cast cannot wrap.
    let i = ((q * last as f64) + 0.5).floor() as usize;
    v.get(i.min(last)).copied().unwrap_or(0)
}

/// Bowley's skew of sorted `v`, 0 where it is unreliable.
fn bowley(v: &[u64]) -> f64 {
    let (lo, mid, hi) = (quantile(v, 0.25), quantile(v, 0.5), quantile(v, 0.75));
    if hi == lo || mid == lo || mid == hi {
        return 0.0;
    }
    (lo as f64 + hi as f64 - 2.0 * mid as f64) / (hi as f64 - lo as f64)
}

/// Median absolute deviation about the median of sorted `v`.
fn madm(v: &[u64]) -> u64 {
    let mid = quantile(v, 0.5);
    let mut devs: Vec<u64> = v.iter().map(|x| x.abs_diff(mid)).collect();
    devs.sort_unstable();
    quantile(&devs, 0.5)
}

/// The most frequent value of sorted `v`, the smallest of equally frequent ones.
fn mode(v: &[u64]) -> u64 {
    let mut best = (0usize, 0u64);
    for run in v.chunk_by(|a, b| a == b) {
        if run.len() > best.0 {
            best = (run.len(), run[0]);
        }
    }
    best.1
}

/// Scores one pair: `ts` its connections' start times (whole seconds), `sizes` the bytes the client
/// sent in each, `span` the seconds the whole input covers. `None` below [`BEACON_MIN`] connections.
pub(super) fn score(ts: &[u64], sizes: &[u64], span: u64) -> Option<Scores> {
    if ts.len() < BEACON_MIN || sizes.is_empty() {
        return None;
    }
    let mut ts = ts.to_vec();
    ts.sort_unstable();
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    let mut diffs: Vec<u64> = ts.windows(2).map(|w| w[1] - w[0]).collect();
    diffs.sort_unstable();

    let ts_skew = bowley(&diffs);
    let ts_dispersion = madm(&diffs);
    let ds_skew = bowley(&sizes);
    let ds_dispersion = madm(&sizes);
    let ds_mode = mode(&sizes);
    let span = span as f64;
    let conn_count_score = if span > 0.0 {
        (ts.len() as f64 / (span / 10.0)).min(1.0)
    } else {
        1.0
    };
    let own = (ts.last().copied().unwrap_or(0) - ts.first().copied().unwrap_or(0)) as f64;
    let coverage = if span > 0.0 {
        (own / span).min(1.0)
    } else {
        0.0
    };

    let ts_sum = (1.0 - ts_skew.abs())
        + (1.0 - ts_dispersion as f64 / 30.0).max(0.0)
        + conn_count_score
        + coverage;
    let ds_sum = (1.0 - ds_skew.abs())
        + (1.0 - ds_dispersion as f64 / 32.0).max(0.0)
        + (1.0 - ds_mode as f64 / 65535.0).max(0.0);
    Some(Scores {
        ts_skew,
        ts_dispersion,
        ts_mode: mode(&diffs),
        conn_count_score,
        coverage,
        ds_skew,
        ds_dispersion,
        ds_mode,
        ts_score: milli(ts_sum / 4.0),
        ds_score: milli(ds_sum / 3.0),
        score: milli((ts_sum + ds_sum) / 7.0),
    })
}

/// The connections of one (client, server) pair as read.
#[derive(Debug, Default)]
pub(super) struct PairAcc {
    pub(super) ts: Vec<u64>,
    pub(super) sizes: Vec<u64>,
    pub(super) cites: Cites,
}

/// One connection of a flow line with an end (`duration`).
#[derive(Debug)]
pub(super) struct LongIn {
    pub(super) client: String,
    pub(super) src: String,
    pub(super) dst: String,
    pub(super) proto: String,
    pub(super) duration: f64,
    pub(super) bytes: u64,
    pub(super) cite: Cite,
}

/// Every pair's connections, and the time span they cover.
#[derive(Debug, Default)]
pub(super) struct Conns {
    pub(super) pairs: BTreeMap<(String, String), PairAcc>,
    pub(super) first: Option<u64>,
    pub(super) last: Option<u64>,
}

/// A connection of a line without its flow's end (a live decision line), kept apart until every line
/// is read: it counts unless an end line of the same flow turned up.
#[derive(Debug)]
pub(super) struct StartedConn {
    pub(super) secs: u64,
    pub(super) sent: u64,
    /// The flow's `proto`, `src` and `dst`, hashed.
    pub(super) flow: u64,
    pub(super) cite: Cite,
}

/// What the flow lines tell of timing: the connections of lines that carry a flow's end (replay's
/// flow lines, live end lines), those of lines that do not (live decision lines), and the long
/// connections. A live log holds two lines of each flow that ended, its decision and its end. Each end
/// takes at most one decision line of the same `proto`, `src` and `dst` whose `first_ts` is at most
/// [`MATCH_BEFORE`] seconds after the end's or [`MATCH_AFTER`] before it (the kernel stamps an entry
/// when its first packet leaves, which a flow held for inspection does late), the earliest first; a
/// decision line no end took counts on its own. So every flow counts once, by its end when the log
/// has it.
#[derive(Debug, Default)]
pub(super) struct Timing {
    pub(super) ended: Conns,
    /// The ended connections' start seconds, by flow hash.
    pub(super) ended_flows: HashMap<u64, Vec<u64>>,
    pub(super) started: BTreeMap<(String, String), Vec<StartedConn>>,
    pub(super) long: Vec<LongIn>,
}

/// How far apart a decision line's `first_ts` and its end line's may be, in seconds: the end's may
/// be up to [`MATCH_AFTER`] later (a flow held for its first payload, up to `inspect-time`, is
/// stamped by the kernel when it is let go) or [`MATCH_BEFORE`] earlier (rounding to seconds, clocks).
pub(super) const MATCH_AFTER: u64 = 30;
pub(super) const MATCH_BEFORE: u64 = 2;

impl Conns {
    /// One connection of `client` to `server` started at `secs`, the client sending `sent` bytes.
    pub(super) fn conn(&mut self, client: &str, server: &str, secs: u64, sent: u64, cite: Cite) {
        self.first = Some(self.first.map_or(secs, |f| f.min(secs)));
        self.last = Some(self.last.map_or(secs, |l| l.max(secs)));
        let key = (client.to_string(), server.to_string());
        let p = self.pairs.entry(key).or_default();
        p.ts.push(secs);
        p.sizes.push(sent);
        p.cites.add(cite, CITES);
    }
}

/// A scored pair, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Beacon {
    pub(super) client: String,
    pub(super) server: String,
    pub(super) connections: u64,
    #[serde(flatten)]
    pub(super) scores: Scores,
    pub(super) cites: Vec<String>,
    pub(super) cites_more: u64,
}

impl Eq for Scores {}

/// A long connection, as reported. Its duration was read from JSON, which has no NaN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(super) struct LongConn {
    pub(super) client: String,
    pub(super) src: String,
    pub(super) dst: String,
    pub(super) proto: String,
    pub(super) duration: f64,
    pub(super) bytes: u64,
    pub(super) cite: String,
}

impl Eq for LongConn {}

/// One reason a client is suspect, and its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct SuspectReason {
    pub(super) kind: &'static str,
    pub(super) what: String,
    pub(super) weight: Milli,
    pub(super) cites: Vec<String>,
    pub(super) cites_more: u64,
}

/// A client's suspicion: the sum of its reasons' weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Suspect {
    pub(super) client: String,
    pub(super) score: Milli,
    pub(super) reasons: Vec<SuspectReason>,
}

fn cite_of(c: Cite, files: &[FileLines]) -> String {
    let name = files.get(c.file).map_or("?", |f| f.name.as_str());
    format!("{name}:{}", c.line)
}

impl Timing {
    /// Every pair with enough connections, best score first (then client and server), and the long
    /// connections, longest first (then source, destination, protocol, citation); the first
    /// [`BEACONS_SHOWN`] and [`LONG_SHOWN`] of each, and the reasons all of them give their clients:
    /// each beacon scoring [`BEACON_SUSPECT`] or more, and each (client, destination) with long
    /// connections.
    pub(super) fn finish(
        self,
        files: &[FileLines],
    ) -> (Vec<Beacon>, Vec<LongConn>, Vec<(String, SuspectReason)>) {
        let key = addr_key;
        let mut conns = self.ended;
        let mut ends = self.ended_flows;
        ends.values_mut().for_each(|v| v.sort_unstable());
        let mut started: Vec<((String, String), StartedConn)> = self
            .started
            .into_iter()
            .flat_map(|(pair, list)| list.into_iter().map(move |c| (pair.clone(), c)))
            .collect();
        started.sort_by_key(|(_, c)| (c.secs, c.flow, c.cite.file, c.cite.line));
        for ((client, server), c) in started {
            let taken = ends.get_mut(&c.flow).and_then(|v| {
                let i = v.iter().position(|&e| {
                    e.saturating_add(MATCH_BEFORE) >= c.secs
                        && e <= c.secs.saturating_add(MATCH_AFTER)
                })?;
                Some(v.remove(i))
            });
            if taken.is_none() {
                conns.conn(&client, &server, c.secs, c.sent, c.cite);
            }
        }
        let span = match (conns.first, conns.last) {
            (Some(f), Some(l)) => l - f,
            _ => 0,
        };
        let mut beacons: Vec<Beacon> = conns
            .pairs
            .into_iter()
            .filter_map(|((client, server), p)| {
                let scores = score(&p.ts, &p.sizes, span)?;
                let (cites, cites_more) = p.cites.render(files);
                Some(Beacon {
                    client,
                    server,
                    connections: p.ts.len() as u64,
                    scores,
                    cites,
                    cites_more,
                })
            })
            .collect();
        beacons.sort_by(|a, b| {
            b.scores
                .score
                .cmp(&a.scores.score)
                .then_with(|| key(&a.client).cmp(&key(&b.client)))
                .then_with(|| key(&a.server).cmp(&key(&b.server)))
        });

        let mut reasons = Vec::new();
        for b in beacons
            .iter()
            .filter(|b| b.scores.score.0 >= BEACON_SUSPECT)
        {
            reasons.push((
                b.client.clone(),
                SuspectReason {
                    kind: "beacon",
                    what: format!(
                        "beacon to {} (score {}, {} connections)",
                        b.server, b.scores.score, b.connections
                    ),
                    weight: b.scores.score,
                    cites: b.cites.clone(),
                    cites_more: b.cites_more,
                },
            ));
        }
        beacons.truncate(BEACONS_SHOWN);

        let mut long = self.long;
        long.sort_by(|a, b| {
            b.duration
                .total_cmp(&a.duration)
                .then_with(|| key(&a.src).cmp(&key(&b.src)))
                .then_with(|| key(&a.dst).cmp(&key(&b.dst)))
                .then_with(|| a.proto.cmp(&b.proto))
                .then_with(|| (a.cite.file, a.cite.line).cmp(&(b.cite.file, b.cite.line)))
        });
        // One reason per client and destination, however many long connections it had.
        let mut grouped: BTreeMap<(String, String), (u64, f64, Cites)> = BTreeMap::new();
        for l in &long {
            let g = grouped.entry((l.client.clone(), l.dst.clone())).or_insert((
                0,
                l.duration,
                Cites::default(),
            ));
            g.0 += 1;
            g.2.add(l.cite, CITES);
        }
        for ((client, dst), (n, longest, cites)) in grouped {
            let (cites, cites_more) = cites.render(files);
            let what = if n == 1 {
                format!("long connection to {dst} ({longest:.0} s)")
            } else {
                format!("{n} long connections to {dst} (longest {longest:.0} s)")
            };
            reasons.push((
                client,
                SuspectReason {
                    kind: "long_connection",
                    what,
                    weight: Milli(LONG_WEIGHT),
                    cites,
                    cites_more,
                },
            ));
        }
        let long = long
            .into_iter()
            .take(LONG_SHOWN)
            .map(|l| LongConn {
                cite: cite_of(l.cite, files),
                client: l.client,
                src: l.src,
                dst: l.dst,
                proto: l.proto,
                duration: l.duration,
                bytes: l.bytes,
            })
            .collect();
        (beacons, long, reasons)
    }
}

impl Timing {
    /// What a flow line or a live end line tells: a connection of its pair (when it has `first_ts`),
    /// and a long connection (when its `duration` reaches [`LONG_SECS`]). The client's bytes are
    /// `orig_bytes`, else `bytes` (0 when neither is there).
    pub(super) fn flow(&mut self, cite: Cite, l: &TimingIn<'_>) {
        let client = split_endpoint(l.src).0;
        if let Some(at) = l.first_ts.and_then(parse_rfc3339) {
            let server = split_endpoint(l.dst).0;
            let sent = l.orig_bytes.or(l.bytes).unwrap_or(0);
            let secs = at.as_nanos() / 1_000_000_000;
            let mut h = DefaultHasher::new();
            (l.proto, l.src, l.dst).hash(&mut h);
            let flow = h.finish();
            if l.end || l.duration.is_some() {
                self.ended.conn(client, server, secs, sent, cite);
                self.ended_flows.entry(flow).or_default().push(secs);
            } else {
                let key = (client.to_string(), server.to_string());
                self.started.entry(key).or_default().push(StartedConn {
                    secs,
                    sent,
                    flow,
                    cite,
                });
            }
        }
        if let Some(d) = l.duration
            && d >= LONG_SECS
        {
            self.long.push(LongIn {
                client: client.to_string(),
                src: l.src.to_string(),
                dst: l.dst.to_string(),
                proto: l.proto.to_string(),
                duration: d,
                bytes: l.bytes.unwrap_or(0),
                cite,
            });
        }
    }
}

/// Every client with a reason: the beacons and long connections of `reasons`, and each evidence item
/// of the other sections ([`ITEM_WEIGHT`]); score descending, then address. A client's reasons are
/// sorted by weight descending, then kind and text.
pub(super) fn suspects(clients: &[Client], reasons: Vec<(String, SuspectReason)>) -> Vec<Suspect> {
    let mut by: BTreeMap<String, Vec<SuspectReason>> = BTreeMap::new();
    for (client, r) in reasons {
        by.entry(client).or_default().push(r);
    }
    for c in clients {
        let v = by.entry(c.client.clone()).or_default();
        for item in &c.items {
            v.push(SuspectReason {
                kind: item.section,
                what: item.what.clone(),
                weight: Milli(ITEM_WEIGHT),
                cites: item.cites.clone(),
                cites_more: item.cites_more,
            });
        }
    }
    let mut out: Vec<Suspect> = by
        .into_iter()
        .map(|(client, mut reasons)| {
            reasons.sort_by(|a, b| {
                b.weight
                    .cmp(&a.weight)
                    .then_with(|| a.kind.cmp(b.kind))
                    .then_with(|| a.what.cmp(&b.what))
                    .then_with(|| a.cites.cmp(&b.cites))
            });
            let total = reasons
                .iter()
                .fold(0u32, |n, r| n.saturating_add(r.weight.0));
            Suspect {
                client,
                score: Milli(total),
                reasons,
            }
        })
        .collect();
    out.sort_by_cached_key(|s| (std::cmp::Reverse(s.score), addr_key(&s.client)));
    out
}
