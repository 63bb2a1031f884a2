//! The MQTT side of the agent: one connection driven by rumqttc's event loop, kept alive with
//! backoff, and the dispatch of what the server sends (pushes, job offers, replies) to upgrade
//! tasks. The event loop is polled all the time, also while an upgrade downloads.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use otter_protocol::{
    DownKind, Downlink, Offer, UpKind, parse_down_topic, parse_downlink, reply_offers, sign,
};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, SubscribeReasonCode};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::Agent;
use crate::report::Reporter;
use crate::upgrade::{Job, Outcome};

/// First pause after a lost or refused connection; doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
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
}

pub(crate) async fn run(
    agent: Agent,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let http = crate::download::client().context("cannot build the HTTP client")?;
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
    let mut session = Session {
        agent,
        reporter,
        http,
        upgrade: None,
    };
    let mut backoff = INITIAL_BACKOFF;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            joined = join(&mut session.upgrade) => session.finished(joined),
            event = events.poll() => match event {
                Ok(event) => {
                    if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                        backoff = INITIAL_BACKOFF;
                    }
                    session.handle(event);
                }
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "MQTT connection lost");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            },
        }
    }
    session.stop(&client, &mut events).await;
    Ok(())
}

/// Connection options with the dialect's credentials. They are signed once: the servers accept
/// old timestamps, as the vendor SDKs reuse theirs on every reconnect.
fn mqtt_options(agent: &Agent) -> MqttOptions {
    let c = &agent.config;
    let creds = sign(c.dialect, &agent.device, &c.secret, now_ms());
    let (host, port) = agent.broker.clone();
    let mut opts = MqttOptions::new(creds.client_id, host, port);
    opts.set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_clean_session(true);
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
            Event::Incoming(Packet::Publish(p)) => self.received(&p.topic, &p.payload),
            Event::Incoming(Packet::SubAck(ack))
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) =>
            {
                tracing::warn!(?ack, "the broker refused a subscription");
            }
            _ => {}
        }
    }

    /// On every (re)connect: subscribe, report the version, and ask for a job where the dialect
    /// lets the device ask.
    fn connected(&self) {
        let version = self.agent.current_version();
        tracing::info!(%version, "connected to the broker");
        self.reporter.subscribe();
        self.reporter.try_version(&version);
        self.reporter.try_firmware_request();
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
            Downlink::Push(offer) => self.offered(offer),
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
        match reply_offers(self.agent.config.dialect, data) {
            Ok(offers) if offers.is_empty() => tracing::info!("no upgrade offered"),
            Ok(offers) => {
                let module = &self.agent.config.module;
                let mine = offers.iter().position(|o| self.for_me(o));
                match mine.and_then(|i| offers.into_iter().nth(i)) {
                    Some(offer) => self.offered(offer),
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
    fn offered(&mut self, offer: Offer) {
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
            self.reporter.try_version(&current);
            return;
        }
        if let Some(running) = &self.upgrade {
            tracing::info!(%version, in_progress = %running.version, "upgrade in progress; ignoring offer");
            return;
        }
        let job = Job {
            offer: offer.clone(),
            reporter: self.reporter.clone(),
            http: self.http.clone(),
            state_dir: self.agent.config.state_dir.clone(),
            install_command: self.agent.config.install_command.clone(),
            current: self.agent.current.clone(),
        };
        self.upgrade = Some(Running {
            version: offer.version,
            handle: tokio::spawn(job.run()),
        });
    }

    fn finished(&mut self, joined: Result<Outcome, tokio::task::JoinError>) {
        if let Some(running) = self.upgrade.take()
            && let Err(err) = joined
        {
            tracing::error!(version = %running.version, error = %err, "upgrade task died");
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
