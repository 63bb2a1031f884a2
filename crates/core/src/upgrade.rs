//! One device's upgrade in one campaign, as a pure state machine (docs/protocol.md §5), and the
//! one function that judges it: [`decide`].
//!
//! `queued → pending → pushed → downloading(percent) → burning → succeeded | failed(code) | timed_out | canceled | skipped`.
//! `queued` means the device is in the campaign but the rollout strategy (rate, waves, window) has
//! not released it yet; see [`crate::campaign`]. `skipped` means Otter will not offer the target to
//! this device, and [`UpgradeStatus::reason`] says why.
//! Every dialect's messages are normalized into [`Fact`]s before they get here, so the three
//! vendors share one set of rules, and the rules are tested without a broker or a database.
//!
//! Architecture invariant: both routes that can push an offer (the rollout releasing a device
//! and a device's own message) call [`decide`] and apply its [`Decision`] as it is; nothing
//! patches a verdict afterwards.

use crate::{Version, VersionScheme};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
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
    Skipped,
}

impl UpgradeState {
    pub const ALL: [UpgradeState; 10] = [
        Self::Queued,
        Self::Pending,
        Self::Pushed,
        Self::Downloading,
        Self::Burning,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Canceled,
        Self::Skipped,
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
            Self::Skipped => "skipped",
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

/// Why an upgrade is where it is, when Otter (not the device) decided it: a stable code that is
/// stored, counted per campaign and shown beside the state. A device's own failure keeps its
/// dialect's code and text in `result_code`/`result_msg`, with [`Reason::DeviceFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Skipped: the device already runs the target.
    AlreadyAtTarget,
    /// Skipped: the product's version scheme orders the device's version above the target and
    /// the campaign does not allow a downgrade.
    NewerThanTarget,
    /// Pending: released, waiting for the device to come online.
    DeviceOffline,
    /// Pending: a device-requested campaign waits for the device to ask.
    AwaitingRequest,
    /// Burning: the device said the install is done; it must come back on the target.
    InstallReported,
    /// Failed: the device said it installed, then came back on another version.
    InstallNotTaken,
    /// Failed: the device reported a failure.
    DeviceFailed,
    /// Timed out: the campaign's per-device timeout passed.
    TimedOut,
    /// Canceled by the operator, by an abort, or by a campaign that superseded this one.
    Canceled,
    /// Queued again after a failure or a timeout (`result_code`/`result_msg` keep that
    /// failure's): released once more when the campaign's retry rules allow.
    Retrying,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Self::AlreadyAtTarget,
        Self::NewerThanTarget,
        Self::DeviceOffline,
        Self::AwaitingRequest,
        Self::InstallReported,
        Self::InstallNotTaken,
        Self::DeviceFailed,
        Self::TimedOut,
        Self::Canceled,
        Self::Retrying,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyAtTarget => "already_at_target",
            Self::NewerThanTarget => "newer_than_target",
            Self::DeviceOffline => "device_offline",
            Self::AwaitingRequest => "awaiting_request",
            Self::InstallReported => "install_reported",
            Self::InstallNotTaken => "install_not_taken",
            Self::DeviceFailed => "device_failed",
            Self::TimedOut => "timed_out",
            Self::Canceled => "canceled",
            Self::Retrying => "retrying",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// A few words for people (console, CLI); the upgrade's `result_msg` has the details.
    pub fn describe(self) -> &'static str {
        match self {
            Self::AlreadyAtTarget => "already runs the target",
            Self::NewerThanTarget => "runs a newer version than the target",
            Self::DeviceOffline => "waiting for the device to come online",
            Self::AwaitingRequest => "waiting for the device to ask",
            Self::InstallReported => "installed; waiting for the device to come back on the target",
            Self::InstallNotTaken => "install did not take",
            Self::DeviceFailed => "the device reported a failure",
            Self::TimedOut => "timed out",
            Self::Canceled => "canceled",
            Self::Retrying => "failed; queued for a retry",
        }
    }
}

impl fmt::Display for Reason {
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
    /// Why, when Otter decided it (skipped, failed, waiting); see [`Reason`].
    #[serde(default)]
    pub reason: Option<Reason>,
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
            reason: None,
        }
    }

    /// The same upgrade in `state`, with progress `percent`, nothing else said.
    fn moved(&self, state: UpgradeState, percent: Option<u8>) -> Self {
        Self {
            percent,
            ..Self::new(self.target.clone(), state)
        }
    }

    /// The same upgrade in `state` because of `reason`, explained by `text`.
    fn because(&self, state: UpgradeState, reason: Reason, text: Option<String>) -> Self {
        Self {
            reason: Some(reason),
            result_msg: text,
            ..self.moved(state, None)
        }
    }
}

/// How a campaign delivers its offer. Push: offers are pushed. Requested: offers only answer a
/// device's own request (Alibaba `firmware/get`, EnOS `getversion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CampaignMode {
    #[default]
    Push,
    Requested,
}

impl CampaignMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Requested => "requested",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Push, Self::Requested]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// A normalized fact about a device, from any dialect, or from the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact<'a> {
    /// The rollout strategy released the device (only a `queued` upgrade can be released).
    Released,
    /// The device reported its running version.
    VersionReported(&'a Version),
    /// The device asked for its job (Alibaba `firmware/get` or request topic, EnOS `getversion`).
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

/// What [`decide`] needs to know besides the upgrade and the fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation<'a> {
    pub mode: CampaignMode,
    /// The campaign allows offering a version the scheme orders below the device's.
    pub allow_downgrade: bool,
    /// The product's version order.
    pub scheme: VersionScheme,
    /// The device's running version of the module as last reported (None: never reported). A
    /// version report is its own running version, whatever this says.
    pub running: Option<&'a Version>,
    /// The device is connected. Only a release asks: any message comes from a connected device.
    pub online: bool,
}

/// What to do about a fact: the new status to store (None: nothing changed) and whether to
/// (re)send the offer. The status carries the [`Reason`] when Otter decided it.
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

    /// The status once this decision is applied to `status`.
    pub fn outcome<'s>(&'s self, status: &'s UpgradeStatus) -> &'s UpgradeStatus {
        self.next.as_ref().unwrap_or(status)
    }
}

/// The upgrade rules of docs/protocol.md §1–§5, DESIGN.md "Rules from the seeds" and
/// docs/campaigns.md, in one place. A decision that would store the status already stored
/// stores nothing, so a device that repeats a message leaves one history row.
pub fn decide(status: &UpgradeStatus, fact: Fact<'_>, ctx: &Situation<'_>) -> Decision {
    let mut decision = judge(status, fact, ctx);
    if decision.next.as_ref() == Some(status) {
        decision.next = None;
    }
    decision
}

fn judge(status: &UpgradeStatus, fact: Fact<'_>, ctx: &Situation<'_>) -> Decision {
    use UpgradeState::*;
    if !status.state.is_live() {
        return Decision::ignore();
    }
    let target = &status.target;
    let about_other_version = |v: Option<&Version>| v.is_some_and(|v| v != target);
    match fact {
        Fact::VersionReported(v) if v == target => Decision::to(status.moved(Succeeded, Some(100))),
        Fact::Released if status.state == Queued => offer(status, ctx, ctx.running, false),
        // Only a queued upgrade is released; not released yet, the strategy decides when the
        // offer goes out, not the device (only a device already on the target is done, above).
        Fact::Released => Decision::ignore(),
        _ if status.state == Queued => Decision::ignore(),
        // It said it installed and came back on another version: a silent flash failure or a
        // bootloader rollback. Pushing again would loop forever; the retry policy decides.
        // (Still burning, without that claim, it may just have reconnected mid-install.)
        Fact::VersionReported(v) if status.reason == Some(Reason::InstallReported) => {
            Decision::to(status.because(
                Failed,
                Reason::InstallNotTaken,
                Some(format!("install did not take: came back on {v}")),
            ))
        }
        // Any other version while live: push again, every time. Re-pushing the same file is how a
        // Tencent device resumes its download, and a push that raced its report was dropped.
        Fact::VersionReported(v) => offer(
            status,
            &Situation {
                online: true,
                ..*ctx
            },
            Some(v),
            false,
        ),
        Fact::Requested => offer(
            status,
            &Situation {
                online: true,
                ..*ctx
            },
            ctx.running,
            true,
        ),
        Fact::Downloading { version, .. }
        | Fact::Burning { version }
        | Fact::Done { version }
        | Fact::Failed { version, .. }
            if about_other_version(version) =>
        {
            Decision::ignore()
        }
        Fact::Downloading { percent, .. } => {
            Decision::to(status.moved(Downloading, Some(percent.min(100))))
        }
        // A late or repeated `burning` never takes back a claim of `done`.
        Fact::Burning { .. } if status.state == Burning => Decision::ignore(),
        Fact::Burning { .. } => Decision::to(status.moved(Burning, Some(100))),
        Fact::Done { .. } => Decision::to(UpgradeStatus {
            percent: Some(100),
            ..status.because(Burning, Reason::InstallReported, None)
        }),
        Fact::Failed { code, message, .. } => Decision::to(UpgradeStatus {
            result_code: Some(code),
            ..status.because(Failed, Reason::DeviceFailed, Some(message.to_owned()))
        }),
    }
}

/// Whether and how the offer goes to a device running `running`: the one place that says
/// "skipped", "waits" or "push".
fn offer(
    status: &UpgradeStatus,
    ctx: &Situation<'_>,
    running: Option<&Version>,
    asked: bool,
) -> Decision {
    use UpgradeState::*;
    let target = &status.target;
    let fresh = matches!(status.state, Queued | Pending);
    match running {
        Some(v) if v == target => return Decision::to(status.moved(Succeeded, Some(100))),
        Some(v) if !ctx.allow_downgrade && ctx.scheme.is_downgrade(v.as_str(), target.as_str()) => {
            return Decision::to(status.because(
                Skipped,
                Reason::NewerThanTarget,
                Some(format!(
                    "runs {v}, newer than the target {target} by the product's {} versions: a downgrade needs --allow-downgrade",
                    ctx.scheme
                )),
            ));
        }
        _ => {}
    }
    let wait = |reason| match fresh {
        true => Decision::to(status.because(Pending, reason, None)),
        false => Decision::ignore(),
    };
    if ctx.mode == CampaignMode::Requested && !asked {
        return wait(Reason::AwaitingRequest);
    }
    if !ctx.online {
        return wait(Reason::DeviceOffline);
    }
    Decision {
        next: fresh.then(|| status.moved(Pushed, None)),
        push: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn ctx() -> Situation<'static> {
        Situation {
            mode: CampaignMode::Push,
            allow_downgrade: false,
            scheme: VersionScheme::Semver,
            running: None,
            online: true,
        }
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
            &ctx(),
        );
        assert_eq!(d.next.unwrap().state, UpgradeState::Succeeded);
        assert!(!d.push);
    }

    #[test]
    fn report_of_other_version_pushes_every_time() {
        let d = decide(
            &at(UpgradeState::Pending),
            Fact::VersionReported(&v("1.0.0")),
            &ctx(),
        );
        assert_eq!(d.next.unwrap().state, UpgradeState::Pushed);
        assert!(d.push);
        let d = decide(
            &at(UpgradeState::Downloading),
            Fact::VersionReported(&v("1.0.0")),
            &ctx(),
        );
        assert_eq!(d.next, None, "a resuming download keeps its state");
        assert!(d.push);
    }

    #[test]
    fn device_request_is_answered_with_the_offer() {
        let d = decide(&at(UpgradeState::Pending), Fact::Requested, &ctx());
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
            &ctx(),
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
            &ctx(),
        );
        assert_eq!(d.next.unwrap().state, UpgradeState::Burning);
    }

    #[test]
    fn done_is_only_a_claim() {
        let d = decide(
            &at(UpgradeState::Downloading),
            Fact::Done { version: None },
            &ctx(),
        );
        assert_eq!(d.next.unwrap().state, UpgradeState::Burning);
    }

    #[test]
    fn first_failure_decides() {
        let fail = |code| Fact::Failed {
            code,
            message: "time_out",
            version: None,
        };
        let first = decide(&at(UpgradeState::Downloading), fail(-2), &ctx())
            .next
            .unwrap();
        assert_eq!(
            (first.state, first.result_code),
            (UpgradeState::Failed, Some(-2))
        );
        assert_eq!(decide(&first, fail(-5), &ctx()), Decision::default());
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
            &ctx(),
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
                decide(&at(state), Fact::VersionReported(&v("1.0.0")), &ctx()),
                Decision::default()
            );
            assert_eq!(
                decide(&at(state), Fact::Requested, &ctx()),
                Decision::default()
            );
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
                decide(&queued, fact.clone(), &ctx()),
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
            &ctx(),
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

    #[test]
    fn came_back_on_the_old_version_after_done_is_a_failure() {
        let burning = decide(
            &at(UpgradeState::Downloading),
            Fact::Done { version: None },
            &ctx(),
        )
        .next
        .unwrap();
        let d = decide(&burning, Fact::VersionReported(&v("1.0.0")), &ctx());
        let next = d.next.unwrap();
        assert!(!d.push, "never pushed again in the same attempt");
        assert_eq!(next.state, UpgradeState::Failed);
        assert_eq!(next.reason, Some(Reason::InstallNotTaken));
        assert_eq!(
            next.result_msg.as_deref(),
            Some("install did not take: came back on 1.0.0")
        );
    }

    #[test]
    fn a_report_while_still_burning_is_a_reconnect_not_a_failure() {
        let burning = decide(
            &at(UpgradeState::Downloading),
            Fact::Burning { version: None },
            &ctx(),
        )
        .next
        .unwrap();
        let d = decide(&burning, Fact::VersionReported(&v("1.0.0")), &ctx());
        assert_eq!(d.next, None);
        assert!(
            d.push,
            "pushed again, as any report of another version in flight"
        );
    }

    #[test]
    fn device_requested_campaign_waits_for_the_request() {
        let requested = Situation {
            mode: CampaignMode::Requested,
            ..ctx()
        };
        let released = decide(
            &UpgradeStatus::queued(v("1.1.0")),
            Fact::Released,
            &requested,
        );
        let pending = released.next.unwrap();
        assert!(!released.push);
        assert_eq!(
            (pending.state, pending.reason),
            (UpgradeState::Pending, Some(Reason::AwaitingRequest))
        );
        let report = decide(&pending, Fact::VersionReported(&v("1.0.0")), &requested);
        assert_eq!(
            report,
            Decision::default(),
            "a report alone records nothing"
        );
        let asked = decide(&pending, Fact::Requested, &requested);
        assert!(asked.push);
        assert_eq!(asked.next.unwrap().state, UpgradeState::Pushed);
    }

    #[test]
    fn a_repeated_message_changes_nothing() {
        let fact = Fact::Downloading {
            percent: 40,
            version: None,
        };
        let first = decide(&at(UpgradeState::Pushed), fact.clone(), &ctx())
            .next
            .unwrap();
        assert_eq!(decide(&first, fact, &ctx()), Decision::default());
        let burning = decide(&first, Fact::Burning { version: None }, &ctx())
            .next
            .unwrap();
        assert_eq!(
            decide(&burning, Fact::Burning { version: None }, &ctx()),
            Decision::default()
        );
        let done = decide(&burning, Fact::Done { version: None }, &ctx())
            .next
            .unwrap();
        assert_eq!(
            decide(&done, Fact::Done { version: None }, &ctx()),
            Decision::default()
        );
        assert_eq!(
            decide(&done, Fact::Burning { version: None }, &ctx()),
            Decision::default(),
            "a late burning does not take back the claim"
        );
    }

    #[test]
    fn newer_device_is_skipped_with_its_reason_unless_downgrades_are_allowed() {
        let running = v("2.0.0");
        let at_2 = Situation {
            running: Some(&running),
            ..ctx()
        };
        let d = decide(&UpgradeStatus::queued(v("1.1.0")), Fact::Released, &at_2);
        let next = d.next.unwrap();
        assert!(!d.push);
        assert_eq!(
            (next.state, next.reason),
            (UpgradeState::Skipped, Some(Reason::NewerThanTarget))
        );
        assert!(
            next.result_msg
                .unwrap()
                .starts_with("runs 2.0.0, newer than the target 1.1.0")
        );
        let allowed = Situation {
            allow_downgrade: true,
            ..at_2
        };
        let d = decide(&UpgradeStatus::queued(v("1.1.0")), Fact::Released, &allowed);
        assert!(d.push);
        let opaque = Situation {
            scheme: VersionScheme::Opaque,
            ..at_2
        };
        assert!(decide(&UpgradeStatus::queued(v("1.1.0")), Fact::Released, &opaque).push);
    }

    #[test]
    fn the_seeds_free_form_versions_are_pushed() {
        for (running, target) in [("1-45-345a", "res-1.2.5"), ("initVersion", "2.1.2")] {
            let d = decide(
                &UpgradeStatus::pending(v(target)),
                Fact::VersionReported(&v(running)),
                &ctx(),
            );
            assert!(d.push, "{running} → {target}");
        }
    }

    #[test]
    fn an_offline_device_waits_with_its_reason() {
        let offline = Situation {
            online: false,
            ..ctx()
        };
        let d = decide(&UpgradeStatus::queued(v("1.1.0")), Fact::Released, &offline);
        assert!(!d.push);
        let next = d.next.unwrap();
        assert_eq!(
            (next.state, next.reason),
            (UpgradeState::Pending, Some(Reason::DeviceOffline))
        );
    }

    /// The release path (the rollout releasing a device the store says runs `running`) and the
    /// device path (released while offline, then the device reports `running`) reach the same
    /// verdict for every combination of version pair, scheme, mode and downgrade flag; and for
    /// every live state, a report never both pushes and leaves the upgrade anywhere but in flight.
    #[test]
    fn release_path_and_device_path_agree_everywhere() {
        let versions = [
            "1.0.0",
            "1.1.0",
            "2.0.0",
            "v1.1",
            "1.1.0-rc.1",
            "1.2.3.4",
            "20240101",
            "1-45-345a",
            "res-1.2.5",
            "initVersion",
        ];
        let mut checked = 0;
        for target in versions {
            for running in versions {
                for scheme in VersionScheme::ALL {
                    for mode in [CampaignMode::Push, CampaignMode::Requested] {
                        for allow_downgrade in [false, true] {
                            let (t, r) = (v(target), v(running));
                            let known = Situation {
                                mode,
                                allow_downgrade,
                                scheme,
                                running: Some(&r),
                                online: true,
                            };
                            let queued = UpgradeStatus::queued(t.clone());
                            let release = decide(&queued, Fact::Released, &known);
                            let offline = decide(
                                &queued,
                                Fact::Released,
                                &Situation {
                                    online: false,
                                    running: None,
                                    ..known
                                },
                            );
                            let waiting = offline.outcome(&queued).clone();
                            let report = decide(&waiting, Fact::VersionReported(&r), &known);
                            let a = release.outcome(&queued);
                            let b = report.outcome(&waiting);
                            let label =
                                format!("{running} → {target} {scheme} {mode:?} {allow_downgrade}");
                            assert_eq!(a.state, b.state, "{label}");
                            assert_eq!(a.result_msg, b.result_msg, "{label}");
                            assert_eq!(release.push, report.push, "{label}");
                            if a.state == UpgradeState::Pending {
                                assert_eq!(a.reason, b.reason, "{label}");
                            }
                            for state in UpgradeState::ALL {
                                let d = decide(
                                    &at_target(state, &t),
                                    Fact::VersionReported(&r),
                                    &known,
                                );
                                if d.push {
                                    assert!(
                                        d.outcome(&at_target(state, &t)).state.is_in_flight(),
                                        "{label} {state}"
                                    );
                                }
                                if !state.is_live() {
                                    assert_eq!(d, Decision::default(), "{label} {state}");
                                }
                            }
                            checked += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 10 * 10 * 3 * 2 * 2);
    }

    fn at_target(state: UpgradeState, target: &Version) -> UpgradeStatus {
        UpgradeStatus {
            state,
            ..UpgradeStatus::pending(target.clone())
        }
    }
}
