//! `option` and `class` lines: [`Options`] (the verdicts for unreadable packets and for flows seen from
//! their middle, the flow table's settings) and SHAPE's traffic classes.

use super::{Fail, LineParser, Token};
use crate::decision::Verdict;
use crate::flow::{FlowConfig, Timeouts};
use crate::policy::action::{Class, Rate};

/// Settings from `option` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Verdict for packets that cannot be read far enough, and for orphan fragments.
    pub malformed: Verdict,
    /// Verdict for a TCP flow seen first in its middle when a payload rule would decide it.
    pub midstream: Verdict,
    /// The flow table's settings, including how long a flow's first payload is waited for.
    pub flows: FlowConfig,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            malformed: Verdict::Drop,
            // A reset, not a silent drop: the client's application notices at once and opens a new
            // connection, whose first payload is read.
            midstream: Verdict::Reject,
            flows: FlowConfig::default(),
        }
    }
}

impl LineParser<'_> {
    fn verdict(&self, t: &Token<'_>) -> Result<Verdict, Fail> {
        Verdict::from_keyword(t.text)
            .filter(|v| *v != Verdict::Shape)
            .ok_or_else(|| {
                (
                    t.col,
                    format!(
                        "unknown action '{}' (expected ACCEPT, DROP or REJECT)",
                        t.text
                    ),
                )
            })
    }

    /// `class NAME RATE` (the name itself was collected in the first pass).
    pub(super) fn class_line(&self, toks: &[Token<'_>]) -> Result<Class, Fail> {
        let [_, name, rate] = toks else {
            let col = toks.get(3).map_or(toks[0].col, |t| t.col);
            return Err((
                col,
                "expected 'class NAME RATE', like 'class bulk 2mbit'".into(),
            ));
        };
        Ok(Class {
            name: name.text.to_string(),
            rate: Rate::parse(rate.text).map_err(|e| (rate.col, e))?,
            line: self.line,
        })
    }

    pub(super) fn option_line(
        &self,
        toks: &[Token<'_>],
        options: &mut Options,
    ) -> Result<(), Fail> {
        let name = toks
            .get(1)
            .ok_or((toks[0].col, "expected 'option NAME VALUE'".to_string()))?;
        let value = |i: usize| {
            toks.get(i)
                .ok_or((name.col, format!("option '{}' needs a value", name.text)))
        };
        let number = |t: &Token<'_>| -> Result<u64, Fail> {
            t.text.parse().map_err(|_| {
                (
                    t.col,
                    format!("expected a whole number, found '{}'", t.text),
                )
            })
        };
        let expected_len = match name.text.to_ascii_lowercase().as_str() {
            "malformed" => {
                options.malformed = self.verdict(value(2)?)?;
                3
            }
            "shape-rate" => {
                // Its class was made in the first pass; here the rate is checked.
                let t = value(2)?;
                Rate::parse(t.text).map_err(|e| (t.col, e))?;
                3
            }
            "max-flows" => {
                let t = value(2)?;
                let n = number(t)?;
                options.flows.max_flows = usize::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or((t.col, "max-flows must be at least 1".to_string()))?;
                3
            }
            "timeout" => {
                let (proto, secs) = (value(2)?, value(3)?);
                let secs = number(secs)?;
                let t: &mut Timeouts = &mut options.flows.timeouts;
                let slot = match proto.text.to_ascii_lowercase().as_str() {
                    "tcp" => &mut t.tcp,
                    "tcp-closed" => &mut t.tcp_closed,
                    "udp" => &mut t.udp,
                    "icmp" => &mut t.icmp,
                    "other" => &mut t.other,
                    other => {
                        return Err((
                            proto.col,
                            format!(
                                "unknown timeout '{other}' (expected tcp, tcp-closed, udp, icmp or other)"
                            ),
                        ));
                    }
                };
                *slot = secs;
                4
            }
            "inspect-packets" | "inspect-bytes" | "inspect-time" | "inspect-memory" => {
                let key = name.text.to_ascii_lowercase();
                let t = value(2)?;
                let n = number(t)?;
                let max: u64 = match key.as_str() {
                    "inspect-time" => 3600,
                    "inspect-memory" => 1 << 40,
                    _ => 1 << 20,
                };
                if !(1..=max).contains(&n) {
                    return Err((t.col, format!("{key} must be from 1 to {max}")));
                }
                let inspect = &mut options.flows.inspect;
                match key.as_str() {
                    "inspect-packets" => inspect.packets = n as u32,
                    "inspect-bytes" => inspect.bytes = n as usize,
                    "inspect-time" => inspect.time = n,
                    _ => inspect.memory = n as usize,
                }
                3
            }
            "inspect-limit" => {
                options.flows.inspect.limit = self.verdict(value(2)?)?;
                3
            }
            "midstream" => {
                options.midstream = self.verdict(value(2)?)?;
                3
            }
            other => {
                return Err((
                    name.col,
                    format!(
                        "unknown option '{other}' (expected malformed, midstream, shape-rate, timeout, \
                         max-flows, inspect-packets, inspect-bytes, inspect-time, inspect-memory or inspect-limit)"
                    ),
                ));
            }
        };
        match toks.get(expected_len) {
            Some(extra) => Err((
                extra.col,
                format!("unexpected '{}' after the option's value", extra.text),
            )),
            None => Ok(()),
        }
    }
}
