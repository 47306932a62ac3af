//! `outgate probe`: its command line and help.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use outgate::policy::Cidr;
use outgate::probe::address::Allow;
use outgate::probe::fetch::Limits;
use outgate::probe::state::Time;
use outgate::probe::{ProbeConfig, run};

use super::parse_cidr;

pub const PROBE_ABOUT: &str =
    "Test the suspect servers of HTTP logs the way a browser would: confirm tunnel confederates.";

pub const PROBE_LONG_ABOUT: &str = "\
Test the suspect servers of HTTP logs the way a browser would: confirm tunnel confederates.

Takes the hosts `outgate report` lists from the HTTP logs (numeric-IP hosts, hosts only sent POSTs, \
odd URLs), and asks each server for the URL a client used, then for `/`. GET only, never a request \
body or cookie; the User-Agent says outgate-probe. The answer to `GET /` decides:

  a real page (2xx HTML) or a redirect   cleared: not probed again for a week
  nothing, not HTTP, a binary body, or   suspect; failing again at least 20 h later confirms it
  a body that never ends (GNU httptunnel's hts sends headers promising 100 KiB, then holds on)
  any other HTTP answer (404, text)      unclear: no change

A suspect is probed again by the first run 20 h or more later even if the logs no longer name it; \
cleared and confirmed servers only when the logs name them again. The hosts of confirmed servers go \
to --confederates, one a line, for a policy rule such as

  DROP loc net tcp 80,8080 host=@confederates.txt

(an empty list matches no host). The daemon reads it when it starts or reloads. The state file keeps every server's status and its last 10 \
probes with their time and evidence (JSON); an entry without new evidence for 30 days is dropped, \
from the confederates file too.

Safety: it runs only when you run it (never from `run`); one probe per server per 20 h, \
--max-servers per run, --interval between servers; each request reads at most 64 KiB, connects \
within 5 s, waits at most 5 s for bytes and 10 s in all. Addresses in private, loopback, link-local, \
CGN, documentation, multicast and other special IPv4 and IPv6 ranges are never probed unless \
--allow names their network; a host name is resolved once and the probe connects to the address \
it checked.

Run it where outgate does not filter its own requests (on the gateway in gateway mode, or another \
machine): a probe the policy drops looks like a silent server. Once a day, after the logs rotate:

  outgate probe --state /var/lib/outgate/probe.json \\
      --confederates /etc/outgate/confederates.txt /var/log/outgate/http.jsonl.1
  outgate probe --dry-run --state /var/lib/outgate/probe.json /var/log/outgate/http.jsonl

Exit codes: 0 done (whatever the servers answered); 1 a log or the state file cannot be read, or a \
file cannot be written; 2 the command line is wrong.";

#[derive(Args)]
pub struct ProbeArgs {
    /// The state file (JSON; made on the first run): each server's status and its probes.
    #[arg(long, value_name = "FILE")]
    state: PathBuf,
    /// Write the hosts of the confirmed servers here, one a line, for a policy's `host=@FILE`.
    #[arg(long, value_name = "FILE")]
    confederates: Option<PathBuf>,
    /// Print what would be probed and skipped, and why; send nothing, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Probe addresses in this network even if it is private or special (repeatable), e.g. your
    /// own DMZ.
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    allow: Vec<Cidr>,
    /// Probe at most this many servers per run; the others wait for the next run.
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    max_servers: u64,
    /// Seconds to wait between two servers' probes.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0,
          value_parser = parse_seconds)]
    interval: f64,
    /// Added to the User-Agent, so a server's admin can reach you (an email address).
    #[arg(long, value_name = "TEXT", value_parser = parse_contact)]
    contact: Option<String>,
    /// For tests: act as if it were this time (RFC 3339), to run the second round without waiting.
    #[arg(long, value_name = "TIME", hide = true, value_parser = Time::parse)]
    now: Option<Time>,
    /// HTTP logs (JSON lines from `outgate run --http-log` or `outgate replay --http-log`).
    #[arg(required = true, value_name = "HTTP-LOG")]
    logs: Vec<PathBuf>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("'{s}' is not a number of seconds from 0 to 3600")),
    }
}

fn parse_contact(s: &str) -> Result<String, String> {
    if s.len() <= 200 && s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(s.to_string())
    } else {
        Err("printable ASCII, at most 200 characters".into())
    }
}

pub fn run_probe(args: ProbeArgs) -> Result<ExitCode, String> {
    let cfg = ProbeConfig {
        logs: args.logs,
        state: args.state,
        confederates: args.confederates,
        dry_run: args.dry_run,
        allow: Allow(args.allow),
        now: args.now,
        max_servers: usize::try_from(args.max_servers).unwrap_or(usize::MAX),
        interval: Duration::from_secs_f64(args.interval),
        contact: args.contact,
        limits: Limits::default(),
    };
    run(&cfg, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}
