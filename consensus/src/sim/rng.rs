//! The simulator's random numbers: xoshiro256** seeded through SplitMix64.
//!
//! Written here rather than taken from `rand` because a seed must replay the same run for
//! as long as the test exists: `rand`'s `StdRng` promises no value stability across
//! versions, and a dependency bump would silently turn every recorded failing seed into a
//! different run. Twenty lines of a published generator do not change.

/// A small, fast, seeded generator. Not for cryptography.
#[derive(Clone, Debug)]
pub struct SimRng {
    state: [u64; 4],
}

impl SimRng {
    /// The generator for `seed`; every seed (0 included) gives a well-mixed state.
    pub fn new(seed: u64) -> SimRng {
        let mut mix = seed;
        let mut state = [0; 4];
        for word in &mut state {
            *word = splitmix64(&mut mix);
        }
        SimRng { state }
    }

    /// The next 64 random bits (xoshiro256**).
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A number in `0..bound` (multiply-shift; the bias is below 2^-32 for our bounds).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "empty range");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "empty range {low}..={high}");
        match (high - low).checked_add(1) {
            Some(span) => low + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with probability `probability` (0 never draws true, 1 always does).
    pub fn chance(&mut self, probability: f64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < probability
    }

    /// An independent generator for a sub-system (a node, a disk), so that the draws of
    /// one do not shift the draws of another when code changes inside it.
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_values() {
        let mut a = SimRng::new(42);
        let mut b = SimRng::new(42);
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let second: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(first, second);
        assert_ne!(
            first,
            (0..8)
                .map(|_| SimRng::new(43).next_u64())
                .collect::<Vec<_>>()
        );
        // Pinned so that an accidental change of the generator (which would silently change
        // what every recorded seed replays) fails here first.
        assert_eq!(SimRng::new(0).next_u64(), PINNED_FIRST_OF_SEED_0);
    }

    const PINNED_FIRST_OF_SEED_0: u64 = 0x99EC_5F36_CB75_F2B4;

    #[test]
    fn ranges_and_chances_stay_in_bounds() {
        let mut rng = SimRng::new(7);
        for _ in 0..10_000 {
            assert!(rng.below(10) < 10);
            let value = rng.between(5, 9);
            assert!((5..=9).contains(&value));
        }
        assert_eq!(rng.between(3, 3), 3);
        let _ = rng.between(0, u64::MAX);
        assert!(!rng.chance(0.0));
        assert!(rng.chance(1.0));
        let hits = (0..10_000).filter(|_| rng.chance(0.25)).count();
        assert!((2_000..3_000).contains(&hits), "{hits}");
    }
}
