//! Hostile input, end to end: damaged packets through the engine, damaged captures through the reader
//! and `outgate replay`, hostile policy files through the parser and `outgate check`, and damaged logs
//! through `outgate report`. What is tested, and the numbers, are in HARDENING.md ("Hostile input").

#[path = "../common/mod.rs"]
mod common;

mod captures;
mod logs;
mod packets;
mod policy;

use std::process::{Command, Output};

/// A seeded xorshift generator: the damage is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn word(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.word() % n as u64) as usize
    }
}

/// Address space the binary gets in [`outgate_limited`]: an allocation sized from a hostile length
/// field (4 GB) cannot succeed within it, and the process would abort.
pub const ADDRESS_SPACE_KIB: u64 = 512 * 1024;

/// Runs the real binary with `args`, its address space limited to [`ADDRESS_SPACE_KIB`] (`ulimit -v`).
pub fn outgate_limited(args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" \"$@\""
        ))
        .arg(common::outgate_bin())
        .args(args)
        .output()
        .expect("run outgate")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
