//! The MQTT side of the agent: one connection driven by rumqttc's event loop, kept alive with
//! backoff and jitter, the dispatch of what the server sends (pushes, job offers, replies) to
//! upgrade tasks, and the outbox of result reports, sent again after every reconnect until the
//! broker acknowledges them. The event loop is polled all the time, also while an upgrade
//! downloads.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use otter_protocol::{
    DownKind, Downlink, Offer, OfferExt, UpKind, parse_down_topic, parse_downlink, push_ext,
    reply_exts, reply_offers, sign,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, SubscribeReasonCode};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::boot::{self, Verdict};
use crate::outbox::{Outbox, Report};
use crate::report::Reporter;
use crate::upgrade::{Job, Outcome};
use crate::{Agent, Restart};

/// Pauses after a lost or refused connection: 1 s, doubling up to 60 s, reset by a CONNACK.
const RECONNECT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Largest MQTT packet accepted or sent (pushes are small; this is generous).
const MAX_PACKET: usize = 256 * 1024;
/// Requests the client may queue for the event loop.
const QUEUE: usize = 64;
/// How long shutdown waits for the DISCONNECT to go out.
const DISCONNECT_GRACE: Duration = Duration::from_secs(1);
/// Longest version string accepted from an offer (it ends up in a file and file names).
const MAX_VERSION_LEN: usize = 128;

/// The upgrade task in progress.
struct Running {
    version: String,
    handle: JoinHandle<Outcome>,
}

/// The agent while connected (or reconnecting).
struct Session {
    agent: Agent,
    reporter: Reporter,
    http: reqwest::Client,
    upgrade: Option<Running>,
    outbox: Outbox,
    results: mpsc::UnboundedSender<Report>,
    /// Between a CONNACK and the next connection error.
    online: bool,
    /// QoS 1 publishes queued in rumqttc, in order: the outbox entry each one carries, if any.
    queued: VecDeque<Option<u64>>,
    /// Packet id → outbox entry, for publishes written and not yet acknowledged.
    inflight: HashMap<u16, u64>,
    /// Health counters gathered while offline.
    unsent_health: std::collections::BTreeMap<String, u64>,
}

/// Stops a background task when the session ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) async fn run(
    agent: Agent,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let http = crate::download::client().context("cannot build the HTTP client")?;
    let mut outbox = Outbox::load(&agent.config.state_dir);
    if resolve_trial(&agent, &mut outbox).await {
        return Ok(());
    }
    let (client, mut events) = AsyncClient::new(mqtt_options(&agent), QUEUE);
    let reporter = Reporter::new(
        client.clone(),
        agent.config.dialect,
        agent.device.clone(),
        agent.config.module.clone(),
    );
    tracing::info!(
        dialect = %agent.config.dialect, device = %agent.device, broker = %agent.config.broker,
        version = %agent.current_version(), "agent starting"
    );
    let (results, mut results_rx) = mpsc::unbounded_channel();
    let (health_tx, mut health_rx) = mpsc::unbounded_channel();
    let _health = agent
        .config
        .health_reports
        .clone()
        .map(|settings| AbortOnDrop(tokio::spawn(crate::health::run(settings, health_tx))));
    let mut session = Session {
        agent,
        reporter,
        http,
        upgrade: None,
        outbox,
        results,
        online: false,
        queued: VecDeque::new(),
        inflight: HashMap::new(),
        unsent_health: Default::default(),
    };
    let mut failures = 0u32;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            joined = join(&mut session.upgrade) => {
                if session.finished(joined) {
                    tracing::info!("stopping so the device restarts into the new image");
                    break;
                }
            }
            Some(report) = results_rx.recv() => session.result(report),
            Some(counters) = health_rx.recv() => session.health(counters),
            event = events.poll() => match event {
                Ok(event) => {
                    if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                        failures = 0;
                    }
                    session.handle(event);
                }
                Err(err) => {
                    session.offline();
                    failures = failures.saturating_add(1);
                    let pause = RECONNECT.pause(failures, rand::random());
                    tracing::warn!(error = %err, retry_in = ?pause, "MQTT connection lost");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            },
        }
    }
    session.stop(&client, &mut events).await;
    Ok(())
}

/// Finishes a trial boot left by the previous run, queueing its reports. True when the agent
/// must stop at once (it rolled back and restarts into the previous image).
async fn resolve_trial(agent: &Agent, outbox: &mut Outbox) -> bool {
    let ctx = boot::Ctx {
        dir: &agent.config.state_dir,
        dialect: agent.config.dialect,
        installer: agent.installer.as_ref(),
        settings: &agent.config.boot,
    };
    let mut reports = vec![];
    let verdict = ctx.on_start(&mut reports).await;
    reports.into_iter().for_each(|r| {
        outbox.push(r);
    });
    match verdict {
        None => false,
        Some(Verdict::Committed(version)) => {
            agent.set_current(&version);
            false
        }
        Some(Verdict::RolledBack(version)) => {
            agent.set_current(&version);
            match &agent.config.boot.restart {
                Restart::InPlace => false,
                Restart::Command(command) => {
                    tracing::info!(command, "restarting into the previous image");
                    let mut cmd = tokio::process::Command::new("sh");
                    cmd.arg("-c").arg(command);
                    if let Err(err) = crate::install::run(cmd, "the restart command").await {
                        tracing::error!(error = %err, "restart failed; carrying on");
                        return false;
                    }
                    true
                }
                Restart::Reexec => {
                    let why = reexec();
                    tracing::error!(%why, "carrying on");
                    false
                }
            }
        }
    }
}

/// Replaces this process with a fresh run of the same executable and arguments; returns only
/// when that failed, saying why.
pub(crate) fn reexec() -> String {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return format!("cannot find the agent executable: {err}"),
    };
    tracing::info!(exe = %exe.display(), "re-executing the agent");
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .exec();
    format!("cannot re-execute the agent: {err}")
}

/// Connection options with the dialect's credentials. They are signed once: the servers accept
/// old timestamps, as the vendor SDKs reuse theirs on every reconnect.
fn mqtt_options(agent: &Agent) -> MqttOptions {
    let c = &agent.config;
    let (host, port) = agent.broker.clone();
    let mut opts = signed_options(c.dialect, &agent.device, &c.secret, host, port);
    opts.set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_clean_session(true);
    opts
}

/// A device's MQTT options carrying its dialect's signed credentials (shared with the simulator).
pub(crate) fn signed_options(
    dialect: otter_protocol::Dialect,
    device: &otter_protocol::DeviceAddr,
    secret: &str,
    host: String,
    port: u16,
) -> MqttOptions {
    let creds = sign(dialect, device, secret, now_ms());
    let mut opts = MqttOptions::new(creds.client_id, host, port);
    if let Some(username) = creds.username {
        let password = creds
            .password
            .map(|p| String::from_utf8_lossy(&p).into_owned())
            .unwrap_or_default();
        opts.set_credentials(username, password);
    }
    opts
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Waits for the running upgrade, or forever when there is none.
async fn join(slot: &mut Option<Running>) -> Result<Outcome, tokio::task::JoinError> {
    match slot {
        Some(running) => (&mut running.handle).await,
        None => std::future::pending().await,
    }
}

impl Session {
    fn handle(&mut self, event: Event) {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => self.connected(),
            Event::Outgoing(Outgoing::Publish(pkid)) if pkid != 0 => {
                if let Some(Some(id)) = self.queued.pop_front() {
                    self.inflight.insert(pkid, id);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(id) = self.inflight.remove(&ack.pkid) {
                    self.outbox.ack(id);
                }
            }
            Event::Incoming(Packet::Publish(p)) => self.received(&p.topic, &p.payload),
            Event::Incoming(Packet::SubAck(ack))
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) =>
            {
                tracing::warn!(?ack, "the broker refused a subscription");
            }
            _ => {}
        }
    }

    /// On every (re)connect: subscribe, send the outbox, report the version, and ask for a job
    /// where the dialect lets the device ask.
    fn connected(&mut self) {
        let version = self.agent.current_version();
        tracing::info!(%version, pending = self.outbox.entries().len(), "connected to the broker");
        self.online = true;
        self.reporter.subscribe();
        for (id, report) in self.outbox.entries() {
            self.send_result(id, &report);
        }
        if self.reporter.try_version(&version) {
            self.queued.push_back(None);
        }
        if self.reporter.try_firmware_request() {
            self.queued.push_back(None);
        }
        self.send_health();
    }

    /// The connection dropped: rumqttc forgets whatever it had queued or in flight (clean
    /// session), so the outbox sends it all again on the next CONNACK.
    fn offline(&mut self) {
        self.online = false;
        self.queued.clear();
        self.inflight.clear();
    }

    /// Counters from the health-report command: sent now when online, else added to what the
    /// next connect sends.
    fn health(&mut self, counters: std::collections::BTreeMap<String, u64>) {
        for (name, n) in counters {
            *self.unsent_health.entry(name).or_insert(0) += n;
        }
        self.send_health();
    }

    fn send_health(&mut self) {
        if !self.online || self.unsent_health.is_empty() {
            return;
        }
        let counters = std::mem::take(&mut self.unsent_health);
        if self.reporter.try_health(counters.clone()) {
            self.queued.push_back(None);
            tracing::debug!(?counters, "health report sent");
        } else {
            self.unsent_health = counters;
        }
    }

    /// A result report from the upgrade task: into the outbox, and out now when online.
    fn result(&mut self, report: Report) {
        let id = self.outbox.push(report.clone());
        if self.online {
            self.send_result(id, &report);
        }
    }

    fn send_result(&mut self, id: u64, report: &Report) {
        match self.reporter.result(report) {
            None => self.outbox.ack(id),
            Some(out) => {
                if self.reporter.try_send_qos1(out) {
                    self.queued.push_back(Some(id));
                }
            }
        }
    }

    /// A downstream publish. Anything odd is logged and dropped.
    fn received(&mut self, topic: &str, payload: &[u8]) {
        let (dialect, device, downlink) = match parse_downlink(topic, payload) {
            Ok(parsed) => parsed,
            Err(err) => {
                tracing::warn!(topic, error = %err, "ignoring unreadable message");
                return;
            }
        };
        if dialect != self.agent.config.dialect || device != self.agent.device {
            tracing::warn!(topic, "ignoring a message for another device or dialect");
            return;
        }
        match downlink {
            Downlink::Push(offer) => {
                let ext = push_ext(topic, payload).map_err(|e| e.to_string());
                self.offered(offer, ext);
            }
            Downlink::VersionAck { version } => tracing::debug!(%version, "version acknowledged"),
            Downlink::Reply { id, code, data } => self.replied(topic, id, code, &data),
        }
    }

    /// A reply; only the answer to a job request matters (it may carry an offer).
    fn replied(&mut self, topic: &str, id: Value, code: i64, data: &Value) {
        let is_job = matches!(
            parse_down_topic(topic),
            Some((_, DownKind::Reply(UpKind::FirmwareRequest), _))
        );
        if code != 200 {
            tracing::warn!(topic, %id, code, %data, "the server refused a request");
            return;
        }
        if !is_job {
            tracing::debug!(topic, %id, "request acknowledged");
            return;
        }
        let dialect = self.agent.config.dialect;
        match reply_offers(dialect, data) {
            Ok(offers) if offers.is_empty() => tracing::info!("no upgrade offered"),
            Ok(offers) => {
                let module = &self.agent.config.module;
                let mine = offers.iter().position(|o| self.for_me(o));
                let ext = |i: usize| match reply_exts(dialect, data) {
                    Ok(exts) => Ok(exts.into_iter().nth(i).flatten()),
                    Err(e) => Err(e.to_string()),
                };
                match mine.and_then(|i| Some((offers.into_iter().nth(i)?, ext(i)))) {
                    Some((offer, ext)) => self.offered(offer, ext),
                    None => tracing::info!(%module, "no upgrade offered for this module"),
                }
            }
            Err(err) => tracing::warn!(topic, error = %err, "unreadable job offer"),
        }
    }

    /// Only Aliyun names modules on the wire; the other dialects' offers are all for us.
    fn for_me(&self, offer: &Offer) -> bool {
        self.agent.config.dialect != otter_protocol::Dialect::Aliyun
            || offer.module == self.agent.config.module
    }

    /// A firmware offer, pushed or answered: start the upgrade unless there is nothing to do.
    fn offered(&mut self, offer: Offer, ext: Result<Option<OfferExt>, String>) {
        let version = &offer.version;
        if !self.for_me(&offer) {
            tracing::info!(%version, module = %offer.module, "ignoring an offer for another module");
            return;
        }
        if version.is_empty()
            || version.len() > MAX_VERSION_LEN
            || version.chars().any(char::is_control)
        {
            tracing::warn!(?version, "ignoring an offer with an unusable version");
            return;
        }
        let current = self.agent.current_version();
        if *version == current {
            tracing::info!(%version, "offered the version already running; reporting it");
            if self.reporter.try_version(&current) {
                self.queued.push_back(None);
            }
            return;
        }
        if let Some(running) = &self.upgrade {
            tracing::info!(%version, in_progress = %running.version, "upgrade in progress; ignoring offer");
            return;
        }
        let config = &self.agent.config;
        let job = Job {
            offer: offer.clone(),
            ext,
            product: config.product.clone(),
            trust: self.agent.trust.clone(),
            reporter: self.reporter.clone(),
            results: self.results.clone(),
            http: self.http.clone(),
            state_dir: config.state_dir.clone(),
            installer: self.agent.installer.clone(),
            download: config.download.clone(),
            boot: config.boot.clone(),
            current: self.agent.current.clone(),
        };
        self.upgrade = Some(Running {
            version: offer.version,
            handle: tokio::spawn(job.run()),
        });
    }

    /// The upgrade task ended; true when the agent must stop for a restart.
    fn finished(&mut self, joined: Result<Outcome, tokio::task::JoinError>) -> bool {
        let running = self.upgrade.take();
        match joined {
            Ok(outcome) => outcome == Outcome::Restart,
            Err(err) => {
                let version = running.map(|r| r.version).unwrap_or_default();
                tracing::error!(%version, error = %err, "upgrade task died");
                false
            }
        }
    }

    /// Abandons an upgrade in progress (its install command is killed) and says goodbye.
    async fn stop(self, client: &AsyncClient, events: &mut EventLoop) {
        if let Some(running) = self.upgrade {
            tracing::info!(version = %running.version, "abandoning the upgrade in progress");
            running.handle.abort();
            let _ = running.handle.await;
        }
        if client.try_disconnect().is_ok() {
            let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
                loop {
                    match events.poll().await {
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            })
            .await;
        }
        tracing::info!("agent stopped");
    }
}
