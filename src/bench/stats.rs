//! The figures of repeated runs: a median with its range, and the count to recommend from them.
//!
//! The median, not the mean: on a shared machine one run slowed by a neighbour moves the mean, not the
//! median; the range says how much the runs disagreed.

use serde::Serialize;

/// Median, smallest and largest of some runs' rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (NaNs ignored); `None` when there is none.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let (&min, &max) = (v.first()?, v.last()?);
        let mid = v.len() / 2;
        let median = if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
        Some(Spread { median, min, max })
    }
}

/// Of `(count, median rate)` pairs, the smallest count whose median is within `tolerance` (0.10 = 10%)
/// of the best median: more threads for less than that gain only cost cores. `None` when empty.
pub fn recommend(medians: &[(usize, f64)], tolerance: f64) -> Option<usize> {
    let best = medians.iter().map(|&(_, m)| m).fold(f64::NAN, f64::max);
    medians
        .iter()
        .filter(|&&(_, m)| m >= best * (1.0 - tolerance))
        .map(|&(n, _)| n)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle_and_the_ends() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
    }

    #[test]
    fn the_smallest_count_near_the_best_is_recommended() {
        assert_eq!(recommend(&[(1, 3.0), (2, 5.0), (4, 5.2)], 0.10), Some(2));
        assert_eq!(recommend(&[(1, 3.0), (2, 4.0), (4, 5.2)], 0.10), Some(4));
        assert_eq!(recommend(&[(4, 5.0), (1, 5.0)], 0.10), Some(1));
        assert_eq!(recommend(&[], 0.10), None);
    }
}
