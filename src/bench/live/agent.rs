//! The traffic generators of `outgate bench --live`, run by the bench inside its namespaces as
//! `outgate bench-agent ...` (a hidden subcommand). Each prints one JSON line on stdout: what it did.
//!
//! Every packet or connection goes to an address of [`ANY_NET`], which the server namespace owns whole
//! (a local route on its loopback), so each one is a new flow without a socket per flow.

use std::io::{BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The first two octets of the /16 the server namespace owns: 10.202.0.0/16.
pub const ANY_NET: [u8; 2] = [10, 202];
/// The client's address on the veth.
pub(crate) const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 1);
/// The server's address on the veth.
pub(crate) const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 2);
/// Where the new-flow blast goes (DNS: the built-in policy accepts it).
pub(crate) const UDP_PORT: u16 = 53;
/// Where the connections of the rate and latency cases go (HTTP: the built-in policy accepts it).
pub const CONNECT_PORT: u16 = 80;
/// Where the bulk transfer goes (HTTPS: the built-in policy accepts it).
pub const BULK_PORT: u16 = 443;
/// Distinct destination addresses used per source port (last octet 1 to 254).
const ADDRESSES: u32 = 256 * 254;

/// The `i`-th destination address of [`ANY_NET`] (wrapping after 65,024: last octets 1 to 254).
pub fn destination(i: u32) -> Ipv4Addr {
    let i = i % ADDRESSES;
    Ipv4Addr::new(ANY_NET[0], ANY_NET[1], (i / 254) as u8, (1 + i % 254) as u8)
}

/// What an agent is asked to do.
#[derive(Clone, Debug)]
pub enum Task {
    /// Server side: accept and close on [`CONNECT_PORT`], read and discard on [`BULK_PORT`]; prints
    /// `ready`, then serves until its stdin closes.
    Serve,
    /// One UDP datagram of `payload` bytes to each of `flows` flows, from `senders` threads.
    Udp {
        flows: u32,
        payload: usize,
        senders: u32,
    },
    /// Closed-loop connections on `threads` threads for `secs` seconds: connect, wait for the server's
    /// close, close, repeat.
    Connect { threads: u32, secs: f64 },
    /// `count` connects one after another, each timed.
    Latency { count: u32 },
    /// One connection sending as fast as it can for `secs` seconds.
    Bulk { secs: f64 },
}

/// What the UDP blast did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct UdpDone {
    pub sent: u64,
    pub errors: u64,
    pub secs: f64,
}

/// What the closed-loop connections did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConnectDone {
    pub connections: u64,
    pub errors: u64,
    pub secs: f64,
}

/// The connect times, in microseconds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LatencyDone {
    pub count: u64,
    pub errors: u64,
    pub median_us: f64,
    pub p99_us: f64,
}

/// What the bulk transfer did.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct BulkDone {
    pub bytes: u64,
    pub secs: f64,
}

/// Runs `task`, printing its result as one JSON line.
pub fn run(task: &Task) -> Result<(), String> {
    let line = match *task {
        Task::Serve => return serve(),
        Task::Udp {
            flows,
            payload,
            senders,
        } => json(&udp(flows, payload, senders)?),
        Task::Connect { threads, secs } => json(&connect(threads, secs)),
        Task::Latency { count } => json(&latency(count)),
        Task::Bulk { secs } => json(&bulk(secs)?),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn any_addr(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
}

fn serve() -> Result<(), String> {
    let bind = |port| {
        TcpListener::bind(any_addr(port)).map_err(|e| format!("cannot listen on tcp {port}: {e}"))
    };
    let (conns, bulk) = (bind(CONNECT_PORT)?, bind(BULK_PORT)?);
    for _ in 0..2 {
        let conns = conns
            .try_clone()
            .map_err(|e| format!("cannot share the listener: {e}"))?;
        std::thread::spawn(move || {
            for stream in conns.incoming() {
                drop(stream);
            }
        });
    }
    std::thread::spawn(move || {
        for stream in bulk.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = vec![0u8; 1 << 18];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    // Serves until the bench closes our stdin (or is gone).
    let mut line = String::new();
    while matches!(std::io::stdin().lock().read_line(&mut line), Ok(n) if n > 0) {
        line.clear();
    }
    Ok(())
}

fn udp(flows: u32, payload: usize, senders: u32) -> Result<UdpDone, String> {
    let senders = senders.clamp(1, flows.max(1));
    let start = Instant::now();
    // Each thread has its own sockets (source ports), so its flows are distinct from the others'.
    let threads: Vec<_> = (0..senders)
        .map(|t| {
            let share = flows / senders + u32::from(t < flows % senders);
            std::thread::spawn(move || udp_share(share, payload))
        })
        .collect();
    let mut done = UdpDone::default();
    for t in threads {
        let part = t
            .join()
            .map_err(|_| "a sending thread failed".to_string())??;
        done.sent += part.sent;
        done.errors += part.errors;
    }
    done.secs = start.elapsed().as_secs_f64();
    Ok(done)
}

fn udp_share(flows: u32, payload: usize) -> Result<UdpDone, String> {
    let sockets = flows.div_ceil(ADDRESSES).max(1);
    let sockets: Vec<UdpSocket> = (0..sockets)
        .map(|_| UdpSocket::bind(SocketAddrV4::new(CLIENT_ADDR, 0)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot open a UDP socket on {CLIENT_ADDR}: {e}"))?;
    let data = vec![0x5au8; payload];
    let mut done = UdpDone::default();
    for i in 0..flows {
        let socket = &sockets[(i / ADDRESSES) as usize];
        match socket.send_to(&data, SocketAddrV4::new(destination(i), UDP_PORT)) {
            Ok(_) => done.sent += 1,
            Err(_) => done.errors += 1,
        }
    }
    Ok(done)
}

fn dial(i: u32, port: u16) -> std::io::Result<TcpStream> {
    let to = SocketAddr::V4(SocketAddrV4::new(destination(i), port));
    TcpStream::connect_timeout(&to, Duration::from_secs(3))
}

/// Waits until the server has accepted and closed the connection, so that the loop stays closed: a
/// client faster than the server's accepts would otherwise overflow its listen queue and wait a second
/// for each SYN dropped there.
fn served(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut byte = [0u8; 1];
    match stream.read(&mut byte)? {
        0 => Ok(()),
        _ => Err(std::io::Error::other("the server sent data")),
    }
}

fn connect(threads: u32, secs: f64) -> ConnectDone {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.max(1))
        .map(|_| {
            let (next, errors, stop) = (next.clone(), errors.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if dial(i as u32, CONNECT_PORT).and_then(served).is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let errors = errors.load(Ordering::Relaxed);
    ConnectDone {
        connections: next.load(Ordering::Relaxed).saturating_sub(errors),
        errors,
        secs,
    }
}

fn latency(count: u32) -> LatencyDone {
    let mut micros = Vec::with_capacity(count as usize);
    let mut errors = 0;
    // Far from the addresses the connection-rate case used, should it have run just before.
    for i in 0..count {
        let start = Instant::now();
        match dial(ADDRESSES / 2 + i, CONNECT_PORT) {
            Ok(_) => micros.push(start.elapsed().as_secs_f64() * 1e6),
            Err(_) => errors += 1,
        }
    }
    micros.sort_by(f64::total_cmp);
    LatencyDone {
        count: micros.len() as u64,
        errors,
        median_us: quantile(&micros, 0.5),
        p99_us: quantile(&micros, 0.99),
    }
}

/// The `q` quantile of sorted values (nearest rank); 0 when there are none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn bulk(secs: f64) -> Result<BulkDone, String> {
    let mut stream = dial(0, BULK_PORT).map_err(|e| format!("cannot connect for bulk: {e}"))?;
    // A flow the filter stops (a --policy that drops tcp 443, a daemon gone in fail-closed mode) would
    // otherwise block here until TCP gives up, many minutes later.
    stream
        .set_write_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| format!("cannot set a write timeout: {e}"))?;
    let data = vec![0x5au8; 1 << 17];
    let mut bytes = 0u64;
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    while start.elapsed() < limit {
        stream
            .write_all(&data)
            .map_err(|e| format!("bulk transfer stalled or broke after {bytes} bytes: {e}"))?;
        bytes += data.len() as u64;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(BulkDone {
        bytes,
        secs: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_distinct_and_avoid_0_and_255() {
        let all: std::collections::HashSet<Ipv4Addr> = (0..ADDRESSES).map(destination).collect();
        assert_eq!(all.len(), ADDRESSES as usize);
        assert!(
            all.iter()
                .all(|a| a.octets()[3] != 0 && a.octets()[3] != 255)
        );
        assert_eq!(destination(ADDRESSES), destination(0));
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
