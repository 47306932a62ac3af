//! The Debian package: built by packaging/build-deb (a release build, then `cargo deb`), installed with
//! `dpkg -i` on this machine, checked at its installed paths, then purged, leaving nothing behind.
//!
//! Root, dpkg and cargo-deb are needed (`.ci/run` installs cargo-deb); the test refuses to run where
//! outgate is already installed or a user outgate exists, since it purges both at the end. This machine
//! runs no systemd: the maintainer scripts must cope.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TEST: &str = "package_installs_checks_and_purges";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let o = run(program, args);
    assert!(
        o.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The target directory this test was built in (its binary is TARGET/debug/outgate): the package's
/// release build goes beside it, reusing what an earlier `cargo build --release` left there.
fn target_dir() -> PathBuf {
    let bin = Path::new(common::outgate_bin());
    bin.parent()
        .and_then(Path::parent)
        .expect("the binary in TARGET/PROFILE/")
        .to_path_buf()
}

/// Builds the package; returns the path of the .deb.
fn build() -> PathBuf {
    let o = Command::new("packaging/build-deb")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("packaging/build-deb");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "packaging/build-deb: {stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
        "the last line of packaging/build-deb names the package: {stdout}"
    );
    deb
}

/// The subcommands `outgate --help` lists (each has a man page).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A name starts its line at two spaces; descriptions wrap further in.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

fn user_exists(name: &str) -> bool {
    run("getent", &["passwd", name]).status.success()
}

fn group_exists(name: &str) -> bool {
    run("getent", &["group", name]).status.success()
}

#[test]
fn package_installs_checks_and_purges() {
    if !common::root(TEST)
        || !common::tool(TEST, "dpkg")
        || !common::tool(TEST, "cargo-deb")
        || !common::tool(TEST, "man")
    {
        return;
    }
    let _g = common::serial();
    assert!(
        !run("dpkg", &["-s", "outgate"]).status.success(),
        "the package outgate is installed on this machine: this test would purge it (dpkg --purge \
         outgate first, if it is a leftover of this test)"
    );
    assert!(
        !user_exists("outgate") && !group_exists("outgate"),
        "a user or group outgate exists on this machine: this test would delete it"
    );
    let deb = build();
    ok("dpkg", &["-i", &deb.display().to_string()]);
    let files: Vec<PathBuf> = ok("dpkg", &["-L", "outgate"])
        .lines()
        .map(PathBuf::from)
        .collect();
    let installed = || -> BTreeSet<&Path> {
        files
            .iter()
            .map(PathBuf::as_path)
            .filter(|p| p.is_file())
            .collect()
    };
    let checked = std::panic::catch_unwind(|| installed_as_documented(&installed()));
    ok("dpkg", &["--purge", "outgate"]);
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }

    // Nothing left: the package's files, its conffiles, the user and group, the log directory.
    assert!(
        installed().is_empty(),
        "left after the purge: {:?}",
        installed()
    );
    for dir in ["/etc/outgate", "/var/log/outgate", "/usr/share/doc/outgate"] {
        assert!(!Path::new(dir).exists(), "{dir} left after the purge");
    }
    assert!(
        !user_exists("outgate") && !group_exists("outgate"),
        "the user or group outgate is left after the purge"
    );
    assert!(!run("dpkg", &["-s", "outgate"]).status.success());
}

/// What README's "Install" says is where it says, and works from there.
fn installed_as_documented(files: &BTreeSet<&Path>) {
    let has = |p: &str| files.contains(Path::new(p));
    for path in [
        "/usr/bin/outgate",
        "/lib/systemd/system/outgate.service",
        "/lib/systemd/system/outgate-rules.service",
        "/etc/default/outgate",
        "/etc/outgate/policy.rules",
        "/usr/share/bash-completion/completions/outgate",
        "/usr/share/zsh/vendor-completions/_outgate",
        "/usr/share/fish/vendor_completions.d/outgate.fish",
        "/usr/share/doc/outgate/README.md",
    ] {
        assert!(has(path), "{path} not installed: {files:?}");
    }
    let conffiles = ok("dpkg-query", &["-W", "-f", "${Conffiles}", "outgate"]);
    for conffile in ["/etc/default/outgate", "/etc/outgate/policy.rules"] {
        assert!(
            conffiles.contains(conffile),
            "{conffile} is not a conffile: {conffiles}"
        );
    }

    // The installed binary checks the installed policy, as root and as the daemon's user.
    let check = ok(
        "/usr/bin/outgate",
        &["check", "--policy", "/etc/outgate/policy.rules"],
    );
    assert!(check.contains("valid"), "{check}");
    let as_user = ok(
        "setpriv",
        &[
            "--reuid=outgate",
            "--regid=outgate",
            "--clear-groups",
            "/usr/bin/outgate",
            "check",
            "--policy",
            "/etc/outgate/policy.rules",
        ],
    );
    assert_eq!(as_user, check, "the daemon's user reads the policy too");
    assert_eq!(
        ok("cat", &["/etc/outgate/policy.rules"]),
        ok("/usr/bin/outgate", &["check", "--print-default"]),
        "the packaged policy is the built-in one"
    );

    // The daemon's user: a system user that cannot log in.
    let passwd = ok("getent", &["passwd", "outgate"]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system uid: {passwd}");
    assert!(fields[6].ends_with("nologin"), "no login shell: {passwd}");

    // The units name the installed binary, and systemd accepts them as installed.
    for unit in ["outgate.service", "outgate-rules.service"] {
        let text = ok("cat", &[&format!("/lib/systemd/system/{unit}")]);
        assert!(text.contains("ExecStart=/usr/bin/outgate "), "{unit}");
        if common::tool(TEST, "systemd-analyze") {
            let o = run(
                "systemd-analyze",
                &["verify", &format!("/lib/systemd/system/{unit}")],
            );
            let stderr = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success() && stderr.trim().is_empty(),
                "{unit}: {stderr}"
            );
        }
    }

    // A man page for outgate and one for each subcommand, which man reads.
    let help = ok("/usr/bin/outgate", &["--help"]);
    let subs = subcommands(&help);
    assert!(subs.len() >= 5, "subcommands in: {help}");
    let pages =
        std::iter::once("outgate".to_string()).chain(subs.iter().map(|s| format!("outgate-{s}")));
    for page in pages {
        let path = format!("/usr/share/man/man1/{page}.1");
        let roff = ok("cat", &[&path]);
        assert!(roff.contains(&format!(".TH {page} 1")), "{path}: {roff}");
        let o = Command::new("man")
            .args(["-l", &path])
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && text.contains("NAME") && text.contains("SYNOPSIS"),
            "man -l {path}: {text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    // Completions that know the subcommands; bash's parses.
    for path in [
        "/usr/share/bash-completion/completions/outgate",
        "/usr/share/zsh/vendor-completions/_outgate",
        "/usr/share/fish/vendor_completions.d/outgate.fish",
    ] {
        let text = ok("cat", &[path]);
        for sub in &subs {
            assert!(text.contains(sub.as_str()), "{path} lacks {sub}");
        }
        assert!(
            !text.contains("package-files"),
            "{path}: a hidden subcommand"
        );
    }
    ok(
        "bash",
        &["-n", "/usr/share/bash-completion/completions/outgate"],
    );
}

/// `outgate package-files` (what the package's man pages, completions and policy come from), without
/// root: a page for outgate and each subcommand `--help` lists, completions for each shell naming them
/// all and no hidden one, the built-in policy.
#[test]
fn package_files_follow_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("files");
    ok(
        common::outgate_bin(),
        &["package-files", &out.display().to_string()],
    );
    let help = ok(common::outgate_bin(), &["--help"]);
    let subs = subcommands(&help);
    assert!(subs.len() >= 5, "subcommands in: {help}");
    let mut pages: Vec<String> = std::fs::read_dir(out.join("man"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    let mut expected: Vec<String> = std::iter::once("outgate.1".to_string())
        .chain(subs.iter().map(|s| format!("outgate-{s}.1")))
        .collect();
    expected.sort();
    assert_eq!(pages, expected, "one page each, no hidden subcommand");
    for page in &pages {
        let roff = std::fs::read_to_string(out.join("man").join(page)).unwrap();
        let name = page.trim_end_matches(".1");
        assert!(roff.contains(&format!(".TH {name} 1")), "{page}: {roff}");
    }
    for shell in ["outgate", "_outgate", "outgate.fish"] {
        let text = std::fs::read_to_string(out.join("completions").join(shell)).unwrap();
        for sub in &subs {
            assert!(text.contains(sub.as_str()), "{shell} lacks {sub}");
        }
        for hidden in ["bench-agent", "package-files"] {
            assert!(!text.contains(hidden), "{shell} offers {hidden}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(out.join("policy.rules")).unwrap(),
        ok(common::outgate_bin(), &["check", "--print-default"])
    );
}
