//! `otter serve`: the platform in one process.
//!
//! Wires the pieces together and owns nothing else: the embedded broker (otter-broker) feeds device
//! messages to the [`engine`], which decodes them (otter-protocol), decides (otter-core), persists
//! (otter-store) and answers through the broker; the HTTP side serves the admin API, the OpenAPI
//! document, metrics and firmware downloads (otter-download) from one listener.

mod api;
mod app;
mod campaigns;
mod changes;
pub mod clock;
mod config;
mod console;
mod engine;
mod external;
mod gate;
pub mod keys;
mod links;
mod mqtt;
mod presence;
mod psk;
pub mod secrets;
pub mod signing;
mod telemetry;
mod throttle;
mod transport;

pub use app::Application;
pub use config::{ExternalBrokerConfig, ServeConfig, TlsConfig};
pub use gate::DeviceIdentity;
pub use links::{DownloadMode, MAX_PRESIGNED_URL};
pub use otter_blobs::S3Options;
pub use throttle::ThrottleConfig;
