//! Otter's domain: validated names, the device-upgrade state machine and the decisions it makes.
//!
//! Architecture invariant: this crate does no I/O and knows no wire format. It is fed normalized
//! facts ("device reported version V", "device says it is downloading at 31 %") and answers with
//! decisions ("push the offer again", "the upgrade succeeded"), so every rule is unit-testable.
//! The same holds for campaigns: the rollout planner is handed the time and a snapshot, and answers
//! with actions.

pub mod campaign;
pub mod dialect;
pub mod health;
pub mod names;
pub mod targeting;
pub mod time;
pub mod upgrade;
pub mod version;

pub use campaign::{
    AbortRule, Action, CampaignState, PlanInput, Projection, Slot, Strategy, StrategyError,
    WaveProjection, Window, assign_waves, in_window, next_window_open, plan, project,
};
pub use dialect::{Dialect, UnknownDialect};
pub use names::{DeviceName, InvalidName, Module, ProductId, Version};
pub use time::Timestamp;
pub use upgrade::{
    CampaignMode, Decision, Fact, Reason, Situation, UpgradeState, UpgradeStatus, decide,
};
pub use version::{VersionScheme, compare_versions, is_downgrade};
