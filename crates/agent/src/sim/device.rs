//! One simulated device: a single task that owns its MQTT connection (rumqttc, small buffers),
//! reconnects with a short backoff, reports its version on every connect and runs at most one
//! upgrade script at a time, polled alongside the connection so the connection keeps being
//! served while it "downloads".

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use otter_protocol::{
    DEFAULT_MODULE, DownKind, Downlink, Offer, UpKind, parse_down_topic, parse_downlink,
    reply_offers,
};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, SubscribeReasonCode,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::cell::Cell;
use super::chance::Chance;
use super::script::Script;
use super::{Behavior, Outcome, Shared, Sickness};
use crate::backoff::Backoff;
use crate::report::Reporter;

const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Reconnect pauses: [`INITIAL_BACKOFF`], doubling up to 2 s, reset by a connect.
const RECONNECT: Backoff = Backoff::new(INITIAL_BACKOFF, Duration::from_secs(2));
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Pushes and replies are small; this bounds what a device buffers.
const MAX_PACKET: usize = 64 * 1024;
/// Requests a device may queue for its connection.
const QUEUE: usize = 16;
/// Unacknowledged QoS 1 publishes in flight (rumqttc keeps a slot per one).
const INFLIGHT: u16 = 8;
/// Longest version accepted from an offer.
const MAX_VERSION_LEN: usize = 128;
/// How long a stopping device waits for its DISCONNECT to go out.
const DISCONNECT_GRACE: Duration = Duration::from_millis(300);

type Upgrade = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What the fleet hands a new device task.
pub(super) struct Spec {
    pub cell: Arc<Cell>,
    pub secret: String,
    pub behavior: Behavior,
}

/// The device's own state, apart from the connection and the running upgrade.
struct Device {
    cell: Arc<Cell>,
    behavior: Behavior,
    shared: Arc<Shared>,
    reporter: Reporter,
    chance: Chance,
    /// The version being installed.
    busy: Option<String>,
    /// Connection failures since the last connect.
    failures: u32,
    /// What it does on the faulty release, if the fleet has one.
    sickness: Sickness,
}

/// Runs the device until `stop` changes (or its sender is dropped). `started` is dropped after
/// the first connection attempt, which is how [`super::Fleet::start`] knows it was made.
pub(super) async fn run(
    spec: Spec,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    started: mpsc::Sender<()>,
) {
    let (client, mut events) = AsyncClient::new(options(&spec, &shared), QUEUE);
    let addr = spec.cell.addr.clone();
    let mut device = Device {
        reporter: Reporter::new(
            client.clone(),
            spec.cell.dialect,
            addr.clone(),
            DEFAULT_MODULE.to_owned(),
        ),
        chance: Chance::new(shared.config.faults.seed, &addr),
        sickness: Chance::sickness(
            shared.config.faults.seed,
            &addr,
            shared.config.faulty.as_ref(),
        ),
        cell: spec.cell,
        behavior: spec.behavior,
        shared,
        busy: None,
        failures: 0,
    };
    let mut upgrade: Option<Upgrade> = None;
    let mut retry_at: Option<Instant> = None;
    let mut started = Some(started);
    let every = device
        .shared
        .config
        .faulty
        .as_ref()
        .map_or(Duration::MAX, |f| f.every);
    let mut next_symptom = Instant::now() + every.min(Duration::from_secs(86_400));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep_until(next_symptom), if device.sick_now() => {
                next_symptom = Instant::now() + every;
                if device.sickness == Sickness::BootLoop && events.network.is_some() {
                    // It crashed and restarts: the connection goes, it comes back and reports.
                    events.clean();
                    device.cell.disconnected(Some("boot loop (faulty release)".into()));
                    retry_at = Some(Instant::now() + INITIAL_BACKOFF);
                } else if device.sickness == Sickness::Crashes {
                    let crash = std::collections::BTreeMap::from([("crashes".to_owned(), 1)]);
                    let _ = device.reporter.try_health(crash);
                }
            }
            outcome = finish(&mut upgrade) => {
                upgrade = None;
                if matches!(outcome, Outcome::Gone { .. }) {
                    // Never back: the device is dead; no goodbye, no reconnect.
                    device.finished(outcome);
                    events.clean();
                    device.cell.disconnected(Some("never came back (faulty release)".into()));
                    let _ = stop.changed().await;
                    return;
                }
                if device.finished(outcome) {
                    // Injected fault: drop the TCP connection as a network loss would.
                    events.clean();
                    device.cell.disconnected(Some("dropped by fault injection".into()));
                    retry_at = Some(Instant::now() + INITIAL_BACKOFF);
                }
            }
            event = next_event(&mut events, &mut retry_at, &device.shared) => {
                started = None;
                match event {
                    Ok(event) => {
                        if let Some(job) = device.handle(event) {
                            upgrade = Some(job);
                        }
                    }
                    Err(err) => retry_at = Some(device.lost(&err)),
                }
            }
        }
    }
    drop(started);
    drop(upgrade);
    say_goodbye(&client, &mut events).await;
    device.cell.disconnected(None);
}

/// Connection options with the dialect's credentials, signed once (servers accept old
/// timestamps, as the SDKs reuse theirs on every reconnect).
fn options(spec: &Spec, shared: &Shared) -> MqttOptions {
    let mut opts = crate::session::signed_options(
        spec.cell.dialect,
        &spec.cell.addr,
        &spec.secret,
        shared.host.clone(),
        shared.port,
    );
    opts.set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_inflight(INFLIGHT)
        .set_clean_session(true);
    opts
}

/// Waits for the running upgrade, or forever when there is none.
async fn finish(slot: &mut Option<Upgrade>) -> Outcome {
    match slot {
        Some(job) => job.await,
        None => std::future::pending().await,
    }
}

/// The next connection event: waits out a pending backoff, and takes a connect slot while
/// (re)connecting so a fleet never has more than a bounded number of CONNECTs in flight.
async fn next_event(
    events: &mut EventLoop,
    retry_at: &mut Option<Instant>,
    shared: &Shared,
) -> Result<Event, ConnectionError> {
    if let Some(at) = *retry_at {
        tokio::time::sleep_until(at).await;
        *retry_at = None;
    }
    if events.network.is_some() {
        return events.poll().await;
    }
    let _slot = shared.connect_slots.acquire().await.ok();
    events.poll().await
}

/// Sends a DISCONNECT if connected, briefly.
async fn say_goodbye(client: &AsyncClient, events: &mut EventLoop) {
    if events.network.is_none() || client.try_disconnect().is_err() {
        return;
    }
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

impl Device {
    /// A connection event; returns a new upgrade to run when an offer starts one.
    fn handle(&mut self, event: Event) -> Option<Upgrade> {
        match event {
            Event::Incoming(Packet::ConnAck(_)) => {
                self.connected();
                None
            }
            Event::Incoming(Packet::Publish(p)) => self.received(&p.topic, &p.payload),
            Event::Incoming(Packet::SubAck(ack))
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) =>
            {
                tracing::warn!(device = %self.cell.addr, ?ack, "the broker refused a subscription");
                None
            }
            _ => None,
        }
    }

    /// Running the faulty release with a symptom that repeats.
    fn sick_now(&self) -> bool {
        matches!(self.sickness, Sickness::BootLoop | Sickness::Crashes)
            && self
                .shared
                .config
                .faulty
                .as_ref()
                .is_some_and(|f| f.version == self.cell.version())
    }

    /// On every (re)connect: subscribe, report the version, ask for the job if configured.
    fn connected(&mut self) {
        self.failures = 0;
        self.cell.connected();
        tracing::debug!(device = %self.cell.addr, "connected");
        self.reporter.subscribe();
        self.reporter.try_version(&self.cell.version());
        if self.shared.config.ask_for_job {
            // A no-op for Tencent, whose server pushes after every version report.
            self.reporter.try_firmware_request();
        }
    }

    /// The connection failed or was refused: when to try again.
    fn lost(&mut self, err: &ConnectionError) -> Instant {
        tracing::debug!(device = %self.cell.addr, error = %err, "connection lost");
        self.cell.disconnected(Some(err.to_string()));
        self.failures = self.failures.saturating_add(1);
        let wait = RECONNECT.pause(self.failures, self.chance.spread());
        Instant::now() + wait
    }

    /// A downstream publish; anything unreadable or not for this device is dropped.
    fn received(&mut self, topic: &str, payload: &[u8]) -> Option<Upgrade> {
        let (dialect, addr, downlink) = match parse_downlink(topic, payload) {
            Ok(parsed) => parsed,
            Err(err) => {
                tracing::debug!(device = %self.cell.addr, topic, error = %err, "unreadable message");
                return None;
            }
        };
        if dialect != self.cell.dialect || addr != self.cell.addr {
            tracing::warn!(device = %self.cell.addr, topic, "message for another device");
            return None;
        }
        match downlink {
            Downlink::Push(offer) => {
                self.cell.count_push();
                self.offered(offer)
            }
            Downlink::VersionAck { .. } => None,
            Downlink::Reply { code, data, .. } => {
                let is_job = matches!(
                    parse_down_topic(topic),
                    Some((_, DownKind::Reply(UpKind::FirmwareRequest), _))
                );
                if !is_job || code != 200 {
                    return None;
                }
                let offers = reply_offers(dialect, &data).unwrap_or_default();
                let offer = offers.into_iter().find(|o| o.module == DEFAULT_MODULE)?;
                self.cell.count_offer();
                self.offered(offer)
            }
        }
    }

    /// An offer, pushed or answered: re-report, ignore, or start an upgrade.
    fn offered(&mut self, offer: Offer) -> Option<Upgrade> {
        if self.behavior == Behavior::Ignore {
            return None;
        }
        let version = &offer.version;
        if version.is_empty()
            || version.len() > MAX_VERSION_LEN
            || version.chars().any(char::is_control)
        {
            tracing::debug!(device = %self.cell.addr, ?version, "offer with an unusable version");
            return None;
        }
        let current = self.cell.version();
        if *version == current {
            self.reporter.try_version(&current);
            return None;
        }
        if self.busy.is_some() {
            return None;
        }
        let plan = self
            .chance
            .plan(self.behavior, &self.shared.config.faults)?;
        let step = self.shared.config.step_delay;
        let delay = match self.chance.slow(self.behavior, &self.shared.config.faults) {
            true => step.max(std::time::Duration::from_millis(100)) * 10,
            false => step,
        };
        self.busy = Some(version.clone());
        self.cell.upgrading(Some(version.clone()));
        let sickness = match &self.shared.config.faulty {
            Some(f) if f.version == *version => self.sickness,
            _ => Sickness::Fine,
        };
        let script = Script {
            reporter: self.reporter.clone(),
            cell: self.cell.clone(),
            offer,
            plan,
            delay,
            http: self.shared.http.clone(),
            sickness,
        };
        Some(Box::pin(script.run()))
    }

    /// Records an upgrade's end; `true` when the connection must be dropped.
    fn finished(&mut self, outcome: Outcome) -> bool {
        self.busy = None;
        let drop = matches!(outcome, Outcome::Dropped { .. });
        tracing::debug!(device = %self.cell.addr, ?outcome, "upgrade finished");
        self.cell.finished(outcome);
        drop
    }
}
