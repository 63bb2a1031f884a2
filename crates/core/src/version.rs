//! Ordering of firmware version strings, for "is this a downgrade?" and "which device is behind?".
//!
//! Vendors' versions are free-form (`1.2.3`, `v2.0-rc1`, `res-1.2.5`, `1-45-345a`), so a plain
//! string comparison gets `1.10` < `1.9` wrong. The rules, in order:
//!
//! 1. **Both semver-like** → semver precedence. Semver-like means `MAJOR[.MINOR[.PATCH]]` (digits
//!    only; a missing MINOR or PATCH is 0, so `1.2` == `1.2.0`), an optional leading `v`/`V`, an
//!    optional `-pre.release` and an optional `+build` (identifiers of `[0-9A-Za-z-]`, none empty).
//!    A pre-release is lower than its release (`1.0.0-rc.1` < `1.0.0`); pre-release identifiers
//!    compare numerically when both are digits, digits before letters, otherwise in ASCII order, and
//!    a shorter list is lower when the rest are equal. Build metadata is ignored.
//! 2. **Otherwise** (fallback) → both strings are cut into runs of ASCII digits and runs of other
//!    characters; the separators `.`, `-` and `_` only end a run and are dropped, and a leading
//!    `v`/`V` directly before a digit is dropped. Pieces are compared in turn: digit runs
//!    numerically (`10` > `9`, `007` == `7`), other runs case-insensitively; a digit run is higher
//!    than a text run at the same place (`1.0.1` > `1.0.a`, as in RPM), and a missing piece is lower
//!    (`1.0` < `1.0.0.1`).
//!
//! Numbers of any length are compared without overflow. Distinct strings may compare `Equal`
//! (`1.2` and `v1.2.0`; `1.0.0+a` and `1.0.0+b`). Mixing a semver-like and a free-form string uses
//! the fallback for both, so across the two kinds the order is not guaranteed transitive.
//!
//! That order is a *guess*, good for sorting a list on screen and nothing more. Decisions (is
//! this a downgrade?) use the product's [`VersionScheme`], which orders versions only where an
//! order is known: a vendor's free-form strings (`1-45-345a`, `initVersion`) have none, and an
//! operator who names a version has chosen it.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// How a product's firmware versions are ordered, for anti-rollback. Set per product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VersionScheme {
    /// Semantic versioning precedence (`1.10.0` > `1.9.0`, `1.0.0-rc.1` < `1.0.0`; a leading
    /// `v` and a missing minor or patch are accepted). A version that is not semver-like has no
    /// order: it is never called a downgrade, nor anything called a downgrade of it.
    #[default]
    Semver,
    /// Dot-separated numbers of any count (`1.2.3.4`, `20240107`, `v3`), compared part by part,
    /// a missing part being 0: build numbers and the 4-part versions of many MCU vendors.
    /// Anything else has no order.
    Numeric,
    /// No order at all: versions are names (`1-45-345a`, `res-1.2.5`, `initVersion`).
    Opaque,
}

impl VersionScheme {
    pub const ALL: [VersionScheme; 3] = [Self::Semver, Self::Numeric, Self::Opaque];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Semver => "semver",
            Self::Numeric => "numeric",
            Self::Opaque => "opaque",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The order of `a` and `b` under this scheme, when the scheme knows one.
    pub fn order(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            Self::Semver => Some(SemVer::parse(a)?.cmp_precedence(&SemVer::parse(b)?)),
            Self::Numeric => Some(cmp_numeric(numeric_parts(a)?, numeric_parts(b)?)),
            Self::Opaque => None,
        }
    }

    /// True only when the scheme knows that `target` is lower than `current`.
    pub fn is_downgrade(self, current: &str, target: &str) -> bool {
        self.order(target, current) == Some(Ordering::Less)
    }
}

impl std::fmt::Display for VersionScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VersionScheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            format!("unknown version scheme {s:?}: expected semver, numeric or opaque")
        })
    }
}

/// `[v]N(.N)*` → its numbers; None for anything else.
fn numeric_parts(s: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = strip_v(s).split('.').collect();
    parts.iter().all(|p| is_digits(p)).then_some(parts)
}

fn cmp_numeric(a: Vec<&str>, b: Vec<&str>) -> Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| cmp_digits(a.get(i).unwrap_or(&"0"), b.get(i).unwrap_or(&"0")))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Compares two version strings by the rules in the module documentation.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    match (SemVer::parse(a), SemVer::parse(b)) {
        (Some(a), Some(b)) => a.cmp_precedence(&b),
        _ => compare_fallback(a, b),
    }
}

/// True when moving from `current` to `target` goes backwards (`target` < `current`) by the
/// guessed order above (the agent's check of a signed offer; servers use [`VersionScheme`]).
pub fn is_downgrade(current: &str, target: &str) -> bool {
    compare_versions(target, current) == Ordering::Less
}

/// Compares two strings of ASCII digits by numeric value, whatever their length.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

fn strip_v(s: &str) -> &str {
    s.strip_prefix(['v', 'V']).unwrap_or(s)
}

/// The parts of a semver-like version that take part in precedence.
struct SemVer<'a> {
    core: [&'a str; 3],
    pre: Vec<&'a str>,
}

impl<'a> SemVer<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let s = strip_v(s);
        let s = match s.split_once('+') {
            Some((head, build)) => valid_identifiers(build).then_some(head)?,
            None => s,
        };
        let (core, pre) = match s.split_once('-') {
            Some((core, pre)) => (
                core,
                valid_identifiers(pre).then(|| pre.split('.').collect())?,
            ),
            None => (s, Vec::new()),
        };
        let mut numbers = ["0"; 3];
        for (i, part) in core.split('.').enumerate() {
            if i >= numbers.len() || !is_digits(part) {
                return None;
            }
            numbers[i] = part;
        }
        Some(Self { core: numbers, pre })
    }

    fn cmp_precedence(&self, other: &Self) -> Ordering {
        let core = self
            .core
            .iter()
            .zip(&other.core)
            .map(|(a, b)| cmp_digits(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal);
        core.then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => cmp_pre_release(&self.pre, &other.pre),
        })
    }
}

fn valid_identifiers(s: &str) -> bool {
    s.split('.')
        .all(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
}

fn cmp_pre_release(a: &[&str], b: &[&str]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (is_digits(x), is_digits(y)) {
            (true, true) => cmp_digits(x, y),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => x.cmp(y),
        };
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// One run of a free-form version.
enum Piece<'a> {
    Number(&'a str),
    Text(&'a str),
}

/// Cuts a free-form version into runs of digits and runs of other characters.
fn pieces(s: &str) -> Vec<Piece<'_>> {
    let s = match s.strip_prefix(['v', 'V']) {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => rest,
        _ => s,
    };
    let is_separator = |c: char| matches!(c, '.' | '-' | '_');
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if is_separator(c) {
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let digit = c.is_ascii_digit();
        let end = rest
            .find(|c: char| is_separator(c) || c.is_ascii_digit() != digit)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        out.push(if digit {
            Piece::Number(run)
        } else {
            Piece::Text(run)
        });
        rest = tail;
    }
    out
}

fn compare_fallback(a: &str, b: &str) -> Ordering {
    let (a, b) = (pieces(a), pieces(b));
    for (x, y) in a.iter().zip(&b) {
        let o = match (x, y) {
            (Piece::Number(x), Piece::Number(y)) => cmp_digits(x, y),
            (Piece::Number(_), Piece::Text(_)) => Ordering::Greater,
            (Piece::Text(_), Piece::Number(_)) => Ordering::Less,
            (Piece::Text(x), Piece::Text(y)) => {
                let lower = |s: &'_ str| s.chars().flat_map(char::to_lowercase).collect::<String>();
                lower(x).cmp(&lower(y))
            }
        };
        if o.is_ne() {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};
    use proptest::prelude::*;

    fn check(a: &str, b: &str, expected: Ordering) {
        assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
        assert_eq!(compare_versions(b, a), expected.reverse(), "{b} vs {a}");
    }

    #[test]
    fn semver_core_is_numeric() {
        check("1.10.0", "1.9.0", Greater);
        check("2.0.0", "10.0.0", Less);
        check("1.2.3", "1.2.3", Equal);
        check("0.0.1", "0.1.0", Less);
    }

    #[test]
    fn short_versions_and_leading_v() {
        check("1.2", "1.2.0", Equal);
        check("1", "1.0.0", Equal);
        check("v1.2.3", "1.2.3", Equal);
        check("V2", "v1.9.9", Greater);
        check("1.2", "1.10", Less);
    }

    #[test]
    fn pre_release_is_lower_and_ordered_by_semver() {
        // The example chain from semver.org §11.
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for pair in chain.windows(2) {
            check(pair[0], pair[1], Less);
        }
        check("2.0-rc1", "1.9", Greater);
    }

    #[test]
    fn build_metadata_is_ignored() {
        check("1.0.0+20240101", "1.0.0+build.7", Equal);
        check("1.0.0-rc.1+x", "1.0.0", Less);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        check(
            "1.99999999999999999999999999.0",
            "1.100000000000000000000000000.0",
            Less,
        );
        check(
            "fw-00099999999999999999999",
            "fw-99999999999999999999",
            Equal,
        );
    }

    #[test]
    fn fallback_splits_digits_and_text() {
        check("1-45-345a", "1-45-345b", Less);
        check("res-1.2.5", "res-1.2.10", Less);
        check("RES_1.2", "res-1.2", Equal);
        check("1.0.0.1", "1.0.0", Greater);
        check("1.0.1x", "1.0.1", Greater);
        check("1.0.a", "1.0.1", Less);
        check("build20", "build3", Greater);
        check("v1.2.x", "1.2.x", Equal);
        check("", "0", Less);
    }

    #[test]
    fn downgrade_means_target_is_older() {
        assert!(is_downgrade("1.10.0", "1.9.0"));
        assert!(!is_downgrade("1.9.0", "1.10.0"));
        assert!(!is_downgrade("1.2", "1.2.0"));
        assert!(is_downgrade("1.0.0", "1.0.0-rc.2"));
        assert!(is_downgrade("res-1.2.10", "res-1.2.9"));
    }

    #[test]
    fn schemes_order_only_what_they_know() {
        use VersionScheme::*;
        assert_eq!(Semver.order("1.10.0", "1.9"), Some(Greater));
        assert_eq!(Semver.order("v2.0.0-rc.1", "2.0.0"), Some(Less));
        assert_eq!(Semver.order("1-45-345a", "res-1.2.5"), None);
        assert_eq!(Semver.order("initVersion", "2.1.2"), None);
        assert_eq!(Numeric.order("1.2.3.10", "1.2.3.9"), Some(Greater));
        assert_eq!(Numeric.order("20240107", "v20231231"), Some(Greater));
        assert_eq!(Numeric.order("1.2", "1.2.0.0"), Some(Equal));
        assert_eq!(Numeric.order("1.2-rc", "1.2"), None);
        assert_eq!(Opaque.order("1.0.0", "2.0.0"), None);
        // The seeds' own examples are never called downgrades under the default scheme.
        assert!(!VersionScheme::default().is_downgrade("1-45-345a", "res-1.2.5"));
        assert!(!VersionScheme::default().is_downgrade("initVersion", "2.1.2"));
        assert!(Semver.is_downgrade("2.0.0", "1.1.0"));
        assert!(!Opaque.is_downgrade("2.0.0", "1.1.0"));
        for s in VersionScheme::ALL {
            assert_eq!(VersionScheme::parse(s.as_str()), Some(s));
            assert_eq!(s.as_str().parse::<VersionScheme>(), Ok(s));
        }
        assert!("calver".parse::<VersionScheme>().is_err());
    }

    fn version_like() -> impl Strategy<Value = String> {
        prop_oneof![
            "[vV]?[0-9]{1,3}(\\.[0-9]{1,3}){0,2}(-[0-9A-Za-z]{1,3}(\\.[0-9A-Za-z-]{1,3}){0,2})?(\\+[0-9a-z]{1,3})?",
            "[vV]?[0-9a-zA-Z._+-]{0,12}",
            ".{0,8}",
        ]
    }

    proptest! {
        #[test]
        fn comparison_is_antisymmetric(a in version_like(), b in version_like()) {
            prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
        }

        #[test]
        fn scheme_order_is_antisymmetric(a in version_like(), b in version_like()) {
            for s in VersionScheme::ALL {
                prop_assert_eq!(s.order(&a, &b), s.order(&b, &a).map(Ordering::reverse));
            }
        }

        #[test]
        fn every_version_equals_itself(a in version_like()) {
            prop_assert_eq!(compare_versions(&a, &a), Equal);
            prop_assert!(!is_downgrade(&a, &a));
        }

        #[test]
        fn semver_order_is_transitive(
            a in "[0-9]{1,2}\\.[0-9]{1,2}(-[a-c0-9]{1,2})?",
            b in "[0-9]{1,2}\\.[0-9]{1,2}(-[a-c0-9]{1,2})?",
            c in "[0-9]{1,2}\\.[0-9]{1,2}(-[a-c0-9]{1,2})?",
        ) {
            if compare_versions(&a, &b).is_le() && compare_versions(&b, &c).is_le() {
                prop_assert!(compare_versions(&a, &c).is_le());
            }
        }
    }
}
