//! Which devices a campaign takes: pure selection over a snapshot of the fleet.
//!
//! The four ways of the seeds combine in one [`Selection`]: source versions (every device at
//! them), named devices (optionally at source versions), a file of names (version ignored) and tag
//! filters. Devices already at the target are skipped, and so are devices whose version the
//! product's scheme orders above the target unless the campaign explicitly allows a downgrade:
//! the verdict is [`crate::decide`]'s, the same one a release would reach.

use crate::upgrade::{CampaignMode, Fact, Reason, Situation, UpgradeState, UpgradeStatus, decide};
use crate::{DeviceName, Version, VersionScheme};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How a campaign chooses devices. Empty lists mean "no constraint"; at least one constraint is
/// required so that a campaign never takes a whole fleet by accident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Selection {
    /// Only devices currently at one of these versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// Only these devices (named, or read from a file with [`parse_device_list`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    /// Only devices carrying every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// A device as targeting sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: DeviceName,
    pub version: Option<Version>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Targeting {
    /// Devices taken, in rollout order (fleet order).
    pub selected: Vec<DeviceName>,
    /// Devices that matched but were left out, with the reason.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub device: String,
    /// What a person reads: why the device is left out.
    pub reason: String,
    /// The stored reason code (None for a name that is no device of the product).
    pub code: Option<Reason>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetingError {
    #[error("the selection is empty: give source versions, device names, a device file or tags")]
    Unconstrained,
    #[error("the selection matches no device to upgrade{}", explain(.0))]
    NothingSelected(Vec<Skipped>),
}

fn explain(skipped: &[Skipped]) -> String {
    const SHOWN: usize = 5;
    let mut text: String = skipped
        .iter()
        .take(SHOWN)
        .map(|s| format!("; {}: {}", s.device, s.reason))
        .collect();
    if skipped.len() > SHOWN {
        text.push_str(&format!("; and {} more", skipped.len() - SHOWN));
    }
    text
}

/// The product's rules a campaign's targeting applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rules {
    pub scheme: VersionScheme,
    pub allow_downgrade: bool,
}

/// Why a device running `running` is not offered `target`, if it is not (the verdict of
/// [`decide`] on its release).
pub fn skip_reason(
    running: Option<&Version>,
    target: &Version,
    rules: Rules,
) -> Option<(Reason, String)> {
    let ctx = Situation {
        mode: CampaignMode::Push,
        allow_downgrade: rules.allow_downgrade,
        scheme: rules.scheme,
        running,
        online: true,
    };
    let queued = UpgradeStatus::queued(target.clone());
    let decision = decide(&queued, Fact::Released, &ctx);
    let outcome = decision.outcome(&queued);
    match outcome.state {
        UpgradeState::Succeeded => Some((Reason::AlreadyAtTarget, format!("already at {target}"))),
        UpgradeState::Skipped => Some((
            outcome.reason.unwrap_or(Reason::NewerThanTarget),
            outcome.result_msg.clone().unwrap_or_default(),
        )),
        _ => None,
    }
}

/// Applies `selection` to the fleet for a campaign to `target`.
pub fn select(
    selection: &Selection,
    fleet: &[Candidate],
    target: &Version,
    rules: Rules,
) -> Result<Targeting, TargetingError> {
    if selection.versions.is_empty() && selection.devices.is_empty() && selection.tags.is_empty() {
        return Err(TargetingError::Unconstrained);
    }
    let names: BTreeSet<&str> = selection.devices.iter().map(String::as_str).collect();
    let versions: BTreeSet<&str> = selection.versions.iter().map(String::as_str).collect();
    let mut out = Targeting::default();
    for device in fleet {
        let version = device.version.as_ref().map(Version::as_str);
        let matches = (names.is_empty() || names.contains(device.name.as_str()))
            && (versions.is_empty() || version.is_some_and(|v| versions.contains(v)))
            && selection.tags.iter().all(|t| device.tags.contains(t));
        if !matches {
            continue;
        }
        match skip_reason(device.version.as_ref(), target, rules) {
            Some((code, reason)) => out.skipped.push(Skipped {
                device: device.name.to_string(),
                reason,
                code: Some(code),
            }),
            None => out.selected.push(device.name.clone()),
        }
    }
    let known: BTreeSet<&str> = fleet.iter().map(|d| d.name.as_str()).collect();
    out.skipped.extend(
        names
            .iter()
            .filter(|n| !known.contains(*n))
            .map(|n| Skipped {
                device: (*n).to_owned(),
                reason: "unknown device".into(),
                code: None,
            }),
    );
    if out.selected.is_empty() {
        return Err(TargetingError::NothingSelected(out.skipped));
    }
    Ok(out)
}

/// Reads a device-name file: one name per line, or CSV whose header has a `name`, `device`,
/// `deviceName` or `device_name` column. Blank lines and `#` comments are ignored.
pub fn parse_device_list(text: &str) -> Result<Vec<String>, String> {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .peekable();
    let Some(first) = lines.peek().copied() else {
        return Ok(Vec::new());
    };
    if !first.contains(',') {
        return Ok(lines.map(str::to_owned).collect());
    }
    let header: Vec<String> = first
        .split(',')
        .map(|h| h.trim().trim_matches('"').to_ascii_lowercase())
        .collect();
    let column = header
        .iter()
        .position(|h| matches!(h.as_str(), "name" | "device" | "devicename" | "device_name"))
        .ok_or_else(|| {
            format!("CSV header {first:?} has no name, device, deviceName or device_name column")
        })?;
    lines.next();
    lines
        .enumerate()
        .map(|(i, line)| {
            line.split(',')
                .nth(column)
                .map(|cell| cell.trim().trim_matches('"').to_owned())
                .filter(|cell| !cell.is_empty())
                .ok_or_else(|| format!("CSV line {}: no value in column {}", i + 2, column + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Vec<Candidate> {
        let d = |name: &str, version: Option<&str>, tags: &[&str]| Candidate {
            name: DeviceName::parse(name).unwrap(),
            version: version.map(|v| Version::parse(v).unwrap()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        };
        vec![
            d("a", Some("1.0.0"), &["eu"]),
            d("b", Some("1.0.1"), &["eu", "beta"]),
            d("c", Some("2.0.0"), &[]),
            d("d", None, &["beta"]),
            d("e", Some("1.1.0"), &["eu"]),
        ]
    }

    fn names(t: &Targeting) -> Vec<&str> {
        t.selected.iter().map(|d| d.as_str()).collect()
    }

    fn rules(allow_downgrade: bool) -> Rules {
        Rules {
            scheme: VersionScheme::Semver,
            allow_downgrade,
        }
    }

    fn target() -> Version {
        Version::parse("1.1.0").unwrap()
    }

    #[test]
    fn by_source_versions() {
        let s = Selection {
            versions: vec!["1.0.0".into(), "1.0.1".into()],
            ..Default::default()
        };
        assert_eq!(
            names(&select(&s, &fleet(), &target(), rules(false)).unwrap()),
            ["a", "b"]
        );
    }

    #[test]
    fn named_devices_at_source_versions() {
        let s = Selection {
            devices: vec!["a".into(), "c".into(), "d".into()],
            versions: vec!["1.0.0".into()],
            ..Default::default()
        };
        assert_eq!(
            names(&select(&s, &fleet(), &target(), rules(false)).unwrap()),
            ["a"]
        );
    }

    #[test]
    fn list_ignores_versions_but_not_downgrades_or_target() {
        let s = Selection {
            devices: vec!["c".into(), "d".into(), "e".into(), "ghost".into()],
            ..Default::default()
        };
        let t = select(&s, &fleet(), &target(), rules(false)).unwrap();
        assert_eq!(names(&t), ["d"]);
        let reasons: Vec<_> = t
            .skipped
            .iter()
            .map(|s| (s.device.as_str(), s.reason.split(' ').next().unwrap()))
            .collect();
        assert_eq!(
            reasons,
            [("c", "runs"), ("e", "already"), ("ghost", "unknown")]
        );
        let t = select(&s, &fleet(), &target(), rules(true)).unwrap();
        assert_eq!(names(&t), ["c", "d"]);
    }

    #[test]
    fn by_tags() {
        let s = Selection {
            tags: vec!["eu".into()],
            ..Default::default()
        };
        assert_eq!(
            names(&select(&s, &fleet(), &target(), rules(false)).unwrap()),
            ["a", "b"]
        );
        let s = Selection {
            tags: vec!["eu".into(), "beta".into()],
            ..Default::default()
        };
        assert_eq!(
            names(&select(&s, &fleet(), &target(), rules(false)).unwrap()),
            ["b"]
        );
    }

    #[test]
    fn refuses_unconstrained_and_empty() {
        assert_eq!(
            select(&Selection::default(), &fleet(), &target(), rules(false)),
            Err(TargetingError::Unconstrained)
        );
        let s = Selection {
            versions: vec!["9".into()],
            ..Default::default()
        };
        assert_eq!(
            select(&s, &fleet(), &target(), rules(false)),
            Err(TargetingError::NothingSelected(vec![]))
        );
        let s = Selection {
            devices: vec!["c".into()],
            ..Default::default()
        };
        let err = select(&s, &fleet(), &target(), rules(false)).unwrap_err();
        assert!(
            err.to_string()
                .contains("c: runs 2.0.0, newer than the target 1.1.0"),
            "{err}"
        );
        let opaque = Rules {
            scheme: VersionScheme::Opaque,
            allow_downgrade: false,
        };
        assert_eq!(
            names(&select(&s, &fleet(), &target(), opaque).unwrap()),
            ["c"]
        );
    }

    #[test]
    fn device_files_plain_and_csv() {
        assert_eq!(
            parse_device_list("a\n\n# comment\n b \n").unwrap(),
            ["a", "b"]
        );
        assert_eq!(
            parse_device_list("id,deviceName,site\n1,a,x\n2,\"b\",y\n").unwrap(),
            ["a", "b"]
        );
        assert!(
            parse_device_list("id,site\n1,x\n")
                .unwrap_err()
                .contains("no name")
        );
        assert!(
            parse_device_list("name,site\n,x\n")
                .unwrap_err()
                .contains("line 2")
        );
    }
}
