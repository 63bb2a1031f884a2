//! Wire-format tests: the vendor documents' payloads, and property tests of encoders and parsers.
//! One test binary per crate: one link instead of one per file (faster CI, less disk).

mod downlink_vectors;
mod roundtrip;
mod uplink_vectors;
