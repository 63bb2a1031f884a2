//! otter-http: the HTTP surface for operators and brokers. The REST API under `/api/v1` with
//! its OpenAPI document and the external broker's auth hooks ([`api`]), and the web console.
//! Firmware downloads for devices are otter-download's; the server mounts both.
//!
//! Architecture Invariant: everything here goes through [`otter_engine::Engine`] (reads are
//! current, campaigns are the engine's); this crate never links an MQTT broker (rmqtt) and
//! never writes device-driven state itself.

pub mod api;
mod console;

pub use api::{ApiError, ApiState, BrokerHooks};

/// The API, the broker hooks and the console, ready to be merged into the server's router.
pub fn router(state: ApiState) -> axum::Router {
    api::router(state.clone()).merge(console::router(state))
}

/// The operators' surface alone: the API (without the broker hooks) and the console, for a
/// listener of its own (`--admin-listen`).
pub fn admin_router(state: ApiState) -> axum::Router {
    api::operators_router(state.clone()).merge(console::router(state))
}

/// What the device side needs of this crate: the external broker's auth hooks (the Mosquitto
/// plugin, EMQX), served beside downloads when the operators' surface has a listener of its own.
pub fn device_router(state: &ApiState) -> axum::Router {
    api::hooks_router(state)
}
