//! otter-engine: the device engine. Everything that happens because a device or the clock says
//! so: device messages (decode, decide, persist, answer), presence written behind, upgrade
//! changes committed in groups, the device gate and its throttle, download links, membership of
//! several nodes on an external broker, and the campaign runner.
//!
//! One service, [`Engine`], is what the HTTP surface holds: its reads are always current (the
//! store it hands out has every device report acknowledged so far written), so no caller
//! flushes anything.
//!
//! Architecture Invariant: the engine knows brokers only through otter-mqtt's contract
//! (`Publish`, `BrokerEvent`, `Gate`) and HTTP not at all; the server picks the broker and
//! serves HTTP. Time on the device path comes from the injected [`clock::Clock`], except where
//! another process checks it against the wall clock (download link expiry).

pub mod campaigns;
mod changes;
pub mod clock;
mod devices;
pub mod external;
pub mod gate;
pub mod links;
mod offers;
mod presence;
pub mod secrets;
pub mod signing;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use otter_mqtt::{BrokerEvent, Publish};
use otter_store::Store;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::campaigns::Campaigns;
use crate::changes::Changes;
use crate::clock::Clock;
use crate::devices::{Devices, Parts};
use crate::gate::DeviceIdentity;
use crate::links::Links;
use crate::presence::Presence;

/// What the engine is built from.
pub struct EngineConfig {
    pub store: Store,
    /// The broker devices are on (embedded or external): where answers and offers go.
    pub broker: Arc<dyn Publish>,
    /// Download links put in offers.
    pub links: Links,
    /// How long a download link stays valid.
    pub url_ttl: Duration,
    /// The clock of the device path and the campaign runner (a manual one in tests).
    pub clock: Arc<dyn Clock>,
    /// How often the campaign runner runs.
    pub tick: Duration,
}

/// The device engine as one service.
pub struct Engine {
    store: Store,
    presence: Arc<Presence>,
    campaigns: Arc<Campaigns>,
}

impl Engine {
    /// Starts the engine's tasks: the device workers consuming `events`, the presence and change
    /// writers, and the campaign runner. The caller aborts the tasks after [`Engine::drain`].
    pub fn start(
        config: EngineConfig,
        events: mpsc::Receiver<BrokerEvent<DeviceIdentity>>,
    ) -> (Arc<Self>, Vec<JoinHandle<()>>) {
        let (presence, presence_task) =
            Presence::spawn(config.store.clone(), Arc::clone(&config.clock));
        let (changes, changes_task) = Changes::spawn(config.store.clone());
        let devices = Devices::new(Parts {
            store: config.store.clone(),
            broker: config.broker,
            links: Arc::new(config.links),
            url_ttl: config.url_ttl,
            presence: Arc::clone(&presence),
            changes,
            clock: Arc::clone(&config.clock),
        });
        let devices_task = devices.spawn(events);
        let campaigns = Campaigns::new(config.store.clone(), devices, config.clock);
        let runner_task = Arc::clone(&campaigns).spawn(config.tick);
        let engine = Arc::new(Self {
            store: config.store,
            presence,
            campaigns,
        });
        let tasks = vec![devices_task, runner_task, presence_task, changes_task];
        (engine, tasks)
    }

    /// The store, with every device report and connect acknowledged before this call written
    /// (they are written behind, in batches): what is read from it is current.
    pub async fn store(&self) -> &Store {
        self.presence.flush().await;
        &self.store
    }

    /// Campaigns: create, pause, resume, cancel, and their devices.
    pub fn campaigns(&self) -> &Campaigns {
        &self.campaigns
    }

    /// Writes everything written behind; for a clean stop.
    pub async fn drain(&self) {
        self.presence.flush().await;
    }
}
