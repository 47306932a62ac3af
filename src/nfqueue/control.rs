//! The control socket (`run --control PATH`): how `outgate try` talks to the running daemon.
//!
//! A Unix stream socket in a directory only its owner may enter (made 0700 if outgate makes it; the
//! unit's RuntimeDirectory is 0700 too), itself 0600: nobody but the daemon's own user and root can
//! connect. Under systemd the daemon runs as the system user outgate, which nothing else runs as, so
//! that is root alone (tests/systemd.rs checks that nobody is refused and root is served). One request
//! a connection, one line each way:
//!
//! ```text
//! try SECONDS PATH\n TEXT...  -> ok ... | error ...     switch to the policy TEXT (read from PATH by
//!                                                      the client), back unless confirmed
//! confirm                     -> confirmed\tHASH\tTRIED-PATH\tPOLICY-PATH|- | error ...
//! ```
//!
//! The client sends the policy's text, not only its path: the daemon's unit hides /tmp and /home from
//! it, and what is tried is what the admin checked.
//!
//! The work is the reload thread's (`reload::serve`): every change of policy, SIGHUP or try, is made
//! there, one at a time. This thread only carries requests and answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use super::Live;
use super::reload::Request;

/// Longest request line read.
const MAX_LINE: u64 = 4096;
/// Largest policy text taken.
const MAX_POLICY: u64 = 16 << 20;

/// Binds the control socket at `path`: its directory is made (0700) when missing, a socket left by an
/// earlier daemon is replaced, and the socket is made 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves requests until the daemon stops, then removes the socket.
pub(super) fn serve(live: &Live, listener: &UnixListener, path: &Path, requests: &Sender<Request>) {
    while !live.stop.load(Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => answer(stream, requests),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let _ = std::fs::remove_file(path);
}

fn answer(stream: UnixStream, requests: &Sender<Request>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(reader) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(reader.take(MAX_LINE + MAX_POLICY + 1));
    let mut line = String::new();
    let (tx, rx) = bounded::<String>(1);
    let request = match reader.read_line(&mut line) {
        Ok(n) if n as u64 <= MAX_LINE => parse(line.trim_end_matches('\n'), &mut reader, tx),
        _ => Err("a request is one line".to_string()),
    };
    let reply = match request {
        Err(e) => format!("error: {e}"),
        Ok(r) => match requests.send(r) {
            Err(_) => "error: the daemon is stopping".to_string(),
            // A policy switch reads the conntrack table: give it time.
            Ok(()) => rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| "error: no answer from the daemon".to_string()),
        },
    };
    let mut stream = stream;
    let _ = writeln!(stream, "{reply}");
}

/// One request: its line, and for `try` the policy text after it (up to the end of the stream).
fn parse(line: &str, rest: &mut impl Read, reply: Sender<String>) -> Result<Request, String> {
    if line == "confirm" {
        return Ok(Request::Confirm { reply });
    }
    let mut words = line.splitn(3, ' ');
    let (Some("try"), Some(seconds), Some(name)) = (words.next(), words.next(), words.next())
    else {
        return Err(format!("not a request: {line}"));
    };
    let timeout = match seconds.parse::<u64>() {
        Ok(s) if (1..=86_400).contains(&s) => Duration::from_secs(s),
        _ => return Err(format!("not a timeout in seconds (1 to 86400): {seconds}")),
    };
    let mut text = String::new();
    match rest.read_to_string(&mut text) {
        Ok(n) if n as u64 <= MAX_POLICY => Ok(Request::Try {
            name: name.to_string(),
            text,
            timeout,
            reply,
        }),
        Ok(_) => Err(format!("{name}: larger than {} MiB", MAX_POLICY >> 20)),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// The client side: sends one request line (and `body` after it) to the daemon at `path`, returns its
/// answer line.
pub fn request(path: &Path, line: &str, body: &[u8]) -> Result<String, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "{}: cannot reach the daemon ({e}); is `outgate run --control {}` running, and are you root?",
            path.display(),
            path.display()
        )
    })?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(90)));
    writeln!(stream, "{line}")
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut answer = String::new();
    BufReader::new(stream.take(MAX_LINE))
        .read_line(&mut answer)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(answer.trim().to_string())
}
