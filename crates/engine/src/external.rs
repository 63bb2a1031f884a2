//! External broker mode: this node is one of several `otter serve` processes sharing a database
//! and an MQTT broker. It subscribes to every dialect's upstream topics and turns what arrives
//! into the engine's `BrokerEvent`s, naming the device from the topic (the broker's ACL — Otter's
//! HTTP hooks or Mosquitto plugin — guarantees a device publishes only on its own topics).
//!
//! Who handles a message: filters that allow shared subscriptions are subscribed as
//! `$share/otter/…`, so the broker gives each message to one node. `$`-prefixed topics (Tencent's
//! `$ota/report/…`) cannot be shared on Mosquitto 2.0, so every node subscribes plainly and each
//! handles only the devices of its partition: `hash(product/device) mod live nodes`, with the live
//! nodes read from the database (heartbeats). When a node dies, the others take its partition
//! over once its heartbeat is stale; messages in between are lost, and the device's next report
//! or the campaign's timeout recovers them.

use crate::gate::DeviceIdentity;
use otter_core::{DeviceName, ProductId};
use otter_mqtt::BrokerEvent;
use otter_mqtt::external::{Received, Subscription};
use otter_protocol::{self as protocol, DeviceAddr, Dialect};
use otter_store::Store;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// How often a node beats, and how long without a beat before it counts as gone.
const HEARTBEAT: Duration = Duration::from_secs(2);
const NODE_TTL: Duration = Duration::from_secs(6);

/// The upstream topic filters of every dialect; shared where the topic allows it.
pub fn subscriptions(shared: bool) -> Vec<Subscription> {
    let any = DeviceAddr::new("+", "+");
    Dialect::ALL
        .iter()
        .flat_map(|d| protocol::upstream_topics(*d, &any))
        .collect::<HashSet<_>>()
        .into_iter()
        .map(|filter| Subscription {
            shared: shared && !filter.starts_with('$'),
            filter,
        })
        .collect()
}

/// This node's view of the live nodes, for partitioning plain-subscription messages.
pub struct Membership {
    pub me: String,
    live: RwLock<Vec<String>>,
}

impl Membership {
    pub fn new(me: String) -> Arc<Self> {
        Arc::new(Self {
            live: RwLock::new(vec![me.clone()]),
            me,
        })
    }

    /// Whether this node handles `device`'s messages that every node receives.
    pub fn owns(&self, device: &DeviceAddr) -> bool {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        owner(&live, device).is_none_or(|owner| *owner == self.me)
    }

    fn set_live(&self, mut live: Vec<String>) {
        if !live.contains(&self.me) {
            live.push(self.me.clone());
            live.sort();
        }
        let mut current = self.live.write().unwrap_or_else(|p| p.into_inner());
        if *current != live {
            info!(nodes = ?live, "live Otter nodes changed");
            *current = live;
        }
    }

    /// Beats into the store and refreshes the live set, forever.
    pub fn spawn_heartbeat(self: &Arc<Self>, store: Store) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                let now = otter_store::now_ms();
                let since = now - NODE_TTL.as_millis() as i64;
                match store.node_heartbeat(&me.me, now, since).await {
                    Ok(live) => me.set_live(live),
                    Err(e) => warn!(error = %e, "node heartbeat failed"),
                }
            }
        })
    }
}

/// The node among `live` (sorted, same on every node) that handles `device`.
fn owner<'a>(live: &'a [String], device: &DeviceAddr) -> Option<&'a String> {
    if live.is_empty() {
        return None;
    }
    let digest = Sha256::digest(format!("{}/{}", device.product, device.device).as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    live.get((u64::from_be_bytes(first) % live.len() as u64) as usize)
}

/// Turns received messages into engine events: names the device, drops what is not ours.
pub fn spawn_router(
    store: Store,
    membership: Arc<Membership>,
    mut received: mpsc::Receiver<Received>,
    events: mpsc::Sender<BrokerEvent<DeviceIdentity>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut dialects: HashMap<String, Dialect> = HashMap::new();
        let mut seen: HashSet<DeviceIdentity> = HashSet::new();
        while let Some(msg) = received.recv().await {
            let Some((_, _, addr)) = protocol::parse_up_topic(&msg.topic) else {
                debug!(topic = %msg.topic, "message on a topic that is no device's");
                continue;
            };
            // Alibaba's request topic carries answers too: this node hears Otter's own.
            if protocol::is_own_answer(&msg.topic, &msg.payload) {
                debug!(topic = %msg.topic, "Otter's own answer heard back, dropped");
                continue;
            }
            if msg.topic.starts_with('$') && !membership.owns(&addr) {
                continue;
            }
            let Some(id) = identity(&store, &mut dialects, &addr).await else {
                warn!(topic = %msg.topic, "message from an unknown product or device name");
                continue;
            };
            // The broker tells nodes nothing of connects: a device is online once it speaks.
            if seen.insert(id.clone())
                && events
                    .send(BrokerEvent::Connected(id.clone()))
                    .await
                    .is_err()
            {
                return;
            }
            let event = BrokerEvent::Message {
                from: id,
                topic: msg.topic,
                payload: msg.payload,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    })
}

/// The device a topic names, with its product's dialect (looked up once per product).
async fn identity(
    store: &Store,
    dialects: &mut HashMap<String, Dialect>,
    addr: &DeviceAddr,
) -> Option<DeviceIdentity> {
    let product = ProductId::parse(addr.product.as_str()).ok()?;
    let device = DeviceName::parse(addr.device.as_str()).ok()?;
    let dialect = match dialects.get(product.as_str()) {
        Some(d) => *d,
        None => {
            let d = store.product(&product).await.ok()?.dialect;
            dialects.insert(product.to_string(), d);
            d
        }
    };
    Some(DeviceIdentity {
        dialect,
        product,
        device,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_device_has_exactly_one_owner_and_owners_spread() {
        let live: Vec<String> = ["node-a", "node-b", "node-c"].map(String::from).to_vec();
        let nodes: Vec<Arc<Membership>> = live
            .iter()
            .map(|me| {
                let m = Membership::new(me.clone());
                m.set_live(live.clone());
                m
            })
            .collect();
        let mut per_node = [0usize; 3];
        for i in 0..3000 {
            let dev = DeviceAddr::new("P1", format!("dev{i}"));
            let owners: Vec<usize> = (0..3).filter(|n| nodes[*n].owns(&dev)).collect();
            assert_eq!(owners.len(), 1, "{dev:?}");
            per_node[owners[0]] += 1;
        }
        assert!(per_node.iter().all(|n| *n > 800), "{per_node:?}");
    }

    #[test]
    fn a_node_alone_owns_everything_and_always_counts_itself() {
        let m = Membership::new("solo".into());
        assert!(m.owns(&DeviceAddr::new("P", "d")));
        m.set_live(vec!["other".into()]);
        assert_eq!(*m.live.read().unwrap(), ["other", "solo"]);
    }

    /// On Alibaba's two-way request topic this node hears its own answers: they never reach
    /// the engine; the device's request does.
    #[tokio::test]
    async fn own_answers_on_the_request_topic_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("otter.db"))
            .await
            .unwrap();
        let product = ProductId::parse("a1Echo00001").unwrap();
        store
            .create_product(
                &product,
                Dialect::Aliyun,
                "echo",
                otter_core::VersionScheme::Semver,
            )
            .await
            .unwrap();
        let (received, rx) = mpsc::channel(8);
        let (tx, mut events) = mpsc::channel(8);
        let _router = spawn_router(store, Membership::new("solo".into()), rx, tx);
        let topic = "/ota/device/request/a1Echo00001/dev1";
        let answer = r#"{"code":"1000","data":{},"id":"0","message":"success"}"#;
        let request = r#"{"id":"0","params":{"version":"1.0.0"}}"#;
        for payload in [answer, request] {
            let msg = Received {
                topic: topic.into(),
                payload: bytes::Bytes::from(payload),
            };
            received.send(msg).await.unwrap();
        }
        assert!(matches!(
            events.recv().await,
            Some(BrokerEvent::Connected(_))
        ));
        match events.recv().await {
            Some(BrokerEvent::Message { payload, .. }) => assert_eq!(payload, request.as_bytes()),
            other => panic!("expected the request, got {other:?}"),
        }
    }

    #[test]
    fn filters_cover_every_dialect_and_dollar_topics_are_not_shared() {
        let subs = subscriptions(true);
        assert!(
            subs.iter()
                .any(|s| s.filter == "$ota/report/+/+" && !s.shared)
        );
        assert!(
            subs.iter()
                .any(|s| s.filter.starts_with("/ota/device/") && s.shared)
        );
        assert!(subs.iter().all(|s| s.filter.contains('+')));
        assert!(
            subs.iter()
                .any(|s| s.filter == "/ota/device/request/+/+" && s.shared)
        );
    }
}
