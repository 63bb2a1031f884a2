//! Which MQTT topics belong to which device and in which direction. The broker's ACL is built on
//! these functions: a device publishes only its own upstream topics and receives only its own
//! downstream topics, whatever it subscribed.
//!
//! One topic goes both ways: Alibaba's `/ota/device/request/{pk}/{dn}` carries the device's
//! request ([`UpKind::ImageRequest`]) and Otter's answer on the very same topic, so it is both an
//! upstream and a downstream topic of its device (see [`two_way`]).

use serde::{Deserialize, Serialize};

use crate::{DeviceAddr, Dialect};

/// What an upstream (device → cloud) topic carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UpKind {
    /// Current firmware version (Aliyun/EnOS `inform`; a Tencent `report_version`).
    VersionReport,
    /// Upgrade progress or failure (Aliyun/EnOS `progress`; a Tencent `report_progress`).
    Progress,
    /// The device asks for its job (Aliyun `firmware/get`, EnOS `getversion`).
    FirmwareRequest,
    /// EnOS `upgrade_reply`: the device's answer to a push (informational).
    UpgradeReply,
    /// Alibaba's `/ota/device/request` (iotkit-embedded 3.x, `iotx_req_image` in
    /// `src/ota/iotx_ota.c`): the device asks for its job and is answered on the same topic, in
    /// the push's shape. The message is a [`crate::UpMessage::FirmwareRequest`] travelling
    /// [`crate::Uplink::via`] this kind.
    ImageRequest,
    /// Tencent's single `$ota/report` topic, which carries both versions and progress; the
    /// payload's `type` decides. [`parse_up_topic`] returns this for every Tencent topic.
    Report,
    /// Otter's health report (crate::health): Alibaba `/ota/device/otter_health`, EnOS
    /// `ota/device/otter_health`; Tencent's arrive on `$ota/report` with their own `type`.
    Health,
}

/// What a downstream (cloud → device) topic carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DownKind {
    /// The firmware push topic (Tencent `$ota/update`, which also carries `report_version_rsp`;
    /// Aliyun `/ota/device/upgrade`; EnOS `ota/device/upgrade`).
    Push,
    /// The reply to a request published on the upstream topic of this kind.
    Reply(UpKind),
}

/// A product or device segment: non-empty, and nothing MQTT would read as structure.
fn valid_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

fn addr(product: &str, device: &str) -> Option<DeviceAddr> {
    (valid_segment(product) && valid_segment(device)).then(|| DeviceAddr::new(product, device))
}

/// Topic segments, only for topics of exactly `N` segments.
fn segments<const N: usize>(topic: &str) -> Option<[&str; N]> {
    let parts: Vec<&str> = topic.split('/').collect();
    parts.try_into().ok()
}

/// EnOS upstream request names (the `ota/device/{name}` suffix) and their kinds.
const ENOS_UP: [(&str, UpKind); 5] = [
    ("inform", UpKind::VersionReport),
    ("progress", UpKind::Progress),
    ("getversion", UpKind::FirmwareRequest),
    ("upgrade_reply", UpKind::UpgradeReply),
    ("otter_health", UpKind::Health),
];

/// Recognises an upstream OTA topic of any dialect.
pub fn parse_up_topic(topic: &str) -> Option<(Dialect, UpKind, DeviceAddr)> {
    if let Some(["$ota", "report", pk, dn]) = segments::<4>(topic) {
        return Some((Dialect::Tencent, UpKind::Report, addr(pk, dn)?));
    }
    if let Some(["", "ota", "device", what, pk, dn]) = segments::<6>(topic) {
        let kind = match what {
            "inform" => UpKind::VersionReport,
            "progress" => UpKind::Progress,
            "request" => UpKind::ImageRequest,
            "otter_health" => UpKind::Health,
            _ => return None,
        };
        return Some((Dialect::Aliyun, kind, addr(pk, dn)?));
    }
    if let Some(["", "sys", pk, dn, "thing", "ota", "firmware", "get"]) = segments::<8>(topic) {
        return Some((Dialect::Aliyun, UpKind::FirmwareRequest, addr(pk, dn)?));
    }
    if let Some(["", "sys", pk, dk, "ota", "device", what]) = segments::<7>(topic) {
        let (_, kind) = ENOS_UP.iter().find(|(name, _)| *name == what)?;
        return Some((Dialect::Enos, *kind, addr(pk, dk)?));
    }
    None
}

/// Recognises a downstream OTA topic of any dialect (used by the device agent).
pub fn parse_down_topic(topic: &str) -> Option<(Dialect, DownKind, DeviceAddr)> {
    if let Some(["$ota", "update", pk, dn]) = segments::<4>(topic) {
        return Some((Dialect::Tencent, DownKind::Push, addr(pk, dn)?));
    }
    if let Some(["", "ota", "device", what, pk, dn]) = segments::<6>(topic) {
        let kind = match what {
            "upgrade" => DownKind::Push,
            "request" => DownKind::Reply(UpKind::ImageRequest),
            _ => return None,
        };
        return Some((Dialect::Aliyun, kind, addr(pk, dn)?));
    }
    if let Some(["", "sys", pk, dn, "thing", "ota", "firmware", "get_reply"]) = segments::<8>(topic)
    {
        let kind = DownKind::Reply(UpKind::FirmwareRequest);
        return Some((Dialect::Aliyun, kind, addr(pk, dn)?));
    }
    if let Some(["", "sys", pk, dk, "ota", "device", what]) = segments::<7>(topic) {
        let kind = if what == "upgrade" {
            DownKind::Push
        } else {
            let request = what.strip_suffix("_reply")?;
            let (_, up) = ENOS_UP.iter().find(|(name, _)| *name == request)?;
            if *up == UpKind::UpgradeReply {
                return None;
            }
            DownKind::Reply(*up)
        };
        return Some((Dialect::Enos, kind, addr(pk, dk)?));
    }
    None
}

/// The upstream topic of one kind for a device, or `None` when the dialect has no such topic.
pub fn up_topic(d: Dialect, kind: UpKind, dev: &DeviceAddr) -> Option<String> {
    let (pk, dn) = (&dev.product, &dev.device);
    match (d, kind) {
        (
            Dialect::Tencent,
            UpKind::Report | UpKind::VersionReport | UpKind::Progress | UpKind::Health,
        ) => Some(format!("$ota/report/{pk}/{dn}")),
        (Dialect::Aliyun, UpKind::Health) => Some(format!("/ota/device/otter_health/{pk}/{dn}")),
        (Dialect::Aliyun, UpKind::VersionReport) => Some(format!("/ota/device/inform/{pk}/{dn}")),
        (Dialect::Aliyun, UpKind::Progress) => Some(format!("/ota/device/progress/{pk}/{dn}")),
        (Dialect::Aliyun, UpKind::ImageRequest) => Some(format!("/ota/device/request/{pk}/{dn}")),
        (Dialect::Aliyun, UpKind::FirmwareRequest) => {
            Some(format!("/sys/{pk}/{dn}/thing/ota/firmware/get"))
        }
        (Dialect::Enos, kind) => {
            let (name, _) = ENOS_UP.iter().find(|(_, k)| *k == kind)?;
            Some(format!("/sys/{pk}/{dn}/ota/device/{name}"))
        }
        _ => None,
    }
}

/// The downstream topic of one kind for a device, or `None` when the dialect has no such topic.
pub fn down_topic(d: Dialect, kind: DownKind, dev: &DeviceAddr) -> Option<String> {
    let (pk, dn) = (&dev.product, &dev.device);
    match (d, kind) {
        // Tencent answers report_version on the update topic itself.
        (Dialect::Tencent, DownKind::Push | DownKind::Reply(UpKind::VersionReport)) => {
            Some(format!("$ota/update/{pk}/{dn}"))
        }
        (Dialect::Aliyun, DownKind::Push) => Some(format!("/ota/device/upgrade/{pk}/{dn}")),
        (Dialect::Aliyun, DownKind::Reply(UpKind::FirmwareRequest)) => {
            Some(format!("/sys/{pk}/{dn}/thing/ota/firmware/get_reply"))
        }
        // The request topic is answered on itself.
        (Dialect::Aliyun, DownKind::Reply(UpKind::ImageRequest)) => {
            up_topic(d, UpKind::ImageRequest, dev)
        }
        (Dialect::Enos, DownKind::Push) => Some(format!("/sys/{pk}/{dn}/ota/device/upgrade")),
        (
            Dialect::Enos,
            DownKind::Reply(UpKind::UpgradeReply | UpKind::Report | UpKind::Health),
        ) => None,
        (Dialect::Enos, DownKind::Reply(up)) => {
            up_topic(Dialect::Enos, up, dev).map(|t| format!("{t}_reply"))
        }
        _ => None,
    }
}

/// Every topic a device of this dialect may publish on.
pub fn upstream_topics(d: Dialect, dev: &DeviceAddr) -> Vec<String> {
    let kinds: &[UpKind] = match d {
        Dialect::Tencent => &[UpKind::Report],
        Dialect::Aliyun => &[
            UpKind::VersionReport,
            UpKind::Progress,
            UpKind::FirmwareRequest,
            UpKind::ImageRequest,
            UpKind::Health,
        ],
        Dialect::Enos => &[
            UpKind::VersionReport,
            UpKind::Progress,
            UpKind::FirmwareRequest,
            UpKind::UpgradeReply,
            UpKind::Health,
        ],
    };
    kinds.iter().filter_map(|k| up_topic(d, *k, dev)).collect()
}

/// Every topic Otter publishes to this device (pushes and replies).
pub fn downstream_topics(d: Dialect, dev: &DeviceAddr) -> Vec<String> {
    let kinds: &[DownKind] = match d {
        Dialect::Tencent => &[DownKind::Push],
        Dialect::Aliyun => &[
            DownKind::Push,
            DownKind::Reply(UpKind::FirmwareRequest),
            DownKind::Reply(UpKind::ImageRequest),
        ],
        Dialect::Enos => &[
            DownKind::Push,
            DownKind::Reply(UpKind::VersionReport),
            DownKind::Reply(UpKind::Progress),
            DownKind::Reply(UpKind::FirmwareRequest),
        ],
    };
    kinds
        .iter()
        .filter_map(|k| down_topic(d, *k, dev))
        .collect()
}

/// Whether `topic` carries messages both ways: the device's request and Otter's answer
/// (Alibaba's `/ota/device/request`). A client subscribed to it hears both; Otter's embedded
/// broker delivers only Otter's answers to the device, and a node on an external broker drops its
/// own answers coming back ([`crate::is_own_answer`]).
pub fn two_way(topic: &str) -> bool {
    matches!(parse_up_topic(topic), Some((_, UpKind::ImageRequest, _)))
}

/// Whether `dev` may publish on `topic`: only its own upstream topics of its own dialect.
pub fn may_publish(d: Dialect, dev: &DeviceAddr, topic: &str) -> bool {
    matches!(parse_up_topic(topic), Some((td, _, ta)) if td == d && &ta == dev)
}

/// Whether a message published on `topic` may be delivered to `dev`: only its own downstream
/// topics, whatever the device subscribed.
pub fn may_receive(d: Dialect, dev: &DeviceAddr, topic: &str) -> bool {
    matches!(parse_down_topic(topic), Some((td, _, ta)) if td == d && &ta == dev)
}

/// MQTT topic-filter matching (`+` one level, `#` the rest), for deciding which of a device's
/// own topics a wildcard subscription covers. Topics starting with `$` are not matched by a
/// leading wildcard, as MQTT 3.1.1 §4.7.2 requires.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return f.next().is_none(),
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> DeviceAddr {
        DeviceAddr::new("pk1", "dn1")
    }

    #[test]
    fn upstream_topics_parse_back() {
        for d in Dialect::ALL {
            let topics = upstream_topics(d, &dev());
            assert!(!topics.is_empty());
            for t in topics {
                let (pd, _, pa) = parse_up_topic(&t).expect(&t);
                assert_eq!((pd, pa), (d, dev()), "{t}");
                assert!(may_publish(d, &dev(), &t));
                assert_eq!(may_receive(d, &dev(), &t), two_way(&t), "{t} is upstream");
            }
        }
    }

    #[test]
    fn downstream_topics_parse_back() {
        for d in Dialect::ALL {
            for t in downstream_topics(d, &dev()) {
                let (pd, _, pa) = parse_down_topic(&t).expect(&t);
                assert_eq!((pd, pa), (d, dev()), "{t}");
                assert!(may_receive(d, &dev(), &t));
                assert_eq!(may_publish(d, &dev(), &t), two_way(&t), "{t} is downstream");
            }
        }
    }

    #[test]
    fn exact_topics() {
        let d = dev();
        assert_eq!(
            upstream_topics(Dialect::Tencent, &d),
            ["$ota/report/pk1/dn1"]
        );
        assert_eq!(
            downstream_topics(Dialect::Tencent, &d),
            ["$ota/update/pk1/dn1"]
        );
        assert_eq!(
            upstream_topics(Dialect::Aliyun, &d),
            [
                "/ota/device/inform/pk1/dn1",
                "/ota/device/progress/pk1/dn1",
                "/sys/pk1/dn1/thing/ota/firmware/get",
                "/ota/device/request/pk1/dn1",
                "/ota/device/otter_health/pk1/dn1"
            ]
        );
        assert_eq!(
            downstream_topics(Dialect::Aliyun, &d),
            [
                "/ota/device/upgrade/pk1/dn1",
                "/sys/pk1/dn1/thing/ota/firmware/get_reply",
                "/ota/device/request/pk1/dn1"
            ]
        );
        assert_eq!(
            upstream_topics(Dialect::Enos, &d),
            [
                "/sys/pk1/dn1/ota/device/inform",
                "/sys/pk1/dn1/ota/device/progress",
                "/sys/pk1/dn1/ota/device/getversion",
                "/sys/pk1/dn1/ota/device/upgrade_reply",
                "/sys/pk1/dn1/ota/device/otter_health"
            ]
        );
        assert_eq!(
            downstream_topics(Dialect::Enos, &d),
            [
                "/sys/pk1/dn1/ota/device/upgrade",
                "/sys/pk1/dn1/ota/device/inform_reply",
                "/sys/pk1/dn1/ota/device/progress_reply",
                "/sys/pk1/dn1/ota/device/getversion_reply"
            ]
        );
    }

    #[test]
    fn kinds_are_recognised() {
        let p = |t: &str| parse_up_topic(t).map(|(d, k, _)| (d, k));
        assert_eq!(
            p("$ota/report/P/D"),
            Some((Dialect::Tencent, UpKind::Report))
        );
        assert_eq!(
            p("/ota/device/progress/P/D"),
            Some((Dialect::Aliyun, UpKind::Progress))
        );
        assert_eq!(
            p("/sys/P/D/thing/ota/firmware/get"),
            Some((Dialect::Aliyun, UpKind::FirmwareRequest))
        );
        assert_eq!(
            p("/sys/P/D/ota/device/getversion"),
            Some((Dialect::Enos, UpKind::FirmwareRequest))
        );
        assert_eq!(
            p("/sys/P/D/ota/device/upgrade_reply"),
            Some((Dialect::Enos, UpKind::UpgradeReply))
        );
    }

    #[test]
    fn foreign_and_malformed_topics_are_refused() {
        let d = dev();
        let other = DeviceAddr::new("pk1", "dn2");
        assert!(!may_publish(Dialect::Tencent, &d, "$ota/report/pk1/dn2"));
        assert!(!may_publish(Dialect::Aliyun, &d, "$ota/report/pk1/dn1"));
        assert!(!may_receive(
            Dialect::Enos,
            &d,
            "/sys/pk1/dn2/ota/device/upgrade"
        ));
        assert!(may_receive(
            Dialect::Enos,
            &other,
            "/sys/pk1/dn2/ota/device/upgrade"
        ));
        for t in [
            "",
            "/",
            "$ota/report/pk1",
            "$ota/report/pk1/dn1/x",
            "$ota/report//dn1",
            "$ota/report/+/dn1",
            "$ota/report/pk1/#",
            "/ota/device/upgrade/pk1/dn1",
            "/sys/pk1/dn1/ota/device/upgrade",
            "/sys/pk1/dn1/ota/device/inform_reply",
            "/sys/pk1/dn1/ota/device/other",
            "/sys/pk1/dn1/rrpc/request/1",
        ] {
            assert_eq!(parse_up_topic(t), None, "{t:?}");
        }
        assert_eq!(
            parse_down_topic("/sys/pk1/dn1/ota/device/upgrade_reply_reply"),
            None
        );
        assert_eq!(
            parse_down_topic("/sys/pk1/dn1/ota/device/upgrade_reply"),
            None
        );
    }

    #[test]
    fn the_request_topic_goes_both_ways_for_its_own_device_only() {
        let t = "/ota/device/request/pk1/dn1";
        assert_eq!(
            parse_up_topic(t),
            Some((Dialect::Aliyun, UpKind::ImageRequest, dev()))
        );
        assert_eq!(
            parse_down_topic(t),
            Some((
                Dialect::Aliyun,
                DownKind::Reply(UpKind::ImageRequest),
                dev()
            ))
        );
        assert!(two_way(t));
        assert!(may_publish(Dialect::Aliyun, &dev(), t));
        assert!(may_receive(Dialect::Aliyun, &dev(), t));
        let other = DeviceAddr::new("pk1", "dn2");
        assert!(!may_publish(Dialect::Aliyun, &other, t));
        assert!(!may_receive(Dialect::Aliyun, &other, t));
        assert!(!may_publish(Dialect::Enos, &dev(), t));
        assert!(filter_matches("/ota/device/request/+/+", t));
        for t in [
            "/ota/device/inform/pk1/dn1",
            "/ota/device/upgrade/pk1/dn1",
            "/ota/device/request/pk1",
            "/ota/device/request/pk1/dn1/x",
            "/ota/device/request/+/dn1",
        ] {
            assert!(!two_way(t), "{t}");
        }
    }

    #[test]
    fn wildcard_filters() {
        assert!(filter_matches(
            "/ota/device/upgrade/+/+",
            "/ota/device/upgrade/pk1/dn1"
        ));
        assert!(filter_matches(
            "/sys/pk1/dn1/#",
            "/sys/pk1/dn1/ota/device/upgrade"
        ));
        assert!(filter_matches("#", "/ota/device/upgrade/pk1/dn1"));
        assert!(!filter_matches("#", "$ota/update/pk1/dn1"));
        assert!(filter_matches("$ota/update/+/+", "$ota/update/pk1/dn1"));
        assert!(!filter_matches(
            "/ota/device/upgrade/+",
            "/ota/device/upgrade/pk1/dn1"
        ));
        assert!(!filter_matches("a/#/b", "a/x/b"));
    }
}
