//! Health gates: after each wave a campaign bakes, then the wave is judged on how its updated
//! devices behave — not only on what they reported about the install — against the campaign's
//! not-yet-updated devices (the control group). A release that installs fine and then makes
//! devices boot-loop, drop offline or crash is stopped before the next wave.
//!
//! Pure: the server gathers the [`Evidence`] (upgrade states, connect counts, counters from the
//! devices that send health reports) and [`evaluate`] says what it means. Every verdict is
//! judged with a one-sided 95 % confidence bound and a minimum sample, so a handful of devices can
//! neither trip nor pass a gate by luck.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One-sided 95 % normal quantile.
const Z: f64 = 1.645;

/// What a rule measures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Share of the devices that said they installed and then reported the target version
    /// (not coming back, or coming back on the old version, is a failure).
    CameBack,
    /// Connects per device during the bake, updated devices against the control group: a boot
    /// loop shows as churn.
    Churn,
    /// Share of updated devices offline against the share of control devices offline.
    Offline,
    /// A counter from devices' health reports (`crashes`, `reboots`, …), per device-hour.
    Counter(String),
}

/// One rule of a health gate: `came_back>=99%`, `churn<=2x`, `offline<=1.5x`, `crashes<=0.5/h`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HealthRule {
    pub signal: Signal,
    /// came_back: the least share (0..=1); churn, offline: the largest ratio; a counter: the
    /// largest count per device-hour.
    pub limit: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    #[error(
        "health rule {0:?}: expected came_back>=P%, churn<=Nx, offline<=Nx or <counter><=N/h (e.g. crashes<=0.5/h)"
    )]
    Syntax(String),
    #[error("health rule {0:?}: the limit must be a finite number ≥ 0 (a share at most 100%)")]
    Limit(String),
    #[error("bake_secs must be at least 1 when health rules are given")]
    NoBake,
}

impl HealthRule {
    pub fn parse(text: &str) -> Result<Self, HealthError> {
        let t = text.trim();
        let syntax = || HealthError::Syntax(t.to_owned());
        let number = |s: &str| -> Result<f64, HealthError> {
            let n: f64 = s.trim().parse().map_err(|_| syntax())?;
            match n.is_finite() && n >= 0.0 {
                true => Ok(n),
                false => Err(HealthError::Limit(t.to_owned())),
            }
        };
        if let Some(p) = t.strip_prefix("came_back>=") {
            let p = number(p.strip_suffix('%').ok_or_else(syntax)?)?;
            if p > 100.0 {
                return Err(HealthError::Limit(t.to_owned()));
            }
            return Ok(Self {
                signal: Signal::CameBack,
                limit: p / 100.0,
            });
        }
        let (name, limit) = t.split_once("<=").ok_or_else(syntax)?;
        let name = name.trim();
        let (signal, limit) = match name {
            "churn" | "offline" => {
                let signal = match name {
                    "churn" => Signal::Churn,
                    _ => Signal::Offline,
                };
                (signal, number(limit.strip_suffix('x').ok_or_else(syntax)?)?)
            }
            _ if is_counter_name(name) => (
                Signal::Counter(name.to_owned()),
                number(limit.strip_suffix("/h").ok_or_else(syntax)?)?,
            ),
            _ => return Err(syntax()),
        };
        Ok(Self { signal, limit })
    }
}

/// Counter names devices may report: short lowercase words (`crashes`, `app_checks_failed`).
pub fn is_counter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !matches!(name, "came_back" | "churn" | "offline")
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl fmt::Display for HealthRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.signal {
            Signal::CameBack => write!(f, "came_back>={}%", self.limit * 100.0),
            Signal::Churn => write!(f, "churn<={}x", self.limit),
            Signal::Offline => write!(f, "offline<={}x", self.limit),
            Signal::Counter(name) => write!(f, "{name}<={}/h", self.limit),
        }
    }
}

impl TryFrom<String> for HealthRule {
    type Error = HealthError;
    fn try_from(s: String) -> Result<Self, HealthError> {
        Self::parse(&s)
    }
}

impl From<HealthRule> for String {
    fn from(r: HealthRule) -> String {
        r.to_string()
    }
}

/// Parses a comma-separated list of rules (the `--health` flag).
pub fn parse_rules(text: &str) -> Result<Vec<HealthRule>, HealthError> {
    text.split(',')
        .filter(|r| !r.trim().is_empty())
        .map(HealthRule::parse)
        .collect()
}

/// What to do when a wave is judged unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnUnhealthy {
    /// Release nothing more; the campaign pauses with the verdict as its reason.
    #[default]
    Pause,
    /// Abort, and create a campaign offering every device that took the release its previous
    /// version (a recorded downgrade), linked to this one.
    Rollback,
}

/// A campaign's health gate: bake after each wave, then judge by the rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct HealthPolicy {
    /// How long a finished wave bakes before it is judged (planner clock).
    pub bake_secs: u64,
    /// Rules as text, e.g. `came_back>=99%`, `churn<=2x`, `offline<=1.5x`, `crashes<=0.5/h`.
    #[cfg_attr(feature = "schema", schema(value_type = Vec<String>))]
    pub rules: Vec<HealthRule>,
    /// Fewer judged devices than this: the gate neither passes nor trips (inconclusive).
    pub min_devices: u32,
    pub on_unhealthy: OnUnhealthy,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            bake_secs: 0,
            rules: Vec::new(),
            min_devices: 5,
            on_unhealthy: OnUnhealthy::Pause,
        }
    }
}

impl HealthPolicy {
    pub fn validate(&self) -> Result<(), HealthError> {
        match self.bake_secs {
            0 => Err(HealthError::NoBake),
            _ => Ok(()),
        }
    }

    pub fn bake_ms(&self) -> i64 {
        i64::try_from(self.bake_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// What the server saw of the judged waves and of the control group during the bake.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Evidence {
    /// Devices of the judged waves that took the release (reported the target).
    pub came_back: u32,
    /// Devices of the judged waves that said they installed and did not come back on the
    /// target (came back on another version, or timed out).
    pub not_back: u32,
    /// Updated devices offline now.
    pub updated_offline: u32,
    /// Connects of the updated devices during the bake.
    pub updated_connects: u64,
    /// Devices of the campaign not yet released, and how many of them are offline now.
    pub control: u32,
    pub control_offline: u32,
    /// Connects of the control devices during the bake.
    pub control_connects: u64,
    /// How long the bake lasted, in hours (counters are per device-hour).
    pub hours: f64,
    /// Health-report counters of the updated devices during the bake, summed.
    pub counters: BTreeMap<String, u64>,
}

/// A gate's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Healthy,
    Unhealthy,
    /// Not enough evidence to pass or trip (too few devices); the operator decides.
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Inconclusive => "inconclusive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Healthy, Self::Unhealthy, Self::Inconclusive]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One rule, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Measured {
    pub rule: String,
    /// The observed value (share 0..=1, ratio, or count per device-hour); None when not judged.
    pub value: Option<f64>,
    /// The confidence bound compared with the limit (upper for came_back, lower otherwise).
    pub bound: Option<f64>,
    /// Tripped: the bound is on the wrong side of the limit.
    pub tripped: bool,
    /// Why it was not judged, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A gate's evaluation: the verdict, each rule's figures, and a sentence for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Evaluation {
    pub verdict: Verdict,
    pub judged_devices: u32,
    pub signals: Vec<Measured>,
    pub summary: String,
}

/// Judges `evidence` by `policy`'s rules.
pub fn evaluate(policy: &HealthPolicy, evidence: &Evidence) -> Evaluation {
    let judged = evidence.came_back + evidence.not_back;
    let signals: Vec<Measured> = policy
        .rules
        .iter()
        .map(|rule| measure(rule, evidence))
        .collect();
    let tripped: Vec<String> = signals.iter().filter(|s| s.tripped).map(describe).collect();
    let (verdict, summary) = if judged < policy.min_devices {
        (
            Verdict::Inconclusive,
            format!(
                "health gate inconclusive: {judged} devices judged, {} needed",
                policy.min_devices
            ),
        )
    } else if !tripped.is_empty() {
        (
            Verdict::Unhealthy,
            format!("unhealthy: {}", tripped.join("; ")),
        )
    } else {
        (
            Verdict::Healthy,
            format!("healthy: {judged} devices judged"),
        )
    };
    Evaluation {
        verdict,
        judged_devices: judged,
        signals,
        summary,
    }
}

fn describe(m: &Measured) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
    format!("{} (value {}, bound {})", m.rule, f(m.value), f(m.bound))
}

fn measure(rule: &HealthRule, e: &Evidence) -> Measured {
    let not_judged = |note: &str| Measured {
        rule: rule.to_string(),
        value: None,
        bound: None,
        tripped: false,
        note: Some(note.to_owned()),
    };
    let (value, bound, tripped) = match &rule.signal {
        Signal::CameBack => {
            let n = e.came_back + e.not_back;
            if n == 0 {
                return not_judged("no device finished its install");
            }
            let p = f64::from(e.came_back) / f64::from(n);
            let upper = wilson_upper(e.came_back, n);
            (p, upper, upper < rule.limit)
        }
        Signal::Churn => {
            if e.control == 0 || e.came_back == 0 {
                return not_judged("no control group or no updated device");
            }
            let (cu, cc) = (
                e.updated_connects as f64 + 0.5,
                e.control_connects as f64 + 0.5,
            );
            let ratio = (cu / f64::from(e.came_back)) / (cc / f64::from(e.control));
            let lower = ratio * (-Z * (1.0 / cu + 1.0 / cc).sqrt()).exp();
            (ratio, lower, lower > rule.limit)
        }
        Signal::Offline => {
            if e.control == 0 || e.came_back == 0 {
                return not_judged("no control group or no updated device");
            }
            let (ou, nu) = (
                f64::from(e.updated_offline) + 0.5,
                f64::from(e.came_back) + 1.0,
            );
            let (oc, nc) = (
                f64::from(e.control_offline) + 0.5,
                f64::from(e.control) + 1.0,
            );
            let ratio = (ou / nu) / (oc / nc);
            let se = (1.0 / ou - 1.0 / nu + 1.0 / oc - 1.0 / nc).max(0.0).sqrt();
            let lower = ratio * (-Z * se).exp();
            (ratio, lower, lower > rule.limit)
        }
        Signal::Counter(name) => {
            let device_hours = f64::from(e.came_back) * e.hours;
            if device_hours <= 0.0 {
                return not_judged("no device-hours of updated devices");
            }
            let c = e.counters.get(name).copied().unwrap_or(0) as f64;
            let lower = (c - Z * c.sqrt()).max(0.0) / device_hours;
            (c / device_hours, lower, lower > rule.limit)
        }
    };
    Measured {
        rule: rule.to_string(),
        value: Some(value),
        bound: Some(bound),
        tripped,
        note: None,
    }
}

/// The Wilson score interval's upper end for `k` successes in `n` trials.
fn wilson_upper(k: u32, n: u32) -> f64 {
    let (k, n) = (f64::from(k), f64::from(n));
    let p = k / n;
    let z2 = Z * Z;
    let centre = p + z2 / (2.0 * n);
    let margin = Z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre + margin) / (1.0 + z2 / n)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &str) -> HealthPolicy {
        HealthPolicy {
            bake_secs: 1800,
            rules: parse_rules(rules).unwrap(),
            ..HealthPolicy::default()
        }
    }

    #[test]
    fn rules_parse_and_print_back() {
        let text = "came_back>=99%,churn<=2x,offline<=1.5x,crashes<=0.5/h";
        let rules = parse_rules(text).unwrap();
        assert_eq!(rules.len(), 4);
        assert_eq!(rules[3].signal, Signal::Counter("crashes".into()));
        let back: Vec<String> = rules.iter().map(|r| r.to_string()).collect();
        assert_eq!(back.join(","), text);
        let json = serde_json::to_string(&rules[0]).unwrap();
        assert_eq!(json, "\"came_back>=99%\"");
        for bad in [
            "came_back>=101%",
            "churn<=x",
            "churn>=2x",
            "offline<=-1x",
            "Crashes<=1/h",
            "crashes<=1",
            "came_back<=5%",
            "churn<=NaNx",
        ] {
            assert!(HealthRule::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(HealthPolicy::default().validate(), Err(HealthError::NoBake));
    }

    fn evidence() -> Evidence {
        Evidence {
            came_back: 10,
            not_back: 0,
            updated_offline: 0,
            updated_connects: 0,
            control: 90,
            control_offline: 4,
            control_connects: 2,
            hours: 0.5,
            counters: BTreeMap::new(),
        }
    }

    #[test]
    fn a_healthy_wave_passes_every_rule() {
        let e = evaluate(
            &policy("came_back>=99%,churn<=2x,offline<=1.5x,crashes<=0.5/h"),
            &evidence(),
        );
        assert_eq!(e.verdict, Verdict::Healthy, "{e:#?}");
        assert!(e.signals.iter().all(|s| !s.tripped));
    }

    #[test]
    fn a_boot_loop_trips_churn() {
        // 2 of 10 updated devices reconnect ~15 times during the bake.
        let e = evaluate(
            &policy("churn<=2x"),
            &Evidence {
                updated_connects: 30,
                ..evidence()
            },
        );
        assert_eq!(e.verdict, Verdict::Unhealthy, "{e:#?}");
        assert!(e.summary.contains("churn<=2x"), "{}", e.summary);
    }

    #[test]
    fn devices_that_do_not_come_back_trip_came_back() {
        let e = evaluate(
            &policy("came_back>=99%"),
            &Evidence {
                came_back: 8,
                not_back: 2,
                ..evidence()
            },
        );
        assert_eq!(e.verdict, Verdict::Unhealthy);
        // One in a hundred is within the bound at 99 %.
        let e = evaluate(
            &policy("came_back>=99%"),
            &Evidence {
                came_back: 99,
                not_back: 1,
                ..evidence()
            },
        );
        assert_eq!(e.verdict, Verdict::Healthy, "{e:#?}");
    }

    #[test]
    fn offline_updated_devices_trip_offline() {
        let e = evaluate(
            &policy("offline<=1.5x"),
            &Evidence {
                updated_offline: 5,
                ..evidence()
            },
        );
        assert_eq!(e.verdict, Verdict::Unhealthy, "{e:#?}");
    }

    #[test]
    fn counters_trip_per_device_hour() {
        let crashing = Evidence {
            counters: BTreeMap::from([("crashes".to_owned(), 40)]),
            ..evidence()
        };
        assert_eq!(
            evaluate(&policy("crashes<=0.5/h"), &crashing).verdict,
            Verdict::Unhealthy
        );
        // Devices that send no health report (vendor SDKs) never trip a counter rule.
        assert_eq!(
            evaluate(&policy("crashes<=0.5/h"), &evidence()).verdict,
            Verdict::Healthy
        );
    }

    #[test]
    fn three_devices_can_neither_trip_nor_pass() {
        let few = Evidence {
            came_back: 2,
            not_back: 1,
            updated_connects: 50,
            ..evidence()
        };
        let e = evaluate(&policy("came_back>=99%,churn<=2x"), &few);
        assert_eq!(e.verdict, Verdict::Inconclusive, "{e:#?}");
        assert!(e.summary.contains("3 devices judged, 5 needed"));
    }

    #[test]
    fn a_single_bad_device_in_a_small_wave_is_not_proof() {
        // 1 of 10 reconnected three times: the bound stays under the limit.
        let e = evaluate(
            &policy("churn<=2x"),
            &Evidence {
                updated_connects: 3,
                control_connects: 9,
                ..evidence()
            },
        );
        assert_eq!(e.verdict, Verdict::Healthy, "{e:#?}");
    }

    #[test]
    fn without_a_control_group_comparisons_are_not_judged() {
        let e = evaluate(
            &policy("churn<=2x,offline<=1.5x"),
            &Evidence {
                control: 0,
                control_offline: 0,
                control_connects: 0,
                updated_connects: 100,
                ..evidence()
            },
        );
        assert_eq!(e.verdict, Verdict::Healthy);
        assert!(e.signals.iter().all(|s| s.note.is_some()));
    }
}
