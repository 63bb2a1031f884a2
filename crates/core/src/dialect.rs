//! The vendor protocols devices speak. Products are created with one; how each is spoken on the
//! wire is otter-protocol's business.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The vendor protocol a device speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Tencent IoT Hub (`$ota/report`, `$ota/update`).
    Tencent,
    /// Alibaba Cloud IoT (`/ota/device/...`, `/sys/.../thing/ota/firmware/get`).
    Aliyun,
    /// EnOS (`/sys/{pk}/{dk}/ota/device/...`, JSON-RPC-like).
    Enos,
}

impl Dialect {
    /// All dialects, for iteration in configuration and tests.
    pub const ALL: [Dialect; 3] = [Dialect::Tencent, Dialect::Aliyun, Dialect::Enos];

    /// The lowercase name used in configuration, URLs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Tencent => "tencent",
            Dialect::Aliyun => "aliyun",
            Dialect::Enos => "enos",
        }
    }

    /// Whether every device SDK of the dialect dials the port written in a download link.
    /// Tencent's C SDK ignores it and always dials 80 (443 with TLS); Alibaba's C SDK takes
    /// everything between `://` and the first `/` as the host name, so `http://host:8080/…`
    /// fails its DNS lookup (PROTOCOL.md §4). EnOS's SDK hands the URL to the application.
    /// Links never carry the scheme's default port, so only a non-default one is at stake.
    pub fn sdks_dial_link_ports(self) -> bool {
        matches!(self, Dialect::Enos)
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error of [`Dialect::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dialect {0:?}: expected \"tencent\", \"aliyun\" or \"enos\"")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;

    /// Accepts the names case-insensitively, since operators type them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownDialect(s.to_owned()))
    }
}
