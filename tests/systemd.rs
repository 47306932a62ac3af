//! The systemd unit: `systemd-analyze verify` accepts it, and its exposure score stays low.

mod common;

use std::process::Command;

/// The unit with the binary path pointed at the one this build made (verify checks that it exists).
fn unit_for_this_build(dir: &std::path::Path) -> std::path::PathBuf {
    let text = include_str!("../systemd/outgate.service")
        .replace("/usr/local/bin/outgate", env!("CARGO_BIN_EXE_outgate"));
    let path = dir.join("outgate.service");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unit_verifies() {
    if !common::tool("unit_verifies", "systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd)");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "verify warns: {stderr}");
}

#[test]
fn exposure_score_is_low() {
    if !common::tool("exposure_score_is_low", "systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("exposure level for outgate.service: ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    // README reports this figure; 10 is "UNSAFE", below 4 systemd calls "OK".
    assert!(score <= 2.5, "exposure {score}:\n{text}");
}
