//! Failed-login throttling. What is slowed is wrong secrets, never a right one: failures are
//! counted per (client address, device) and per unknown identity, and once a key has used up
//! its failures for the window each further login under it waits `penalty`, one at a time,
//! before it is checked — a right secret then still connects. Only a client address over the
//! per-address ceiling (far above what a fleet behind one NAT address fails) is refused at once
//! (CONNACK 5) without touching the store. The counting is pure bookkeeping with an injected
//! `now`, so it is tested without sleeping; memory stays bounded however many addresses an
//! attacker uses.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits of the failed-login throttle; a limit of 0 turns that side off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Ceiling of failed logins per client IP address per window, beyond which the address is
    /// refused outright until the window ends. Far above what a fleet behind one NAT address
    /// fails, so it only stops floods.
    pub per_address: u32,
    /// Failed logins per window allowed for one device from one address, and for one unknown
    /// identity (a device or product that does not exist), before further logins under that
    /// key are slowed.
    pub per_device: u32,
    pub window: Duration,
    /// How long a slowed login waits before it is checked (one at a time per key).
    pub penalty: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_address: 1000,
            per_device: 30,
            window: Duration::from_secs(60),
            penalty: Duration::from_secs(1),
        }
    }
}

/// Most keys tracked per side; beyond it, finished windows are swept, and if that is not
/// enough the oldest half is dropped (an attacker with that many addresses gains little).
const MAX_KEYS: usize = 100_000;

struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counts per key in fixed windows.
pub struct Throttle<K> {
    limit: u32,
    window: Duration,
    keys: Mutex<HashMap<K, Window>>,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// True while `key` has used up its failures for the current window.
    pub fn blocked(&self, key: &K, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(key).is_some_and(|w| {
            now.duration_since(w.started) < self.window && w.failures >= self.limit
        })
    }

    /// Counts one failure; returns true when this failure reaches the limit (log it once).
    pub fn fail(&self, key: &K, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            self.shrink(&mut keys, now);
        }
        let window = keys.entry(key.clone()).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(window.started) >= self.window {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
        window.failures == self.limit
    }

    fn shrink(&self, keys: &mut HashMap<K, Window>, now: Instant) {
        keys.retain(|_, w| now.duration_since(w.started) < self.window);
        if keys.len() >= MAX_KEYS {
            let mut starts: Vec<Instant> = keys.values().map(|w| w.started).collect();
            starts.sort_unstable();
            let median = starts[starts.len() / 2];
            keys.retain(|_, w| w.started > median);
        }
    }
}

/// Serialises slowed logins per key: each waits `penalty` while holding its key's turn, so
/// wrong secrets under one key are checked at most once per `penalty`, however many arrive
/// at once.
pub struct Slowdown<K> {
    penalty: Duration,
    turns: Mutex<HashMap<K, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

impl<K: Eq + Hash + Clone> Slowdown<K> {
    pub fn new(penalty: Duration) -> Self {
        Self {
            penalty,
            turns: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for `key`'s turn, then `penalty`.
    pub async fn wait(&self, key: &K) {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
            turns.entry(key.clone()).or_default().clone()
        };
        {
            let _mine = turn.lock().await;
            tokio::time::sleep(self.penalty).await;
        }
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: the map's and ours; nobody else waits for this key.
        if std::sync::Arc::strong_count(&turn) == 2 {
            turns.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_until_the_window_ends() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let start = Instant::now();
        assert!(!t.fail(&"a", start));
        assert!(!t.fail(&"a", start));
        assert!(!t.blocked(&"a", start));
        assert!(
            t.fail(&"a", start),
            "the failure that reaches the limit is reported"
        );
        assert!(t.blocked(&"a", start + Duration::from_secs(59)));
        assert!(!t.blocked(&"b", start), "other keys are unaffected");
        assert!(!t.blocked(&"a", start + Duration::from_secs(60)));
        assert!(
            !t.fail(&"a", start + Duration::from_secs(61)),
            "a new window starts"
        );
    }

    #[test]
    fn zero_turns_it_off() {
        let t = Throttle::new(0, Duration::from_secs(60));
        let now = Instant::now();
        for _ in 0..10 {
            t.fail(&1, now);
        }
        assert!(!t.blocked(&1, now));
    }

    #[test]
    fn memory_stays_bounded() {
        let t = Throttle::new(5, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..(MAX_KEYS + 10) {
            t.fail(&i, now + Duration::from_millis(i as u64));
        }
        assert!(t.keys.lock().unwrap().len() <= MAX_KEYS);
    }
}
