//! `outgate diff`: its own exit codes, for scripts.

use std::path::PathBuf;
use std::process::ExitCode;

use outgate::Engine;
use outgate::diff::{DiffConfig, diff};
use outgate::policy::Cidr;

use super::{emit, load_policy};
use crate::Format;

/// 0 nothing changes, 1 something does, 2 an error.
pub fn diff_command(
    old: PathBuf,
    new: PathBuf,
    format: Format,
    lan: Vec<Cidr>,
    inputs: Vec<PathBuf>,
) -> ExitCode {
    const ERROR: u8 = 2;
    let run = || -> Result<ExitCode, String> {
        let old = Engine::new(load_policy(Some(old))?).with_lan(lan.clone());
        let new = Engine::new(load_policy(Some(new))?).with_lan(lan);
        let cfg = DiffConfig {
            inputs,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let d = diff(&old, &new, &cfg).map_err(|e| e.to_string())?;
        match format {
            Format::Table => emit(&d.table())?,
            Format::Json => emit(&format!("{}\n", d.json()))?,
        }
        for e in &d.errors {
            eprintln!("outgate: {e}");
        }
        Ok(if !d.errors.is_empty() {
            ExitCode::from(ERROR)
        } else if d.changes_anything() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    };
    run().unwrap_or_else(|message| {
        eprintln!("outgate: {message}");
        ExitCode::from(ERROR)
    })
}
