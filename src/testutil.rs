//! Helpers for the unit tests: a fixed-seed xorshift, the only source of "randomness" in them, so that
//! every run fuzzes the same inputs.

/// Marsaglia's xorshift64 from `seed` (not 0): the next pseudo-random number at each call.
pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
