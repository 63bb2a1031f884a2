//! The one retry rule of the agent and the simulator: exponential backoff with jitter. Used by
//! the agent's MQTT reconnects (session.rs), its download resumes (download.rs) and every
//! simulated device's reconnects (sim/device.rs).

use std::time::Duration;

/// Pauses that start at `first`, double with every further failure up to `max`, and are spread
/// ±25 % so a fleet dropped at once does not come back at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub(crate) const fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max }
    }

    /// The pause after `failures` failures in a row (1 = the first): `first * 2^(failures-1)`,
    /// at most `max`, times a factor in `0.75..1.25` picked by `spread`, a draw in `0.0..1.0`
    /// (random for the agent, the device's deterministic stream for the simulator).
    pub(crate) fn pause(&self, failures: u32, spread: f64) -> Duration {
        let doubled = self
            .first
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.max);
        doubled.mul_f64(0.75 + spread.clamp(0.0, 1.0) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_from_first_up_to_max_with_a_quarter_either_way() {
        let b = Backoff::new(100 * MS, 30_000 * MS);
        // The middle of the spread is the bare exponential.
        assert_eq!(b.pause(0, 0.5), 100 * MS);
        assert_eq!(b.pause(1, 0.5), 100 * MS);
        assert_eq!(b.pause(2, 0.5), 200 * MS);
        assert_eq!(b.pause(4, 0.5), 800 * MS);
        // Capped, however many failures (no overflow either).
        assert_eq!(b.pause(9, 0.5), 25_600 * MS);
        assert_eq!(b.pause(10, 0.5), 30_000 * MS);
        assert_eq!(b.pause(u32::MAX, 0.5), 30_000 * MS);
        // The spread: 75 % at 0.0, just under 125 % near 1.0.
        assert_eq!(b.pause(1, 0.0), 75 * MS);
        assert!(b.pause(1, 0.999_999) < 125 * MS);
        assert!(b.pause(1, 0.999_999) > 124 * MS);
        assert!(b.pause(u32::MAX, 0.999_999) < 37_500 * MS);
        for i in 0..100 {
            let spread = rand::random::<f64>();
            let p = b.pause(3, spread);
            assert!(p >= 300 * MS && p < 500 * MS, "{i}: {p:?} for {spread}");
        }
    }
}
