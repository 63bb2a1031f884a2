//! The S3 engine: `s3://bucket[/prefix]` on AWS or any S3-compatible service (MinIO, Ceph, moto…),
//! so that several stateless Otter nodes share one blob store. Also presigns GET URLs, for
//! deployments that let devices download straight from the bucket.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::signer::{Method, Signer};
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::{BlobError, echo};

/// Region used when none is configured: what S3-compatible services expect by default.
const DEFAULT_REGION: &str = "us-east-1";
/// Longest lifetime SigV4 allows for a presigned URL (7 days).
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How to reach an S3-compatible service. Absent fields fall back to the service's defaults:
/// AWS itself, region `us-east-1`, and the credentials of the environment (instance profile…).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible service, e.g. `http://minio:9000`; `None` is AWS.
    /// Requests use path-style addressing (`{endpoint}/{bucket}/{key}`), which every
    /// S3-compatible service understands without wildcard DNS.
    pub endpoint: Option<String>,
    /// Region the requests are signed for.
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain `http://` endpoint (a service on a trusted network, or tests).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Options {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Options {
    /// Fills the fields still absent from the standard AWS variables (`AWS_ENDPOINT_URL`,
    /// `AWS_REGION` or `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), read
    /// through `var` (`|k| std::env::var(k).ok()` in production). Empty values count as absent.
    pub fn or_aws_env(self, var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |key: &str| var(key).filter(|v| !v.trim().is_empty());
        Self {
            endpoint: self.endpoint.or_else(|| get("AWS_ENDPOINT_URL")),
            region: self
                .region
                .or_else(|| get("AWS_REGION"))
                .or_else(|| get("AWS_DEFAULT_REGION")),
            access_key_id: self.access_key_id.or_else(|| get("AWS_ACCESS_KEY_ID")),
            secret_access_key: self
                .secret_access_key
                .or_else(|| get("AWS_SECRET_ACCESS_KEY")),
            allow_http: self.allow_http,
        }
    }
}

/// An opened bucket: the store the blobs live in (under the prefix), and the raw client for
/// presigning (which needs the full key).
pub(crate) struct S3Engine {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The same bucket and prefix through a client that gives up quickly (a few seconds, two
    /// retries): for the start-up probe and readiness checks, which must answer fast.
    pub(crate) probe_store: Arc<dyn ObjectStore>,
    client: Arc<AmazonS3>,
    prefix: Path,
    pub(crate) bucket: String,
    /// The endpoint as an operator would name it: the custom one, or AWS's for the region.
    pub(crate) endpoint: String,
    /// Whether an access key was configured (else the engine asks the cloud's metadata service).
    pub(crate) has_credentials: bool,
    /// Whether the endpoint is AWS itself (no custom endpoint).
    pub(crate) is_aws: bool,
}

/// Opens `rest` (what follows `s3://`: `bucket[/prefix]`). Nothing is sent over the network yet.
pub(crate) fn open(rest: &str, options: &S3Options) -> Result<S3Engine, BlobError> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !valid_bucket(bucket) {
        return Err(BlobError::InvalidSpec(format!("s3://{}", echo(rest))));
    }
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(options.region.as_deref().unwrap_or(DEFAULT_REGION))
        // Path-style: custom endpoints rarely have per-bucket DNS names.
        .with_virtual_hosted_style_request(false)
        .with_client_options(ClientOptions::new().with_allow_http(options.allow_http));
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
    }
    if let Some(key) = &options.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    // The probe's client: short timeouts and few retries, so that a wrong endpoint or a
    // missing credential is reported in seconds, not after minutes of backoff.
    let probe_client = builder
        .clone()
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(options.allow_http)
                .with_connect_timeout(Duration::from_secs(3))
                .with_timeout(Duration::from_secs(10)),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        })
        .build()?;
    let client = Arc::new(builder.build()?);
    let prefix = Path::from(prefix.trim_matches('/'));
    let prefixed = |c: Arc<AmazonS3>| -> Arc<dyn ObjectStore> {
        if prefix.parts_count() == 0 {
            c
        } else {
            Arc::new(PrefixStore::new(c, prefix.clone()))
        }
    };
    let region = options.region.as_deref().unwrap_or(DEFAULT_REGION);
    Ok(S3Engine {
        store: prefixed(Arc::clone(&client)),
        probe_store: prefixed(Arc::new(probe_client)),
        client,
        prefix: prefix.clone(),
        bucket: bucket.to_owned(),
        endpoint: options
            .endpoint
            .as_deref()
            .map(|e| e.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com")),
        has_credentials: options.access_key_id.is_some() && options.secret_access_key.is_some(),
        is_aws: options.endpoint.is_none(),
    })
}

impl S3Engine {
    /// A URL that lets its holder GET `key` (relative to the prefix) for `expires_in`.
    pub(crate) async fn presign_get(
        &self,
        key: &Path,
        expires_in: Duration,
    ) -> Result<String, BlobError> {
        if expires_in > MAX_PRESIGN_TTL {
            return Err(BlobError::Unsupported(format!(
                "presigned URLs last at most {} s",
                MAX_PRESIGN_TTL.as_secs()
            )));
        }
        let full: Path = self.prefix.parts().chain(key.parts()).collect();
        let url = self
            .client
            .signed_url(Method::GET, &full, expires_in)
            .await?;
        Ok(url.to_string())
    }
}

/// Bucket names of S3 and its clones: letters, digits, `.`, `-`, `_`, 3 to 63 of them.
fn valid_bucket(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_env_fills_only_absent_fields() {
        let env = |k: &str| match k {
            "AWS_ENDPOINT_URL" => Some("http://env:9000".to_string()),
            "AWS_DEFAULT_REGION" => Some("eu-west-3".to_string()),
            "AWS_ACCESS_KEY_ID" => Some("ENVKEY".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some(" ".to_string()),
            _ => None,
        };
        let given = S3Options {
            access_key_id: Some("FLAGKEY".into()),
            ..S3Options::default()
        };
        let got = given.or_aws_env(env);
        assert_eq!(got.endpoint.as_deref(), Some("http://env:9000"));
        assert_eq!(got.region.as_deref(), Some("eu-west-3"));
        assert_eq!(got.access_key_id.as_deref(), Some("FLAGKEY"));
        assert_eq!(got.secret_access_key, None, "blank values are absent");
    }

    #[test]
    fn debug_hides_the_secret() {
        let options = S3Options {
            secret_access_key: Some("hunter2".into()),
            ..S3Options::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }

    #[test]
    fn bucket_names() {
        assert!(valid_bucket("otter-fw.prod_1"));
        for bad in ["", "ab", "a b", "x/y", "ü-bucket", &"a".repeat(64)] {
            assert!(!valid_bucket(bad), "{bad:?}");
        }
    }
}
