//! `otter firmware …`: firmware of a product (`/products/{product}/firmware`): upload, offline
//! signing (keygen, sign), attaching a signature, verification on test devices, listing.

use crate::client::{Conn, cell, table};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use otter_api::{CampaignView, FirmwareView, SignatureDocument, UploadParams, VerifyRequest};
use reqwest::Method;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum FirmwareCmd {
    /// Upload a firmware file; size, MD5 and SHA-256 are computed and shown.
    Upload {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
        /// Firmware module (Alibaba's `module`) [default: default].
        #[arg(long)]
        module: Option<String>,
        /// The firmware image file.
        file: PathBuf,
        /// Signature document from `otter firmware sign`, checked by the server against the
        /// product's keys. Without it a server with --signing-key-dir signs the upload.
        #[arg(long)]
        signature: Option<PathBuf>,
        /// Server-side signing: the release may be installed over a newer version.
        #[arg(long)]
        downgrade: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a firmware image (its file too, once no image uses it); the version can then be
    /// uploaded again. Refused while a live campaign uses it, and, unless --purge, while
    /// finished campaigns have it in their history.
    Delete {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
        /// Firmware module (Alibaba's `module`) [default: default].
        #[arg(long)]
        module: Option<String>,
        /// Also delete the finished campaigns that used it.
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Generate an ed25519 signing key: PKCS#8 PEM at --out (mode 0600), the public key in
    /// `<out>.pub`. Keep the private key offline.
    Keygen {
        /// Folder to write the key pair into.
        #[arg(long)]
        out: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Sign a firmware file offline; prints (or writes) the signature document for
    /// `otter firmware upload --signature` or `otter firmware attach-signature`.
    Sign {
        /// Private key file (PKCS#8 PEM, hex or base64).
        #[arg(long)]
        key: PathBuf,
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
        /// Firmware module (Alibaba's `module`) [default: default].
        #[arg(long, default_value = "default")]
        module: String,
        /// How long the signature is valid: 90d, 12h, 2w or seconds.
        #[arg(long, default_value = "365d")]
        expires: String,
        /// Allow installing this release over a newer version (a deliberate rollback release).
        #[arg(long)]
        downgrade: bool,
        /// Issue time in Unix seconds [default: now]. Devices refuse signatures issued before
        /// one they already accepted.
        #[arg(long, hide = true)]
        issued: Option<u64>,
        /// Write the document here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The firmware image file.
        file: PathBuf,
    },
    /// Replace the signature of an uploaded firmware (new expiry, downgrade permission, key).
    AttachSignature {
        /// Signature document from `otter firmware sign`.
        signature: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Verify a firmware on test devices: verified when all succeed, rejected when any fails.
    Verify {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
        /// Firmware module (Alibaba's `module`) [default: default].
        #[arg(long)]
        module: Option<String>,
        /// Test devices, comma-separated (at most 10).
        #[arg(long, value_delimiter = ',', required = true)]
        devices: Vec<String>,
        /// Per-device timeout in seconds.
        #[arg(long)]
        timeout: Option<u64>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a product's firmware.
    List {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: FirmwareCmd) -> Result<()> {
    match cmd {
        FirmwareCmd::Delete {
            product,
            version,
            module,
            purge,
            conn,
        } => {
            let params = otter_api::DeleteFirmwareParams {
                module,
                purge: purge.then_some(true),
            };
            let request = conn
                .request(
                    Method::DELETE,
                    &format!("/products/{product}/firmware/{version}"),
                )?
                .query(&params);
            let d: otter_api::Deletion = conn.send(request).await?;
            conn.print(&d, crate::client::deletion);
        }
        FirmwareCmd::Upload {
            product,
            version,
            module,
            file,
            signature,
            downgrade,
            conn,
        } => {
            let mut query = UploadParams {
                version: version.clone(),
                module: module.clone(),
                ..Default::default()
            };
            match signature {
                Some(path) => {
                    signature_query(&mut query, &path, &product, &version, module.as_deref())?
                }
                None if downgrade => query.downgrade = Some(true),
                None => {}
            }
            let f = upload(&conn, &product, &query, &file).await?;
            conn.print(&f, |f| {
                format!(
                    "uploaded {} {} ({} bytes)\nmd5    {}\nsha256 {}\nsigned {}",
                    f.firmware.product,
                    f.firmware.version,
                    f.firmware.size,
                    f.firmware.md5,
                    f.firmware.sha256,
                    f.signature.as_ref().map_or("no", |g| g.key_id.as_str())
                )
            });
        }
        FirmwareCmd::Keygen { out, force } => keygen(&out, force)?,
        FirmwareCmd::Sign {
            key,
            product,
            version,
            module,
            expires,
            downgrade,
            issued,
            out,
            file,
        } => {
            let key = crate::sign::load_private(&key)?;
            let (size, sha256) = crate::sign::digest_file(&file)?;
            let issued = issued.unwrap_or_else(crate::sign::now_secs);
            let release = otter_protocol::SignedRelease {
                product,
                module,
                version,
                size,
                sha256,
                issued,
                expires: issued.saturating_add(crate::sign::parse_validity(&expires)?),
                downgrade,
            };
            let doc = serde_json::to_string_pretty(&crate::sign::sign(&key, release)?)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{doc}\n"))
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("signature written to {}", path.display());
                }
                None => println!("{doc}"),
            }
        }
        FirmwareCmd::AttachSignature { signature, conn } => {
            let doc = read_signature(&signature)?;
            let product = doc.release.product.clone();
            let body = SignatureDocument {
                format: doc.format,
                product: doc.release.product,
                module: doc.release.module,
                version: doc.release.version,
                size: doc.release.size,
                sha256: doc.release.sha256,
                issued: doc.release.issued,
                expires: doc.release.expires,
                downgrade: doc.release.downgrade,
                key: doc.key,
                sig: doc.sig,
            };
            let f: FirmwareView = conn
                .call(
                    Method::POST,
                    &format!("/products/{product}/firmware/signature"),
                    Some(&body),
                )
                .await?;
            conn.print(&f, |f| {
                format!(
                    "signed {} {} with key {}",
                    f.firmware.product,
                    f.firmware.version,
                    f.signature.as_ref().map_or("-", |g| g.key_id.as_str())
                )
            });
        }
        FirmwareCmd::Verify {
            product,
            version,
            module,
            devices,
            timeout,
            conn,
        } => {
            let body = VerifyRequest {
                version,
                module,
                devices,
                timeout_secs: timeout,
            };
            let c: CampaignView = conn
                .call(
                    Method::POST,
                    &format!("/products/{product}/firmware/verify"),
                    Some(&body),
                )
                .await?;
            conn.print(&c, |c| {
                let id = c.campaign.id;
                format!(
                    "verification campaign #{id} started on {} devices; follow it with: otter campaign watch {id}",
                    c.total
                )
            });
        }
        FirmwareCmd::List { product, conn } => {
            let list: Vec<FirmwareView> =
                conn.get(&format!("/products/{product}/firmware")).await?;
            conn.print(&list, |list| {
                table(
                    &["id", "module", "version", "size", "sha256", "signed_by"],
                    list,
                    |f| {
                        let w = &f.firmware;
                        vec![
                            cell(&w.id),
                            cell(&w.module),
                            cell(&w.version),
                            cell(&w.size),
                            cell(&w.sha256),
                            cell(&f.signature.as_ref().map(|g| &g.key_id)),
                        ]
                    },
                )
            });
        }
    }
    Ok(())
}

/// Writes a new private key (PKCS#8 PEM, mode 0600) and its public key (`<out>.pub`).
fn keygen(out: &std::path::Path, force: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = crate::sign::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(0o600);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(out)
        .with_context(|| format!("creating {} (--force to overwrite)", out.display()))?;
    file.write_all(otter_protocol::private_key_pem(&key.to_bytes()).as_bytes())?;
    let public = key.verifying_key().to_bytes();
    let mut pub_path = out.as_os_str().to_owned();
    pub_path.push(".pub");
    std::fs::write(&pub_path, otter_protocol::public_key_pem(&public))?;
    println!(
        "private key {} (keep it offline)\npublic key  {} ({})\nkey id      {}",
        out.display(),
        PathBuf::from(pub_path).display(),
        otter_protocol::key_base64(&public),
        otter_protocol::key_id(&public)
    );
    Ok(())
}

fn read_signature(path: &std::path::Path) -> Result<otter_protocol::SignatureDoc> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a signature document", path.display()))
}

/// Puts a signature document's fields in the upload query, after checking it is for this
/// upload.
fn signature_query(
    query: &mut UploadParams,
    path: &std::path::Path,
    product: &str,
    version: &str,
    module: Option<&str>,
) -> Result<()> {
    let doc = read_signature(path)?;
    let r = &doc.release;
    if r.product != product || r.version != version || r.module != module.unwrap_or("default") {
        bail!(
            "{} signs {} {} (module {}), not {product} {version}",
            path.display(),
            r.product,
            r.version,
            r.module
        );
    }
    query.sig = Some(doc.sig.clone());
    query.key = Some(doc.key.clone());
    query.issued = Some(r.issued);
    query.expires = Some(r.expires);
    query.downgrade = Some(r.downgrade);
    Ok(())
}

/// Streams the file to the server with a progress bar (hidden with --json).
async fn upload(
    conn: &Conn,
    product: &str,
    query: &UploadParams,
    file: &PathBuf,
) -> Result<FirmwareView> {
    let handle = tokio::fs::File::open(file)
        .await
        .with_context(|| format!("opening {}", file.display()))?;
    let size = handle.metadata().await?.len();
    let bar = if conn.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(size)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let counter = bar.clone();
    let stream = tokio_util::io::ReaderStream::new(handle).inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            counter.inc(bytes.len() as u64);
        }
    });
    let request = conn
        .request(Method::POST, &format!("/products/{product}/firmware"))?
        .query(query)
        .header(reqwest::header::CONTENT_LENGTH, size)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream));
    let result = conn.send(request).await;
    bar.finish_and_clear();
    result
}
