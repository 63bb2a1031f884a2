//! Integration tests of `otter serve` in-process: devices over real MQTT, the admin API over HTTP.
//! One test binary per crate: one link instead of one per file (faster CI, less disk).

mod campaign_fleet;
mod campaign_semantics;
mod common;
mod console;
mod decisions;
mod health_gates;
mod hostile_devices;
mod mosquitto_plugin;
mod s3_blobs;
mod security;
mod signing;
mod storage;
mod tls;
mod upgrade_flow;
