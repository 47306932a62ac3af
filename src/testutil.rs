//! Helpers for the unit tests: a fixed-seed xorshift, the only source of "randomness" in them (every run
//! fuzzes the same inputs), and the shared real captures' folder, skipped when it is not there.

/// Marsaglia's xorshift64 from `seed` (not 0): the next pseudo-random number at each call.
pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// The shared real captures' folder (`../shared/pcaps-real`, read in place: never copied into the
/// project), when it is there. Without it the test says it was skipped, and the caller returns; in CI
/// (`CI` set), where it must be there, the test fails instead.
pub(crate) fn shared_captures(test: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps-real");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: needs {}, and CI must run every test",
        dir.display()
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs ../shared/pcaps-real beside the project"
    );
    None
}
