//! Is the blob store usable? The start-up probe (write, read back and delete a small object under
//! a reserved prefix) and the cheap readiness check, with errors that name the cause in words: a
//! missing bucket, refused or missing credentials, an endpoint that does not answer.

use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::Blobs;

/// Folder (key prefix) of probe objects; nothing else is ever stored there.
pub const PROBE_PREFIX: &str = ".otter-probe";
/// The whole probe gives up after this long (each request also has its own, shorter timeout).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// A readiness check gives up after this long.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the blob store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("S3 bucket \"{bucket}\" does not exist at {endpoint} (create it, or fix --blobs)")]
    NoSuchBucket { bucket: String, endpoint: String },
    #[error(
        "S3 refused the credentials ({code}: {message}) at {endpoint}: check --s3-access-key-id and --s3-secret-access-key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )]
    Credentials {
        code: String,
        message: String,
        endpoint: String,
    },
    #[error(
        "no S3 credentials: set --s3-access-key-id/--s3-secret-access-key (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY){detail}"
    )]
    NoCredentials { detail: String },
    #[error(
        "S3 denied {step} in bucket \"{bucket}\" ({code}: {message}): the credentials need s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on it"
    )]
    Denied {
        step: &'static str,
        bucket: String,
        code: String,
        message: String,
    },
    #[error("S3 endpoint {endpoint} cannot be reached: {reason}")]
    Unreachable { endpoint: String, reason: String },
    #[error("blob store {store} did not answer within {} s", .after.as_secs())]
    Timeout { store: String, after: Duration },
    #[error("blob store {store}: {step} failed: {reason}")]
    Failed {
        store: String,
        step: &'static str,
        reason: String,
    },
    #[error("blob store {store}: the probe object read back is not what was written")]
    Mismatch { store: String },
    #[error("blob folder {0} is missing or not a folder")]
    FolderMissing(String),
}

impl ProbeError {
    /// A few words for an answer anyone may read (`/readyz` on the devices' listener): no
    /// paths, endpoints or bucket names.
    pub fn summary(&self) -> &'static str {
        match self {
            Self::NoSuchBucket { .. } => "bucket does not exist",
            Self::Credentials { .. } => "credentials refused",
            Self::NoCredentials { .. } => "no credentials",
            Self::Denied { .. } => "access denied",
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timed out",
            Self::Failed { .. } | Self::Mismatch { .. } => "failed",
            Self::FolderMissing(_) => "folder missing",
        }
    }
}

/// What an S3 error response says: its `<Code>` and `<Message>`, found in the error's text.
struct S3Said {
    code: Option<String>,
    message: String,
}

fn tag<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let len = text.get(start..)?.find(&close)?;
    text.get(start..start + len)
}

/// The error and its sources, one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// The I/O error somewhere in the chain (connection refused, DNS failure…), if any.
fn io_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(err);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return Some(io.to_string());
        }
        source = s.source();
    }
    None
}

impl Blobs {
    /// A name for the store in messages: the folder, or `s3://bucket[/prefix] at <endpoint>`.
    pub fn describe(&self) -> String {
        match (&self.s3, &self.staging_dir) {
            (Some(s3), _) => format!("s3://{} at {}", s3.bucket, s3.endpoint),
            (None, Some(staging)) => staging
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            (None, None) => self.store.to_string(),
        }
    }

    /// Checks at start that the store works: an S3 bucket exists and the credentials are
    /// accepted, and a small object can be written, read back and deleted under
    /// [`PROBE_PREFIX`]. The error names the cause.
    pub async fn probe(&self) -> Result<(), ProbeError> {
        if let Some(s3) = &self.s3
            && !s3.has_credentials
            && !s3.is_aws
        {
            // Only AWS has a metadata service to ask; elsewhere asking it only wastes time.
            return Err(ProbeError::NoCredentials {
                detail: format!(" for the S3 endpoint {}", s3.endpoint),
            });
        }
        match tokio::time::timeout(PROBE_TIMEOUT, self.probe_steps()).await {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Timeout {
                store: self.describe(),
                after: PROBE_TIMEOUT,
            }),
        }
    }

    async fn probe_steps(&self) -> Result<(), ProbeError> {
        let store = self.probe_store();
        let key = Path::from(PROBE_PREFIX).join(format!("{:032x}", rand::random::<u128>()));
        let content = Bytes::from(format!("otter probe {key}"));
        store
            .put(&key, PutPayload::from_bytes(content.clone()))
            .await
            .map_err(|e| self.explain("writing a probe object", e))?;
        let read = async {
            let got = store.get(&key).await?;
            got.bytes().await
        }
        .await;
        let deleted = store.delete(&key).await;
        let read = read.map_err(|e| self.explain("reading the probe object back", e))?;
        if read != content {
            return Err(ProbeError::Mismatch {
                store: self.describe(),
            });
        }
        deleted.map_err(|e| self.explain("deleting the probe object", e))?;
        Ok(())
    }

    /// The cheap readiness check: the local folder exists, or the bucket answers a listing of
    /// the probe prefix (a bucket gone, or credentials revoked, fail it).
    pub async fn check(&self) -> Result<(), ProbeError> {
        if self.s3.is_none()
            && let Some(staging) = &self.staging_dir
        {
            let root = staging.parent().map(std::path::Path::to_path_buf);
            let is_dir = match &root {
                Some(root) => tokio::fs::metadata(root).await.is_ok_and(|m| m.is_dir()),
                None => false,
            };
            return match is_dir {
                true => Ok(()),
                false => Err(ProbeError::FolderMissing(self.describe())),
            };
        }
        let prefix = Path::from(PROBE_PREFIX);
        let listed = tokio::time::timeout(
            CHECK_TIMEOUT,
            self.probe_store().list_with_delimiter(Some(&prefix)),
        )
        .await;
        match listed {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.explain("listing the bucket", e)),
            Err(_) => Err(ProbeError::Timeout {
                store: self.describe(),
                after: CHECK_TIMEOUT,
            }),
        }
    }

    fn probe_store(&self) -> &dyn ObjectStore {
        match &self.s3 {
            Some(s3) => s3.probe_store.as_ref(),
            None => self.store.as_ref(),
        }
    }

    /// Turns a failed probe step into the cause, in words.
    fn explain(&self, step: &'static str, err: object_store::Error) -> ProbeError {
        let text = chain(&err);
        let Some(s3) = &self.s3 else {
            return ProbeError::Failed {
                store: self.describe(),
                step,
                reason: text,
            };
        };
        let said = S3Said {
            code: tag(&text, "Code").map(str::to_owned),
            message: tag(&text, "Message").unwrap_or_default().to_owned(),
        };
        match said.code.as_deref() {
            Some("NoSuchBucket") => ProbeError::NoSuchBucket {
                bucket: s3.bucket.clone(),
                endpoint: s3.endpoint.clone(),
            },
            Some(
                code @ ("InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "InvalidToken"
                | "ExpiredToken"
                | "TokenRefreshRequired"
                | "InvalidSecurity"
                | "AuthFailure"
                | "UnrecognizedClientException"),
            ) => ProbeError::Credentials {
                code: code.to_owned(),
                message: said.message,
                endpoint: s3.endpoint.clone(),
            },
            Some(code @ ("AccessDenied" | "AllAccessDisabled")) => ProbeError::Denied {
                step,
                bucket: s3.bucket.clone(),
                code: code.to_owned(),
                message: said.message,
            },
            Some(code) => ProbeError::Failed {
                store: self.describe(),
                step,
                reason: format!("{code}: {}", said.message),
            },
            // A PUT answered 404 without a body: there is no bucket to put into.
            None if matches!(err, object_store::Error::NotFound { .. })
                && step == "writing a probe object" =>
            {
                ProbeError::NoSuchBucket {
                    bucket: s3.bucket.clone(),
                    endpoint: s3.endpoint.clone(),
                }
            }
            None if !s3.has_credentials => ProbeError::NoCredentials {
                detail: format!(
                    ": none were given, and the instance metadata service gave none ({text})"
                ),
            },
            None => match io_cause(&err) {
                Some(reason) => ProbeError::Unreachable {
                    endpoint: s3.endpoint.clone(),
                    reason,
                },
                None => ProbeError::Failed {
                    store: self.describe(),
                    step,
                    reason: text,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_codes_are_found_in_the_text() {
        let text = "Error performing PUT http://x/b/k - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";
        assert_eq!(tag(text, "Code"), Some("InvalidAccessKeyId"));
        assert_eq!(
            tag(text, "Message"),
            Some("The AWS Access Key Id you provided does not exist in our records.")
        );
        assert_eq!(tag("no xml", "Code"), None);
        assert_eq!(tag("<Code>unclosed", "Code"), None);
    }

    #[tokio::test]
    async fn a_local_folder_is_probed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("blobs");
        let blobs = Blobs::open(root.to_str().unwrap()).unwrap();
        blobs.probe().await.unwrap();
        blobs.check().await.unwrap();
        // Nothing is left behind.
        let left: Vec<_> = std::fs::read_dir(root.join(PROBE_PREFIX))
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
        std::fs::remove_dir_all(&root).unwrap();
        let err = blobs.check().await.unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
        assert_eq!(err.summary(), "folder missing");
    }

    #[tokio::test]
    async fn no_credentials_for_a_custom_endpoint_fails_at_once() {
        let options = crate::S3Options {
            endpoint: Some("http://127.0.0.1:9".into()),
            allow_http: true,
            ..Default::default()
        };
        let blobs = Blobs::open_with("s3://some-bucket", &options).unwrap();
        let err = blobs.probe().await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no S3 credentials: set --s3-access-key-id"),
            "{err}"
        );
    }
}
