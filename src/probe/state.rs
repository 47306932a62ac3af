//! The probe state file: every server probed, its status and its last probes with their evidence,
//! and the rules that move a server between statuses. No IO and no clock here: the time is an
//! argument.
//!
//! ```text
//! (new) ──fail──> suspect ──fail again, >= 20 h later──> confirmed  (in the confederates file)
//!   │                │                                        │
//!   └──real page──> cleared (a week) <──────real page─────────┘
//! ```
//!
//! A probe that is neither (`unclear`: an HTTP answer that is no page, a 404, a text file) changes
//! no status. A server is probed at most once per [`MIN_GAP`], a cleared one not before its week
//! is over; an entry whose last evidence (a failed probe or a real page) is older than [`EXPIRE`]
//! is dropped, from the confederates file too.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// At most one probe per server per this many seconds (20 h); a suspect is confirmed by a failure at
/// least this long after its first.
pub const MIN_GAP: i64 = 20 * 3600;
/// A real page clears a server for this long (7 days).
pub const CLEARED_FOR: i64 = 7 * 86_400;
/// An entry without new evidence for this long (30 days) is dropped.
pub const EXPIRE: i64 = 30 * 86_400;
/// Probes kept per server, newest last.
pub const KEPT_PROBES: usize = 10;
/// The state file's format.
pub const VERSION: u32 = 1;

/// Seconds since the Unix epoch, written in the state file as RFC 3339 (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub i64);

impl Time {
    pub fn parse(s: &str) -> Result<Time, String> {
        s.parse::<jiff::Timestamp>()
            .map(|t| Time(t.as_second()))
            .map_err(|e| format!("'{s}' is not an RFC 3339 time (2026-12-01T03:00:00Z): {e}"))
    }

    pub fn plus(self, secs: i64) -> Time {
        Time(self.0.saturating_add(secs))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_second(self.0) {
            Ok(t) => write!(f, "{t}"),
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let s = String::deserialize(d)?;
        Time::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where a server stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Probed, but no probe said either way.
    Unclear,
    /// `GET /` gave a real page: not probed again before `cleared_until`.
    Cleared,
    /// Failed once: probed again after [`MIN_GAP`].
    Suspect,
    /// Failed twice, [`MIN_GAP`] or more apart: a confederate.
    Confirmed,
}

/// What one probe says about a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// `GET /` gave a real web page (or a redirect).
    Real,
    /// Nothing, not HTTP, binary, or a stream that never ends.
    Fail,
    /// An HTTP answer that is neither.
    Unclear,
}

/// One request of a probe and how it went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// `GET URL`.
    pub request: String,
    /// The class of the answer (`page`, `redirect`, `other_http`, `no_connection`, `silent`,
    /// `not_http`, `binary`, `endless`, `cut_short`, `not_sent`).
    pub answer: String,
    /// What was seen, in words.
    pub evidence: String,
}

/// One probe of a server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    pub at: Time,
    /// The address connected to (`ip:port`).
    pub address: String,
    /// The logged URL, then `/`.
    pub requests: Vec<Request>,
    pub verdict: Verdict,
    /// Why the logs made it a suspect (the report's words) and where (`FILE:LINE`).
    pub why: Vec<String>,
    pub cites: Vec<String>,
}

/// A server, keyed in [`State`] by `HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// The host as the confederates file writes it: a name, or an address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub status: Status,
    pub since: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_until: Option<Time>,
    /// The failure that made it a suspect; a second one [`MIN_GAP`] later confirms it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<Time>,
    /// The last failed probe or real page: the entry is dropped [`EXPIRE`] after it.
    pub last_evidence: Time,
    pub probes: Vec<Probe>,
}

/// The whole state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub servers: BTreeMap<String, Server>,
}

impl Default for State {
    fn default() -> State {
        State {
            version: VERSION,
            servers: BTreeMap::new(),
        }
    }
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Unclear => "unclear",
            Status::Cleared => "cleared",
            Status::Suspect => "suspect",
            Status::Confirmed => "confirmed",
        }
    }
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Real => "real",
            Verdict::Fail => "fail",
            Verdict::Unclear => "unclear",
        }
    }
}

/// Why a server is not probed now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotDue {
    /// Probed at the time given; the next probe is allowed at the second.
    Recently(Time, Time),
    /// A real page cleared it until then.
    Cleared(Time),
}

impl fmt::Display for NotDue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotDue::Recently(at, next) => {
                write!(
                    f,
                    "probed at {at}; at most one probe per 20 h, next after {next}"
                )
            }
            NotDue::Cleared(until) => write!(f, "cleared (a real page) until {until}"),
        }
    }
}

impl State {
    /// Reads a state file's text; `name` is used in errors.
    pub fn parse(name: &str, text: &str) -> Result<State, String> {
        let state: State = serde_json::from_str(text).map_err(|e| {
            format!(
                "{name}:{}:{}: not an outgate probe state file: {e}",
                e.line(),
                e.column()
            )
        })?;
        if state.version != VERSION {
            return Err(format!(
                "{name}: state file version {} (this outgate reads {VERSION})",
                state.version
            ));
        }
        Ok(state)
    }

    pub fn text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Whether the server `key` may be probed at `now`.
    pub fn due(&self, key: &str, now: Time) -> Result<(), NotDue> {
        let Some(s) = self.servers.get(key) else {
            return Ok(());
        };
        if let Some(last) = s.probes.last() {
            let next = last.at.plus(MIN_GAP);
            if now < next {
                return Err(NotDue::Recently(last.at, next));
            }
        }
        match s.cleared_until {
            Some(until) if s.status == Status::Cleared && now < until => {
                Err(NotDue::Cleared(until))
            }
            _ => Ok(()),
        }
    }

    /// Drops the entries whose last evidence is [`EXPIRE`] or more before `now`; returns their keys.
    pub fn expire(&mut self, now: Time) -> Vec<String> {
        let old: Vec<String> = self
            .servers
            .iter()
            .filter(|(_, s)| now >= s.last_evidence.plus(EXPIRE))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            self.servers.remove(k);
        }
        old
    }

    /// Records `probe` of server `key` (`host`, `port`) and moves its status; returns the new one.
    pub fn record(&mut self, key: &str, host: &str, port: u16, probe: Probe) -> Status {
        let now = probe.at;
        let s = self.servers.entry(key.to_string()).or_insert(Server {
            host: host.to_string(),
            port,
            status: Status::Unclear,
            since: now,
            cleared_until: None,
            first_failure: None,
            last_evidence: now,
            probes: Vec::new(),
        });
        let status = match (probe.verdict, s.status, s.first_failure) {
            (Verdict::Real, ..) => Status::Cleared,
            (Verdict::Fail, Status::Confirmed, _) => Status::Confirmed,
            (Verdict::Fail, Status::Suspect, Some(first)) if now >= first.plus(MIN_GAP) => {
                Status::Confirmed
            }
            (Verdict::Fail, ..) => Status::Suspect,
            (Verdict::Unclear, status, _) => status,
        };
        match probe.verdict {
            Verdict::Real => {
                s.cleared_until = Some(now.plus(CLEARED_FOR));
                s.first_failure = None;
                s.last_evidence = now;
            }
            Verdict::Fail => {
                s.cleared_until = None;
                if s.first_failure.is_none() || status == Status::Suspect && s.status != status {
                    s.first_failure = Some(now);
                }
                s.last_evidence = now;
            }
            Verdict::Unclear => {}
        }
        if status != s.status {
            s.since = now;
            s.status = status;
        }
        s.probes.push(probe);
        let extra = s.probes.len().saturating_sub(KEPT_PROBES);
        s.probes.drain(..extra);
        status
    }

    /// The hosts of the confirmed servers, sorted, each once: the confederates file's lines.
    pub fn confederates(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .servers
            .values()
            .filter(|s| s.status == Status::Confirmed)
            .map(|s| s.host.clone())
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }
}

/// The confederates file: a header, then one host a line (what a policy's `host=@FILE` reads).
pub fn confederates_text(state: &State, now: Time) -> String {
    let hosts = state.confederates();
    let mut out = format!(
        "# Confederate servers confirmed by `outgate probe` (written {now}, {} host(s)).\n\
         # Rewritten by every run: edit the probe state, not this file. Read by `host=@FILE`.\n",
        hosts.len()
    );
    for h in hosts {
        out.push_str(&h);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600;
    const T0: Time = Time(1_800_000_000);

    fn probe(at: Time, verdict: Verdict) -> Probe {
        Probe {
            at,
            address: "192.0.2.9:80".into(),
            requests: Vec::new(),
            verdict,
            why: Vec::new(),
            cites: Vec::new(),
        }
    }

    fn rec(st: &mut State, at: Time, v: Verdict) -> Status {
        st.record("192.0.2.9:80", "192.0.2.9", 80, probe(at, v))
    }

    #[test]
    fn two_failures_20_hours_apart_confirm() {
        let mut st = State::default();
        assert_eq!(rec(&mut st, T0, Verdict::Fail), Status::Suspect);
        assert!(st.confederates().is_empty());
        assert_eq!(
            rec(&mut st, T0.plus(21 * H), Verdict::Fail),
            Status::Confirmed
        );
        assert_eq!(st.confederates(), ["192.0.2.9"]);
        let s = &st.servers["192.0.2.9:80"];
        assert_eq!((s.since, s.first_failure), (T0.plus(21 * H), Some(T0)));
        assert!(confederates_text(&st, T0).ends_with("\n192.0.2.9\n"));
    }

    #[test]
    fn a_second_failure_too_soon_does_not_confirm() {
        let mut st = State::default();
        rec(&mut st, T0, Verdict::Fail);
        assert_eq!(
            rec(&mut st, T0.plus(19 * H), Verdict::Fail),
            Status::Suspect
        );
        // Still counted from the first failure.
        assert_eq!(
            rec(&mut st, T0.plus(20 * H), Verdict::Fail),
            Status::Confirmed
        );
    }

    #[test]
    fn a_real_page_clears_for_a_week_even_a_confirmed_server() {
        let mut st = State::default();
        rec(&mut st, T0, Verdict::Fail);
        rec(&mut st, T0.plus(24 * H), Verdict::Fail);
        assert_eq!(
            rec(&mut st, T0.plus(48 * H), Verdict::Real),
            Status::Cleared
        );
        assert!(st.confederates().is_empty());
        let until = T0.plus(48 * H + CLEARED_FOR);
        assert_eq!(st.servers["192.0.2.9:80"].cleared_until, Some(until));
        assert_eq!(
            st.due("192.0.2.9:80", T0.plus(72 * H)),
            Err(NotDue::Cleared(until))
        );
        assert_eq!(st.due("192.0.2.9:80", until), Ok(()));
        // A failure after a clearance starts over as a suspect.
        assert_eq!(rec(&mut st, until, Verdict::Fail), Status::Suspect);
        assert_eq!(st.servers["192.0.2.9:80"].first_failure, Some(until));
    }

    #[test]
    fn unclear_changes_no_status_and_is_no_evidence() {
        let mut st = State::default();
        assert_eq!(rec(&mut st, T0, Verdict::Unclear), Status::Unclear);
        rec(&mut st, T0.plus(24 * H), Verdict::Fail);
        assert_eq!(
            rec(&mut st, T0.plus(48 * H), Verdict::Unclear),
            Status::Suspect
        );
        assert_eq!(st.servers["192.0.2.9:80"].last_evidence, T0.plus(24 * H));
        assert_eq!(
            rec(&mut st, T0.plus(72 * H), Verdict::Fail),
            Status::Confirmed
        );
    }

    #[test]
    fn one_probe_per_server_per_20_hours() {
        let mut st = State::default();
        assert_eq!(st.due("192.0.2.9:80", T0), Ok(()));
        rec(&mut st, T0, Verdict::Fail);
        let next = T0.plus(MIN_GAP);
        assert_eq!(
            st.due("192.0.2.9:80", T0.plus(MIN_GAP - 1)),
            Err(NotDue::Recently(T0, next))
        );
        assert_eq!(st.due("192.0.2.9:80", next), Ok(()));
        assert_eq!(st.due("other:80", T0), Ok(()));
    }

    #[test]
    fn entries_without_new_evidence_expire_after_30_days() {
        let mut st = State::default();
        rec(&mut st, T0, Verdict::Fail);
        rec(&mut st, T0.plus(24 * H), Verdict::Fail);
        rec(&mut st, T0.plus(48 * H), Verdict::Unclear);
        let end = T0.plus(24 * H + EXPIRE);
        assert!(st.expire(end.plus(-1)).is_empty());
        assert_eq!(st.expire(end), ["192.0.2.9:80"]);
        assert!(st.confederates().is_empty());
    }

    #[test]
    fn probes_kept_are_bounded() {
        let mut st = State::default();
        for day in 0..15 {
            rec(&mut st, T0.plus(day * 24 * H), Verdict::Fail);
        }
        let probes = &st.servers["192.0.2.9:80"].probes;
        assert_eq!(probes.len(), KEPT_PROBES);
        assert_eq!(probes.last().map(|p| p.at), Some(T0.plus(14 * 24 * H)));
    }

    #[test]
    fn the_state_file_reads_back_and_bad_ones_cite_their_place() {
        let mut st = State::default();
        rec(&mut st, T0, Verdict::Fail);
        assert_eq!(State::parse("s.json", &st.text()), Ok(st.clone()));
        let err = State::parse("s.json", "{\"version\": 1,\n \"servers\": 3}").unwrap_err();
        assert!(err.starts_with("s.json:2:"), "{err}");
        let err = State::parse("s.json", r#"{"version":9,"servers":{}}"#).unwrap_err();
        assert!(err.contains("version 9"), "{err}");
        let bad_time = st.text().replacen("2027-", "2027/", 1);
        assert!(State::parse("s.json", &bad_time).is_err());
    }
}
