//! Who is connected and what each connection was granted.
//!
//! The MQTT engine hands our hooks a connection key at authentication time and
//! the same key once the session is up; this registry carries the [`Grant`]
//! from one to the other, tracks the one live session per *identity* (the
//! device the gate authenticated, not the client id it presented: vendor
//! client ids are partly free text, so two devices can present the same one),
//! and indexes receive topics so an in-process publish finds its recipients
//! without scanning every client.
//!
//! The engine itself replaces sessions by client id. So that a login can only
//! ever replace its own device's session, a login whose client id is held by
//! another identity's live session is refused ([`Registry::authenticated`]),
//! and a login of an identity already online under another client id replaces
//! that session ([`Arrival::kick`]).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::Grant;

/// Grants not claimed by a session within this time are forgotten (the
/// handshake failed after authentication).
const PENDING_TTL: Duration = Duration::from_secs(120);

/// How long an authenticated login that has not come online yet holds its client id against
/// other identities: a handshake completes in moments, and one that failed after
/// authentication must not hold the client id for the whole [`PENDING_TTL`].
const PENDING_HOLD: Duration = Duration::from_secs(10);

/// A connection that is online.
struct Online<K> {
    conn: K,
    client_id: String,
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

struct Pending<I> {
    client_id: String,
    grant: Grant<I>,
    at: Instant,
}

struct State<K, I> {
    pending: HashMap<K, Pending<I>>,
    /// The live session of each identity.
    online: HashMap<I, Online<K>>,
    /// Client id -> the identity whose live session presented it.
    clients: HashMap<String, I>,
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
pub(crate) struct Arrival<K, I> {
    pub identity: I,
    /// Identities whose live session this one replaced and whose disconnect has not been
    /// reported yet: the same identity's older session, or (only when two logins raced past
    /// [`Registry::authenticated`]) the session the engine took over by client id.
    pub replaced: Vec<I>,
    /// The engine connection of this identity's older session under *another* client id: the
    /// engine does not know it is replaced, so the caller disconnects it.
    pub kick: Option<K>,
}

/// A login refused because its client id is another identity's live session.
#[derive(Debug)]
pub(crate) struct ClientIdTaken<I>(pub I);

impl<K: Eq + Hash + Clone, I: Eq + Hash + Clone> Registry<K, I> {
    #[cfg(test)]
    pub fn new() -> Self {
        Self::with_limit(None)
    }

    pub fn with_limit(limit: Option<PublishLimit>) -> Self {
        Self {
            state: Mutex::new(State {
                pending: HashMap::new(),
                online: HashMap::new(),
                clients: HashMap::new(),
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

    /// Remembers the grant of a connection that passed authentication, unless its client id
    /// is held by another identity's live (or authenticating) session: the engine would
    /// replace that session, and a login may only replace its own device's session.
    pub fn authenticated(
        &self,
        conn: K,
        client_id: &str,
        grant: Grant<I>,
    ) -> Result<(), ClientIdTaken<I>> {
        let now = Instant::now();
        let mut state = self.lock();
        state
            .pending
            .retain(|_, p| now.duration_since(p.at) < PENDING_TTL);
        if let Some(holder) = state.clients.get(client_id)
            && *holder != grant.identity
        {
            return Err(ClientIdTaken(holder.clone()));
        }
        if let Some(other) = state.pending.iter().find_map(|(k, p)| {
            (k != &conn
                && p.client_id == client_id
                && p.grant.identity != grant.identity
                && now.duration_since(p.at) < PENDING_HOLD)
                .then(|| p.grant.identity.clone())
        }) {
            return Err(ClientIdTaken(other));
        }
        state.pending.insert(
            conn,
            Pending {
                client_id: client_id.to_owned(),
                grant,
                at: now,
            },
        );
        Ok(())
    }

    /// Moves a connection's grant from pending to online.
    ///
    /// Returns `None` if the connection never authenticated through us.
    pub fn connected(&self, client_id: &str, conn: &K) -> Option<Arrival<K, I>> {
        let mut state = self.lock();
        let Pending { grant, .. } = state.pending.remove(conn)?;
        let identity = grant.identity.clone();
        let mut replaced = Vec::new();
        let mut kick = None;
        if let Some(old) = state.take_online(&identity) {
            if old.client_id != client_id {
                kick = Some(old.conn);
            }
            replaced.push(identity.clone());
        }
        // The engine has already replaced whatever session held this client id.
        if let Some(holder) = state.clients.get(client_id).cloned()
            && state.take_online(&holder).is_some()
        {
            replaced.push(holder);
        }
        for topic in &grant.receive_topics {
            state
                .receivers
                .entry(topic.clone())
                .or_default()
                .insert(client_id.to_owned());
        }
        state.clients.insert(client_id.to_owned(), identity.clone());
        state.online.insert(
            identity.clone(),
            Online {
                conn: conn.clone(),
                client_id: client_id.to_owned(),
                publish: grant.publish_topics.into_iter().collect(),
                receive: grant.receive_topics.into_iter().collect(),
                bucket: Bucket::full(self.limit),
            },
        );
        Some(Arrival {
            identity,
            replaced,
            kick,
        })
    }

    /// Forgets a connection that ended, if it is still the live one for its
    /// identity; returns its identity. A connection already replaced by a
    /// newer one yields `None` (its disconnect was reported at takeover).
    pub fn disconnected(&self, client_id: &str, conn: &K) -> Option<I> {
        let mut state = self.lock();
        state.pending.remove(conn);
        let identity = state.live(client_id, conn)?;
        state.take_online(&identity);
        Some(identity)
    }

    /// The identity of `conn` if it is live, within its publish rate, and may publish to `topic`.
    pub fn may_publish(&self, client_id: &str, conn: &K, topic: &str) -> Result<I, Denied<I>> {
        let mut state = self.lock();
        let Some(identity) = state.live(client_id, conn) else {
            return Err(Denied::NotOnline);
        };
        let Some(o) = state.online.get_mut(&identity) else {
            return Err(Denied::NotOnline);
        };
        if let Some(limit) = self.limit
            && !o.bucket.take(limit, Instant::now())
        {
            return Err(Denied::Flooding(identity));
        }
        if o.publish.contains(topic) {
            Ok(identity)
        } else {
            Err(Denied::Topic(identity))
        }
    }

    /// Whether `conn` is live and `topic` is one of its receive topics.
    pub fn may_receive(&self, client_id: &str, conn: &K, topic: &str) -> bool {
        let state = self.lock();
        state
            .live(client_id, conn)
            .and_then(|identity| state.online.get(&identity))
            .is_some_and(|o| o.receive.contains(topic))
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

impl<K: Eq, I: Eq + Hash + Clone> State<K, I> {
    /// The identity of `conn` (presenting `client_id`) if it is its identity's live session.
    fn live(&self, client_id: &str, conn: &K) -> Option<I> {
        let identity = self.clients.get(client_id)?;
        self.online
            .get(identity)
            .is_some_and(|o| &o.conn == conn)
            .then(|| identity.clone())
    }

    /// Removes the live session of `identity`, its client id and its receive index entries.
    fn take_online(&mut self, identity: &I) -> Option<Online<K>> {
        let old = self.online.remove(identity)?;
        if self.clients.get(&old.client_id) == Some(identity) {
            self.clients.remove(&old.client_id);
        }
        for topic in &old.receive {
            if let Some(ids) = self.receivers.get_mut(topic) {
                ids.remove(&old.client_id);
                if ids.is_empty() {
                    self.receivers.remove(topic);
                }
            }
        }
        Some(old)
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
        reg.authenticated(1, "a", grant("a", &["up"], &["down"]))
            .unwrap();
        let first = reg.connected("a", &1).expect("pending grant");
        assert_eq!(first.identity, "a");
        assert!(first.replaced.is_empty());

        reg.authenticated(2, "a", grant("a", &["up"], &["down"]))
            .unwrap();
        let second = reg.connected("a", &2).expect("pending grant");
        assert_eq!(second.replaced, vec!["a".to_owned()]);
        assert!(second.kick.is_none(), "the engine replaced it by client id");
        // The old connection's late disconnect is not reported again.
        assert_eq!(reg.disconnected("a", &1), None);
        assert_eq!(reg.receivers("down"), vec!["a".to_owned()]);
        assert_eq!(reg.disconnected("a", &2).as_deref(), Some("a"));
        assert!(reg.receivers("down").is_empty());
    }

    #[test]
    fn publish_and_receive_checks() {
        let reg: Registry<u32, String> = Registry::new();
        reg.authenticated(7, "d", grant("d", &["up"], &["down"]))
            .unwrap();
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
        reg.authenticated(1, "d", grant("d", &["up"], &[])).unwrap();
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
    fn a_client_id_held_by_another_identity_is_refused() {
        let reg: Registry<u32, String> = Registry::new();
        reg.authenticated(1, "shared", grant("dev1", &["up1"], &["down1"]))
            .unwrap();
        reg.connected("shared", &1).unwrap();
        let taken = reg
            .authenticated(2, "shared", grant("dev2", &["up2"], &["down2"]))
            .unwrap_err();
        assert_eq!(taken.0, "dev1");
        assert!(reg.connected("shared", &2).is_none(), "no grant was kept");
        assert!(reg.may_publish("shared", &1, "up1").is_ok(), "dev1 stays");
        // Once dev1 is gone, the client id is free again.
        assert_eq!(reg.disconnected("shared", &1).as_deref(), Some("dev1"));
        reg.authenticated(3, "shared", grant("dev2", &["up2"], &["down2"]))
            .unwrap();
        assert_eq!(reg.connected("shared", &3).unwrap().identity, "dev2");
    }

    #[test]
    fn an_identity_under_a_new_client_id_replaces_its_old_session() {
        let reg: Registry<u32, String> = Registry::new();
        reg.authenticated(1, "id|ts=1|", grant("dev1", &["up"], &["down"]))
            .unwrap();
        reg.connected("id|ts=1|", &1).unwrap();
        reg.authenticated(2, "id|ts=2|", grant("dev1", &["up"], &["down"]))
            .unwrap();
        let arrival = reg.connected("id|ts=2|", &2).unwrap();
        assert_eq!(arrival.replaced, vec!["dev1".to_owned()]);
        assert_eq!(
            arrival.kick,
            Some(1),
            "the old session is the caller's to end"
        );
        assert!(reg.may_publish("id|ts=1|", &1, "up").is_err());
        assert!(reg.may_publish("id|ts=2|", &2, "up").is_ok());
        assert_eq!(reg.receivers("down"), vec!["id|ts=2|".to_owned()]);
        assert_eq!(reg.disconnected("id|ts=1|", &1), None);
    }

    #[test]
    fn unknown_connection_is_ignored() {
        let reg: Registry<u32, String> = Registry::new();
        assert!(reg.connected("x", &1).is_none());
        assert_eq!(reg.disconnected("x", &1), None);
    }
}
