//! Moments in time, one type for all of them: what the store keeps, the API sends and the
//! planner compares. Unix milliseconds (UTC) underneath, a bare JSON number on the wire.

use serde::{Deserialize, Serialize};

/// A moment, as milliseconds since the Unix epoch.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_ms(ms: i64) -> Self {
        Self(ms)
    }

    pub const fn as_ms(self) -> i64 {
        self.0
    }

    /// Milliseconds from `earlier` to this moment (negative when `earlier` is later).
    pub const fn ms_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }
}

impl From<i64> for Timestamp {
    fn from(ms: i64) -> Self {
        Self(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_is_a_bare_number_on_the_wire() {
        let t = Timestamp::from_ms(1_800_000_000_123);
        assert_eq!(serde_json::to_string(&t).unwrap(), "1800000000123");
        assert_eq!(
            serde_json::from_str::<Timestamp>("1800000000123").unwrap(),
            t
        );
        assert_eq!(t.ms_since(Timestamp::from_ms(1_800_000_000_000)), 123);
    }
}
