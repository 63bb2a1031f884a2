//! Admin commands: thin clients of the server's HTTP API (`/api/v1`). With `--json` each prints
//! exactly one JSON document (the API's answer); otherwise a short human summary.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Server base URL.
    #[arg(long, env = "OTTER_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Admin token [default: contents of ./otter-data/admin-token when present].
    #[arg(long, env = "OTTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print one machine-readable JSON document.
    #[arg(long)]
    pub json: bool,
}

/// The generated admin token `otter serve` leaves in its data dir (`OTTER_DATA_DIR` or
/// `./otter-data`): what admin commands use when `OTTER_TOKEN` is not set.
pub fn token_from_data_dir() -> Result<String> {
    let dir = std::env::var_os("OTTER_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("otter-data"));
    let path = dir.join("admin-token");
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .with_context(|| {
            format!(
                "no admin token: set OTTER_TOKEN (or run next to {})",
                path.display()
            )
        })
}

impl Conn {
    fn token(&self) -> Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        token_from_data_dir()
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        let url = format!("{}/api/v1{path}", self.server.trim_end_matches('/'));
        Ok(reqwest::Client::new()
            .request(method, url)
            .bearer_auth(self.token()?))
    }

    async fn send(&self, request: RequestBuilder) -> Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no details");
            bail!("server answered {status}: {message}");
        }
        Ok(body)
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let mut request = self.request(method, path)?;
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// Prints the API's answer as JSON, or as text made by `human`.
    pub fn print(&self, value: &Value, human: impl FnOnce(&Value) -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            );
        } else {
            println!("{}", human(value));
        }
    }
}

pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

pub fn field(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[derive(Subcommand, Debug)]
pub enum ProductCmd {
    /// Create a product.
    Create {
        #[arg(long)]
        id: String,
        /// Wire dialect of its devices: tencent, aliyun or enos.
        #[arg(long)]
        dialect: String,
        #[arg(long)]
        name: Option<String>,
        /// How its versions are ordered for anti-rollback: semver (a version that is not
        /// semver-like has no order), numeric (dot-separated numbers) or opaque (no order:
        /// nothing is ever a downgrade). docs/campaigns.md "Version schemes".
        #[arg(long, default_value = "semver", value_parser = ["semver", "numeric", "opaque"])]
        version_scheme: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a product: dialect, name, version scheme.
    Show {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a product's version scheme (live campaigns judge by it from then on).
    Set {
        #[arg(long)]
        id: String,
        /// semver, numeric or opaque.
        #[arg(long, value_parser = ["semver", "numeric", "opaque"])]
        version_scheme: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List products.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Firmware signing keys of a product: add (the first as is, later ones announced by a
    /// registered key) and list (docs/signing.md).
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Register a public signing key. A product with keys takes a new one only when announced
    /// by a registered key: pass that key's private key file with --announce-with.
    Add {
        #[arg(long)]
        product: String,
        /// The new public key: a file (public PEM, or a private key whose public half is
        /// taken) or its hex / base64.
        #[arg(long)]
        public_key: String,
        /// Private key file of a registered key, to sign the announcement offline.
        #[arg(long)]
        announce_with: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a product's signing keys.
    List {
        #[arg(long)]
        product: String,
        #[command(flatten)]
        conn: Conn,
    },
}

async fn product_key(cmd: KeyCmd) -> Result<()> {
    match cmd {
        KeyCmd::Add {
            product,
            public_key,
            announce_with,
            conn,
        } => {
            let public = crate::sign::read_public(&public_key)?;
            let mut body = json!({ "public_key": otter_protocol::key_base64(&public) });
            if let Some(path) = announce_with {
                let old = crate::sign::load_private(&path)?;
                let (by, sig) = crate::sign::announce(&old, &product, &public)?;
                body["signed_by"] = json!(by);
                body["sig"] = json!(sig);
            }
            let v = conn
                .call(
                    Method::POST,
                    &format!("/products/{product}/keys"),
                    Some(body),
                )
                .await?;
            conn.print(&v, |v| match v.get("signed_by").and_then(Value::as_str) {
                Some(by) => format!("added key {} (announced by {by})", s(v, "key_id")),
                None => format!("added key {} (the first of {product})", s(v, "key_id")),
            });
        }
        KeyCmd::List { product, conn } => {
            let v = conn
                .call(Method::GET, &format!("/products/{product}/keys"), None)
                .await?;
            conn.print(&v, |v| table(v, &["key_id", "signed_by", "public_key"]));
        }
    }
    Ok(())
}

pub async fn product(cmd: ProductCmd) -> Result<()> {
    match cmd {
        ProductCmd::Key(cmd) => product_key(cmd).await?,
        ProductCmd::Create {
            id,
            dialect,
            name,
            version_scheme,
            conn,
        } => {
            let body = json!({ "id": id, "dialect": dialect, "name": name, "version_scheme": version_scheme });
            let v = conn.call(Method::POST, "/products", Some(body)).await?;
            conn.print(&v, |v| {
                format!(
                    "created product {} ({}, {} versions)",
                    s(v, "id"),
                    s(v, "dialect"),
                    s(v, "version_scheme")
                )
            });
        }
        ProductCmd::Show { id, conn } => {
            let v = conn
                .call(Method::GET, &format!("/products/{id}"), None)
                .await?;
            conn.print(&v, product_text);
        }
        ProductCmd::Set {
            id,
            version_scheme,
            conn,
        } => {
            let body = json!({ "version_scheme": version_scheme });
            let v = conn
                .call(Method::PATCH, &format!("/products/{id}"), Some(body))
                .await?;
            conn.print(&v, product_text);
        }
        ProductCmd::List { conn } => {
            let v = conn.call(Method::GET, "/products", None).await?;
            conn.print(&v, |v| {
                table(v, &["id", "dialect", "version_scheme", "name"])
            });
        }
    }
    Ok(())
}

fn product_text(v: &Value) -> String {
    format!(
        "product {}\n  dialect         {}\n  name            {}\n  version scheme  {}",
        s(v, "id"),
        s(v, "dialect"),
        s(v, "name"),
        s(v, "version_scheme")
    )
}

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Register a device; prints its secret (generated in the dialect's format unless given).
    Create {
        #[arg(long)]
        product: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        secret: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a product's devices.
    List {
        #[arg(long)]
        product: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[command(flatten)]
        conn: Conn,
    },
    /// Add or remove tags of a device (used to target campaigns).
    Tag {
        #[arg(long)]
        product: String,
        #[arg(long)]
        name: String,
        #[arg(long = "add")]
        add: Vec<String>,
        #[arg(long = "remove")]
        remove: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// A device's upgrade history, newest first.
    History {
        #[arg(long)]
        product: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Give a device a new secret (printed once); the old one stops working at once.
    RotateSecret {
        #[arg(long)]
        product: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a device: versions, online state, current upgrade and its last result.
    Show {
        #[arg(long)]
        product: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn device(cmd: DeviceCmd) -> Result<()> {
    match cmd {
        DeviceCmd::RotateSecret {
            product,
            name,
            conn,
        } => {
            let path = format!("/products/{product}/devices/{name}/secret");
            let v = conn.call(Method::POST, &path, None).await?;
            conn.print(&v, |v| {
                format!("{product}/{name} secret: {}", s(v, "secret"))
            });
        }
        DeviceCmd::Tag {
            product,
            name,
            add,
            remove,
            conn,
        } => {
            let v = conn
                .call(
                    Method::PUT,
                    &format!("/products/{product}/devices/{name}/tags"),
                    Some(json!({ "add": add, "remove": remove })),
                )
                .await?;
            conn.print(&v, |v| {
                format!(
                    "tags: {}",
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            });
        }
        DeviceCmd::History {
            product,
            name,
            conn,
        } => {
            let v = conn
                .call(
                    Method::GET,
                    &format!("/products/{product}/devices/{name}/history"),
                    None,
                )
                .await?;
            conn.print(&v, |v| {
                table(
                    v,
                    &[
                        "at",
                        "campaign_id",
                        "state",
                        "percent",
                        "result_code",
                        "result_msg",
                    ],
                )
            });
        }
        DeviceCmd::Create {
            product,
            name,
            secret,
            conn,
        } => {
            let v = conn
                .call(
                    Method::POST,
                    &format!("/products/{product}/devices"),
                    Some(json!({ "name": name, "secret": secret })),
                )
                .await?;
            conn.print(&v, |v| {
                format!(
                    "created device {}/{}\nsecret: {}",
                    s(v, "product"),
                    s(v, "name"),
                    s(v, "secret")
                )
            });
        }
        DeviceCmd::List {
            product,
            limit,
            offset,
            conn,
        } => {
            let v = conn
                .call(
                    Method::GET,
                    &format!("/products/{product}/devices?limit={limit}&offset={offset}"),
                    None,
                )
                .await?;
            conn.print(&v, |v| table(v, &["name", "online", "last_seen"]));
        }
        DeviceCmd::Show {
            product,
            name,
            conn,
        } => {
            let v = conn
                .call(
                    Method::GET,
                    &format!("/products/{product}/devices/{name}"),
                    None,
                )
                .await?;
            conn.print(&v, show_device);
        }
    }
    Ok(())
}

fn show_device(v: &Value) -> String {
    let mut out = format!(
        "device    {}/{}\nversion   {}\nonline    {}\nlast seen {}\n",
        s(v, "product"),
        s(v, "name"),
        field(v, "version"),
        field(v, "online"),
        field(v, "last_seen")
    );
    match v.get("upgrade").filter(|u| !u.is_null()) {
        Some(u) => {
            out.push_str(&format!(
                "upgrade   campaign #{} to {}: {} {}%\nresult    {} {} {}",
                field(u, "campaign_id"),
                field(u, "target"),
                field(u, "state"),
                field(u, "percent"),
                field(u, "result_code"),
                field(u, "result_msg"),
                field(u, "result_explained"),
            ));
            if let Some(r) = u["reason"].as_str().and_then(otter_core::Reason::parse) {
                out.push_str(&format!("\nwhy       {} ({r})", r.describe()));
            }
        }
        None => out.push_str("upgrade   none"),
    }
    out
}

#[derive(Subcommand, Debug)]
pub enum FirmwareCmd {
    /// Upload a firmware file; size, MD5 and SHA-256 are computed and shown.
    Upload {
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
        #[arg(long)]
        module: Option<String>,
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
    /// Generate an ed25519 signing key: PKCS#8 PEM at --out (mode 0600), the public key in
    /// `<out>.pub`. Keep the private key offline.
    Keygen {
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
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
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
        #[arg(long)]
        product: String,
        #[arg(long)]
        version: String,
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
        #[arg(long)]
        product: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn firmware(cmd: FirmwareCmd) -> Result<()> {
    match cmd {
        FirmwareCmd::Upload {
            product,
            version,
            module,
            file,
            signature,
            downgrade,
            conn,
        } => {
            let mut query = vec![("version".to_owned(), version.clone())];
            query.extend(module.clone().map(|m| ("module".to_owned(), m)));
            match signature {
                Some(path) => query.extend(signature_query(
                    &path,
                    &product,
                    &version,
                    module.as_deref(),
                )?),
                None if downgrade => query.push(("downgrade".into(), "true".into())),
                None => {}
            }
            let v = upload(&conn, &product, &query, &file).await?;
            conn.print(&v, |v| {
                format!(
                    "uploaded {} {} ({} bytes)\nmd5    {}\nsha256 {}\nsigned {}",
                    s(v, "product"),
                    s(v, "version"),
                    field(v, "size"),
                    s(v, "md5"),
                    s(v, "sha256"),
                    v.pointer("/signature/key_id")
                        .and_then(Value::as_str)
                        .unwrap_or("no")
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
            let v = conn
                .call(
                    Method::POST,
                    &format!("/products/{product}/firmware/signature"),
                    Some(serde_json::to_value(&doc)?),
                )
                .await?;
            conn.print(&v, |v| {
                format!(
                    "signed {} {} with key {}",
                    s(v, "product"),
                    s(v, "version"),
                    v.pointer("/signature/key_id")
                        .and_then(Value::as_str)
                        .unwrap_or("-")
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
            let body = json!({ "version": version, "module": module, "devices": devices, "timeout_secs": timeout });
            let v = conn
                .call(
                    Method::POST,
                    &format!("/products/{product}/firmware/verify"),
                    Some(body),
                )
                .await?;
            conn.print(&v, |v| format!("verification campaign #{} started on {} devices; follow it with: otter campaign watch {}", field(v, "id"), field(v, "total"), field(v, "id")));
        }
        FirmwareCmd::List { product, conn } => {
            let v = conn
                .call(Method::GET, &format!("/products/{product}/firmware"), None)
                .await?;
            conn.print(&v, |v| {
                let mut rows = v.clone();
                if let Value::Array(items) = &mut rows {
                    for item in items {
                        let key = item.pointer("/signature/key_id").cloned();
                        item["signed_by"] = key.unwrap_or(Value::Null);
                    }
                }
                table(
                    &rows,
                    &["id", "module", "version", "size", "sha256", "signed_by"],
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

/// The upload query parameters of a signature document, after checking it is for this upload.
fn signature_query(
    path: &std::path::Path,
    product: &str,
    version: &str,
    module: Option<&str>,
) -> Result<Vec<(String, String)>> {
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
    Ok(vec![
        ("sig".into(), doc.sig.clone()),
        ("key".into(), doc.key.clone()),
        ("issued".into(), r.issued.to_string()),
        ("expires".into(), r.expires.to_string()),
        ("downgrade".into(), r.downgrade.to_string()),
    ])
}

/// Streams the file to the server with a progress bar (hidden with --json).
async fn upload(
    conn: &Conn,
    product: &str,
    query: &[(String, String)],
    file: &PathBuf,
) -> Result<Value> {
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

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    #[arg(long)]
    product: String,
    #[arg(long)]
    device: String,
    /// Target firmware version (uploaded beforehand).
    #[arg(long)]
    version: String,
    #[arg(long)]
    module: Option<String>,
    /// Allow a target older than the device's current version.
    #[arg(long)]
    allow_downgrade: bool,
    #[command(flatten)]
    conn: Conn,
}

pub async fn upgrade(a: UpgradeArgs) -> Result<()> {
    let body = json!({
        "product": a.product,
        "version": a.version,
        "module": a.module,
        "selection": { "devices": [a.device] },
        // A single-device upgrade is an explicit operator action, recorded on the campaign.
        "skip_verification": true,
        "allow_downgrade": a.allow_downgrade,
    });
    let v = a.conn.call(Method::POST, "/campaigns", Some(body)).await?;
    a.conn.print(&v, |v| {
        let upgrade = &v["upgrades"][0];
        let state = upgrade["state"].as_str().unwrap_or("-");
        // Say at once when the device will not simply be pushed now, and why.
        let why = upgrade["reason"]
            .as_str()
            .and_then(otter_core::Reason::parse)
            .map(|r| match upgrade["result_msg"].as_str() {
                Some(detail) => format!(": {detail}"),
                None => format!(": {}", r.describe()),
            })
            .unwrap_or_default();
        format!(
            "campaign #{}: {} → {} ({state}{why})",
            field(v, "id"),
            a.device,
            a.version
        )
    });
    Ok(())
}

/// A plain text table of an array of objects.
pub fn table(v: &Value, columns: &[&str]) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| columns.iter().map(|c| field(row, c)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    std::iter::once(line(columns.iter().map(|c| c.to_uppercase()).collect()))
        .chain(rows.into_iter().map(line))
        .collect::<Vec<_>>()
        .join("\n")
}
