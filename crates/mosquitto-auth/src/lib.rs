//! A Mosquitto 2.0 plugin (plugin API v5) that lets Otter decide who may connect to an external
//! Mosquitto and what each device may publish and subscribe to: the vendor logins (Tencent,
//! Aliyun, EnOS) and the per-device ACL are judged by Otter's `/api/v1/broker/authn` and
//! `/authz` hooks — the same decision as Otter's embedded broker — with positive answers cached.
//! See docs/external-broker.md for the mosquitto.conf lines.

mod otter;

pub use otter::{AuthnRequest, AuthzRequest, Options, Otter, Verdict};

// The entry points reference symbols only the mosquitto executable provides, so they are left
// out of the unit-test binary.
#[cfg(not(test))]
mod ffi;
#[cfg(not(test))]
mod plugin;
