//! The rows of `outgate bench --live`, their ratios to the kernel alone, the recommended `--queues`,
//! and the table and JSON they are printed as.

use serde::Serialize;

use super::LiveConfig;
use super::agent::{
    BULK_PORT, BulkDone, CONNECT_PORT, ConnectDone, LatencyDone, UDP_PORT, UdpDone,
};

/// The kernel alone, or outgate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Case {
    Kernel,
    Outgate,
}

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::Kernel => "kernel alone",
            Case::Outgate => "outgate",
        }
    }
}

/// One case's figures. A kernel row carries the queue count of the outgate row it is the baseline of.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub case: Case,
    pub queues: u16,
    pub udp_sent: u64,
    pub udp_send_errors: u64,
    /// Datagrams the client sent per second: when delivered/s is as high, the client was the limit.
    pub udp_sent_per_s: f64,
    pub udp_delivered: u64,
    /// Delivered datagrams per second, from the first sent to the last delivered.
    pub udp_delivered_per_s: f64,
    /// Delivered over sent.
    pub udp_delivered_fraction: f64,
    /// The kernel's counters summed over the queues (None for the kernel alone: no queue).
    pub queue_dropped: Option<u64>,
    pub user_dropped: Option<u64>,
    pub tcp_connections_per_s: f64,
    pub tcp_connect_errors: u64,
    pub bulk_mb_per_s: f64,
    pub connect_median_us: f64,
    pub connect_p99_us: f64,
    pub connect_errors: u64,
    /// For an outgate row: each figure over the kernel's of the same round.
    pub ratio: Option<Ratios>,
}

/// outgate over the kernel alone.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub udp_delivered_per_s: f64,
    pub tcp_connections_per_s: f64,
    pub bulk_mb_per_s: f64,
    pub connect_median_us: f64,
    pub connect_p99_us: f64,
}

impl Row {
    pub fn new(case: Case, queues: u16) -> Row {
        Row {
            case,
            queues,
            udp_sent: 0,
            udp_send_errors: 0,
            udp_sent_per_s: 0.0,
            udp_delivered: 0,
            udp_delivered_per_s: 0.0,
            udp_delivered_fraction: 0.0,
            queue_dropped: None,
            user_dropped: None,
            tcp_connections_per_s: 0.0,
            tcp_connect_errors: 0,
            bulk_mb_per_s: 0.0,
            connect_median_us: 0.0,
            connect_p99_us: 0.0,
            connect_errors: 0,
            ratio: None,
        }
    }

    pub fn udp(&mut self, done: UdpDone, delivered: u64, secs: f64) {
        self.udp_sent = done.sent;
        self.udp_send_errors = done.errors;
        self.udp_sent_per_s = per_s(done.sent as f64, done.secs);
        self.udp_delivered = delivered;
        self.udp_delivered_per_s = per_s(delivered as f64, secs);
        self.udp_delivered_fraction = if done.sent + done.errors == 0 {
            0.0
        } else {
            delivered as f64 / (done.sent + done.errors) as f64
        };
    }

    pub fn connections(&mut self, done: &ConnectDone) {
        self.tcp_connections_per_s = per_s(done.connections as f64, done.secs);
        self.tcp_connect_errors = done.errors;
    }

    pub fn bulk(&mut self, done: &BulkDone) {
        self.bulk_mb_per_s = per_s(done.bytes as f64 / 1e6, done.secs);
    }

    pub fn latency(&mut self, done: &LatencyDone) {
        self.connect_median_us = done.median_us;
        self.connect_p99_us = done.p99_us;
        self.connect_errors = done.errors;
    }

    /// Nothing lost: every datagram arrived and no queue counter moved.
    fn lossless(&self) -> bool {
        self.udp_delivered >= self.udp_sent + self.udp_send_errors
            && self.queue_dropped.unwrap_or(0) == 0
            && self.user_dropped.unwrap_or(0) == 0
    }
}

fn per_s(amount: f64, secs: f64) -> f64 {
    if secs > 0.0 { amount / secs } else { 0.0 }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Everything `bench --live` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub flows: u32,
    pub payload_bytes: usize,
    pub tcp_secs: f64,
    pub samples: u32,
    pub threads: u32,
    pub senders: u32,
    pub policy: String,
    pub ports: String,
    pub cores: usize,
    pub kernel: String,
    pub rows: Vec<Row>,
    pub recommended_queues: Option<u16>,
    pub why: String,
}

impl Report {
    pub fn new(cfg: &LiveConfig, mut rows: Vec<Row>) -> Report {
        for i in 0..rows.len() {
            if rows[i].case != Case::Outgate {
                continue;
            }
            let Some(k) = rows[..i]
                .iter()
                .rposition(|r| r.case == Case::Kernel && r.queues == rows[i].queues)
            else {
                continue;
            };
            let (k, o) = (&rows[k], &rows[i]);
            let r = Ratios {
                udp_delivered_per_s: ratio(o.udp_delivered_per_s, k.udp_delivered_per_s),
                tcp_connections_per_s: ratio(o.tcp_connections_per_s, k.tcp_connections_per_s),
                bulk_mb_per_s: ratio(o.bulk_mb_per_s, k.bulk_mb_per_s),
                connect_median_us: ratio(o.connect_median_us, k.connect_median_us),
                connect_p99_us: ratio(o.connect_p99_us, k.connect_p99_us),
            };
            rows[i].ratio = Some(r);
        }
        let (recommended_queues, why) = recommend(&rows);
        Report {
            flows: cfg.flows,
            payload_bytes: super::PAYLOAD,
            tcp_secs: cfg.tcp_secs,
            samples: cfg.samples,
            threads: cfg.threads,
            senders: cfg.senders,
            policy: cfg.policy.as_ref().map_or_else(
                || "built-in default".to_string(),
                |p| p.display().to_string(),
            ),
            ports: format!(
                "udp {UDP_PORT} (new flows), tcp {CONNECT_PORT} (connections, connect time), tcp {BULK_PORT} (bulk)"
            ),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            rows,
            recommended_queues,
            why,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn table(&self) -> String {
        let mut s = format!(
            "outgate bench --live: {} new UDP flows ({}-byte datagrams, one per flow, {} sending {}),\n  \
             TCP cases {} s each ({} client threads), {} timed connects\n\
             policy: {} (a --policy must accept the ports the bench uses)\nports: {}\n\
             machine: {} cores, kernel {}; each row in fresh namespaces; (0.90x): outgate over the\n  \
             kernel alone of the same round\n\n",
            self.flows,
            self.payload_bytes,
            self.senders,
            if self.senders == 1 {
                "thread"
            } else {
                "threads"
            },
            self.tcp_secs,
            self.threads,
            self.samples,
            self.policy,
            self.ports,
            self.cores,
            self.kernel
        );
        s += &format!(
            "{:<6} {:<12} {:>15} {:>8} {:>9} {:>11} {:>15} {:>13} {:>18}\n",
            "queues",
            "case",
            "new flows/s",
            "sent/s",
            "delivered",
            "q/u dropped",
            "TCP conn/s",
            "bulk MB/s",
            "connect med/p99 us"
        );
        for r in &self.rows {
            let q = r.ratio.as_ref();
            let x = |v: Option<f64>| v.map_or(String::new(), |v| format!(" ({v:.2}x)"));
            let dropped = match (r.queue_dropped, r.user_dropped) {
                (Some(a), Some(b)) => format!("{a}/{b}"),
                _ => "-".into(),
            };
            s += &format!(
                "{:<6} {:<12} {:>15} {:>8} {:>9} {:>11} {:>15} {:>13} {:>18}\n",
                r.queues,
                r.case.name(),
                format!(
                    "{}{}",
                    si(r.udp_delivered_per_s),
                    x(q.map(|q| q.udp_delivered_per_s))
                ),
                si(r.udp_sent_per_s),
                format!("{:.1}%", r.udp_delivered_fraction * 100.0),
                dropped,
                format!(
                    "{}{}",
                    si(r.tcp_connections_per_s),
                    x(q.map(|q| q.tcp_connections_per_s))
                ),
                format!("{:.0}{}", r.bulk_mb_per_s, x(q.map(|q| q.bulk_mb_per_s))),
                format!("{:.0}/{:.0}", r.connect_median_us, r.connect_p99_us),
            );
            let errors = r.udp_send_errors + r.tcp_connect_errors + r.connect_errors;
            if errors > 0 {
                s += &format!(
                    "        ^ errors: {} UDP sends, {} connects (rate case), {} connects (timed case)\n",
                    r.udp_send_errors, r.tcp_connect_errors, r.connect_errors
                );
            }
        }
        s += "\nnew flows/s: datagrams delivered per second, each a new flow; as high as sent/s: the client was\n\
              the limit, not the filter. q/u dropped: queue_dropped/user_dropped, the kernel's NFQUEUE loss\n\
              counters. bulk: one TCP connection, decided once. connect: SYN to SYN-ACK, one at a time.\n";
        s += &match self.recommended_queues {
            Some(q) => format!(
                "recommended: --queues {} ({q} {})\n  why: {}\n",
                range(q),
                if q == 1 { "queue" } else { "queues" },
                self.why
            ),
            None => format!("recommended: none\n  why: {}\n", self.why),
        };
        s
    }
}

/// `0` for one queue, `0-N` for more: what `outgate rules` and `outgate run` take.
fn range(queues: u16) -> String {
    if queues <= 1 {
        "0".into()
    } else {
        format!("0-{}", queues - 1)
    }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The smallest queue count that lost nothing and delivered new flows within 10% of the best lossless
/// count; with loss everywhere, none.
pub fn recommend(rows: &[Row]) -> (Option<u16>, String) {
    let outgate: Vec<&Row> = rows.iter().filter(|r| r.case == Case::Outgate).collect();
    let lossless: Vec<&Row> = outgate.iter().copied().filter(|r| r.lossless()).collect();
    let Some(best) = lossless
        .iter()
        .max_by(|a, b| a.udp_delivered_per_s.total_cmp(&b.udp_delivered_per_s))
    else {
        return (
            None,
            if outgate.is_empty() {
                "no outgate case ran".into()
            } else {
                "every queue count lost new flows in this run (see queue/user dropped): run it\n  again on a quieter machine, or with more queues".into()
            },
        );
    };
    let mut fits: Vec<&&Row> = lossless
        .iter()
        .filter(|r| r.udp_delivered_per_s >= 0.9 * best.udp_delivered_per_s)
        .collect();
    fits.sort_by_key(|r| r.queues);
    let pick = fits.first().map_or(best.queues, |r| r.queues);
    let why = if pick == best.queues {
        format!(
            "the most new flows per second ({}) with nothing lost",
            si(best.udp_delivered_per_s)
        )
    } else {
        format!(
            "the smallest count within 10% of the best new-flow rate ({} with {}) that lost\n  nothing; more queues would take cores for no gain",
            si(best.udp_delivered_per_s),
            best.queues
        )
    };
    (Some(pick), why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: Case, queues: u16, rate: f64, lost: u64) -> Row {
        let mut r = Row::new(case, queues);
        r.udp_sent = 1000;
        r.udp_delivered = 1000 - lost;
        r.udp_delivered_per_s = rate;
        r.queue_dropped = Some(lost);
        r.user_dropped = Some(0);
        r
    }

    #[test]
    fn recommends_the_smallest_count_near_the_best_without_loss() {
        let rows = [
            row(Case::Outgate, 1, 95.0, 0),
            row(Case::Outgate, 2, 100.0, 0),
            row(Case::Outgate, 4, 150.0, 3),
        ];
        assert_eq!(recommend(&rows).0, Some(1));
        let rows = [
            row(Case::Outgate, 1, 80.0, 0),
            row(Case::Outgate, 2, 100.0, 0),
        ];
        assert_eq!(recommend(&rows).0, Some(2));
        let rows = [row(Case::Outgate, 1, 80.0, 1)];
        assert_eq!(recommend(&rows).0, None);
    }
}
