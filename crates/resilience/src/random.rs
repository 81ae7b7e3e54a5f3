//! Randomness as an injected dependency: a tiny seeded generator, so jitter is reproducible.

/// A source of uniformly distributed 64-bit numbers.
pub trait Random {
    /// The next number, uniform over all of `u64`.
    fn next_u64(&mut self) -> u64;

    /// A number uniform in `[0, bound)`; 0 when `bound` is 0.
    ///
    /// Uses the multiply-high method without rejection: the bias is at most `bound / 2^64`,
    /// far too small to matter for jitter.
    fn below(&mut self, bound: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(bound);
        (wide >> 64) as u64
    }
}

/// The SplitMix64 generator: fast, tiny state, fully determined by its seed. Not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }
}

impl Random for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut first = SplitMix64::new(42);
        let mut second = SplitMix64::new(42);
        let a: Vec<u64> = (0..8).map(|_| first.next_u64()).collect();
        let b: Vec<u64> = (0..8).map(|_| second.next_u64()).collect();
        assert_eq!(a, b);
        let mut other = SplitMix64::new(43);
        assert_ne!(a[0], other.next_u64());
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = SplitMix64::new(7);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
        for _ in 0..1_000 {
            assert!(rng.below(10) < 10);
        }
    }

    #[test]
    fn below_covers_small_ranges() {
        let mut rng = SplitMix64::new(1);
        let mut seen = [false; 6];
        for _ in 0..600 {
            seen[rng.below(6) as usize] = true;
        }
        assert!(seen.iter().all(|hit| *hit));
    }
}
