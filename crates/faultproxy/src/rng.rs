//! Deterministic pseudo-randomness for `cut_random`, so a failing test can be
//! replayed exactly from its seed without pulling in `rand`.

/// SplitMix64 finaliser: a good 64-bit mix of its input.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random value for connection number `index` under `seed`; independent
/// of how connections interleave, so it is reproducible.
pub(crate) fn for_index(seed: u64, index: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        assert_eq!(for_index(7, 3), for_index(7, 3));
        assert_ne!(for_index(7, 3), for_index(7, 4));
        assert_ne!(for_index(7, 3), for_index(8, 3));
    }
}
