//! Who is connected and what each connection was granted.
//!
//! The MQTT engine hands our hooks a connection key at authentication time and
//! the same key once the session is up; this registry carries the [`Grant`]
//! from one to the other, tracks the one live connection per client id
//! (takeover semantics), and indexes receive topics so an in-process publish
//! finds its recipients without scanning every client.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Grant;

/// Grants not claimed by a session within this time are forgotten (the
/// handshake failed after authentication).
const PENDING_TTL: Duration = Duration::from_secs(120);

/// A connection that is online.
struct Online<K, I> {
    conn: K,
    identity: I,
    publish: HashSet<String>,
    receive: HashSet<String>,
    bucket: Bucket,
}

/// How many publishes a client may send: `per_sec` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLimit {
    pub per_sec: u32,
    pub burst: u32,
}

/// A token bucket of publishes (refilled lazily on each publish).
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limit: Option<PublishLimit>) -> Self {
        Self {
            tokens: limit.map_or(0.0, |l| f64::from(l.burst.max(1))),
            at: Instant::now(),
        }
    }

    /// Takes one token; false when the client is over its limit.
    fn take(&mut self, limit: PublishLimit, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * f64::from(limit.per_sec);
        self.tokens = (self.tokens + refill).min(f64::from(limit.burst.max(1)));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct State<K, I> {
    pending: HashMap<K, (Grant<I>, Instant)>,
    online: HashMap<String, Online<K, I>>,
    /// Receive topic -> client ids whose grant includes it.
    receivers: HashMap<String, HashSet<String>>,
}

/// Thread-safe registry keyed by the engine's per-connection key `K`.
pub(crate) struct Registry<K, I> {
    state: Mutex<State<K, I>>,
    /// Publish rate allowed per client; `None` means unlimited.
    limit: Option<PublishLimit>,
}

/// Result of a session coming online.
pub(crate) struct Arrival<I> {
    pub identity: I,
    /// Identity of an older connection with the same client id that this one
    /// replaced and whose disconnect has not been reported yet.
    pub replaced: Option<I>,
}

impl<K: Eq + Hash + Clone, I: Clone> Registry<K, I> {
    #[cfg(test)]
    pub fn new() -> Self {
        Self::with_limit(None)
    }

    pub fn with_limit(limit: Option<PublishLimit>) -> Self {
        Self {
            state: Mutex::new(State {
                pending: HashMap::new(),
                online: HashMap::new(),
                receivers: HashMap::new(),
            }),
            limit,
        }
    }

    /// Locks the state; a poisoned lock only means another hook panicked
    /// mid-update, and every update leaves the maps consistent, so go on.
    fn lock(&self) -> MutexGuard<'_, State<K, I>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Remembers the grant of a connection that passed authentication.
    pub fn authenticated(&self, conn: K, grant: Grant<I>) {
        let now = Instant::now();
        let mut state = self.lock();
        state
            .pending
            .retain(|_, (_, at)| now.duration_since(*at) < PENDING_TTL);
        state.pending.insert(conn, (grant, now));
    }

    /// Moves a connection's grant from pending to online.
    ///
    /// Returns `None` if the connection never authenticated through us.
    pub fn connected(&self, client_id: &str, conn: &K) -> Option<Arrival<I>> {
        let mut state = self.lock();
        let (grant, _) = state.pending.remove(conn)?;
        let replaced = state.take_online(client_id);
        let identity = grant.identity.clone();
        for topic in &grant.receive_topics {
            state
                .receivers
                .entry(topic.clone())
                .or_default()
                .insert(client_id.to_owned());
        }
        state.online.insert(
            client_id.to_owned(),
            Online {
                conn: conn.clone(),
                identity: grant.identity,
                publish: grant.publish_topics.into_iter().collect(),
                receive: grant.receive_topics.into_iter().collect(),
                bucket: Bucket::full(self.limit),
            },
        );
        Some(Arrival { identity, replaced })
    }

    /// Forgets a connection that ended, if it is still the live one for its
    /// client id; returns its identity. A connection already replaced by a
    /// newer one yields `None` (its disconnect was reported at takeover).
    pub fn disconnected(&self, client_id: &str, conn: &K) -> Option<I> {
        let mut state = self.lock();
        state.pending.remove(conn);
        if state.online.get(client_id).is_some_and(|o| &o.conn == conn) {
            state.take_online(client_id)
        } else {
            None
        }
    }

    /// The identity of `conn` if it is live, within its publish rate, and may publish to `topic`.
    pub fn may_publish(&self, client_id: &str, conn: &K, topic: &str) -> Result<I, Denied<I>> {
        let mut state = self.lock();
        let Some(o) = state.online.get_mut(client_id).filter(|o| &o.conn == conn) else {
            return Err(Denied::NotOnline);
        };
        if let Some(limit) = self.limit
            && !o.bucket.take(limit, Instant::now())
        {
            return Err(Denied::Flooding(o.identity.clone()));
        }
        if o.publish.contains(topic) {
            Ok(o.identity.clone())
        } else {
            Err(Denied::Topic(o.identity.clone()))
        }
    }

    /// Whether `conn` is live and `topic` is one of its receive topics.
    pub fn may_receive(&self, client_id: &str, conn: &K, topic: &str) -> bool {
        let state = self.lock();
        state
            .online
            .get(client_id)
            .is_some_and(|o| &o.conn == conn && o.receive.contains(topic))
    }

    /// Client ids that receive `topic`.
    pub fn receivers(&self, topic: &str) -> Vec<String> {
        let state = self.lock();
        state
            .receivers
            .get(topic)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Why a publish was refused.
pub(crate) enum Denied<I> {
    /// The client is live but the topic is not granted.
    Topic(I),
    /// The connection is not (or no longer) the live one.
    NotOnline,
    /// The client publishes faster than its limit.
    Flooding(I),
}

impl<K, I> State<K, I> {
    /// Removes the online entry of `client_id` and its receive index entries.
    fn take_online(&mut self, client_id: &str) -> Option<I> {
        let old = self.online.remove(client_id)?;
        for topic in &old.receive {
            if let Some(ids) = self.receivers.get_mut(topic) {
                ids.remove(client_id);
                if ids.is_empty() {
                    self.receivers.remove(topic);
                }
            }
        }
        Some(old.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(id: &str, publish: &[&str], receive: &[&str]) -> Grant<String> {
        Grant {
            identity: id.to_owned(),
            publish_topics: publish.iter().map(|t| (*t).to_owned()).collect(),
            receive_topics: receive.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn takeover_reports_old_identity_once() {
        let reg: Registry<u32, String> = Registry::new();
        reg.authenticated(1, grant("a1", &["up"], &["down"]));
        let first = reg.connected("a", &1).expect("pending grant");
        assert_eq!(first.identity, "a1");
        assert!(first.replaced.is_none());

        reg.authenticated(2, grant("a2", &["up"], &["down"]));
        let second = reg.connected("a", &2).expect("pending grant");
        assert_eq!(second.replaced.as_deref(), Some("a1"));
        // The old connection's late disconnect is not reported again.
        assert_eq!(reg.disconnected("a", &1), None);
        assert_eq!(reg.receivers("down"), vec!["a".to_owned()]);
        assert_eq!(reg.disconnected("a", &2).as_deref(), Some("a2"));
        assert!(reg.receivers("down").is_empty());
    }

    #[test]
    fn publish_and_receive_checks() {
        let reg: Registry<u32, String> = Registry::new();
        reg.authenticated(7, grant("d", &["up"], &["down"]));
        assert!(reg.connected("d", &7).is_some());
        assert!(reg.may_publish("d", &7, "up").is_ok());
        assert!(matches!(
            reg.may_publish("d", &7, "down"),
            Err(Denied::Topic(_))
        ));
        assert!(matches!(
            reg.may_publish("d", &8, "up"),
            Err(Denied::NotOnline)
        ));
        assert!(reg.may_receive("d", &7, "down"));
        assert!(!reg.may_receive("d", &7, "up"));
        assert!(!reg.may_receive("d", &8, "down"));
    }

    #[test]
    fn publishes_beyond_the_rate_are_refused() {
        let limit = PublishLimit {
            per_sec: 10,
            burst: 3,
        };
        let reg: Registry<u32, String> = Registry::with_limit(Some(limit));
        reg.authenticated(1, grant("d", &["up"], &[]));
        reg.connected("d", &1).unwrap();
        for _ in 0..3 {
            assert!(reg.may_publish("d", &1, "up").is_ok());
        }
        assert!(matches!(
            reg.may_publish("d", &1, "up"),
            Err(Denied::Flooding(_))
        ));
        std::thread::sleep(Duration::from_millis(150));
        assert!(reg.may_publish("d", &1, "up").is_ok(), "the bucket refills");
    }

    #[test]
    fn unknown_connection_is_ignored() {
        let reg: Registry<u32, String> = Registry::new();
        assert!(reg.connected("x", &1).is_none());
        assert_eq!(reg.disconnected("x", &1), None);
    }
}
