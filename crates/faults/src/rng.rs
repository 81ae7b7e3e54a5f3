//! A small seeded random number generator (SplitMix64): the same seed gives the same sequence
//! on every platform, natively and in wasm.

/// A deterministic pseudo-random sequence.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// The sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The sequence for draw number `index` of the run seeded with `seed`: lets independent
    /// instances agree on the n-th decision without sharing generator state.
    pub fn for_draw(seed: u64, index: u64) -> Self {
        let mut mixer = Self::new(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Self::new(mixer.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a: Vec<u64> = std::iter::repeat_with({
            let mut rng = SeededRng::new(42);
            move || rng.next_u64()
        })
        .take(5)
        .collect();
        let mut rng = SeededRng::new(42);
        assert!(a.iter().all(|v| *v == rng.next_u64()));
        assert_ne!(SeededRng::new(43).next_u64(), a[0]);
    }

    #[test]
    fn draws_are_uniform_enough() {
        let below_tenth = (0..10_000)
            .filter(|i| SeededRng::for_draw(7, *i).next_f64() < 0.1)
            .count();
        assert!((800..1200).contains(&below_tenth), "{below_tenth}");
    }
}
