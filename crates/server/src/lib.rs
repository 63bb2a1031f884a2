//! `otter serve`: the platform in one process.
//!
//! Builds the parts and runs them, and owns nothing else: the broker (embedded otter-broker, or
//! an external one through otter-mqtt) feeds device messages to the device engine
//! (otter-engine), which decodes, decides, persists and answers; the HTTP listeners serve the
//! API and console (otter-http), firmware downloads (otter-download), `/metrics` and `/healthz`.

mod app;
pub mod backup;
mod config;
mod data_dir;
pub mod keys;
mod mqtt;
mod psk;
mod readiness;
mod telemetry;
mod transport;

pub use app::Application;
pub use config::{ExternalBrokerConfig, ServeConfig, TlsConfig};
pub use otter_blobs::S3Options;
pub use otter_engine::gate::DeviceIdentity;
pub use otter_engine::links::{DownloadMode, MAX_PRESIGNED_URL};
pub use otter_engine::throttle::ThrottleConfig;
pub use otter_engine::{clock, secrets, signing};
