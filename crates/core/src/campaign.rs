//! Campaign rollout: the strategy an operator picks and the pure planner that applies it.
//!
//! The server persists each campaign and one [`Slot`] per device; about once a second it calls
//! [`plan`] with a snapshot and the current time, applies the returned [`Action`]s, and repeats.
//! Keeping the rules here, free of clocks and storage, makes every rollout decision replayable
//! in a test with plain integers for time.
//!
//! # Planner rules (one call of [`plan`])
//!
//! | Campaign state | What the planner does, in this order |
//! |---|---|
//! | `finished`, `canceled`, `aborted` | Nothing. |
//! | `scheduled` | Before `start_at_ms`: nothing, unless no device is live any more (all finished, skipped or canceled): `Finish`. From `start_at_ms` on (or at once without one): `Start`, then everything a `running` campaign does, in the same call. |
//! | `running` | 1. `TimeOut` 2. `Retry` 3. `Abort` check 4. `Release` or `Pause` 5. `Finish` check |
//! | `paused` | 1. `TimeOut` 2. `Retry` 3. `Abort` check 5. `Finish` check — devices already released keep going, nothing new is released. |
//!
//! | Step | Rule |
//! |---|---|
//! | `TimeOut` | A released device still in progress (`pending`, `pushed`, `downloading`, `burning`) whose `released_at + timeout_secs` has been reached becomes `timed_out`. No timeout set: never. |
//! | `Retry` | A `failed` or `timed_out` device released no more than `retries` times so far (`attempts <= retries`) goes back to `queued`. Otherwise it is a **final failure**. |
//! | `Abort` | With `final = succeeded + final failures`: when `final >= min_finished` and `final failures × 100 > failure_percent × final`, the campaign aborts (checked on the states as they will be after this call's timeouts and retries; retries are then not issued). |
//! | `Release` | Only while `running` and inside the window (if any; the gate below is checked even outside it). The *current wave* is the lowest wave that still has `queued` devices. Gate: the devices of all earlier waves must have succeeded for at least `gate_percent` % of their count (`skipped` devices are not counted). Budget: `rate_per_minute` minus the devices whose latest release was within the last 60 s (no rate: unlimited). Up to the budget, `queued` devices of the current wave are released in device order; a device re-queued by a retry waits at least 60 s after its previous release. |
//! | `Pause` | The gate is not met and no device of the earlier waves is still in progress or queued: the campaign pauses with a reason giving the wave, the % that succeeded and the % needed. If some are still in progress, the planner just waits for them. A paused campaign with queued devices stays paused until the operator resumes or cancels it. |
//! | `Finish` | After this call's actions no device is `queued` or in progress. |
//!
//! Waves are numbered from 0. Same input, same output: the planner reads no clock and no randomness.

use crate::UpgradeState;
use crate::health::{HealthError, HealthPolicy, Verdict};
use serde::{Deserialize, Serialize};
use std::fmt;

const MINUTE_MS: i64 = 60_000;
const DAY_MINUTES: i64 = 1440;
const DAY_MS: i64 = DAY_MINUTES * MINUTE_MS;
/// How far [`project`] looks ahead.
const HORIZON_MS: i64 = 365 * DAY_MS;

/// Lifecycle of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    Scheduled,
    Running,
    Paused,
    Finished,
    Canceled,
    Aborted,
}

impl CampaignState {
    pub const ALL: [CampaignState; 6] = [
        Self::Scheduled,
        Self::Running,
        Self::Paused,
        Self::Finished,
        Self::Canceled,
        Self::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Finished => "finished",
            Self::Canceled => "canceled",
            Self::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// A live campaign may still change its devices' upgrades.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Scheduled | Self::Running | Self::Paused)
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A daily maintenance window in the devices' local time, e.g. 02:00 for 4 hours at UTC+8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Window {
    /// Minute of the local day the window opens, 0..=1439.
    pub start_minute: u16,
    /// 1..=1440; a window may cross midnight.
    pub duration_minutes: u16,
    /// The devices' time zone as a fixed offset from UTC, -720..=840.
    pub utc_offset_minutes: i16,
}

/// Stop the campaign when too many finished devices failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct AbortRule {
    /// Abort when strictly more than this % of finished devices failed for good.
    pub failure_percent: u8,
    /// Do not judge before this many devices finished (succeeded or failed for good).
    #[serde(default)]
    pub min_finished: u32,
}

/// How a campaign rolls out; stored as JSON, missing fields take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Strategy {
    /// Unix ms; None = start at once.
    pub start_at_ms: Option<i64>,
    /// Release devices only inside this daily window.
    pub window: Option<Window>,
    /// At most this many devices released in any 60 s; None = no limit.
    pub rate_per_minute: Option<u32>,
    /// Cumulative percentages of the devices, strictly ascending, ending at 100; empty = one wave.
    pub waves: Vec<u8>,
    /// % of the devices of earlier waves that must have succeeded to release the next wave.
    pub gate_percent: u8,
    /// Per device, counted from its release; None = wait forever.
    pub timeout_secs: Option<u64>,
    /// Extra releases after a failure or timeout, 0..=10.
    pub retries: u8,
    pub abort: Option<AbortRule>,
    /// Bake after each wave and judge it on the updated devices' health (crate::health).
    pub health: Option<HealthPolicy>,
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            start_at_ms: None,
            window: None,
            rate_per_minute: None,
            waves: Vec::new(),
            gate_percent: 100,
            timeout_secs: None,
            retries: 0,
            abort: None,
            health: None,
        }
    }
}

/// Why a [`Strategy`] was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StrategyError {
    #[error("window start_minute {0} is not a minute of the day (0..=1439)")]
    WindowStart(u16),
    #[error("window duration_minutes {0} must be 1..=1440")]
    WindowDuration(u16),
    #[error("window utc_offset_minutes {0} must be -720..=840")]
    WindowOffset(i16),
    #[error("rate_per_minute (--rate) must be at least 1 (leave it out for no limit)")]
    ZeroRate,
    #[error("wave {index} (--waves) is {percent}%, but wave percentages must be 1..=100")]
    WavePercent { index: usize, percent: u8 },
    #[error(
        "waves (--waves) are cumulative and must be strictly ascending: wave {index} is {percent}% after {previous}%"
    )]
    WavesNotAscending {
        index: usize,
        percent: u8,
        previous: u8,
    },
    #[error("the last wave (--waves) must be 100% so every device is reached, not {0}%")]
    LastWave(u8),
    #[error("gate_percent (--gate) {0} must be 0..=100")]
    GatePercent(u8),
    #[error("timeout_secs (--timeout) must be at least 1 (leave it out for no timeout)")]
    ZeroTimeout,
    #[error("retries (--retries) {0} must be 0..=10")]
    Retries(u8),
    #[error("abort failure_percent (--abort-percent) {0} must be 0..=100")]
    AbortPercent(u8),
    #[error(transparent)]
    Health(#[from] HealthError),
}

impl Strategy {
    /// Checks the ranges documented on each field.
    pub fn validate(&self) -> Result<(), StrategyError> {
        if let Some(w) = &self.window {
            validate_window(w)?;
        }
        if self.rate_per_minute == Some(0) {
            return Err(StrategyError::ZeroRate);
        }
        validate_waves(&self.waves)?;
        if self.gate_percent > 100 {
            return Err(StrategyError::GatePercent(self.gate_percent));
        }
        if self.timeout_secs == Some(0) {
            return Err(StrategyError::ZeroTimeout);
        }
        if self.retries > 10 {
            return Err(StrategyError::Retries(self.retries));
        }
        if let Some(rule) = self.abort
            && rule.failure_percent > 100
        {
            return Err(StrategyError::AbortPercent(rule.failure_percent));
        }
        if let Some(health) = &self.health {
            health.validate()?;
        }
        Ok(())
    }

    fn timeout_ms(&self) -> Option<i64> {
        self.timeout_secs
            .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX))
    }
}

fn validate_window(w: &Window) -> Result<(), StrategyError> {
    if i64::from(w.start_minute) >= DAY_MINUTES {
        return Err(StrategyError::WindowStart(w.start_minute));
    }
    if w.duration_minutes == 0 || i64::from(w.duration_minutes) > DAY_MINUTES {
        return Err(StrategyError::WindowDuration(w.duration_minutes));
    }
    if !(-720..=840).contains(&w.utc_offset_minutes) {
        return Err(StrategyError::WindowOffset(w.utc_offset_minutes));
    }
    Ok(())
}

fn validate_waves(waves: &[u8]) -> Result<(), StrategyError> {
    let mut previous = 0;
    for (index, &percent) in waves.iter().enumerate() {
        if !(1..=100).contains(&percent) {
            return Err(StrategyError::WavePercent { index, percent });
        }
        if percent <= previous {
            return Err(StrategyError::WavesNotAscending {
                index,
                percent,
                previous,
            });
        }
        previous = percent;
    }
    match waves.last() {
        Some(&last) if last != 100 => Err(StrategyError::LastWave(last)),
        _ => Ok(()),
    }
}

/// Cumulative end index of each wave for `n` devices; the last one is always `n`, so an
/// unvalidated list (not ascending, not ending at 100) still places every device.
fn wave_ends(n: usize, waves: &[u8]) -> Vec<usize> {
    let mut ends: Vec<usize> = waves
        .iter()
        .scan(0, |high, &percent| {
            let end = (n as u128 * u128::from(percent)).div_ceil(100);
            *high = usize::try_from(end).unwrap_or(n).clamp(*high, n);
            Some(*high)
        })
        .collect();
    match ends.last_mut() {
        Some(last) => *last = n,
        None => ends.push(n),
    }
    ends
}

/// Wave number of each of `n` devices, in order: the first ceil(p1 % of n) are wave 0, up to
/// ceil(p2 % of n) wave 1, and so on. With few devices some waves may be empty. No waves: all 0.
pub fn assign_waves(n: usize, waves: &[u8]) -> Vec<u32> {
    let ends = wave_ends(n, waves);
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for (wave, &end) in ends.iter().enumerate() {
        let wave = u32::try_from(wave).unwrap_or(u32::MAX);
        out.extend(std::iter::repeat_n(wave, end - start));
        start = end;
    }
    out
}

/// Minutes since the window last opened, in 0..1440 (the local time's minute, relative to the start).
fn minutes_since_open(now_ms: i64, w: &Window) -> i64 {
    let local_minute = now_ms
        .div_euclid(MINUTE_MS)
        .saturating_add(i64::from(w.utc_offset_minutes));
    (local_minute - i64::from(w.start_minute)).rem_euclid(DAY_MINUTES)
}

/// Is `now_ms` inside the daily window? Windows may cross midnight; a 1440-minute one is always open.
pub fn in_window(now_ms: i64, w: &Window) -> bool {
    minutes_since_open(now_ms, w) < i64::from(w.duration_minutes)
}

/// When the window is next open: `now_ms` itself if it is open now. A window of 0 minutes never
/// opens (`i64::MAX`); [`Strategy::validate`] rejects it.
pub fn next_window_open(now_ms: i64, w: &Window) -> i64 {
    if in_window(now_ms, w) {
        return now_ms;
    }
    if w.duration_minutes == 0 {
        return i64::MAX;
    }
    let wait_minutes = DAY_MINUTES - minutes_since_open(now_ms, w);
    let minute_start = now_ms.saturating_sub(now_ms.rem_euclid(MINUTE_MS));
    minute_start.saturating_add(wait_minutes * MINUTE_MS)
}

/// One device's place in a campaign, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub wave: u32,
    pub state: UpgradeState,
    /// Releases so far (the first one included).
    pub attempts: u32,
    /// Unix ms of the latest release.
    pub released_at: Option<i64>,
}

/// A health gate's bake after `wave` (and every wave before it), as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bake {
    pub wave: u32,
    /// Planner-clock ms the bake started.
    pub started_ms: i64,
    /// None while baking.
    pub verdict: Option<Verdict>,
    /// The operator resumed after an unhealthy or inconclusive verdict: the gate is passed.
    pub accepted: bool,
}

impl Bake {
    pub fn passed(&self) -> bool {
        self.accepted || self.verdict == Some(Verdict::Healthy)
    }
}

/// A snapshot of one campaign at `now_ms`.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub now_ms: i64,
    pub state: CampaignState,
    pub strategy: &'a Strategy,
    pub slots: &'a [Slot],
    /// The health gates' bakes so far (empty without a health policy).
    pub bakes: &'a [Bake],
}

/// What the caller must do; slot indices refer to `PlanInput::slots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "detail")]
pub enum Action {
    /// Scheduled → Running.
    Start,
    /// Queued → Pending; the caller sets `attempts += 1` and `released_at = now` and pushes the offer.
    Release(Vec<usize>),
    /// In progress past the timeout → TimedOut.
    TimeOut(Vec<usize>),
    /// Failed or TimedOut with retries left → Queued.
    Retry(Vec<usize>),
    /// Running → Paused, for this reason.
    Pause(String),
    /// → Aborted, for this reason; the caller cancels what is still queued or in progress.
    Abort(String),
    /// Start the health gate's bake after this wave (and the waves before it) finished.
    Bake(u32),
    /// The bake after this wave is over: gather the evidence and judge it.
    Judge(u32),
    /// → Finished.
    Finish,
}

/// Decides the next actions for one campaign; see the module documentation for the rules.
pub fn plan(input: &PlanInput) -> Vec<Action> {
    let mut actions = Vec::new();
    let running = match input.state {
        CampaignState::Finished | CampaignState::Canceled | CampaignState::Aborted => {
            return actions;
        }
        CampaignState::Scheduled => {
            if input
                .strategy
                .start_at_ms
                .is_some_and(|at| input.now_ms < at)
            {
                // Nothing left to do (every device finished or skipped, or superseded): it
                // finishes now rather than at its start time, which may never come.
                if !input.slots.iter().any(|s| s.state.is_live()) {
                    actions.push(Action::Finish);
                }
                return actions;
            }
            actions.push(Action::Start);
            true
        }
        CampaignState::Running => true,
        CampaignState::Paused => false,
    };
    // The states as they will be once the caller applies this call's actions.
    let mut states: Vec<UpgradeState> = input.slots.iter().map(|s| s.state).collect();
    push_indices(&mut actions, Action::TimeOut, time_out(input, &mut states));
    let retried = retry(input, &mut states);
    if let Some(reason) = abort_reason(input, &states) {
        actions.push(Action::Abort(reason));
        return actions;
    }
    push_indices(&mut actions, Action::Retry, retried);
    if running {
        match release(input, &mut states) {
            Step::Release(picked) => push_indices(&mut actions, Action::Release, picked),
            Step::Pause(reason) => actions.push(Action::Pause(reason)),
            Step::Bake(wave) => actions.push(Action::Bake(wave)),
            Step::Judge(wave) => actions.push(Action::Judge(wave)),
            Step::Wait(_) | Step::Idle => {}
        }
    }
    if !states.iter().any(|s| s.is_live()) {
        // With a health gate the last wave bakes and is judged too before the campaign ends.
        let last = input
            .slots
            .iter()
            .filter(|s| s.attempts > 0)
            .map(|s| s.wave)
            .max();
        match last.and_then(|wave| health_hold(input, wave)) {
            None => actions.push(Action::Finish),
            Some(Step::Bake(wave)) => actions.push(Action::Bake(wave)),
            Some(Step::Judge(wave)) => actions.push(Action::Judge(wave)),
            Some(_) => {}
        }
    }
    actions
}

/// When a device queued for a retry after its release at `released_at_ms` may be released
/// again: a minute later (the planner's rule; it keeps rate counts exact).
pub fn retry_not_before(released_at_ms: i64) -> i64 {
    released_at_ms.saturating_add(MINUTE_MS)
}

/// How an ended campaign ended, in one word for badges and scripts: a campaign that finished
/// with failed devices is not the same news as a clean one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Finished; no device failed or timed out.
    Succeeded,
    /// Finished; some devices failed or timed out for good.
    FinishedWithFailures,
    Aborted,
    Canceled,
}

impl Outcome {
    /// `None` while the campaign is live. `failed`: devices failed or timed out for good.
    pub fn of(state: CampaignState, failed: i64) -> Option<Outcome> {
        match state {
            CampaignState::Finished if failed > 0 => Some(Outcome::FinishedWithFailures),
            CampaignState::Finished => Some(Outcome::Succeeded),
            CampaignState::Aborted => Some(Outcome::Aborted),
            CampaignState::Canceled => Some(Outcome::Canceled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::FinishedWithFailures => "finished_with_failures",
            Outcome::Aborted => "aborted",
            Outcome::Canceled => "canceled",
        }
    }

    /// For people: "finished with failures".
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::FinishedWithFailures => "finished with failures",
            other => other.as_str(),
        }
    }
}

/// Why queued devices are not being released at `input.now_ms`, for people (console, CLI,
/// API): `None` when nothing waits (nothing queued, or the next planner pass releases them).
/// A paused campaign's reason is its own; this says nothing more about it.
pub fn waiting(input: &PlanInput) -> Option<String> {
    match input.state {
        CampaignState::Running => {}
        CampaignState::Scheduled => {
            let at = input.strategy.start_at_ms?;
            let minutes = (at.saturating_sub(input.now_ms) + MINUTE_MS - 1) / MINUTE_MS;
            return (at > input.now_ms).then(|| format!("scheduled: starts in {minutes} min"));
        }
        _ => return None,
    }
    let mut states: Vec<UpgradeState> = input.slots.iter().map(|s| s.state).collect();
    time_out(input, &mut states);
    retry(input, &mut states);
    match release(input, &mut states) {
        Step::Wait(why) => Some(why),
        _ => None,
    }
}

/// What the health gate after `wave` holds back, if anything: None when there is no gate or
/// it passed; otherwise start the bake, judge it, or wait.
fn health_hold(input: &PlanInput, wave: u32) -> Option<Step> {
    let policy = input.strategy.health.as_ref()?;
    match input.bakes.iter().find(|b| b.wave == wave) {
        None => Some(Step::Bake(wave)),
        Some(b) if b.passed() => None,
        Some(b) if b.verdict.is_some() => Some(Step::Wait(format!(
            "the health gate after wave {} did not pass; resume to accept its verdict",
            wave + 1
        ))),
        Some(b) if input.now_ms >= b.started_ms.saturating_add(policy.bake_ms()) => {
            Some(Step::Judge(wave))
        }
        Some(b) => Some(Step::Wait(format!(
            "the health gate after wave {} is baking ({} s left)",
            wave + 1,
            (b.started_ms.saturating_add(policy.bake_ms()) - input.now_ms).max(0) / 1000
        ))),
    }
}

fn push_indices(actions: &mut Vec<Action>, action: fn(Vec<usize>) -> Action, ix: Vec<usize>) {
    if !ix.is_empty() {
        actions.push(action(ix));
    }
}

fn time_out(input: &PlanInput, states: &mut [UpgradeState]) -> Vec<usize> {
    let Some(timeout) = input.strategy.timeout_ms() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, (slot, state)) in input.slots.iter().zip(states.iter_mut()).enumerate() {
        // A live slot without a release time was never released by us; it cannot time out.
        let expired = slot
            .released_at
            .is_some_and(|at| input.now_ms >= at.saturating_add(timeout));
        if state.is_in_flight() && expired {
            *state = UpgradeState::TimedOut;
            out.push(i);
        }
    }
    out
}

fn is_failure(state: UpgradeState) -> bool {
    matches!(state, UpgradeState::Failed | UpgradeState::TimedOut)
}

fn retry(input: &PlanInput, states: &mut [UpgradeState]) -> Vec<usize> {
    let retries = u32::from(input.strategy.retries);
    let mut out = Vec::new();
    for (i, (slot, state)) in input.slots.iter().zip(states.iter_mut()).enumerate() {
        if is_failure(*state) && slot.attempts <= retries {
            *state = UpgradeState::Queued;
            out.push(i);
        }
    }
    out
}

fn abort_reason(input: &PlanInput, states: &[UpgradeState]) -> Option<String> {
    let rule = input.strategy.abort?;
    let failed = states.iter().filter(|s| is_failure(**s)).count() as u64;
    let succeeded = states
        .iter()
        .filter(|s| **s == UpgradeState::Succeeded)
        .count() as u64;
    let finished = failed + succeeded;
    let over = failed * 100 > u64::from(rule.failure_percent) * finished;
    (finished >= u64::from(rule.min_finished) && over).then(|| {
        format!(
            "{failed} of {finished} finished devices failed ({}%), more than the {}% allowed",
            failed * 100 / finished.max(1),
            rule.failure_percent
        )
    })
}

enum Step {
    Release(Vec<usize>),
    Pause(String),
    Bake(u32),
    Judge(u32),
    /// Nothing is released now, for this reason (for people: "why does it wait?").
    Wait(String),
    /// Nothing is queued.
    Idle,
}

fn release(input: &PlanInput, states: &mut [UpgradeState]) -> Step {
    let strategy = input.strategy;
    let now = input.now_ms;
    let slots = || input.slots.iter().zip(states.iter());
    let Some(wave) = slots()
        .filter(|(_, state)| **state == UpgradeState::Queued)
        .map(|(slot, _)| slot.wave)
        .min()
    else {
        return Step::Idle;
    };
    // The gate comes before the window so that a failing wave pauses the campaign at once,
    // not hours later when the window opens.
    if let Some(step) = gate(input, states, wave) {
        return step;
    }
    // Health: the waves before this one, once all finished, bake and must be judged healthy.
    let earlier = input
        .slots
        .iter()
        .zip(states.iter())
        .filter(|(slot, _)| slot.wave < wave);
    let mut last_earlier = None;
    for (slot, state) in earlier {
        if state.is_live() {
            return Step::Wait(format!(
                "wave {} waits for the devices of earlier waves to finish",
                wave + 1
            ));
        }
        last_earlier = last_earlier.max(Some(slot.wave));
    }
    if let Some(step) = last_earlier.and_then(|w| health_hold(input, w)) {
        return step;
    }
    if let Some(w) = strategy.window.filter(|w| !in_window(now, w)) {
        let minutes = (next_window_open(now, &w).saturating_sub(now) + MINUTE_MS - 1) / MINUTE_MS;
        return Step::Wait(format!(
            "outside the maintenance window; it opens in {minutes} min"
        ));
    }
    let since = now.saturating_sub(MINUTE_MS);
    let recent = |slot: &Slot| slot.released_at.is_some_and(|at| at > since);
    let budget = match strategy.rate_per_minute {
        None => usize::MAX,
        Some(rate) => {
            let used = input.slots.iter().filter(|s| recent(s)).count();
            usize::try_from(rate)
                .unwrap_or(usize::MAX)
                .saturating_sub(used)
        }
    };
    // A retried slot released within the last minute waits: it keeps the rate count exact
    // (one slot, one release per 60 s) and gives the device a moment before the next offer.
    let picked: Vec<usize> = slots()
        .enumerate()
        .filter(|(_, (slot, state))| {
            slot.wave == wave && **state == UpgradeState::Queued && !recent(slot)
        })
        .map(|(i, _)| i)
        .take(budget)
        .collect();
    if picked.is_empty() {
        return Step::Wait(if budget == 0 {
            format!(
                "the rate limit ({} releases a minute) is used up; more within a minute",
                strategy.rate_per_minute.unwrap_or(0)
            )
        } else {
            "retries wait a minute after their last release".to_owned()
        });
    }
    for &i in &picked {
        if let Some(state) = states.get_mut(i) {
            *state = UpgradeState::Pending;
        }
    }
    Step::Release(picked)
}

/// None when `wave` may be released; otherwise wait for earlier waves, or pause.
fn gate(input: &PlanInput, states: &[UpgradeState], wave: u32) -> Option<Step> {
    // A skipped device was never offered the target: it neither helps nor hurts the gate.
    let earlier: Vec<UpgradeState> = input
        .slots
        .iter()
        .zip(states)
        .filter(|(slot, state)| slot.wave < wave && **state != UpgradeState::Skipped)
        .map(|(_, state)| *state)
        .collect();
    let total = earlier.len() as u64;
    let succeeded = earlier
        .iter()
        .filter(|s| **s == UpgradeState::Succeeded)
        .count() as u64;
    let needed = u64::from(input.strategy.gate_percent);
    if succeeded * 100 >= needed * total {
        return None;
    }
    if earlier.iter().any(|s| s.is_live()) {
        return Some(Step::Wait(format!(
            "wave {} waits: {succeeded} of {total} devices of earlier waves succeeded, {needed}% needed, the rest still in progress",
            wave + 1
        )));
    }
    Some(Step::Pause(format!(
        "wave {wave} held: {succeeded} of {total} devices of earlier waves succeeded ({}%), {needed}% needed",
        succeeded * 100 / total.max(1)
    )))
}

/// Dry-run estimate for one wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct WaveProjection {
    pub wave: u32,
    pub devices: usize,
    /// Unix ms of the wave's first release.
    pub earliest_start_ms: i64,
    /// Unix ms of the wave's last release (every device assumed to succeed at once).
    pub earliest_end_ms: i64,
}

/// Dry-run estimate of a whole rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Projection {
    pub waves: Vec<WaveProjection>,
    /// Not every device is released within 365 days of `now_ms`; waves not started or not
    /// ended by then show the horizon's end as their start or end (read: "not before").
    pub beyond_horizon: bool,
}

/// When each wave could start and end if every device succeeded instantly, given the start
/// time, the window and the rate; simulated minute by minute up to 365 days ahead.
pub fn project(strategy: &Strategy, devices: usize, now_ms: i64) -> Projection {
    let ends = wave_ends(devices, &strategy.waves);
    let sizes: Vec<usize> = ends
        .iter()
        .scan(0, |start, &end| {
            let size = end - *start;
            *start = end;
            Some(size)
        })
        .collect();
    let horizon = now_ms.saturating_add(HORIZON_MS);
    let open = |t: i64| strategy.window.map_or(t, |w| next_window_open(t, &w));
    let mut times: Vec<(Option<i64>, Option<i64>)> = vec![(None, None); sizes.len()];
    let mut wave = 0;
    let mut left = sizes.first().copied().unwrap_or(0);
    let mut t = open(now_ms.max(strategy.start_at_ms.unwrap_or(now_ms)));
    let bake = strategy.health.as_ref().map_or(0, HealthPolicy::bake_ms);
    while wave < sizes.len() && t <= horizon && t < i64::MAX {
        let mut budget = strategy
            .rate_per_minute
            .map_or(usize::MAX, |r| usize::try_from(r).unwrap_or(usize::MAX));
        // Within one minute, later waves share what is left of the budget: their gate is met
        // at once because every device succeeds instantly.
        while let Some(time) = times.get_mut(wave) {
            if left > 0 && budget == 0 {
                break;
            }
            time.0.get_or_insert(t);
            let take = left.min(budget);
            left -= take;
            budget -= take;
            if left > 0 {
                break;
            }
            time.1 = Some(t);
            wave += 1;
            left = sizes.get(wave).copied().unwrap_or(0);
            if bake > 0 && wave < sizes.len() {
                break; // the next wave waits for this one's bake
            }
        }
        let finished_a_wave = wave > 0 && times[wave - 1].1 == Some(t);
        t = match bake > 0 && finished_a_wave {
            true => open(t.saturating_add(bake)),
            false => open(t.saturating_add(MINUTE_MS)),
        };
    }
    let waves = sizes
        .iter()
        .zip(&times)
        .enumerate()
        .map(|(i, (&devices, &(start, end)))| WaveProjection {
            wave: u32::try_from(i).unwrap_or(u32::MAX),
            devices,
            earliest_start_ms: start.unwrap_or(horizon),
            earliest_end_ms: end.unwrap_or(horizon),
        })
        .collect();
    Projection {
        waves,
        beyond_horizon: wave < sizes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use UpgradeState as U;

    /// 2023-11-14 00:00 UTC: a day boundary, so window tests read as clock times.
    const DAY0: i64 = 19_675 * DAY_MS;
    const T0: i64 = DAY0 + 10 * 60 * MINUTE_MS;
    const SEC: i64 = 1000;

    fn utc(hour: i64, minute: i64) -> i64 {
        DAY0 + (hour * 60 + minute) * MINUTE_MS
    }

    fn window(start_minute: u16, duration_minutes: u16, utc_offset_minutes: i16) -> Window {
        Window {
            start_minute,
            duration_minutes,
            utc_offset_minutes,
        }
    }

    fn slot(wave: u32, state: UpgradeState, attempts: u32, released_at: Option<i64>) -> Slot {
        Slot {
            wave,
            state,
            attempts,
            released_at,
        }
    }

    fn done(wave: u32, state: UpgradeState) -> Slot {
        slot(wave, state, 1, Some(T0 - DAY_MS))
    }

    fn queued(wave: u32) -> Slot {
        slot(wave, U::Queued, 0, None)
    }

    fn why(now: i64, state: CampaignState, strategy: &Strategy, slots: &[Slot]) -> Option<String> {
        waiting(&PlanInput {
            now_ms: now,
            state,
            strategy,
            slots,
            bakes: &[],
        })
    }

    #[test]
    fn waiting_says_why_queued_devices_are_held() {
        let plain = Strategy::default();
        // Releasable now, or nothing queued: nothing waits.
        assert_eq!(why(T0, CampaignState::Running, &plain, &[queued(0)]), None);
        assert_eq!(
            why(T0, CampaignState::Running, &plain, &[done(0, U::Succeeded)]),
            None
        );
        assert_eq!(why(T0, CampaignState::Paused, &plain, &[queued(0)]), None);
        // A closed window says when it opens (02:00 UTC for 60 min; it is 10:00).
        let night = Strategy {
            window: Some(window(120, 60, 0)),
            ..Strategy::default()
        };
        let text = why(T0, CampaignState::Running, &night, &[queued(0)]).unwrap();
        assert!(text.contains("opens in 960 min"), "{text}");
        // A rate limit used up.
        let rated = Strategy {
            rate_per_minute: Some(1),
            ..Strategy::default()
        };
        let slots = [slot(0, U::Pending, 1, Some(T0 - SEC)), queued(0)];
        let text = why(T0, CampaignState::Running, &rated, &slots).unwrap();
        assert!(text.contains("rate limit (1 releases a minute)"), "{text}");
        // A later wave behind a live one.
        let waves = Strategy {
            waves: vec![50, 100],
            ..Strategy::default()
        };
        let slots = [slot(0, U::Downloading, 1, Some(T0 - SEC)), queued(1)];
        let text = why(T0, CampaignState::Running, &waves, &slots).unwrap();
        assert!(text.starts_with("wave 2 waits"), "{text}");
        // A retry within a minute of its last release.
        let retried = [slot(0, U::Queued, 1, Some(T0 - SEC))];
        let text = why(T0, CampaignState::Running, &plain, &retried).unwrap();
        assert!(text.contains("retries wait a minute"), "{text}");
        // A start in the future.
        let later = Strategy {
            start_at_ms: Some(T0 + 5 * MINUTE_MS),
            ..Strategy::default()
        };
        let text = why(T0, CampaignState::Scheduled, &later, &[queued(0)]).unwrap();
        assert_eq!(text, "scheduled: starts in 5 min");
    }

    fn run_plan(
        now: i64,
        state: CampaignState,
        strategy: &Strategy,
        slots: &[Slot],
    ) -> Vec<Action> {
        plan(&PlanInput {
            now_ms: now,
            state,
            strategy,
            slots,
            bakes: &[],
        })
    }

    /// A campaign driven tick by tick, the way the server does it, with scripted devices.
    struct Sim {
        strategy: Strategy,
        state: CampaignState,
        slots: Vec<Slot>,
        releases: Vec<(i64, usize)>,
        log: Vec<(i64, Action)>,
        bakes: Vec<super::Bake>,
        /// What the server's judgement of a bake says.
        judged: Verdict,
    }

    impl Sim {
        fn new(strategy: Strategy, n: usize) -> Self {
            let slots = assign_waves(n, &strategy.waves)
                .into_iter()
                .map(queued)
                .collect();
            Self {
                strategy,
                state: CampaignState::Scheduled,
                slots,
                releases: Vec::new(),
                log: Vec::new(),
                bakes: Vec::new(),
                judged: Verdict::Healthy,
            }
        }

        fn tick(&mut self, now: i64) -> Vec<Action> {
            let actions = plan(&PlanInput {
                now_ms: now,
                state: self.state,
                strategy: &self.strategy,
                slots: &self.slots,
                bakes: &self.bakes,
            });
            for action in &actions {
                self.apply(now, action);
                self.log.push((now, action.clone()));
            }
            actions
        }

        fn apply(&mut self, now: i64, action: &Action) {
            let mut set = |ix: &[usize], state| {
                for &i in ix {
                    self.slots[i].state = state;
                }
            };
            match action {
                Start => self.state = CampaignState::Running,
                Release(ix) => {
                    for &i in ix {
                        let s = &mut self.slots[i];
                        s.state = U::Pending;
                        s.attempts += 1;
                        s.released_at = Some(now);
                        self.releases.push((now, i));
                    }
                }
                TimeOut(ix) => set(ix, U::TimedOut),
                Retry(ix) => set(ix, U::Queued),
                Pause(_) => self.state = CampaignState::Paused,
                Abort(_) => self.state = CampaignState::Aborted,
                Finish => self.state = CampaignState::Finished,
                Bake(wave) => self.bakes.push(super::Bake {
                    wave: *wave,
                    started_ms: now,
                    verdict: None,
                    accepted: false,
                }),
                Judge(wave) => {
                    let verdict = self.judged;
                    if let Some(b) = self.bakes.iter_mut().find(|b| b.wave == *wave) {
                        b.verdict = Some(verdict);
                    }
                    if verdict != Verdict::Healthy {
                        self.state = CampaignState::Paused;
                    }
                }
            }
        }

        /// Devices answer `delay` after their release with `outcome(index, attempts)`;
        /// None means the device stays silent.
        fn devices(&mut self, now: i64, delay: i64, outcome: &dyn Fn(usize, u32) -> Option<U>) {
            for (i, s) in self.slots.iter_mut().enumerate() {
                let due = s.released_at.is_some_and(|at| now >= at + delay);
                if s.state.is_in_flight()
                    && due
                    && let Some(next) = outcome(i, s.attempts)
                {
                    s.state = next;
                }
            }
        }

        fn count(&self, state: U) -> usize {
            self.slots.iter().filter(|s| s.state == state).count()
        }
    }

    #[test]
    fn campaign_states_round_trip_and_liveness() {
        for s in CampaignState::ALL {
            assert_eq!(CampaignState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        let live: Vec<_> = CampaignState::ALL
            .into_iter()
            .filter(|s| s.is_live())
            .collect();
        assert_eq!(
            live,
            [
                CampaignState::Scheduled,
                CampaignState::Running,
                CampaignState::Paused
            ]
        );
        assert_eq!(CampaignState::parse("done"), None);
    }

    #[test]
    fn missing_json_fields_take_the_defaults() {
        let s: Strategy = serde_json::from_str("{}").unwrap();
        assert_eq!(s, Strategy::default());
        assert_eq!(s.gate_percent, 100);
        assert_eq!(s.validate(), Ok(()));
        let s: Strategy = serde_json::from_str(
            r#"{"rate_per_minute":10,"waves":[10,100],"abort":{"failure_percent":5},
                "window":{"start_minute":120,"duration_minutes":240,"utc_offset_minutes":480}}"#,
        )
        .unwrap();
        assert_eq!(s.rate_per_minute, Some(10));
        assert_eq!(s.abort.unwrap().min_finished, 0);
        assert_eq!(s.validate(), Ok(()));
        let back: Strategy = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn validate_says_what_is_wrong() {
        let with = |f: fn(&mut Strategy)| {
            let mut s = Strategy::default();
            f(&mut s);
            s.validate().unwrap_err()
        };
        use StrategyError as E;
        assert_eq!(
            with(|s| s.window = Some(window(1440, 10, 0))),
            E::WindowStart(1440)
        );
        assert_eq!(
            with(|s| s.window = Some(window(0, 0, 0))),
            E::WindowDuration(0)
        );
        assert_eq!(
            with(|s| s.window = Some(window(0, 1441, 0))),
            E::WindowDuration(1441)
        );
        assert_eq!(
            with(|s| s.window = Some(window(0, 60, 841))),
            E::WindowOffset(841)
        );
        assert_eq!(with(|s| s.rate_per_minute = Some(0)), E::ZeroRate);
        assert_eq!(
            with(|s| s.waves = vec![0, 100]),
            E::WavePercent {
                index: 0,
                percent: 0
            }
        );
        let err = with(|s| s.waves = vec![10, 10, 100]);
        assert_eq!(
            err.to_string(),
            "waves (--waves) are cumulative and must be strictly ascending: wave 1 is 10% after 10%"
        );
        assert_eq!(with(|s| s.waves = vec![10, 50]), E::LastWave(50));
        assert_eq!(with(|s| s.gate_percent = 101), E::GatePercent(101));
        assert_eq!(with(|s| s.timeout_secs = Some(0)), E::ZeroTimeout);
        assert_eq!(with(|s| s.retries = 11), E::Retries(11));
        let err = with(|s| {
            s.abort = Some(AbortRule {
                failure_percent: 120,
                min_finished: 1,
            })
        });
        assert_eq!(
            err.to_string(),
            "abort failure_percent (--abort-percent) 120 must be 0..=100"
        );
    }

    #[test]
    fn waves_split_devices_by_cumulative_percent() {
        assert_eq!(
            assign_waves(10, &[10, 50, 100]),
            [0, 1, 1, 1, 1, 2, 2, 2, 2, 2]
        );
        assert_eq!(assign_waves(3, &[50, 100]), [0, 0, 1], "ceil(1.5) = 2");
        assert_eq!(assign_waves(1, &[10, 50, 100]), [0], "later waves empty");
        assert_eq!(assign_waves(4, &[]), [0, 0, 0, 0]);
        assert!(assign_waves(0, &[50, 100]).is_empty());
        // Unvalidated input still places every device, in non-decreasing waves.
        assert_eq!(assign_waves(4, &[50, 20]), [0, 0, 1, 1]);
        assert_eq!(assign_waves(4, &[25]), [0, 0, 0, 0]);
    }

    #[test]
    fn window_inside_and_outside() {
        let w = window(120, 60, 0); // 02:00–03:00 UTC
        assert!(!in_window(utc(1, 59) + 59 * SEC, &w));
        assert!(in_window(utc(2, 0), &w));
        assert!(in_window(utc(2, 59) + 59 * SEC, &w));
        assert!(!in_window(utc(3, 0), &w));
        assert_eq!(next_window_open(utc(2, 30), &w), utc(2, 30));
        assert_eq!(next_window_open(utc(1, 0) + 17 * SEC, &w), utc(2, 0));
        assert_eq!(next_window_open(utc(3, 0), &w), utc(2, 0) + DAY_MS);
    }

    #[test]
    fn window_crossing_midnight() {
        let w = window(22 * 60, 240, 0); // 22:00–02:00 UTC
        assert!(in_window(utc(23, 30), &w));
        assert!(in_window(utc(0, 0), &w));
        assert!(in_window(utc(1, 59), &w));
        assert!(!in_window(utc(2, 0), &w));
        assert!(!in_window(utc(21, 59), &w));
        assert_eq!(next_window_open(utc(2, 0), &w), utc(22, 0));
        assert_eq!(next_window_open(utc(12, 0) + 30 * SEC, &w), utc(22, 0));
    }

    #[test]
    fn window_in_local_time() {
        // 02:00–06:00 at UTC+8 is 18:00–22:00 UTC the day before.
        let east = window(120, 240, 480);
        assert!(in_window(utc(18, 0), &east));
        assert!(in_window(utc(21, 59), &east));
        assert!(!in_window(utc(22, 0), &east));
        assert!(!in_window(utc(2, 0), &east));
        assert_eq!(
            next_window_open(utc(22, 0) + 30 * SEC, &east),
            utc(18, 0) + DAY_MS
        );
        // 23:00–01:00 at UTC-5 is 04:00–06:00 UTC.
        let west = window(23 * 60, 120, -300);
        assert!(in_window(utc(4, 0), &west));
        assert!(in_window(utc(5, 59), &west));
        assert!(!in_window(utc(6, 0), &west));
        assert!(!in_window(utc(23, 30), &west));
        assert_eq!(next_window_open(utc(6, 0), &west), utc(4, 0) + DAY_MS);
    }

    #[test]
    fn degenerate_windows_do_not_panic() {
        assert!(in_window(utc(13, 7), &window(500, 1440, 0)));
        let never = window(0, 0, 0);
        assert!(!in_window(T0, &never));
        assert_eq!(next_window_open(T0, &never), i64::MAX);
        // Before 1970 and at the ends of the clock.
        assert!(in_window(-1, &window(23 * 60, 60, 0)));
        assert_eq!(next_window_open(-1, &window(0, 60, 0)), 0);
        let _ = next_window_open(i64::MAX, &window(0, 1, 840));
        let _ = next_window_open(i64::MIN, &window(0, 1, -720));
    }

    fn health_strategy() -> Strategy {
        Strategy {
            waves: vec![10, 100],
            gate_percent: 0,
            health: Some(HealthPolicy {
                bake_secs: 1800,
                rules: crate::health::parse_rules("churn<=2x").unwrap(),
                ..HealthPolicy::default()
            }),
            ..Strategy::default()
        }
    }

    #[test]
    fn each_wave_bakes_and_is_judged_before_the_next_and_before_the_end() {
        let bake = 1800 * SEC;
        let mut sim = Sim::new(health_strategy(), 20);
        assert_eq!(sim.tick(T0), [Start, Release(vec![0, 1])]);
        sim.devices(T0 + SEC, 0, &|_, _| Some(U::Succeeded));
        assert_eq!(sim.tick(T0 + SEC), [Bake(0)]);
        assert_eq!(sim.tick(T0 + SEC + bake - 1), []);
        assert_eq!(sim.tick(T0 + SEC + bake), [Judge(0)]);
        let later = T0 + 2 * SEC + bake;
        assert_eq!(sim.tick(later), [Release((2..20).collect())]);
        sim.devices(later + SEC, 0, &|_, _| Some(U::Succeeded));
        assert_eq!(sim.tick(later + SEC), [Bake(1)], "the last wave bakes too");
        assert_eq!(sim.tick(later + SEC + bake), [Judge(1)]);
        assert_eq!(sim.tick(later + 2 * SEC + bake), [Finish]);
    }

    #[test]
    fn an_unhealthy_wave_holds_the_next_one() {
        let bake = 1800 * SEC;
        let mut sim = Sim::new(health_strategy(), 20);
        sim.judged = Verdict::Unhealthy;
        sim.tick(T0);
        sim.devices(T0 + SEC, 0, &|_, _| Some(U::Succeeded));
        sim.tick(T0 + SEC);
        assert_eq!(sim.tick(T0 + SEC + bake), [Judge(0)]);
        assert_eq!(sim.state, CampaignState::Paused);
        // Resumed without accepting the verdict: still held.
        sim.state = CampaignState::Running;
        assert_eq!(sim.tick(T0 + 10 * bake), []);
        assert_eq!(sim.count(U::Queued), 18, "wave 2 never released");
        sim.bakes[0].accepted = true;
        assert_eq!(sim.tick(T0 + 11 * bake), [Release((2..20).collect())]);
    }

    #[test]
    fn the_dry_run_shows_each_bake() {
        let p = project(&health_strategy(), 20, T0);
        let bake = 1800 * SEC;
        assert_eq!(p.waves[0].earliest_start_ms, T0);
        assert_eq!(p.waves[1].earliest_start_ms, T0 + bake);
        assert!(!p.beyond_horizon);
    }

    #[test]
    fn scheduled_campaign_with_nothing_left_finishes_before_its_start() {
        let strategy = Strategy {
            start_at_ms: Some(i64::MAX),
            ..Strategy::default()
        };
        let slots = [
            done(0, UpgradeState::Canceled),
            done(0, UpgradeState::Skipped),
        ];
        assert_eq!(
            run_plan(T0, CampaignState::Scheduled, &strategy, &slots),
            [Finish]
        );
    }

    #[test]
    fn skipped_devices_do_not_count_for_the_gate() {
        let strategy = Strategy {
            waves: vec![50, 100],
            gate_percent: 100,
            ..Strategy::default()
        };
        let slots = [
            done(0, UpgradeState::Succeeded),
            done(0, UpgradeState::Skipped),
            queued(1),
        ];
        assert_eq!(
            run_plan(T0, CampaignState::Running, &strategy, &slots),
            [Release(vec![2])]
        );
    }

    #[test]
    fn scheduled_campaign_waits_for_its_start_time() {
        let strategy = Strategy {
            start_at_ms: Some(T0 + 5 * MINUTE_MS),
            ..Strategy::default()
        };
        let slots = [queued(0), queued(0)];
        let scheduled = CampaignState::Scheduled;
        assert_eq!(run_plan(T0, scheduled, &strategy, &slots), []);
        assert_eq!(
            run_plan(T0 + 5 * MINUTE_MS - 1, scheduled, &strategy, &slots),
            []
        );
        assert_eq!(
            run_plan(T0 + 5 * MINUTE_MS, scheduled, &strategy, &slots),
            [Start, Release(vec![0, 1])]
        );
        let now = Strategy::default();
        assert_eq!(
            run_plan(T0, scheduled, &now, &slots),
            [Start, Release(vec![0, 1])]
        );
    }

    #[test]
    fn terminal_campaigns_do_nothing() {
        let strategy = Strategy {
            timeout_secs: Some(1),
            ..Strategy::default()
        };
        let slots = [queued(0), slot(0, U::Pushed, 1, Some(T0 - DAY_MS))];
        for state in [
            CampaignState::Finished,
            CampaignState::Canceled,
            CampaignState::Aborted,
        ] {
            assert_eq!(run_plan(T0, state, &strategy, &slots), []);
        }
    }

    #[test]
    fn window_holds_releases_until_it_opens() {
        let strategy = Strategy {
            window: Some(window(120, 60, 0)),
            ..Strategy::default()
        };
        let slots = [queued(0)];
        let running = CampaignState::Running;
        assert_eq!(run_plan(utc(1, 59), running, &strategy, &slots), []);
        assert_eq!(
            run_plan(utc(2, 0), running, &strategy, &slots),
            [Release(vec![0])]
        );
        assert_eq!(run_plan(utc(3, 0), running, &strategy, &slots), []);
        // Start is not bound to the window; releasing is.
        assert_eq!(
            run_plan(utc(5, 0), CampaignState::Scheduled, &strategy, &slots),
            [Start]
        );
    }

    #[test]
    fn rate_limit_is_never_exceeded() {
        let rate = 7;
        let strategy = Strategy {
            rate_per_minute: Some(rate),
            waves: vec![20, 60, 100],
            gate_percent: 50,
            timeout_secs: Some(30),
            retries: 2,
            ..Strategy::default()
        };
        let mut sim = Sim::new(strategy, 200);
        // Every 5th device fails its first attempt, every 17th never answers.
        let outcome = |i: usize, attempts: u32| match () {
            _ if i.is_multiple_of(17) => None,
            _ if i.is_multiple_of(5) && attempts < 2 => Some(U::Failed),
            _ => Some(U::Succeeded),
        };
        let mut now = T0;
        for k in 0.. {
            sim.tick(now);
            if sim.state == CampaignState::Finished {
                break;
            }
            assert!(k < 100_000, "campaign never finished");
            now += (1 + k % 7) * SEC; // irregular ticks
            sim.devices(now, 5 * SEC, &outcome);
        }
        for &(t, _) in &sim.releases {
            let in_last_minute = sim
                .releases
                .iter()
                .filter(|(u, _)| *u > t - MINUTE_MS && *u <= t)
                .count();
            assert!(in_last_minute <= rate as usize, "{in_last_minute} at {t}");
        }
        let never_answer = (0..200).filter(|i| i % 17 == 0).count();
        assert_eq!(sim.count(U::TimedOut), never_answer);
        assert_eq!(sim.count(U::Succeeded), 200 - never_answer);
        assert!(sim.slots.iter().all(|s| s.attempts <= 3));
        // Waves go out in order: no wave-2 device before the last first release of wave 0.
        let first_release = |wave| {
            sim.releases
                .iter()
                .find(|(_, i)| sim.slots[*i].wave == wave)
                .unwrap()
                .0
        };
        assert!(first_release(0) < first_release(1));
        assert!(first_release(1) < first_release(2));
    }

    #[test]
    fn gate_met_advances_to_the_next_wave() {
        let strategy = Strategy {
            waves: vec![20, 100],
            ..Strategy::default()
        };
        let mut sim = Sim::new(strategy, 10);
        assert_eq!(sim.tick(T0), [Start, Release(vec![0, 1])]);
        assert_eq!(sim.tick(T0 + SEC), [], "wave 0 still in progress");
        sim.slots[0].state = U::Succeeded;
        assert_eq!(sim.tick(T0 + 2 * SEC), [], "gate 100 % not met yet");
        sim.slots[1].state = U::Succeeded;
        assert_eq!(sim.tick(T0 + 3 * SEC), [Release((2..10).collect())]);
    }

    #[test]
    fn gate_not_met_pauses_with_the_numbers() {
        let strategy = Strategy {
            waves: vec![30, 100],
            gate_percent: 90,
            ..Strategy::default()
        };
        let mut slots = vec![
            done(0, U::Succeeded),
            done(0, U::Succeeded),
            done(0, U::Failed),
            queued(1),
            queued(1),
        ];
        let running = CampaignState::Running;
        let expected = Pause(
            "wave 1 held: 2 of 3 devices of earlier waves succeeded (66%), 90% needed".into(),
        );
        assert_eq!(
            run_plan(T0, running, &strategy, &slots),
            std::slice::from_ref(&expected)
        );
        // Held even outside the window, so operators hear of it at once.
        let windowed = Strategy {
            window: Some(window(0, 1, 0)),
            ..strategy.clone()
        };
        assert_eq!(run_plan(utc(12, 0), running, &windowed, &slots), [expected]);
        // A paused campaign with queued devices stays paused.
        assert_eq!(run_plan(T0, CampaignState::Paused, &strategy, &slots), []);
        // While the failed device might still be retried, the planner waits instead.
        let retrying = Strategy {
            retries: 1,
            ..strategy.clone()
        };
        assert_eq!(
            run_plan(T0, running, &retrying, &slots),
            [Retry(vec![2]), Release(vec![2])]
        );
        slots[2] = slot(0, U::Downloading, 2, Some(T0));
        assert_eq!(run_plan(T0 + SEC, running, &retrying, &slots), []);
    }

    #[test]
    fn timeout_then_retries_then_final_failure() {
        let strategy = Strategy {
            timeout_secs: Some(60),
            retries: 2,
            ..Strategy::default()
        };
        let mut sim = Sim::new(strategy, 1);
        assert_eq!(sim.tick(T0), [Start, Release(vec![0])]);
        sim.slots[0].state = U::Downloading;
        assert_eq!(sim.tick(T0 + 59 * SEC), []);
        for attempt in 2..=3 {
            let now = T0 + (attempt - 1) * MINUTE_MS;
            assert_eq!(
                sim.tick(now),
                [TimeOut(vec![0]), Retry(vec![0]), Release(vec![0])]
            );
            assert_eq!(sim.slots[0].attempts, attempt as u32);
        }
        assert_eq!(sim.tick(T0 + 3 * MINUTE_MS), [TimeOut(vec![0]), Finish]);
        assert_eq!(sim.slots[0].state, U::TimedOut);
        assert_eq!(sim.state, CampaignState::Finished);
    }

    #[test]
    fn a_fast_failure_is_retried_after_a_minute() {
        let strategy = Strategy {
            retries: 1,
            ..Strategy::default()
        };
        let mut sim = Sim::new(strategy, 1);
        sim.tick(T0);
        sim.slots[0].state = U::Failed;
        assert_eq!(sim.tick(T0 + SEC), [Retry(vec![0])]);
        assert_eq!(sim.tick(T0 + 59 * SEC), []);
        assert_eq!(sim.tick(T0 + MINUTE_MS), [Release(vec![0])]);
        sim.slots[0].state = U::Failed;
        assert_eq!(sim.tick(T0 + MINUTE_MS + SEC), [Finish], "retries used up");
    }

    #[test]
    fn abort_when_failures_pass_the_threshold() {
        let strategy = Strategy {
            abort: Some(AbortRule {
                failure_percent: 20,
                min_finished: 5,
            }),
            timeout_secs: Some(60),
            ..Strategy::default()
        };
        let running = CampaignState::Running;
        let mut slots = vec![
            done(0, U::Succeeded),
            done(0, U::Succeeded),
            done(0, U::Succeeded),
            done(0, U::Failed),
            slot(0, U::Burning, 1, Some(T0)),
            queued(0),
        ];
        // 1 of 4 finished failed: too few finished to judge.
        assert_eq!(run_plan(T0, running, &strategy, &slots), [Release(vec![5])]);
        // 1 of 5 = 20 %: not more than 20 %.
        slots.insert(0, done(0, U::Succeeded));
        assert_eq!(run_plan(T0, running, &strategy, &slots), [Release(vec![6])]);
        // The device timing out in this very call tips it: 2 of 6 = 33 %.
        let actions = run_plan(T0 + MINUTE_MS, running, &strategy, &slots);
        assert_eq!(
            actions,
            [
                TimeOut(vec![5]),
                Abort("2 of 6 finished devices failed (33%), more than the 20% allowed".into())
            ]
        );
        // Failures with retries left are not final, so they do not count.
        let lenient = Strategy {
            retries: 1,
            ..strategy.clone()
        };
        let actions = run_plan(T0 + MINUTE_MS, running, &lenient, &slots);
        assert_eq!(
            actions,
            [TimeOut(vec![5]), Retry(vec![4, 5]), Release(vec![4, 5, 6])]
        );
        assert!(!actions.iter().any(|a| matches!(a, Abort(_))));
        // A paused campaign aborts too.
        let actions = run_plan(T0 + MINUTE_MS, CampaignState::Paused, &strategy, &slots);
        assert!(matches!(actions.last(), Some(Abort(_))));
    }

    #[test]
    fn finish_when_nothing_is_queued_or_in_progress() {
        let strategy = Strategy::default();
        let finished = [
            done(0, U::Succeeded),
            done(0, U::Failed),
            done(0, U::TimedOut),
            done(0, U::Canceled),
        ];
        let running = CampaignState::Running;
        let paused = CampaignState::Paused;
        assert_eq!(run_plan(T0, running, &strategy, &finished), [Finish]);
        assert_eq!(run_plan(T0, paused, &strategy, &finished), [Finish]);
        assert_eq!(run_plan(T0, running, &strategy, &[]), [Finish]);
        assert_eq!(
            run_plan(T0, CampaignState::Scheduled, &strategy, &[]),
            [Start, Finish]
        );
        let in_flight = [done(0, U::Succeeded), done(0, U::Pushed)];
        assert_eq!(run_plan(T0, running, &strategy, &in_flight), []);
        let waiting = [done(0, U::Succeeded), queued(0)];
        assert_eq!(run_plan(T0, paused, &strategy, &waiting), []);
    }

    #[test]
    fn paused_campaign_still_times_out_released_devices() {
        let strategy = Strategy {
            timeout_secs: Some(600),
            retries: 1,
            ..Strategy::default()
        };
        let slots = [
            slot(0, U::Downloading, 1, Some(T0)),
            slot(0, U::Downloading, 2, Some(T0)),
            queued(0),
        ];
        let paused = CampaignState::Paused;
        assert_eq!(run_plan(T0 + 599 * SEC, paused, &strategy, &slots), []);
        assert_eq!(
            run_plan(T0 + 600 * SEC, paused, &strategy, &slots),
            [TimeOut(vec![0, 1]), Retry(vec![0])],
            "timed out, re-queued, but nothing released while paused"
        );
    }

    #[test]
    fn planning_is_deterministic() {
        let strategy = Strategy {
            rate_per_minute: Some(5),
            waves: vec![25, 100],
            gate_percent: 80,
            timeout_secs: Some(45),
            retries: 1,
            ..Strategy::default()
        };
        let drive = || {
            let mut sim = Sim::new(strategy.clone(), 40);
            let outcome = |i: usize, a: u32| match i % 6 {
                0 => None,
                1 if a == 1 => Some(U::Failed),
                _ => Some(U::Succeeded),
            };
            let mut now = T0;
            for _ in 0..2000 {
                sim.tick(now);
                now += 3 * SEC;
                sim.devices(now, 10 * SEC, &outcome);
            }
            (sim.log, sim.slots, sim.state)
        };
        let first = drive();
        assert!(!first.0.is_empty());
        assert_eq!(first, drive());
    }

    #[test]
    fn projection_for_a_simple_rate() {
        let strategy = Strategy {
            rate_per_minute: Some(10),
            ..Strategy::default()
        };
        let p = project(&strategy, 100, T0);
        assert!(!p.beyond_horizon);
        assert_eq!(
            p.waves,
            [WaveProjection {
                wave: 0,
                devices: 100,
                earliest_start_ms: T0,
                earliest_end_ms: T0 + 9 * MINUTE_MS
            }]
        );
        let unlimited = project(&Strategy::default(), 1000, T0);
        assert_eq!(unlimited.waves[0].earliest_end_ms, T0);
    }

    #[test]
    fn projection_of_waves_matches_the_planner() {
        let strategy = Strategy {
            rate_per_minute: Some(10),
            waves: vec![10, 50, 100],
            ..Strategy::default()
        };
        let p = project(&strategy, 100, T0);
        let spans: Vec<_> = p
            .waves
            .iter()
            .map(|w| {
                (
                    w.devices,
                    (w.earliest_start_ms - T0) / MINUTE_MS,
                    (w.earliest_end_ms - T0) / MINUTE_MS,
                )
            })
            .collect();
        assert_eq!(spans, [(10, 0, 0), (40, 1, 4), (50, 5, 9)]);
        // The planner, ticking every second with devices that succeed at once, agrees.
        let mut sim = Sim::new(strategy, 100);
        let mut now = T0;
        while sim.state != CampaignState::Finished {
            sim.tick(now);
            sim.devices(now, 0, &|_, _| Some(U::Succeeded));
            now += SEC;
        }
        let last_release = |wave| {
            sim.releases
                .iter()
                .filter(|(_, i)| sim.slots[*i].wave == wave)
                .map(|(t, _)| *t)
                .max()
        };
        for w in &p.waves {
            assert_eq!(last_release(w.wave), Some(w.earliest_end_ms));
        }
    }

    #[test]
    fn projection_with_start_time_and_window() {
        let strategy = Strategy {
            start_at_ms: Some(utc(1, 0)),
            window: Some(window(120, 5, 0)), // 02:00–02:05 UTC
            rate_per_minute: Some(10),
            ..Strategy::default()
        };
        let p = project(&strategy, 100, utc(0, 0));
        let w = &p.waves[0];
        assert_eq!(w.earliest_start_ms, utc(2, 0));
        assert_eq!(w.earliest_end_ms, utc(2, 4) + DAY_MS, "50 a night");
    }

    #[test]
    fn projection_stops_at_the_horizon() {
        let slow = Strategy {
            rate_per_minute: Some(1),
            ..Strategy::default()
        };
        let p = project(&slow, 1_000_000, T0);
        assert!(p.beyond_horizon);
        assert_eq!(p.waves[0].earliest_start_ms, T0);
        assert_eq!(p.waves[0].earliest_end_ms, T0 + HORIZON_MS);
        let never = Strategy {
            window: Some(window(0, 0, 0)),
            ..Strategy::default()
        };
        assert!(project(&never, 1, T0).beyond_horizon);
        let empty = project(&Strategy::default(), 0, T0);
        assert_eq!(empty.waves[0].earliest_end_ms, T0);
        assert!(!empty.beyond_horizon);
        let _ = project(&slow, 10, i64::MAX - 1);
    }
}
