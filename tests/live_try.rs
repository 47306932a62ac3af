//! `outgate try`, live: the daemon switches to the policy tried and back by itself unless confirmed
//! within the timeout; confirmed, it stays (and replaces the --policy file, so a reload keeps it). Only
//! root reaches the control socket.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Setup, host_mode, outgate_bin, serial, wait_for};

/// The policy the daemon starts with: 8080 open, 9090 closed.
const OPEN_8080: &str = "\
policy loc net DROP
ACCEPT loc net tcp 8080
";

/// The policy tried: the other way round.
const OPEN_9090: &str = "\
policy loc net DROP
ACCEPT loc net tcp 9090
";

fn start(s: &mut Setup) -> usize {
    let www = s.lab.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("x"), "x\n").unwrap();
    for port in [8080, 9090] {
        s.lab.http_server(&s.server.clone(), port, &www);
    }
    s.rules("--apply", "");
    let control = s.lab.path("ctl/control");
    s.daemon_logged(OPEN_8080, &format!("--control {}", control.display()))
}

fn outgate(s: &Setup, args: &str) -> Output {
    let control = s.lab.path("ctl/control");
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} {args} --control {}",
            outgate_bin(),
            control.display()
        ))
        .output()
        .unwrap()
}

/// Which of the two ports a new connection from the client reaches.
fn open_ports(s: &Setup) -> (bool, bool) {
    let reach = |port| s.curl(&s.server4, port, "/x").0 == 0;
    (reach(8080), reach(9090))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn try_rolls_back_by_itself_unless_confirmed() {
    if !common::root("try_rolls_back_by_itself_unless_confirmed") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    start(&mut s);
    assert_eq!(open_ports(&s), (true, false), "the policy of --policy");

    // Only root may use the socket: its directory is root's alone.
    let ctl = s.lab.path("ctl");
    assert_eq!(
        std::fs::metadata(&ctl).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let sock = std::fs::metadata(ctl.join("control")).unwrap();
    assert_eq!(sock.permissions().mode() & 0o777, 0o600);
    std::fs::set_permissions(s.lab.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tried = s.lab.write("tried.rules", OPEN_9090);
    std::fs::set_permissions(&tried, std::fs::Permissions::from_mode(0o644)).unwrap();
    let nobody = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            outgate_bin(),
            "try",
        ])
        .arg(&tried)
        .arg("--control")
        .arg(ctl.join("control"))
        .output()
        .unwrap();
    assert!(!nobody.status.success(), "{}", text(&nobody));
    assert!(
        text(&nobody).contains("Permission denied"),
        "{}",
        text(&nobody)
    );
    assert_eq!(
        open_ports(&s),
        (true, false),
        "a refused try changes nothing"
    );

    // A broken policy is refused before anything is sent: FILE:LINE:COL, exit 1.
    let broken = s.lab.write(
        "broken.rules",
        "policy loc net DROP\nACCEPT loc net tcp 99999\n",
    );
    let o = outgate(&s, &format!("try {}", broken.display()));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{}:2:", broken.display())),
        "{}",
        text(&o)
    );
    assert_eq!(open_ports(&s), (true, false));

    // Tried: in force at once.
    let o = outgate(&s, &format!("try {} --timeout 4", tried.display()));
    let tried_at = Instant::now();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("trying"), "{}", text(&o));
    assert_eq!(
        open_ports(&s),
        (false, true),
        "the tried policy is in force"
    );

    // Not confirmed: back to --policy within the timeout plus 2 s. Probed every ~0.3 s: a SYN the
    // filter drops is not retried within a probe.
    let quick = format!(
        "curl -sS --max-time 1 --connect-timeout 0.3 http://{}:8080/x",
        s.server4
    );
    wait_for(Duration::from_secs(10), || {
        s.lab.try_sh(&s.client, &quick).status.success()
    })
    .expect("the daemon goes back to --policy");
    let back = tried_at.elapsed().as_secs_f64();
    assert!(back < 4.0 + 2.0, "back after {back:.1} s (timeout 4 s)");
    assert!(back > 3.0, "not before the timeout: {back:.1} s");
    assert!(
        s.daemon_err().contains("was not confirmed in time"),
        "{}",
        s.daemon_err()
    );
    assert_eq!(open_ports(&s), (true, false));
    // Too late to confirm.
    let o = outgate(&s, "try --confirm");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no policy is being tried"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(s.lab.path("policy.rules")).unwrap(),
        OPEN_8080,
        "the policy file is untouched"
    );
}

#[test]
fn try_confirmed_stays_and_replaces_the_policy_file() {
    if !common::root("try_confirmed_stays_and_replaces_the_policy_file") {
        return;
    }
    let _g = serial();
    let mut s = host_mode();
    let d = start(&mut s);
    let tried = s.lab.write("tried.rules", OPEN_9090);
    let o = outgate(&s, &format!("try {} --timeout 3", tried.display()));
    assert!(o.status.success(), "{}", text(&o));
    let o = outgate(&s, "try --confirm");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("copied to"), "{}", text(&o));

    // Past the timeout, the tried policy is still in force...
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(open_ports(&s), (false, true), "confirmed, it stays");
    assert!(!s.daemon_err().contains("was not confirmed"));
    // ...it is the --policy file now, the old one kept beside it...
    let policy = s.lab.path("policy.rules");
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), OPEN_9090);
    assert_eq!(
        std::fs::read_to_string(s.lab.path("policy.rules.prev")).unwrap(),
        OPEN_8080
    );
    // ...so a reload keeps it.
    let pid = s.lab.child(d).id();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    wait_for(Duration::from_secs(5), || {
        s.daemon_err().contains("is unchanged")
    })
    .unwrap_or_else(|| panic!("{}", s.daemon_err()));
    assert_eq!(open_ports(&s), (false, true));
}
