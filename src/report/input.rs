//! The lines `outgate report` understands, each recognised by its keys (see the module docs): what
//! is read of each.

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct FlowIn {
    pub(super) proto: String,
    pub(super) src: String,
    pub(super) dst: String,
    pub(super) verdict: String,
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) app: Option<String>,
    pub(super) class: Option<String>,
    pub(super) enforced: Option<bool>,
    pub(super) rule: Option<String>,
    pub(super) first_ts: Option<String>,
    pub(super) duration: Option<f64>,
    pub(super) orig_bytes: Option<u64>,
}

/// A live flow end line (`"end": true`): its counts and times may be absent (see
/// `crate::log::EndLine`).
#[derive(Debug, Deserialize)]
pub(super) struct EndIn {
    pub(super) proto: String,
    pub(super) src: String,
    pub(super) dst: String,
    pub(super) bytes: Option<u64>,
    pub(super) first_ts: Option<String>,
    pub(super) duration: Option<f64>,
    pub(super) orig_bytes: Option<u64>,
}

/// What the timing sections read of a flow line or an end line.
pub(super) struct TimingIn<'a> {
    /// A live end line.
    pub(super) end: bool,
    pub(super) proto: &'a str,
    pub(super) src: &'a str,
    pub(super) dst: &'a str,
    pub(super) bytes: Option<u64>,
    pub(super) first_ts: Option<&'a str>,
    pub(super) duration: Option<f64>,
    pub(super) orig_bytes: Option<u64>,
}

impl FlowIn {
    pub(super) fn timing(&self) -> TimingIn<'_> {
        TimingIn {
            end: false,
            proto: &self.proto,
            src: &self.src,
            dst: &self.dst,
            bytes: Some(self.bytes),
            first_ts: self.first_ts.as_deref(),
            duration: self.duration,
            orig_bytes: self.orig_bytes,
        }
    }
}

impl EndIn {
    pub(super) fn timing(&self) -> TimingIn<'_> {
        TimingIn {
            end: true,
            proto: &self.proto,
            src: &self.src,
            dst: &self.dst,
            bytes: self.bytes,
            first_ts: self.first_ts.as_deref(),
            duration: self.duration,
            orig_bytes: self.orig_bytes,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct HttpIn {
    pub(super) client: String,
    pub(super) server: Option<String>,
    pub(super) method: String,
    pub(super) host: Option<String>,
    pub(super) url: String,
    pub(super) verdict: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct TlsIn {
    pub(super) client: String,
    pub(super) server: Option<String>,
    pub(super) sni: Option<String>,
    pub(super) verdict: String,
}

pub(super) enum Parsed {
    Flow(FlowIn),
    End(EndIn),
    Http(HttpIn),
    Tls(TlsIn),
    Dns(DnsIn),
    Icmp(IcmpIn),
}

pub(super) fn parse(text: &str) -> Option<Parsed> {
    let value: Value = serde_json::from_str(text).ok()?;
    let obj = value.as_object()?;
    if crate::log::is_end_line(obj) {
        serde_json::from_value(value).ok().map(Parsed::End)
    } else if obj.contains_key("proto") && obj.contains_key("packets") {
        serde_json::from_value(value).ok().map(Parsed::Flow)
    } else if obj.contains_key("method") {
        serde_json::from_value(value).ok().map(Parsed::Http)
    } else if obj.contains_key("sni") {
        serde_json::from_value(value).ok().map(Parsed::Tls)
    } else if obj.contains_key("qname") {
        serde_json::from_value(value).ok().map(Parsed::Dns)
    } else if obj.contains_key("echo") {
        serde_json::from_value(value).ok().map(Parsed::Icmp)
    } else {
        None
    }
}

/// The key of an HTTP request's host in the report: the host as written, or, for a request
/// without one, `(no Host: SERVER-ADDRESS)`.
pub(super) fn host_key(host: Option<&str>, server: &str) -> String {
    match host {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => format!("(no Host: {server})"),
    }
}
