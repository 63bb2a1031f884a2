//! The little state a simulated device shares with the [`super::Fleet`] handle: its version,
//! counters and connection flag, behind one small mutex per device (read by snapshots, written
//! by the device's task).

use std::sync::{Mutex, MutexGuard};

use otter_protocol::{DeviceAddr, Dialect};

use super::{DeviceStatus, Outcome};

/// One device's observable state.
pub(super) struct Cell {
    pub dialect: Dialect,
    pub addr: DeviceAddr,
    live: Mutex<Live>,
}

struct Live {
    version: String,
    pushes: u32,
    offers: u32,
    connected: bool,
    connects: u32,
    upgrading: Option<String>,
    last_outcome: Option<Outcome>,
    last_error: Option<String>,
}

impl Cell {
    pub fn new(dialect: Dialect, addr: DeviceAddr, version: String) -> Self {
        Cell {
            dialect,
            addr,
            live: Mutex::new(Live {
                version,
                pushes: 0,
                offers: 0,
                connected: false,
                connects: 0,
                upgrading: None,
                last_outcome: None,
                last_error: None,
            }),
        }
    }

    /// The lock; a poisoned one is still consistent (every write is a plain assignment).
    fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> DeviceStatus {
        let l = self.live();
        DeviceStatus {
            dialect: self.dialect,
            product: self.addr.product.clone(),
            device: self.addr.device.clone(),
            version: l.version.clone(),
            pushes: l.pushes,
            offers: l.offers,
            connected: l.connected,
            connects: l.connects,
            upgrading: l.upgrading.clone(),
            last_outcome: l.last_outcome.clone(),
            last_error: l.last_error.clone(),
        }
    }

    pub fn version(&self) -> String {
        self.live().version.clone()
    }

    /// Switches to `version`, returning the one it replaces.
    pub fn set_version(&self, version: &str) -> String {
        std::mem::replace(&mut self.live().version, version.to_owned())
    }

    pub fn pushes(&self) -> u32 {
        self.live().pushes
    }

    pub fn count_push(&self) {
        let mut l = self.live();
        l.pushes = l.pushes.saturating_add(1);
    }

    pub fn count_offer(&self) {
        let mut l = self.live();
        l.offers = l.offers.saturating_add(1);
    }

    pub fn is_connected(&self) -> bool {
        self.live().connected
    }

    pub fn connected(&self) {
        let mut l = self.live();
        l.connected = true;
        l.connects = l.connects.saturating_add(1);
        l.last_error = None;
    }

    pub fn disconnected(&self, error: Option<String>) {
        let mut l = self.live();
        l.connected = false;
        if error.is_some() {
            l.last_error = error;
        }
    }

    pub fn upgrading(&self, version: Option<String>) {
        self.live().upgrading = version;
    }

    pub fn finished(&self, outcome: Outcome) {
        let mut l = self.live();
        l.upgrading = None;
        l.last_outcome = Some(outcome);
    }
}
