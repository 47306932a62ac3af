//! `outgate package-files DIR` (hidden): the Debian package's generated files, made from this binary's
//! own command line so that they cannot drift from it. packaging/build-deb runs it between the release
//! build and `cargo deb --no-build`; Cargo.toml's `[package.metadata.deb]` takes the files from there.
//!
//! DIR/man/outgate.1 and one page per subcommand (outgate-check.1, ...), DIR/completions/ for bash,
//! zsh and fish, and DIR/policy.rules, the built-in policy (the package's /etc/outgate/policy.rules).

use std::path::Path;
use std::process::ExitCode;

use clap::Command;
use clap_complete::Shell;
use outgate::policy::DEFAULT_POLICY;

pub fn package_files(cmd: Command, dir: &Path) -> Result<ExitCode, String> {
    let mut cmd = public(&cmd);
    cmd.build();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("man/outgate.1", &page(cmd.clone())?)?;
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        if name == "help" {
            continue;
        }
        let sub = sub
            .clone()
            .display_name(format!("outgate-{name}"))
            .bin_name(format!("outgate {name}"));
        write(&format!("man/outgate-{name}.1"), &page(sub)?)?;
    }
    for (shell, name) in [
        (Shell::Bash, "completions/outgate"),
        (Shell::Zsh, "completions/_outgate"),
        (Shell::Fish, "completions/outgate.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, "outgate", &mut text);
        write(name, &text)?;
    }
    write("policy.rules", DEFAULT_POLICY.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The command line without its hidden subcommands (clap_complete would offer them).
fn public(cmd: &Command) -> Command {
    Command::new("outgate")
        .version(env!("CARGO_PKG_VERSION"))
        .about(cmd.get_about().cloned().unwrap_or_default())
        .long_about(cmd.get_long_about().cloned().unwrap_or_default())
        .subcommand_required(true)
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// One man page (roff).
fn page(cmd: Command) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section("1")
        .render(&mut out)
        .map_err(|e| format!("man page: {e}"))?;
    Ok(out)
}
