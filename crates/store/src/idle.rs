//! Devices known to have no live upgrade, so that the engine's question for every device
//! message ("is there a live upgrade of this module?") costs no query for an idle fleet.
//!
//! Only SQLite stores keep one: the process owns the database file, so every write that can
//! make an upgrade live (a campaign's creation, a planner transition such as a retry) goes
//! through this `Store`, which brackets it with [`IdleDevices::starting_upgrades`]. Each such
//! write moves the generation on when it begins and when it ends, which forgets every answer
//! remembered before; an answer is only remembered if no such write began or ended while the
//! query ran. Device-driven updates never make an upgrade live, so they leave the cache alone.

use otter_core::{DeviceName, Module, ProductId};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

type Key = (ProductId, DeviceName, Module);

/// Far more than any fleet's device modules; past it the map starts over.
const MAX_ENTRIES: usize = 1 << 20;

#[derive(Debug, Default)]
pub(crate) struct IdleDevices {
    generation: AtomicU64,
    /// Writes that may start upgrades, in flight.
    writers: AtomicU64,
    /// Device → the generation in which it was seen idle.
    idle: Mutex<HashMap<Key, u64>>,
}

/// Held across a write that may make upgrades live.
pub(crate) struct Starting<'a>(&'a IdleDevices);

impl IdleDevices {
    pub(crate) fn starting_upgrades(&self) -> Starting<'_> {
        self.writers.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        Starting(self)
    }

    /// `None` when the device is known idle; else the generation to pass to `remember` after
    /// asking the database.
    pub(crate) fn ask(&self, key: &Key) -> Option<u64> {
        let generation = self.generation.load(Ordering::SeqCst);
        let known = self.lock().get(key) == Some(&generation);
        match known && self.writers.load(Ordering::SeqCst) == 0 {
            true => None,
            false => Some(generation),
        }
    }

    /// Remembers that the database found no live upgrade, if nothing changed since `asked`.
    pub(crate) fn remember(&self, key: Key, asked: u64) {
        let mut idle = self.lock();
        let unchanged = self.writers.load(Ordering::SeqCst) == 0
            && self.generation.load(Ordering::SeqCst) == asked;
        if unchanged {
            if idle.len() >= MAX_ENTRIES {
                idle.clear();
            }
            idle.insert(key, asked);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, u64>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        self.0.generation.fetch_add(1, Ordering::SeqCst);
        self.0.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        (
            ProductId::parse("P").unwrap(),
            DeviceName::parse("d").unwrap(),
            Module::default(),
        )
    }

    #[test]
    fn an_idle_answer_is_kept_until_a_write_may_start_upgrades() {
        let idle = IdleDevices::default();
        let asked = idle.ask(&key()).expect("unknown devices are asked");
        idle.remember(key(), asked);
        assert_eq!(idle.ask(&key()), None, "known idle");
        drop(idle.starting_upgrades());
        assert!(
            idle.ask(&key()).is_some(),
            "forgotten after a campaign write"
        );
    }

    #[test]
    fn an_answer_racing_a_write_is_not_kept() {
        let idle = IdleDevices::default();
        let asked = idle.ask(&key()).unwrap();
        let write = idle.starting_upgrades();
        idle.remember(key(), asked);
        assert!(idle.ask(&key()).is_some(), "a write in flight: always ask");
        drop(write);
        assert!(idle.ask(&key()).is_some(), "the racing answer was not kept");
        // Asked during the write, answered after it ended: also stale.
        let during = idle.starting_upgrades();
        let asked = idle.ask(&key()).unwrap();
        drop(during);
        idle.remember(key(), asked);
        assert!(idle.ask(&key()).is_some());
    }
}
