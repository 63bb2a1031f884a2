//! Newtypes that make invalid identifiers unrepresentable. Names reach us from the network (topics,
//! client ids) and from operators, and end up in topics, URLs and file names, so each is checked
//! once, here, against a conservative alphabet.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidName {
    pub kind: &'static str,
    pub value: String,
    pub reason: String,
}

fn check(
    kind: &'static str,
    value: &str,
    max: usize,
    (allowed, alphabet): (fn(char) -> bool, &'static str),
) -> Result<(), InvalidName> {
    let fail = |reason: String| {
        Err(InvalidName {
            kind,
            value: value.chars().take(80).collect(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("must not be empty".into());
    }
    if value.len() > max {
        return fail(format!("is {} bytes long; at most {max}", value.len()));
    }
    if let Some((at, c)) = value.chars().enumerate().find(|(_, c)| !allowed(*c)) {
        return fail(format!(
            "character {} ({c:?}) is not allowed; {kind}s use {alphabet}",
            at + 1
        ));
    }
    if dot_segment(value) {
        return fail("is only dots, which a URL path reads as `.` or `..`".into());
    }
    Ok(())
}

/// A name made only of dots (`.`, `..`, `....`), also percent-encoded (`%2e`): in a URL path
/// (console pages, API routes) it reads as the current or parent folder, or nearly so.
fn dot_segment(value: &str) -> bool {
    let decoded = value.to_ascii_lowercase().replace("%2e", ".");
    decoded.chars().all(|c| c == '.')
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidName> {
                let value = value.into();
                check($kind, &value, $max, $allowed)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, InvalidName> {
                Self::parse(s)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

const IDENT: (fn(char) -> bool, &str) = (
    |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'),
    "ASCII letters, digits, `_` and `-`",
);
const DEVICE: (fn(char) -> bool, &str) = (
    |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@'),
    "ASCII letters, digits and `_ - . : @`",
);
const VERSION: (fn(char) -> bool, &str) = (
    |c| c.is_ascii_graphic() && !matches!(c, '/' | '\\' | '"' | '+' | '#'),
    "visible ASCII characters except `/ \\ \" + #` and spaces",
);

name_type!(
    /// A product id (Tencent productId, Alibaba productKey, EnOS productKey).
    ProductId, "product id", 64, IDENT
);
name_type!(
    /// A device name (Alibaba deviceName, EnOS deviceKey, Tencent deviceName).
    DeviceName, "device name", 64, DEVICE
);
name_type!(
    /// A firmware version as devices report it; compared for equality only (policy lives in campaigns).
    Version, "version", 64, VERSION
);
name_type!(
    /// A firmware module (Alibaba's `module`); `default` when a device names none.
    Module, "module", 64, IDENT
);

impl Default for Module {
    fn default() -> Self {
        Module("default".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_which_character_or_limit() {
        let e = DeviceName::parse("kitchen light").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid device name \"kitchen light\": character 8 (' ') is not allowed; device names use ASCII letters, digits and `_ - . : @`"
        );
        let e = ProductId::parse("p".repeat(65)).unwrap_err();
        assert!(
            e.to_string().ends_with("is 65 bytes long; at most 64"),
            "{e}"
        );
    }

    #[test]
    fn accepts_vendor_shaped_names() {
        assert!(ProductId::parse("a1B2c3D4e5F").is_ok());
        assert!(DeviceName::parse("device01").is_ok());
        assert!(Version::parse("1-45-345a").is_ok());
        assert!(Version::parse("res-1.2.5").is_ok());
    }

    #[test]
    fn rejects_path_tricks_and_topic_characters() {
        assert!(ProductId::parse("../etc").is_err());
        assert!(DeviceName::parse("a/b").is_err());
        assert!(DeviceName::parse("a+").is_err());
        assert!(Version::parse("1.0 beta").is_err());
        assert!(Version::parse("").is_err());
        assert!(ProductId::parse("x".repeat(65)).is_err());
    }

    #[test]
    fn rejects_dot_segments() {
        for dots in [".", "..", "...", "....", "%2e%2E", ".%2e"] {
            assert!(DeviceName::parse(dots).is_err(), "{dots:?}");
            assert!(Version::parse(dots).is_err(), "{dots:?}");
        }
        assert!(DeviceName::parse("a..b").is_ok());
        assert!(DeviceName::parse(".hidden").is_ok());
        assert!(Version::parse("1.0.").is_ok());
    }

    #[test]
    fn rejects_control_characters_and_unbounded_lengths() {
        for bad in ["a\tb", "a\nb", "a\u{7f}", "a\u{0}", "a\u{85}"] {
            assert!(DeviceName::parse(bad).is_err(), "{bad:?}");
            assert!(Version::parse(bad).is_err(), "{bad:?}");
            assert!(ProductId::parse(bad).is_err(), "{bad:?}");
            assert!(Module::parse(bad).is_err(), "{bad:?}");
        }
        assert!(DeviceName::parse("d".repeat(64)).is_ok());
        assert!(DeviceName::parse("d".repeat(65)).is_err());
        assert!(Version::parse("1".repeat(65)).is_err());
        assert!(Module::parse("m".repeat(65)).is_err());
    }

    #[test]
    fn deserialize_validates() {
        let r: Result<ProductId, _> = serde_json::from_str("\"bad/id\"");
        assert!(r.is_err());
    }
}
