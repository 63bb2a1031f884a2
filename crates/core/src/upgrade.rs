//! One device's upgrade in one campaign, as a pure state machine (PROTOCOL.md §5).
//!
//! `queued → pending → pushed → downloading(percent) → burning → succeeded | failed(code) | timed_out | canceled`.
//! `queued` means the device is in the campaign but the rollout strategy (rate, waves, window) has
//! not released it yet; see [`crate::campaign`].
//! Every dialect's messages are normalized into [`Fact`]s before they get here, so the three
//! vendors share one set of rules, and the rules are tested without a broker or a database.

use crate::Version;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpgradeState {
    Queued,
    Pending,
    Pushed,
    Downloading,
    Burning,
    Succeeded,
    Failed,
    TimedOut,
    Canceled,
}

impl UpgradeState {
    pub const ALL: [UpgradeState; 9] = [
        Self::Queued,
        Self::Pending,
        Self::Pushed,
        Self::Downloading,
        Self::Burning,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Pending => "pending",
            Self::Pushed => "pushed",
            Self::Downloading => "downloading",
            Self::Burning => "burning",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// A live upgrade still expects something from its device (or, when queued, from the rollout).
    /// A device is in at most one live campaign per module.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Self::Queued | Self::Pending | Self::Pushed | Self::Downloading | Self::Burning
        )
    }

    /// Live and already released to the device: the per-device timeout runs.
    pub fn is_in_flight(self) -> bool {
        self.is_live() && self != Self::Queued
    }
}

impl fmt::Display for UpgradeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known of one device upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeStatus {
    pub target: Version,
    pub state: UpgradeState,
    pub percent: Option<u8>,
    pub result_code: Option<i32>,
    pub result_msg: Option<String>,
}

impl UpgradeStatus {
    pub fn pending(target: Version) -> Self {
        Self::new(target, UpgradeState::Pending)
    }

    /// A device waiting for the rollout strategy to release it.
    pub fn queued(target: Version) -> Self {
        Self::new(target, UpgradeState::Queued)
    }

    fn new(target: Version, state: UpgradeState) -> Self {
        Self {
            target,
            state,
            percent: None,
            result_code: None,
            result_msg: None,
        }
    }

    fn with_state(&self, state: UpgradeState, percent: Option<u8>) -> Self {
        Self {
            state,
            percent,
            ..self.clone()
        }
    }
}

/// A normalized fact about a device, from any dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact<'a> {
    /// The device reported its running version.
    VersionReported(&'a Version),
    /// The device asked for its job (Alibaba `firmware/get`, EnOS `getversion`).
    Requested,
    /// Progress on the firmware `version` (None when the dialect does not say which).
    Downloading {
        percent: u8,
        version: Option<&'a Version>,
    },
    Burning {
        version: Option<&'a Version>,
    },
    /// The device claims it is done; only a version report of the target confirms it.
    Done {
        version: Option<&'a Version>,
    },
    Failed {
        code: i32,
        message: &'a str,
        version: Option<&'a Version>,
    },
}

/// What to do about a fact: the new status to store (if it changed) and whether to (re)send the offer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    pub next: Option<UpgradeStatus>,
    pub push: bool,
}

impl Decision {
    fn ignore() -> Self {
        Self::default()
    }
    fn to(next: UpgradeStatus) -> Self {
        Self {
            next: Some(next),
            push: false,
        }
    }
}

/// The upgrade rules of PROTOCOL.md §1–§5 and DESIGN.md "Rules from the seeds".
pub fn decide(status: &UpgradeStatus, fact: Fact<'_>) -> Decision {
    if !status.state.is_live() {
        return Decision::ignore();
    }
    let about_other_version = |v: Option<&Version>| v.is_some_and(|v| *v != status.target);
    match fact {
        Fact::VersionReported(v) if *v == status.target => {
            Decision::to(status.with_state(UpgradeState::Succeeded, Some(100)))
        }
        // Not released yet: the strategy decides when the offer goes out, not the device. Only a
        // device that already runs the target (updated by other means) is done.
        _ if status.state == UpgradeState::Queued => Decision::ignore(),
        // Any other version while live: push again, every time. Re-pushing the same file is how a
        // Tencent device resumes its download, and a push that raced its report was dropped.
        Fact::VersionReported(_) | Fact::Requested => Decision {
            next: (status.state == UpgradeState::Pending)
                .then(|| status.with_state(UpgradeState::Pushed, None)),
            push: true,
        },
        Fact::Downloading { version, .. }
        | Fact::Burning { version }
        | Fact::Done { version }
        | Fact::Failed { version, .. }
            if about_other_version(version) =>
        {
            Decision::ignore()
        }
        Fact::Downloading { percent, .. } => {
            Decision::to(status.with_state(UpgradeState::Downloading, Some(percent.min(100))))
        }
        Fact::Burning { .. } | Fact::Done { .. } => {
            Decision::to(status.with_state(UpgradeState::Burning, Some(100)))
        }
        Fact::Failed { code, message, .. } => Decision::to(UpgradeStatus {
            state: UpgradeState::Failed,
            result_code: Some(code),
            result_msg: Some(message.to_owned()),
            ..status.clone()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn at(state: UpgradeState) -> UpgradeStatus {
        UpgradeStatus {
            state,
            ..UpgradeStatus::pending(v("1.1.0"))
        }
    }

    #[test]
    fn report_of_target_succeeds() {
        let d = decide(
            &at(UpgradeState::Burning),
            Fact::VersionReported(&v("1.1.0")),
        );
        assert_eq!(d.next.unwrap().state, UpgradeState::Succeeded);
        assert!(!d.push);
    }

    #[test]
    fn report_of_other_version_pushes_every_time() {
        let d = decide(
            &at(UpgradeState::Pending),
            Fact::VersionReported(&v("1.0.0")),
        );
        assert_eq!(d.next.unwrap().state, UpgradeState::Pushed);
        assert!(d.push);
        let d = decide(
            &at(UpgradeState::Downloading),
            Fact::VersionReported(&v("1.0.0")),
        );
        assert_eq!(d.next, None, "a resuming download keeps its state");
        assert!(d.push);
    }

    #[test]
    fn device_request_is_answered_with_the_offer() {
        let d = decide(&at(UpgradeState::Pending), Fact::Requested);
        assert!(d.push);
        assert_eq!(d.next.unwrap().state, UpgradeState::Pushed);
    }

    #[test]
    fn progress_moves_forward_and_records_percent() {
        let d = decide(
            &at(UpgradeState::Pushed),
            Fact::Downloading {
                percent: 31,
                version: None,
            },
        );
        let next = d.next.unwrap();
        assert_eq!(
            (next.state, next.percent),
            (UpgradeState::Downloading, Some(31))
        );
        let d = decide(
            &next,
            Fact::Burning {
                version: Some(&v("1.1.0")),
            },
        );
        assert_eq!(d.next.unwrap().state, UpgradeState::Burning);
    }

    #[test]
    fn done_is_only_a_claim() {
        let d = decide(&at(UpgradeState::Downloading), Fact::Done { version: None });
        assert_eq!(d.next.unwrap().state, UpgradeState::Burning);
    }

    #[test]
    fn first_failure_decides() {
        let fail = |code| Fact::Failed {
            code,
            message: "time_out",
            version: None,
        };
        let first = decide(&at(UpgradeState::Downloading), fail(-2))
            .next
            .unwrap();
        assert_eq!(
            (first.state, first.result_code),
            (UpgradeState::Failed, Some(-2))
        );
        assert_eq!(decide(&first, fail(-5)), Decision::default());
    }

    #[test]
    fn progress_about_another_version_is_ignored() {
        let d = decide(
            &at(UpgradeState::Pushed),
            Fact::Failed {
                code: -1,
                message: "",
                version: Some(&v("9.9")),
            },
        );
        assert_eq!(d, Decision::default());
    }

    #[test]
    fn terminal_states_ignore_everything() {
        for state in [
            UpgradeState::Succeeded,
            UpgradeState::Failed,
            UpgradeState::TimedOut,
            UpgradeState::Canceled,
        ] {
            assert_eq!(
                decide(&at(state), Fact::VersionReported(&v("1.0.0"))),
                Decision::default()
            );
            assert_eq!(decide(&at(state), Fact::Requested), Decision::default());
        }
    }

    #[test]
    fn queued_waits_for_release_whatever_the_device_says() {
        let queued = at(UpgradeState::Queued);
        let facts = [
            Fact::VersionReported(&v("1.0.0")),
            Fact::Requested,
            Fact::Downloading {
                percent: 10,
                version: None,
            },
            Fact::Burning { version: None },
            Fact::Done { version: None },
            Fact::Failed {
                code: -1,
                message: "x",
                version: None,
            },
        ];
        for fact in facts {
            assert_eq!(
                decide(&queued, fact.clone()),
                Decision::default(),
                "{fact:?}"
            );
        }
    }

    #[test]
    fn queued_device_already_on_target_succeeds() {
        let d = decide(
            &UpgradeStatus::queued(v("1.1.0")),
            Fact::VersionReported(&v("1.1.0")),
        );
        assert_eq!(d.next.unwrap().state, UpgradeState::Succeeded);
        assert!(!d.push);
    }

    #[test]
    fn queued_is_live_but_not_in_flight() {
        assert!(UpgradeState::Queued.is_live());
        assert!(!UpgradeState::Queued.is_in_flight());
        assert!(UpgradeState::Pending.is_in_flight());
        assert!(!UpgradeState::Succeeded.is_in_flight());
        assert_eq!(UpgradeState::Queued.as_str(), "queued");
        assert_eq!(
            serde_json::to_string(&UpgradeState::Queued).unwrap(),
            "\"queued\""
        );
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in UpgradeState::ALL {
            assert_eq!(UpgradeState::parse(s.as_str()), Some(s));
        }
    }
}
