//! Otter's domain: validated names, the device-upgrade state machine and the decisions it makes.
//!
//! Architecture invariant: this crate does no I/O and knows no wire format. It is fed normalized
//! facts ("device reported version V", "device says it is downloading at 31 %") and answers with
//! decisions ("push the offer again", "the upgrade succeeded"), so every rule is unit-testable.

pub mod names;
pub mod upgrade;

pub use names::{DeviceName, InvalidName, Module, ProductId, Version};
pub use upgrade::{Decision, Fact, UpgradeState, UpgradeStatus, decide};
