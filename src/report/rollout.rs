//! The rollout sections of the report: flows shaped (by class), and flows that enforcing would block
//! (logged with `"enforced":false` and a drop or reject verdict: `run --audit`, `replay --audit`, or an
//! `AUDIT(...)` line), by the policy line that would block them.

use super::*;

/// Top destinations listed per lane.
const LANE_TOP: usize = 5;

/// Flows that share a lane: a class, or the line that would block them.
#[derive(Debug, Default)]
pub(super) struct LaneAcc {
    flows: u64,
    bytes: u64,
    packets: u64,
    clients: BTreeSet<String>,
    /// Bytes by destination.
    dests: BTreeMap<String, u64>,
    cites: Cites,
}

impl LaneAcc {
    pub(super) fn add(&mut self, cite: Cite, l: &FlowIn) {
        self.flows = self.flows.saturating_add(1);
        self.bytes = self.bytes.saturating_add(l.bytes);
        self.packets = self.packets.saturating_add(l.packets);
        let client = split_endpoint(&l.src).0;
        if !self.clients.contains(client) {
            self.clients.insert(client.to_string());
        }
        let d = self.dests.entry(l.dst.clone()).or_default();
        *d = d.saturating_add(l.bytes);
        self.cites.add(cite, CITES);
    }
}

/// The key of a flow line's lanes: its class when shaped; its verdict and line when enforcing would
/// block it.
pub(super) fn shaped_class(l: &FlowIn) -> Option<String> {
    (l.verdict == "shape").then(|| l.class.clone().unwrap_or_else(|| "slow".to_string()))
}

pub(super) fn would_block(l: &FlowIn) -> Option<(String, String)> {
    (l.enforced == Some(false) && (l.verdict == "drop" || l.verdict == "reject")).then(|| {
        (
            l.rule.clone().unwrap_or_else(|| "-".to_string()),
            l.verdict.clone(),
        )
    })
}

/// One lane as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Lane {
    /// The class (shaped), or the policy line as `FILE:LINE` (would block).
    what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<String>,
    flows: u64,
    bytes: u64,
    packets: u64,
    clients: Vec<String>,
    /// The destinations with the most bytes: `[dst, bytes]`.
    top: Vec<(String, u64)>,
    cites: Vec<String>,
    cites_more: u64,
}

pub(super) fn lanes(
    accs: BTreeMap<(String, Option<String>), LaneAcc>,
    files: &[FileLines],
) -> Vec<Lane> {
    let mut lanes: Vec<Lane> = accs
        .into_iter()
        .map(|((what, verdict), a)| {
            let mut top: Vec<(String, u64)> = a.dests.into_iter().collect();
            top.sort_by_cached_key(|(d, b)| (std::cmp::Reverse(*b), addr_key(d)));
            top.truncate(LANE_TOP);
            let mut clients: Vec<String> = a.clients.into_iter().collect();
            clients.sort_by_cached_key(|c| addr_key(c));
            let (cites, cites_more) = a.cites.render(files);
            Lane {
                what,
                verdict,
                flows: a.flows,
                bytes: a.bytes,
                packets: a.packets,
                clients,
                top,
                cites,
                cites_more,
            }
        })
        .collect();
    lanes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.what.cmp(&b.what)));
    lanes
}

/// Both sections as text.
pub(super) fn lanes_text(out: &mut String, shaped: &[Lane], would_block: &[Lane]) {
    heading(out, "Shaped flows (slow lanes), by class");
    grid(out, &lane_head("CLASS"), &rows(shaped));
    heading(
        out,
        "What enforcing would block (logged \"enforced\":false), by line",
    );
    grid(out, &lane_head("LINE"), &rows(would_block));
}

fn lane_head(what: &'static str) -> [(&'static str, bool); 5] {
    [
        (what, false),
        ("FLOWS", true),
        ("BYTES", true),
        ("CLIENTS", true),
        ("VERDICT", false),
    ]
}

fn rows(lanes: &[Lane]) -> Vec<Row> {
    lanes
        .iter()
        .map(|l| {
            let top: Vec<String> = l
                .top
                .iter()
                .map(|(d, b)| format!("{} ({b} bytes)", clean(d)))
                .collect();
            Row {
                cells: vec![
                    clean(&l.what).into_owned(),
                    l.flows.to_string(),
                    l.bytes.to_string(),
                    l.clients.len().to_string(),
                    l.verdict.as_deref().unwrap_or("shape").to_string(),
                ],
                details: vec![
                    format!("clients: {}", list(&l.clients)),
                    format!("top: {}", top.join(", ")),
                    cite_text(&l.cites, l.cites_more),
                ],
            }
        })
        .collect()
}
