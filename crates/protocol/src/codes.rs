//! Failure codes of the three dialects (`PROTOCOL.md` §1–3, §5) mapped onto one vocabulary, so
//! campaign statistics and operator messages do not depend on the dialect.

use serde::{Deserialize, Serialize};

use crate::Dialect;

/// Why an upgrade failed, across dialects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// Tencent -1.
    DownloadTimeout,
    /// Tencent -2 (HTTP 404).
    NotFound,
    /// Tencent -3 (HTTP 403: expired or forged URL).
    Forbidden,
    /// Tencent -4 (MD5), Aliyun/EnOS -3 (verification).
    DigestMismatch,
    /// Aliyun/EnOS -2.
    DownloadFailed,
    /// Aliyun/EnOS -4 (flashing / burning).
    InstallFailed,
    /// Tencent -5, Aliyun/EnOS -1.
    UpgradeFailed,
    /// EnOS -5: the device ignored this upgrade.
    Ignored,
    /// Any other code (EnOS custom codes below -5, unknown codes).
    Other,
}

/// Classifies a failure code reported by a device of dialect `d`.
pub fn failure_kind(d: Dialect, code: i32) -> FailureKind {
    use FailureKind::*;
    match (d, code) {
        (Dialect::Tencent, -1) => DownloadTimeout,
        (Dialect::Tencent, -2) => NotFound,
        (Dialect::Tencent, -3) => Forbidden,
        (Dialect::Tencent, -4) => DigestMismatch,
        (Dialect::Tencent, -5) => UpgradeFailed,
        (Dialect::Aliyun | Dialect::Enos, -1) => UpgradeFailed,
        (Dialect::Aliyun | Dialect::Enos, -2) => DownloadFailed,
        (Dialect::Aliyun | Dialect::Enos, -3) => DigestMismatch,
        (Dialect::Aliyun | Dialect::Enos, -4) => InstallFailed,
        (Dialect::Enos, -5) => Ignored,
        _ => Other,
    }
}

/// The code a device of dialect `d` reports for a failure of kind `k` (nearest code where the
/// dialect has no exact one; the generic upgrade failure for `Other`).
pub fn failure_code(d: Dialect, k: FailureKind) -> i32 {
    use FailureKind::*;
    match d {
        Dialect::Tencent => match k {
            DownloadTimeout | DownloadFailed => -1,
            NotFound => -2,
            Forbidden => -3,
            DigestMismatch => -4,
            InstallFailed | UpgradeFailed | Ignored | Other => -5,
        },
        Dialect::Aliyun | Dialect::Enos => match k {
            DownloadTimeout | NotFound | Forbidden | DownloadFailed => -2,
            DigestMismatch => -3,
            InstallFailed => -4,
            Ignored if d == Dialect::Enos => -5,
            UpgradeFailed | Ignored | Other => -1,
        },
    }
}

/// Operator-facing text for a failure code of dialect `d`.
pub fn explain(d: Dialect, code: i32) -> &'static str {
    match (d, code) {
        (_, 0) => "no error",
        (Dialect::Tencent, -1) => "download timed out",
        (Dialect::Tencent, -2) => "firmware file not found (HTTP 404)",
        (Dialect::Tencent, -3) => "download refused: URL expired or signature invalid (HTTP 403)",
        (Dialect::Tencent, -4) => "MD5 of the downloaded file does not match",
        (Dialect::Tencent, -5) => "update failed on the device",
        (Dialect::Aliyun | Dialect::Enos, -1) => "upgrade failed",
        (Dialect::Aliyun | Dialect::Enos, -2) => "download failed",
        (Dialect::Aliyun | Dialect::Enos, -3) => "verification of the downloaded file failed",
        (Dialect::Aliyun | Dialect::Enos, -4) => "flashing the firmware failed",
        (Dialect::Enos, -5) => "the device ignored this upgrade",
        (Dialect::Enos, c) if c < -5 => "device-specific failure (see the device's description)",
        _ => "unknown failure code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_codes() {
        assert_eq!(
            failure_kind(Dialect::Tencent, -4),
            FailureKind::DigestMismatch
        );
        assert_eq!(failure_kind(Dialect::Tencent, -2), FailureKind::NotFound);
        assert_eq!(failure_kind(Dialect::Tencent, -3), FailureKind::Forbidden);
        assert_eq!(
            failure_kind(Dialect::Aliyun, -3),
            FailureKind::DigestMismatch
        );
        assert_eq!(
            failure_kind(Dialect::Aliyun, -4),
            FailureKind::InstallFailed
        );
        assert_eq!(failure_kind(Dialect::Aliyun, -5), FailureKind::Other);
        assert_eq!(failure_kind(Dialect::Enos, -5), FailureKind::Ignored);
        assert_eq!(failure_kind(Dialect::Enos, -9), FailureKind::Other);
        assert_eq!(
            failure_code(Dialect::Tencent, FailureKind::DigestMismatch),
            -4
        );
        assert_eq!(
            failure_code(Dialect::Aliyun, FailureKind::DigestMismatch),
            -3
        );
        assert_eq!(failure_code(Dialect::Enos, FailureKind::DigestMismatch), -3);
        assert_eq!(failure_code(Dialect::Enos, FailureKind::Ignored), -5);
        assert_eq!(failure_code(Dialect::Aliyun, FailureKind::Ignored), -1);
    }

    #[test]
    fn every_dialect_code_round_trips_through_its_kind() {
        let known = [
            (Dialect::Tencent, -5..=-1),
            (Dialect::Aliyun, -4..=-1),
            (Dialect::Enos, -5..=-1),
        ];
        for (d, codes) in known {
            for code in codes {
                let k = failure_kind(d, code);
                assert_ne!(k, FailureKind::Other);
                assert_eq!(failure_code(d, k), code, "{d} {code}");
                assert_ne!(explain(d, code), "unknown failure code");
            }
        }
    }

    #[test]
    fn codes_are_negative_for_every_kind() {
        use FailureKind::*;
        for d in Dialect::ALL {
            for k in [
                DownloadTimeout,
                NotFound,
                Forbidden,
                DigestMismatch,
                DownloadFailed,
                InstallFailed,
                UpgradeFailed,
                Ignored,
                Other,
            ] {
                assert!(failure_code(d, k) < 0);
            }
        }
    }
}
