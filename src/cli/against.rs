//! `outgate check --against ADDR`: the policy a running daemon has in force, compared with the one
//! checked. Two gateways that share a virtual address must decide alike, or a failover changes what
//! the LAN may do: each daemon's metrics name the hash of its policy (`outgate_policy_info`), and this
//! reads them over plain HTTP, as Prometheus would, from the address given to `run --metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use outgate::Policy;
use outgate::probe::fetch::{self, End, Limits};

/// What a daemon's metrics say of its policy.
#[derive(Debug, PartialEq, Eq)]
pub struct InForce {
    pub file: String,
    pub hash: String,
    pub generation: String,
}

/// The metrics' answer may be long (a sample per policy line); the policy's sample comes near the top.
const MAX_BYTES: usize = 16 << 20;

/// Compares `policy` with the daemon behind each metrics address, printing one line for each; true
/// when every daemon runs the very same policy.
pub fn against(policy: &Policy, addrs: &[String]) -> bool {
    let mut all_same = true;
    for addr in addrs {
        match in_force(addr) {
            Ok(daemon) if daemon.hash == policy.hash() => println!(
                "against {addr}: same policy ({}, generation {}, file {})",
                daemon.hash, daemon.generation, daemon.file
            ),
            Ok(daemon) => {
                all_same = false;
                println!(
                    "against {addr}: DIFFERENT policy: the daemon has {} (generation {}, file {}), \
                     {} is {}",
                    daemon.hash,
                    daemon.generation,
                    daemon.file,
                    policy.file(),
                    policy.hash()
                );
            }
            Err(e) => {
                all_same = false;
                println!("against {addr}: cannot tell: {e}");
            }
        }
    }
    all_same
}

/// Reads the policy in force from the daemon whose metrics listen on `addr`.
fn in_force(addr: &str) -> Result<InForce, String> {
    let socket: SocketAddr = addr.parse().map_err(|_| {
        "not an IP:PORT (the address the daemon's --metrics listens on, such as 127.0.0.1:9717)"
            .to_string()
    })?;
    let request = fetch::request_text(addr, "/metrics", "outgate-check");
    let limits = Limits {
        connect: Duration::from_secs(3),
        read: Duration::from_secs(3),
        total: Duration::from_secs(10),
        max_bytes: MAX_BYTES,
    };
    let got = fetch::get(socket, &request, limits);
    if let Some(e) = got.connect_error {
        return Err(format!("no connection: {e}"));
    }
    let text = String::from_utf8_lossy(&got.bytes);
    let status = text.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.") || status.split_whitespace().nth(1) != Some("200") {
        return Err(match got.end {
            End::Error(e) => format!("the answer broke off: {e}"),
            _ => format!("not a metrics answer: {:?}", status.trim()),
        });
    }
    policy_info(&text).ok_or_else(|| {
        "no outgate_policy_info in its metrics: not an outgate daemon, or one too old to say".into()
    })
}

/// The `outgate_policy_info` sample of a Prometheus text exposition.
pub fn policy_info(text: &str) -> Option<InForce> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("outgate_policy_info{"))?;
    let labels = labels(line)?;
    let get = |key: &str| {
        labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    Some(InForce {
        file: get("file")?,
        hash: get("hash")?,
        generation: get("generation")?,
    })
}

/// `key="value",...}` up to the closing brace, the values unescaped (`\\`, `\"`, `\n`).
fn labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(',');
        if rest.starts_with('}') {
            return Some(out);
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.to_string(), value));
        rest = after.get(end + 1..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_sample_is_read_with_its_escapes() {
        let text = "# HELP outgate_mode ...\noutgate_mode{mode=\"enforce\"} 1\n\
                    outgate_policy_info{file=\"/etc/a \\\"b\\\"\\\\c\",hash=\"sha256:ab\",generation=\"3\"} 1\n";
        assert_eq!(
            policy_info(text),
            Some(InForce {
                file: "/etc/a \"b\"\\c".into(),
                hash: "sha256:ab".into(),
                generation: "3".into()
            })
        );
    }

    #[test]
    fn a_broken_sample_is_none_not_a_panic() {
        for text in [
            "outgate_policy_info{",
            "outgate_policy_info{file=\"x",
            "outgate_policy_info{file=\"x\\",
            "outgate_policy_info{hash=\"h\"} 1",
            "outgate_policy_info{file=\"f\",hash=\"h\"",
            "",
        ] {
            assert_eq!(policy_info(text), None, "{text:?}");
        }
    }
}
