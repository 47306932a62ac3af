//! `outgate try`: a policy tried on the running daemon, through its control socket.

use std::path::Path;
use std::process::ExitCode;

use outgate::Policy;
use outgate::nfqueue;
use outgate::policy::error_list;

use super::load_policy;

/// `outgate try POLICY`: checked here, then its text is sent to the daemon.
pub fn try_policy(policy: &Path, timeout: u64, control: &Path) -> Result<ExitCode, String> {
    let path = std::path::absolute(policy).map_err(|e| format!("{}: {e}", policy.display()))?;
    let name = match path.to_str() {
        Some(name) if !name.contains(['\t', '\n']) => name.to_string(),
        _ => {
            return Err(format!(
                "{}: a policy path with tabs, newlines or not in UTF-8 cannot be tried",
                path.display()
            ));
        }
    };
    let text = outgate::policy::read_bounded(&path).map_err(|e| format!("{name}: {e}"))?;
    let checked = Policy::compile_bytes(&name, &text).map_err(|errors| {
        format!(
            "{}\n{} error(s); nothing was sent to the daemon",
            error_list(&errors),
            errors.len()
        )
    })?;
    let answer = nfqueue::control::request(control, &format!("try {timeout} {name}"), &text)?;
    match answer.strip_prefix("ok: ") {
        Some(said) => {
            println!("outgate: {said}");
            eprintln!(
                "outgate: {name} ({}) is in force; `outgate try --confirm` within {timeout} s keeps it",
                checked.hash()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => Err(format!("the daemon refused: {answer}")),
    }
}

/// `outgate try --confirm`: the daemon keeps the tried policy; its file replaces the daemon's
/// --policy file (the old one kept as FILE.prev) so that a reload or restart keeps it too.
pub fn confirm_policy(control: &Path) -> Result<ExitCode, String> {
    let answer = nfqueue::control::request(control, "confirm", b"")?;
    let fields: Vec<&str> = answer.split('\t').collect();
    let ["confirmed", hash, tried, target] = fields.as_slice() else {
        return Err(format!("the daemon refused: {answer}"));
    };
    println!("outgate: the daemon keeps {tried} ({hash})");
    if *target == "-" {
        eprintln!(
            "outgate: warning: the daemon runs without --policy: a reload or restart goes back to the built-in policy"
        );
        return Ok(ExitCode::SUCCESS);
    }
    install(Path::new(tried), hash, Path::new(target))?;
    println!("outgate: {tried} copied to {target} (the old policy is {target}.prev)");
    Ok(ExitCode::SUCCESS)
}

/// Copies the tried policy over the daemon's --policy file, unless it changed since the daemon read it.
fn install(tried: &Path, hash: &str, target: &Path) -> Result<(), String> {
    if std::fs::canonicalize(tried).ok() == std::fs::canonicalize(target).ok() {
        return Ok(());
    }
    let text = std::fs::read(tried).map_err(|e| format!("{}: {e}", tried.display()))?;
    let now = load_policy(Some(tried.to_path_buf()))?;
    if now.hash() != hash {
        return Err(format!(
            "{} changed since the daemon read it ({hash}, now {}): the daemon keeps what it read, but \
             {} was not replaced; copy the policy yourself",
            tried.display(),
            now.hash(),
            target.display()
        ));
    }
    let prev = target.with_extension(match target.extension() {
        Some(e) => format!("{}.prev", e.to_string_lossy()),
        None => "prev".to_string(),
    });
    let fail = |e: std::io::Error, p: &Path| format!("{}: {e}", p.display());
    if target.exists() {
        std::fs::copy(target, &prev).map_err(|e| fail(e, &prev))?;
    }
    let temp = target.with_extension("outgate-try");
    std::fs::write(&temp, text).map_err(|e| fail(e, &temp))?;
    if let Ok(meta) = std::fs::metadata(target) {
        std::fs::set_permissions(&temp, meta.permissions()).map_err(|e| fail(e, &temp))?;
    }
    std::fs::rename(&temp, target).map_err(|e| fail(e, target))
}
