//! `otter simulate`: a fleet of simulated devices in this process (otter-agent's `sim`), for
//! demos and load. Optionally registers its products and devices through the admin API first
//! (with secrets derived from `--seed`, so reruns reuse them), then prints a one-line status
//! every 2 s until Ctrl-C.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use otter_agent::sim::{
    Behavior, DeviceStatus, Faults, FaultyRelease, Fleet, Outcome, SimConfig, SimDevice,
    derive_secret,
};
use otter_protocol::Dialect;
use reqwest::StatusCode;

/// How often the status line is printed.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// Device registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 16;
/// Longest product prefix, leaving room for `-tencent` within the 64 characters of a ProductId.
const MAX_PREFIX: usize = 48;

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Number of simulated devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Wire dialect of the devices; `mixed` cycles through all three.
    #[arg(long, value_enum, default_value_t = DialectChoice::Mixed)]
    dialect: DialectChoice,
    /// Products are named `{prefix}-tencent`, `{prefix}-aliyun`, `{prefix}-enos`.
    #[arg(long, default_value = "SIM")]
    product_prefix: String,
    /// Firmware version the devices run at start.
    #[arg(long = "version", default_value = "1.0.0")]
    firmware_version: String,
    /// MQTT broker address, host:port or mqtt://host:port (so the OTTER_BROKER of an `otter
    /// serve` on an external broker works as is) [default: the --server's host on port 1883,
    /// else 127.0.0.1:1883].
    #[arg(long, env = "OTTER_BROKER")]
    broker: Option<String>,
    /// Otter server URL: register the products and devices there first when missing. Without
    /// it nothing is registered, and the server refuses devices it does not know.
    #[arg(long, env = "OTTER_SERVER")]
    server: Option<String>,
    /// Admin token for --server [default: contents of ./otter-data/admin-token when present].
    #[arg(long, env = "OTTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seed of the device secrets and of the injected faults (same seed, same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability that an upgrade fails (random download or install failure code).
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// Probability that the connection drops during a download.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Probability that a downloaded image is corrupt (verification failure code).
    #[arg(long, default_value_t = 0.0)]
    corrupt_rate: f64,
    /// Probability that a download is slow (each progress step takes 10× the step delay, ≥ 1 s).
    #[arg(long, default_value_t = 0.0)]
    slow_rate: f64,
    /// Really download the offered images (streamed and MD5-checked, not stored).
    #[arg(long)]
    download: bool,
    /// Aliyun/EnOS devices ask for their job after each version report.
    #[arg(long)]
    ask_for_job: bool,
    /// Pause between progress reports, in milliseconds.
    #[arg(long, default_value_t = 500)]
    step_delay_ms: u64,
    /// A faulty release, for health gates: devices that install this version get sick (the
    /// shares below, drawn per device from --seed).
    #[arg(long)]
    faulty_version: Option<String>,
    /// Share (0–1) of devices that boot-loop on the faulty version (reconnect every
    /// --symptom-every-ms).
    #[arg(long, default_value_t = 0.0, requires = "faulty_version")]
    boot_loop: f64,
    /// Share that say done and never come back.
    #[arg(long, default_value_t = 0.0, requires = "faulty_version")]
    never_back: f64,
    /// Share that say done and come back on their old version.
    #[arg(long, default_value_t = 0.0, requires = "faulty_version")]
    back_on_old: f64,
    /// Share that report a crash (an otter_health report) every --symptom-every-ms.
    #[arg(long, default_value_t = 0.0, requires = "faulty_version")]
    crashes: f64,
    /// How often a sick device shows its symptom, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    symptom_every_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DialectChoice {
    Tencent,
    Aliyun,
    Enos,
    Mixed,
}

impl DialectChoice {
    /// The dialect of the `i`-th device.
    fn of(self, i: usize) -> Dialect {
        match self {
            DialectChoice::Tencent => Dialect::Tencent,
            DialectChoice::Aliyun => Dialect::Aliyun,
            DialectChoice::Enos => Dialect::Enos,
            DialectChoice::Mixed => Dialect::ALL[i % Dialect::ALL.len()],
        }
    }
}

pub async fn run(args: SimulateArgs) -> Result<()> {
    let devices = plan(&args)?;
    let broker = broker_address(args.broker.as_deref(), args.server.as_deref())?;
    match &args.server {
        Some(server) => {
            println!("registering devices through {server}");
            let api = Api::new(server, args.token.clone())?;
            api.register(&devices).await?;
        }
        None => println!(
            "not registering devices: no --server (or OTTER_SERVER) given; the broker refuses devices its server does not know"
        ),
    }
    let config = SimConfig {
        broker: broker.clone(),
        download: args.download,
        ask_for_job: args.ask_for_job,
        step_delay: Duration::from_millis(args.step_delay_ms),
        faults: Faults {
            failure_rate: args.failure_rate,
            drop_connection_rate: args.drop_rate,
            corrupt_rate: args.corrupt_rate,
            slow_rate: args.slow_rate,
            seed: args.seed,
        },
        faulty: args.faulty_version.clone().map(|version| FaultyRelease {
            version,
            boot_loop: args.boot_loop,
            never_back: args.never_back,
            back_on_old: args.back_on_old,
            crashes: args.crashes,
            every: Duration::from_millis(args.symptom_every_ms.max(50)),
        }),
    };
    println!(
        "starting {} simulated devices against {}",
        devices.len(),
        broker
    );
    let fleet = Fleet::start(config, devices).await?;
    let mut ticker = tokio::time::interval(STATUS_EVERY);
    let mut shutdown = std::pin::pin!(crate::shutdown_signal());
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = ticker.tick() => println!("{}", status_line(&fleet.snapshot())),
        }
    }
    println!("stopping");
    fleet.stop().await;
    Ok(())
}

/// The fleet the arguments describe: device `i` is `{prefix lowercase}-{i:05}` in the product
/// of its dialect, with a secret derived from the seed.
fn plan(args: &SimulateArgs) -> Result<Vec<SimDevice>> {
    let prefix = &args.product_prefix;
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
    if prefix.is_empty() || prefix.len() > MAX_PREFIX || !prefix.chars().all(valid) {
        bail!("--product-prefix must be 1 to {MAX_PREFIX} characters of A-Z a-z 0-9 _ -");
    }
    if args.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let version = args.firmware_version.trim();
    if version.is_empty() {
        bail!("--version is empty");
    }
    let device_prefix = prefix.to_ascii_lowercase();
    Ok((0..args.devices)
        .map(|i| {
            let dialect = args.dialect.of(i);
            let product = format!("{prefix}-{dialect}");
            let device = format!("{device_prefix}-{i:05}");
            SimDevice {
                secret: derive_secret(dialect, args.seed, &product, &device),
                dialect,
                product,
                device,
                version: version.to_owned(),
                behavior: Behavior::Succeed,
            }
        })
        .collect())
}

/// The broker to dial: `--broker`, else the host of `--server` on MQTT's port, else the local one.
fn broker_address(broker: Option<&str>, server: Option<&str>) -> Result<String> {
    if let Some(broker) = broker {
        let broker = broker.trim();
        if let Some(address) = broker
            .strip_prefix("mqtt://")
            .or(broker.strip_prefix("tcp://"))
        {
            return Ok(address.trim_end_matches('/').to_owned());
        }
        if broker.contains("://") {
            bail!(
                "--broker {broker:?}: the simulator speaks plain MQTT only (host:port or mqtt://host:port)"
            );
        }
        return Ok(broker.to_owned());
    }
    let Some(server) = server else {
        return Ok("127.0.0.1:1883".into());
    };
    let url =
        reqwest::Url::parse(server).with_context(|| format!("--server {server:?} is not a URL"))?;
    match url.host_str() {
        Some(host) => Ok(format!("{host}:1883")),
        None => bail!("--server {server:?} has no host"),
    }
}

/// Why a device is not connected, from its last connection error, in an operator's words.
fn explain(error: &str) -> String {
    let e = error.to_ascii_lowercase();
    if e.contains("badusernamepassword")
        || e.contains("notauthorized")
        || e.contains("bad user name")
        || e.contains("not authorized")
    {
        "refused by the broker: unknown device or wrong secret (register through --server/OTTER_SERVER with the same --seed and --product-prefix)".into()
    } else if e.contains("return code") {
        format!("refused by the broker ({error})")
    } else if e.contains("connection refused") {
        format!("nothing listening at the broker address ({error}; is --broker right?)")
    } else if e.contains("timed out") || e.contains("timeout") {
        format!("the broker does not answer ({error})")
    } else if e.contains("failed to lookup") || e.contains("dns") || e.contains("name or service") {
        format!("the broker's host name does not resolve ({error})")
    } else {
        error.to_owned()
    }
}

/// `connected 98/100 | 1.0.0: 60, 1.1.0: 40 | upgrading 3 | failed 2 | dropped 1 | pushes 57`,
/// and while devices are not connected, why (the most common reason, with how many it holds back).
fn status_line(fleet: &[DeviceStatus]) -> String {
    let connected = fleet.iter().filter(|s| s.connected).count();
    let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
    for s in fleet {
        *versions.entry(s.version.as_str()).or_default() += 1;
    }
    let histogram: Vec<String> = versions.iter().map(|(v, n)| format!("{v}: {n}")).collect();
    let upgrading = fleet.iter().filter(|s| s.upgrading.is_some()).count();
    let outcome = |f: fn(&Outcome) -> bool| {
        fleet
            .iter()
            .filter(|s| s.last_outcome.as_ref().is_some_and(f))
            .count()
    };
    let failed = outcome(|o| matches!(o, Outcome::Failed { .. }));
    let dropped = outcome(|o| matches!(o, Outcome::Dropped { .. }));
    let pushes: u64 = fleet.iter().map(|s| u64::from(s.pushes)).sum();
    let mut line = format!(
        "connected {connected}/{} | {} | upgrading {upgrading} | failed {failed} | dropped {dropped} | pushes {pushes}",
        fleet.len(),
        histogram.join(", ")
    );
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for s in fleet.iter().filter(|s| !s.connected) {
        let reason = match &s.last_error {
            Some(error) => explain(error),
            None => "not connected yet".to_owned(),
        };
        *reasons.entry(reason).or_default() += 1;
    }
    if let Some((reason, n)) = reasons.iter().max_by_key(|(_, n)| **n) {
        line.push_str(&format!(" | {n} not connected: {reason}"));
    }
    line
}

/// The few admin API calls registration needs.
struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    fn new(server: &str, token: Option<String>) -> Result<Api> {
        let token = match token {
            Some(token) => token,
            None => crate::client::token_from_data_dir()?,
        };
        Ok(Api {
            http: reqwest::Client::new(),
            base: format!("{}/api/v1", server.trim_end_matches('/')),
            token,
        })
    }

    /// Creates each product and device unless it exists; prints how many were new.
    async fn register(&self, devices: &[SimDevice]) -> Result<()> {
        let mut products: Vec<(&str, Dialect)> = devices
            .iter()
            .map(|d| (d.product.as_str(), d.dialect))
            .collect();
        products.sort();
        products.dedup();
        for (id, dialect) in products {
            let body = otter_api::NewProduct {
                id: id.to_owned(),
                dialect: dialect.as_str().to_owned(),
                name: None,
                version_scheme: None,
            };
            self.create("/products", &body).await?;
        }
        let results: Vec<Result<bool>> = futures::stream::iter(devices)
            .map(|d| {
                let path = format!("/products/{}/devices", d.product);
                let body = otter_api::NewDevice {
                    name: d.device.clone(),
                    secret: Some(d.secret.clone()),
                };
                async move { self.create(path, &body).await }
            })
            .buffer_unordered(REGISTER_CONCURRENCY)
            .collect()
            .await;
        let mut created = 0;
        for result in results {
            created += usize::from(result?);
        }
        println!(
            "registered {created} new devices ({} already there)",
            devices.len() - created
        );
        Ok(())
    }

    /// POST; `true` when created, `false` when it already existed (409).
    async fn create(&self, path: impl AsRef<str>, body: &impl serde::Serialize) -> Result<bool> {
        let url = format!("{}{}", self.base, path.as_ref());
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {url}"))?;
        match response.status() {
            StatusCode::CONFLICT => Ok(false),
            status if status.is_success() => Ok(true),
            status => {
                let message = response
                    .json::<otter_api::ErrorBody>()
                    .await
                    .map(|e| e.error)
                    .unwrap_or_else(|_| "no details".into());
                bail!("POST {url} answered {status}: {message}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(argv: &[&str]) -> SimulateArgs {
        Cli::try_parse_from(std::iter::once("simulate").chain(argv.iter().copied()))
            .unwrap()
            .args
    }

    #[test]
    fn mixed_fleet_cycles_dialects_with_valid_names() {
        let devices = plan(&parse(&["--devices", "4", "--seed", "3"])).unwrap();
        let names: Vec<(&str, &str)> = devices
            .iter()
            .map(|d| (d.product.as_str(), d.device.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("SIM-tencent", "sim-00000"),
                ("SIM-aliyun", "sim-00001"),
                ("SIM-enos", "sim-00002"),
                ("SIM-tencent", "sim-00003"),
            ]
        );
        assert_eq!(devices[1].secret.len(), 32);
        assert_eq!(devices[0].version, "1.0.0");
        let again = plan(&parse(&["--devices", "4", "--seed", "3"])).unwrap();
        assert_eq!(devices, again, "same seed, same secrets");
    }

    #[test]
    fn single_dialect_and_bad_prefix() {
        let args = parse(&["--devices", "2", "--dialect", "enos", "--version", "2.1"]);
        let devices = plan(&args).unwrap();
        assert!(devices.iter().all(|d| d.dialect == Dialect::Enos));
        assert_eq!(devices[0].version, "2.1");
        assert!(plan(&parse(&["--product-prefix", "a/b"])).is_err());
        assert!(plan(&parse(&["--devices", "0"])).is_err());
    }

    #[test]
    fn status_line_counts() {
        let status = |version: &str, connected: bool, outcome: Option<Outcome>| DeviceStatus {
            dialect: Dialect::Aliyun,
            product: "P".into(),
            device: "d".into(),
            version: version.into(),
            pushes: 2,
            offers: 0,
            connected,
            connects: 1,
            upgrading: None,
            last_outcome: outcome,
            last_error: None,
        };
        let fleet = [
            status("1.0.0", true, None),
            status(
                "1.0.0",
                false,
                Some(Outcome::Failed {
                    version: "2".into(),
                    code: -2,
                }),
            ),
            status("2.0.0", true, None),
        ];
        assert_eq!(
            status_line(&fleet),
            "connected 2/3 | 1.0.0: 2, 2.0.0: 1 | upgrading 0 | failed 1 | dropped 0 | pushes 6 | 1 not connected: not connected yet"
        );
        let mut refused = status("1.0.0", false, None);
        refused.last_error = Some("Connection refused, return code: `BadUserNamePassword`".into());
        let line = status_line(&[refused.clone(), refused, status("1.0.0", true, None)]);
        assert!(
            line.ends_with("| 2 not connected: refused by the broker: unknown device or wrong secret (register through --server/OTTER_SERVER with the same --seed and --product-prefix)"),
            "{line}"
        );
    }

    #[test]
    fn broker_defaults_to_the_servers_host() {
        let at = |b, s| broker_address(b, s).unwrap();
        assert_eq!(at(None, None), "127.0.0.1:1883");
        assert_eq!(
            at(None, Some("http://otter.example:8080")),
            "otter.example:1883"
        );
        assert_eq!(at(None, Some("http://[::1]:8080/")), "[::1]:1883");
        assert_eq!(
            at(Some("10.0.0.1:1884"), Some("http://x:8080")),
            "10.0.0.1:1884"
        );
        assert_eq!(at(Some("mqtt://10.0.0.5:1883"), None), "10.0.0.5:1883");
        assert!(broker_address(Some("mqtts://b:8883"), None).is_err());
        assert!(broker_address(None, Some("not a url")).is_err());
    }
}
