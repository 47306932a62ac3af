//! `outgate bench`, the real binary on short synthetic runs: the figures' shape, never their values
//! (speed is measured by the command, not asserted here).

use std::process::{Command, Output};

use serde_json::Value;

fn outgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outgate"))
        .args(args)
        .output()
        .expect("run outgate")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SHORT: [&str; 6] = [
    "bench",
    "--synthetic",
    "20000",
    "--workers",
    "1,2",
    "--runs",
];

#[test]
fn json_has_a_row_per_worker_count_and_recommends_one_of_them() {
    let mut args = SHORT.to_vec();
    args.extend(["2", "--format", "json"]);
    let o = outgate(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    assert_eq!(v["packets"], 20_000, "every generated packet was replayed");
    assert_eq!(v["flows"], 2_000, "one flow per 10 packets");
    assert_eq!(v["runs"], 2);
    let rows = v["rows"].as_array().expect("rows");
    let workers: Vec<u64> = rows.iter().filter_map(|r| r["workers"].as_u64()).collect();
    assert_eq!(workers, [1, 2]);
    for r in rows {
        assert_eq!(r["seconds"].as_array().map(Vec::len), Some(2), "{r}");
        let p = &r["packets_per_second"];
        let (min, median, max) = (p["min"].as_f64(), p["median"].as_f64(), p["max"].as_f64());
        assert!(min > Some(0.0) && min <= median && median <= max, "{r}");
        assert!(r["flows_per_second"]["median"].as_f64() > Some(0.0), "{r}");
    }
    assert_eq!(rows[0]["speedup"], 1.0, "the first count is the base");
    let recommended = v["recommended"]["workers"].as_u64().expect("recommended");
    assert!(workers.contains(&recommended), "{v}");
    assert!(
        v["recommended"]["why"]
            .as_str()
            .is_some_and(|w| w.contains("median")),
        "{v}"
    );
}

#[test]
fn the_table_has_its_header_and_recommendation_and_the_plot_is_svg() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("bench.svg");
    let mut args = SHORT.to_vec();
    args.extend(["1", "--flows", "500", "--plot", svg.to_str().unwrap()]);
    let o = outgate(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("20000 packets over 500 flows"), "{text}");
    assert!(
        text.contains("workers   packets/s            (min - max)     flows/s"),
        "{text}"
    );
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(['1', '2']) && l.ends_with('x'))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("recommended: --workers 1: ")
            || last.starts_with("recommended: --workers 2: "),
        "{text}"
    );
    let plot = std::fs::read_to_string(&svg).expect("the plot is written");
    assert!(
        plot.starts_with("<svg") || plot.starts_with("<?xml"),
        "{plot}"
    );
    assert!(
        plot.contains("<path") || plot.contains("<polyline"),
        "{plot}"
    );
    assert!(plot.contains("workers"), "the axis is named");
}

#[test]
fn bad_input_is_a_clear_error() {
    // Usage errors: exit 2, as for every command.
    for args in [
        vec!["bench"],
        vec!["bench", "--synthetic", "1000", "--workers", "0"],
        vec!["bench", "--synthetic", "1000", "--workers", "1,x"],
        vec!["bench", "--synthetic", "1000", "--runs", "0"],
        vec!["bench", "--synthetic", "0"],
        vec!["bench", "--flows", "10", "x.pcap"],
        vec!["bench", "--synthetic", "1000", "x.pcap"],
    ] {
        let o = outgate(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    // A capture that cannot be read: exit 1, the file named, nothing measured.
    let o = outgate(&["bench", "--runs", "1", "/nonexistent/monday.pcap"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent/monday.pcap"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    // A plot that cannot be written fails before the replays.
    let o = outgate(&[
        "bench",
        "--synthetic",
        "1000",
        "--plot",
        "/nonexistent/bench.svg",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("/nonexistent/bench.svg: cannot create"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_says_how_to_read_it_and_pick_workers() {
    let o = outgate(&["bench", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    let help = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "median",
        "outgate replay --workers N",
        "queues",
        "--synthetic",
    ] {
        assert!(help.contains(needle), "{needle}: {help}");
    }
}

/// Ctrl-C while the synthetic capture is being written stops the writing and removes the file (before,
/// the first Ctrl-C waited for the whole file and a second one left it in TMPDIR).
#[test]
fn ctrl_c_while_generating_removes_the_capture() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_outgate"))
        .args([
            "bench",
            "--synthetic",
            "100000000",
            "--workers",
            "1",
            "--runs",
            "1",
        ])
        .env("TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn outgate bench");
    let pid = child.id();
    // Wait until the capture is being written, then interrupt.
    let start = std::time::Instant::now();
    let written = || {
        walk(tmp.path())
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 1 << 20))
    };
    while !written() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "no capture was written"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let kill = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let start = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the bench did not stop on Ctrl-C while generating");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
    assert_eq!(walk(tmp.path()), Vec::<std::path::PathBuf>::new());
}

/// Every file and folder under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
