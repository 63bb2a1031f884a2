//! The download URL a push carries: Otter's own signed link (always works), or, in presigned
//! mode, an S3 presigned URL so firmware bytes bypass Otter — but only when the device's SDK can
//! take it. Tencent's C SDK keeps a whole push in a 2048-byte packet buffer and follows no
//! redirects, so a presigned URL that is too long (session tokens make them so) or cannot be made
//! falls back to the Otter link, which streams from the same bucket with the same `Range` rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use otter_blobs::Blobs;
use otter_download::UrlSigner;
use otter_protocol::Dialect;

/// Longest presigned URL put in a push. Tencent devices take at most 2048 bytes per packet
/// (topic, JSON envelope, version, MD5 and URL together): 1000 leaves ample room for the rest.
pub const MAX_PRESIGNED_URL: usize = 1000;

/// What download URLs pushes carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DownloadMode {
    /// Otter's signed `/dl/…` links; Otter streams the blob (from disk or S3). Every dialect's
    /// SDK can use them: short, no query string, no redirect.
    #[default]
    Otter,
    /// S3 presigned GET URLs (blobs in `s3://` only), falling back to Otter links when too long.
    Presigned,
}

impl std::str::FromStr for DownloadMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "otter" => Ok(Self::Otter),
            "presigned" => Ok(Self::Presigned),
            other => Err(format!(
                "unknown download mode {:?}: expected otter or presigned",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

impl std::fmt::Display for DownloadMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Otter => "otter",
            Self::Presigned => "presigned",
        })
    }
}

/// Makes download URLs for pushes; shared by the engine and the campaign planner.
#[derive(Debug)]
pub struct Links {
    signer: Arc<UrlSigner>,
    blobs: Blobs,
    mode: DownloadMode,
    /// A fallback was logged at `warn` already; later ones go to `debug` (one per push is noise).
    warned: AtomicBool,
}

impl Links {
    /// Presigned mode needs blobs that can presign (S3); refused here so a misconfiguration shows
    /// at start-up, not as silent fallbacks.
    pub fn new(signer: Arc<UrlSigner>, blobs: Blobs, mode: DownloadMode) -> Result<Self, String> {
        if mode == DownloadMode::Presigned && !blobs.can_presign() {
            return Err("--download-mode presigned needs S3 blobs (--blobs s3://bucket)".into());
        }
        Ok(Self {
            signer,
            blobs,
            mode,
            warned: AtomicBool::new(false),
        })
    }

    /// The URL from which `device` of `product` downloads blob `sha256` until `expires_unix`
    /// (same arguments as [`UrlSigner::url`]).
    pub async fn url(
        &self,
        sha256: &str,
        product: &str,
        device: &str,
        expires_unix: u64,
    ) -> String {
        let otter = || self.signer.url(sha256, product, device, expires_unix);
        if self.mode == DownloadMode::Otter {
            return otter();
        }
        let ttl = Duration::from_secs(expires_unix.saturating_sub(unix_now()));
        let presigned = self
            .blobs
            .presigned_url(sha256, ttl)
            .await
            .map_err(|err| err.to_string());
        match choose(presigned) {
            Choice::Presigned(url) => url,
            Choice::Otter(reason) => {
                if self.warned.swap(true, Ordering::Relaxed) {
                    tracing::debug!(sha256, device, reason, "push falls back to the Otter link");
                } else {
                    tracing::warn!(
                        sha256,
                        product,
                        device,
                        reason,
                        "push falls back to the Otter download link (logged once; later ones at debug)"
                    );
                }
                otter()
            }
        }
    }
}

/// The base of Otter's download links: `--public-url`, or `http(s)://<listen address>`, parsed
/// and written back without the scheme's default port. Alibaba's C SDK takes everything between
/// `://` and the first `/` as the host name, so even `http://host:80/…` fails its DNS lookup:
/// `http://…:80` and `https://…:443` become `http://…` and `https://…`, whichever way they
/// were spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicBase {
    /// Scheme, host, non-default port and path prefix, without a trailing `/`.
    base: String,
    /// The port links carry: `None` when it is the scheme's default (and so not written).
    port: Option<u16>,
}

/// Why a `--public-url` cannot be the base of download links.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicUrlError {
    #[error("--public-url {url:?} is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    #[error("--public-url {url:?}: devices download over http or https, not {scheme}")]
    Scheme { url: String, scheme: String },
    #[error("--public-url {url:?} has no host name")]
    NoHost { url: String },
    #[error(
        "--public-url {url:?} has a query, fragment or credentials: links append a path to it (e.g. https://ota.example.com or https://cdn.example.com/otter)"
    )]
    Extra { url: String },
}

impl PublicBase {
    /// Parses a public URL. `raw` may end in `/` and name a path prefix (a proxy's location).
    pub fn parse(raw: &str) -> Result<Self, PublicUrlError> {
        let shown = || raw.chars().take(200).collect::<String>();
        let url = url::Url::parse(raw.trim()).map_err(|e| PublicUrlError::NotAUrl {
            url: shown(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PublicUrlError::Scheme {
                url: shown(),
                scheme: url.scheme().to_owned(),
            });
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(PublicUrlError::NoHost { url: shown() });
        }
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(PublicUrlError::Extra { url: shown() });
        }
        // `Url` drops a port equal to the scheme's default when it parses: `port()` is `None`
        // for `http://h:80` and the serialization has no `:80`.
        Ok(Self {
            base: url.as_str().trim_end_matches('/').to_owned(),
            port: url.port(),
        })
    }

    /// The base as links start with it.
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// The port links carry, `None` when it is the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The explanation to give when links carry a port that some of `dialects`' device SDKs
    /// cannot dial; `None` when they can all use the links.
    pub fn port_problem(&self, dialects: impl IntoIterator<Item = Dialect>) -> Option<String> {
        let port = self.port?;
        let mut stuck: Vec<&str> = dialects
            .into_iter()
            .filter(|d| !d.sdks_dial_link_ports())
            .map(|d| match d {
                Dialect::Tencent => "Tencent's C SDK always dials port 80 (443 with TLS)",
                _ => "Alibaba's C SDK reads \"host:port\" as a host name and cannot resolve it",
            })
            .collect();
        stuck.sort_unstable();
        stuck.dedup();
        if stuck.is_empty() {
            return None;
        }
        Some(format!(
            "download links ({}/dl/…) carry port {port}: {}. Serve downloads on the scheme's default port (80 for http, 443 for https) or put a proxy there, and set --public-url to it",
            self.base,
            stuck.join("; ")
        ))
    }
}

impl std::fmt::Display for PublicBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

/// Outcome of [`choose`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    Presigned(String),
    /// Use the Otter link; why, for the log.
    Otter(String),
}

/// The pure decision: a presigned URL is used only if it was made and fits [`MAX_PRESIGNED_URL`].
pub(crate) fn choose(presigned: Result<Option<String>, String>) -> Choice {
    match presigned {
        Ok(Some(url)) if url.len() <= MAX_PRESIGNED_URL => Choice::Presigned(url),
        Ok(Some(url)) => Choice::Otter(format!(
            "presigned URL is {} characters, over the {MAX_PRESIGNED_URL} a Tencent device can take",
            url.len()
        )),
        Ok(None) => Choice::Otter("the blob store cannot presign".into()),
        Err(err) => Choice::Otter(format!("presigning failed: {err}")),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_presigned_urls_are_used() {
        let url = format!(
            "https://s3.example/b/sha256/{}?X-Amz-Signature=ab",
            "a".repeat(64)
        );
        assert_eq!(choose(Ok(Some(url.clone()))), Choice::Presigned(url));
        let edge = "u".repeat(MAX_PRESIGNED_URL);
        assert_eq!(choose(Ok(Some(edge.clone()))), Choice::Presigned(edge));
    }

    #[test]
    fn long_or_missing_presigned_urls_fall_back() {
        // What a URL signed with an STS session token looks like: far over the limit.
        let long = format!(
            "https://s3.example/b/k?X-Amz-Security-Token={}",
            "t".repeat(1200)
        );
        assert!(matches!(choose(Ok(Some(long))), Choice::Otter(r) if r.contains("characters")));
        let just_over = "u".repeat(MAX_PRESIGNED_URL + 1);
        assert!(matches!(choose(Ok(Some(just_over))), Choice::Otter(_)));
        assert!(matches!(choose(Ok(None)), Choice::Otter(_)));
        assert!(matches!(choose(Err("boom".into())), Choice::Otter(r) if r.contains("boom")));
    }

    fn base(raw: &str) -> PublicBase {
        PublicBase::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
    }

    #[test]
    fn default_ports_are_never_written() {
        for (raw, want) in [
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("http://127.0.0.1:80/", "http://127.0.0.1"),
            ("https://ota.example.com:443", "https://ota.example.com"),
            (
                "HTTPS://OTA.Example.com:443/otter/",
                "https://ota.example.com/otter",
            ),
            ("http://[::1]:80", "http://[::1]"),
            ("http://ota.example.com", "http://ota.example.com"),
            (" http://ota.example.com/ ", "http://ota.example.com"),
        ] {
            let b = base(raw);
            assert_eq!((b.as_str(), b.port()), (want, None), "{raw}");
        }
        // A port that is not the scheme's default stays: it is where Otter listens.
        for (raw, want, port) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080", 8080),
            (
                "https://ota.example.com:80",
                "https://ota.example.com:80",
                80,
            ),
            (
                "http://ota.example.com:443/",
                "http://ota.example.com:443",
                443,
            ),
            ("https://[::1]:8443", "https://[::1]:8443", 8443),
        ] {
            let b = base(raw);
            assert_eq!((b.as_str(), b.port()), (want, Some(port)), "{raw}");
        }
    }

    #[test]
    fn bad_public_urls_are_refused_with_the_reason() {
        assert!(matches!(
            PublicBase::parse("127.0.0.1:8080"),
            Err(PublicUrlError::Scheme { .. } | PublicUrlError::NotAUrl { .. })
        ));
        assert!(matches!(
            PublicBase::parse("ftp://h"),
            Err(PublicUrlError::Scheme { .. })
        ));
        assert!(matches!(
            PublicBase::parse("not a url"),
            Err(PublicUrlError::NotAUrl { .. })
        ));
        assert!(matches!(
            PublicBase::parse("http://h:99999"),
            Err(PublicUrlError::NotAUrl { .. })
        ));
        for raw in ["http://h/?x=1", "http://h/#f", "http://u:p@h/"] {
            assert!(
                matches!(PublicBase::parse(raw), Err(PublicUrlError::Extra { .. })),
                "{raw}"
            );
        }
        let e = PublicBase::parse("ftp://h").unwrap_err().to_string();
        assert!(e.contains("--public-url") && e.contains("ftp"), "{e}");
    }

    #[test]
    fn the_port_problem_names_the_sdks_that_cannot_dial_it() {
        let all = Dialect::ALL;
        assert_eq!(base("http://h").port_problem(all), None);
        assert_eq!(base("https://h:443").port_problem(all), None);
        let b = base("http://h:8080");
        assert_eq!(b.port_problem([Dialect::Enos]), None);
        assert_eq!(b.port_problem([]), None);
        let aliyun = b.port_problem([Dialect::Aliyun, Dialect::Aliyun]).unwrap();
        assert!(
            aliyun.contains("port 8080") && aliyun.contains("Alibaba"),
            "{aliyun}"
        );
        assert!(!aliyun.contains("Tencent"), "{aliyun}");
        let both = b.port_problem(all).unwrap();
        assert!(
            both.contains("Alibaba") && both.contains("Tencent"),
            "{both}"
        );
    }

    #[test]
    fn modes_parse() {
        assert_eq!("otter".parse(), Ok(DownloadMode::Otter));
        assert_eq!(" Presigned ".parse(), Ok(DownloadMode::Presigned));
        assert!("redirect".parse::<DownloadMode>().is_err());
        assert_eq!(DownloadMode::default().to_string(), "otter");
    }

    #[test]
    fn presigned_mode_needs_s3_blobs() {
        let dir = std::env::temp_dir().join(format!("otter-links-{}", std::process::id()));
        let local = Blobs::open(&dir.to_string_lossy()).unwrap();
        let signer = Arc::new(UrlSigner::new(b"k", "http://otter"));
        assert!(Links::new(Arc::clone(&signer), local.clone(), DownloadMode::Presigned).is_err());
        assert!(Links::new(signer, local, DownloadMode::Otter).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
