//! Devices on an external broker are judged by Otter: the EMQX-shaped HTTP hooks
//! (`/api/v1/broker/authn`, `/authz`) called directly, and Debian's real `mosquitto` with the
//! otter-mosquitto-auth plugin loaded, driven by MQTT devices and an Otter-node superuser.
//!
//! otter-testkit builds the plugin by running `cargo build -p otter-mosquitto-auth` into this
//! test binary's own target directory (found from the test executable's path, so
//! `CARGO_TARGET_DIR` and profiles just work); Mosquitto is `/usr/sbin/mosquitto` (Debian's
//! package, installed by .ci/run), or `OTTER_TEST_MOSQUITTO` when set.

use crate::common::*;
use otter_protocol::{self as protocol, DeviceAddr, Dialect};
use otter_testkit::mosquitto::Mosquitto;
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;

const SECRET: &str = "broker-secret-for-tests-0123456789";
const TS: u64 = 1_617_773_607_348;

async fn server() -> TestServer {
    start_with(|c| c.broker_secret = Some(SECRET.into())).await
}

/// Posts `body` to a broker hook with `secret` as the bearer token.
async fn hook(server: &TestServer, name: &str, secret: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = server
        .client
        .post(server.url(&format!("/api/v1/broker/{name}")))
        .json(&body);
    if let Some(secret) = secret {
        req = req.bearer_auth(secret);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn authn_body(creds: &protocol::Credentials) -> Value {
    json!({
        "clientid": creds.client_id,
        "username": creds.username,
        "password": String::from_utf8(creds.password.clone().unwrap_or_default()).unwrap(),
        "peerhost": "10.9.8.7",
    })
}

fn authz_body(creds: &protocol::Credentials, action: &str, topic: &str) -> Value {
    json!({
        "clientid": creds.client_id,
        "username": creds.username,
        "topic": topic,
        "action": action,
        "peerhost": "10.9.8.7",
    })
}

const ALLOW: fn() -> Value = || json!({ "result": "allow", "is_superuser": false });
const DENY: fn() -> Value = || json!({ "result": "deny", "is_superuser": false });

#[tokio::test]
async fn hooks_are_off_without_a_broker_secret() {
    let server = start().await;
    let (status, _) = hook(&server, "authn", Some(SECRET), json!({"clientid": "x"})).await;
    assert_eq!(status, 404);
    // The admin token does not open them either.
    let token = server.token.clone();
    let (status, _) = hook(&server, "authz", Some(&token), json!({"clientid": "x"})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn hooks_need_the_broker_secret() {
    let server = server().await;
    let secret = server.device(Dialect::Aliyun, "a1HookSec01", "dev1").await;
    let creds = protocol::sign(
        Dialect::Aliyun,
        &DeviceAddr::new("a1HookSec01", "dev1"),
        &secret,
        TS,
    );
    let token = server.token.clone();
    for presented in [None, Some("wrong"), Some(token.as_str()), Some("")] {
        let (status, _) = hook(&server, "authn", presented, authn_body(&creds)).await;
        assert_eq!(status, 401, "authn with {presented:?}");
        let topic =
            &protocol::upstream_topics(Dialect::Aliyun, &DeviceAddr::new("a1HookSec01", "dev1"))[0];
        let (status, _) = hook(
            &server,
            "authz",
            presented,
            authz_body(&creds, "publish", topic),
        )
        .await;
        assert_eq!(status, 401, "authz with {presented:?}");
    }
    // The secret is checked before the body is read; a bad body with it is a client error.
    for (secret, status) in [(None, 401), (Some(SECRET), 400)] {
        let mut req = server
            .client
            .post(server.url("/api/v1/broker/authn"))
            .header("content-type", "application/json")
            .body("{not json");
        if let Some(secret) = secret {
            req = req.bearer_auth(secret);
        }
        assert_eq!(req.send().await.unwrap().status().as_u16(), status);
    }
    // The API's own routes still want the admin token, not the broker secret.
    let resp = server
        .client
        .get(server.url("/api/v1/products"))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn authn_runs_the_gate_for_every_vendor_scheme() {
    let server = server().await;
    for (dialect, product) in [
        (Dialect::Tencent, "HOOKTC0001"),
        (Dialect::Aliyun, "a1HookAuth1"),
        (Dialect::Enos, "enosHookPK"),
    ] {
        let secret = server.device(dialect, product, "dev1").await;
        let addr = DeviceAddr::new(product, "dev1");
        let good = protocol::sign(dialect, &addr, &secret, TS);
        let (status, v) = hook(&server, "authn", Some(SECRET), authn_body(&good)).await;
        assert_eq!((status, v), (200, ALLOW()), "{dialect:?}");

        let bad = protocol::sign(dialect, &addr, "not-the-secret", TS);
        let (status, v) = hook(&server, "authn", Some(SECRET), authn_body(&bad)).await;
        assert_eq!((status, v), (200, DENY()), "{dialect:?} wrong secret");

        let ghost = protocol::sign(dialect, &DeviceAddr::new(product, "ghost"), &secret, TS);
        let (status, v) = hook(&server, "authn", Some(SECRET), authn_body(&ghost)).await;
        assert_eq!((status, v), (200, DENY()), "{dialect:?} unknown device");
    }
    // Nonsense logins are refused, not errors.
    for body in [
        json!({}),
        json!({"clientid": "c", "username": "u", "password": "p"}),
        json!({"clientid": "c", "username": null, "password": null, "peerhost": "not-an-ip"}),
    ] {
        let (status, v) = hook(&server, "authn", Some(SECRET), body).await;
        assert_eq!((status, v), (200, DENY()));
    }
}

#[tokio::test]
async fn otter_nodes_log_in_with_the_broker_secret_as_superusers() {
    let server = server().await;
    let node = |client: &str, password: &str| json!({"clientid": client, "username": "otter-node", "password": password, "peerhost": "10.0.0.1"});
    let (status, v) = hook(
        &server,
        "authn",
        Some(SECRET),
        node("otter-node-a1", SECRET),
    )
    .await;
    assert_eq!(
        (status, v),
        (200, json!({"result": "allow", "is_superuser": true}))
    );
    for body in [
        node("otter-node-a1", "wrong"),
        node("otter-node-a1", ""),
        node("someone-else", SECRET),
        json!({"clientid": "otter-node-a1", "username": "otter-node"}),
    ] {
        let (status, v) = hook(&server, "authn", Some(SECRET), body.clone()).await;
        assert_eq!((status, v), (200, DENY()), "{body}");
    }
    // A node may publish and subscribe anywhere, wildcards included.
    for (action, topic) in [
        ("publish", "/ota/device/upgrade/a1X/dev9"),
        ("subscribe", "#"),
    ] {
        let body = json!({"clientid": "otter-node-a1", "username": "otter-node", "topic": topic, "action": action});
        let (status, v) = hook(&server, "authz", Some(SECRET), body).await;
        assert_eq!((status, v), (200, json!({"result": "allow"})));
    }
}

#[tokio::test]
async fn authz_allows_only_the_devices_own_topics() {
    let server = server().await;
    let secret_a = server.device(Dialect::Aliyun, "a1HookAcl01", "devA").await;
    server.device(Dialect::Aliyun, "a1HookAcl01", "devB").await;
    let (a, b) = (
        DeviceAddr::new("a1HookAcl01", "devA"),
        DeviceAddr::new("a1HookAcl01", "devB"),
    );
    // No password needed: authz runs on connections the broker already authenticated.
    let mut creds = protocol::sign(Dialect::Aliyun, &a, &secret_a, TS);
    creds.password = None;
    let allow = json!({"result": "allow"});
    let deny = json!({"result": "deny"});
    let check = async |action: &str, topic: &str| {
        let (status, v) = hook(
            &server,
            "authz",
            Some(SECRET),
            authz_body(&creds, action, topic),
        )
        .await;
        assert_eq!(status, 200);
        v
    };
    // Alibaba's request topic goes both ways: the device publishes its request and subscribes
    // to the answer on it.
    let two_way = |topic: &str| {
        if protocol::two_way(topic) {
            &allow
        } else {
            &deny
        }
    };
    for topic in protocol::upstream_topics(Dialect::Aliyun, &a) {
        assert_eq!(check("publish", &topic).await, allow, "publish {topic}");
        assert_eq!(
            &check("subscribe", &topic).await,
            two_way(&topic),
            "subscribe {topic}"
        );
    }
    for topic in protocol::downstream_topics(Dialect::Aliyun, &a) {
        assert_eq!(check("subscribe", &topic).await, allow, "subscribe {topic}");
        assert_eq!(
            &check("publish", &topic).await,
            two_way(&topic),
            "publish {topic}"
        );
        assert_eq!(check("all", &topic).await, deny, "all {topic}");
    }
    assert!(protocol::two_way("/ota/device/request/a1HookAcl01/devA"));
    for topic in protocol::upstream_topics(Dialect::Aliyun, &b) {
        assert_eq!(check("publish", &topic).await, deny, "publish {topic}");
    }
    for topic in protocol::downstream_topics(Dialect::Aliyun, &b) {
        assert_eq!(check("subscribe", &topic).await, deny, "subscribe {topic}");
    }
    let own = &protocol::downstream_topics(Dialect::Aliyun, &a)[0];
    let wildcard = own
        .rsplit_once('/')
        .map(|(head, _)| format!("{head}/+"))
        .unwrap();
    for filter in ["#", "/ota/#", wildcard.as_str()] {
        assert_eq!(check("subscribe", filter).await, deny, "subscribe {filter}");
    }
    // A device that does not exist has no topics.
    let ghost = json!({"clientid": "x", "username": "ghost&a1HookAcl01", "topic": own, "action": "subscribe"});
    let (_, v) = hook(&server, "authz", Some(SECRET), ghost).await;
    assert_eq!(v, deny);
}

/// Debian's mosquitto with the plugin loaded, asking the Otter at `otter` (otter-testkit builds
/// the plugin for this test's target directory and profile).
async fn mosquitto(otter: SocketAddr) -> Mosquitto {
    let plugin = otter_testkit::mosquitto::plugin();
    Mosquitto::start(&format!(
        "allow_anonymous false\n\
         plugin {}\nplugin_opt_otter_url http://{otter}\n\
         plugin_opt_secret {SECRET}\nplugin_opt_cache_secs 30\n\
         log_dest stderr\nlog_type all\n",
        plugin.display()
    ))
    .await
}

/// An MQTT client of the broker that collects what it receives, and its SUBACKs.
struct Client {
    client: AsyncClient,
    inbox: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    subacks: mpsc::UnboundedReceiver<Vec<SubscribeReasonCode>>,
    _task: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn mqtt_options(
    broker: SocketAddr,
    client_id: &str,
    username: &str,
    password: &str,
) -> MqttOptions {
    let mut opts = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
    opts.set_credentials(username, password);
    opts.set_keep_alive(Duration::from_secs(30));
    opts
}

fn device_options(
    broker: SocketAddr,
    dialect: Dialect,
    addr: &DeviceAddr,
    secret: &str,
) -> MqttOptions {
    let creds = protocol::sign(dialect, addr, secret, TS);
    let password = String::from_utf8(creds.password.unwrap_or_default()).unwrap();
    mqtt_options(
        broker,
        &creds.client_id,
        creds.username.as_deref().unwrap_or(""),
        &password,
    )
}

impl Client {
    async fn connect(opts: MqttOptions) -> Result<Self, ConnectionError> {
        let (client, mut eventloop) = connect_raw(opts).await?;
        let (tx, inbox) = mpsc::unbounded_channel();
        let (suback_tx, subacks) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                let sent = match event {
                    Event::Incoming(Packet::Publish(p)) => {
                        tx.send((p.topic.clone(), p.payload.to_vec())).is_ok()
                    }
                    Event::Incoming(Packet::SubAck(ack)) => {
                        suback_tx.send(ack.return_codes).is_ok()
                    }
                    _ => true,
                };
                if !sent {
                    break;
                }
            }
        });
        Ok(Self {
            client,
            inbox,
            subacks,
            _task: AbortOnDrop(task),
        })
    }

    /// Subscribes and waits for the SUBACK (so the broker has decided); true if granted.
    async fn subscribe(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        let codes = tokio::time::timeout(WAIT, self.subacks.recv())
            .await
            .expect("no SUBACK")
            .expect("connection closed");
        matches!(codes.as_slice(), [SubscribeReasonCode::Success(_)])
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .unwrap();
    }

    /// The next message, whatever its topic.
    async fn next(&mut self) -> (String, String) {
        let (topic, payload) = tokio::time::timeout(WAIT, self.inbox.recv())
            .await
            .expect("no message arrived")
            .expect("connection closed");
        (topic, String::from_utf8_lossy(&payload).into_owned())
    }
}

fn refused(result: Result<Client, ConnectionError>) -> bool {
    matches!(result, Err(ConnectionError::ConnectionRefused(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_the_plugin_enforces_otters_decision() {
    let server = server().await;
    let broker = mosquitto(server.http).await;
    let dialect = Dialect::Aliyun;
    let (a, b) = (
        DeviceAddr::new("a1Mosq00001", "devA"),
        DeviceAddr::new("a1Mosq00001", "devB"),
    );
    let secret_a = server.device(dialect, "a1Mosq00001", "devA").await;
    let secret_b = server.device(dialect, "a1Mosq00001", "devB").await;

    // Logins: every vendor scheme with its secret; a wrong secret or unknown device is refused.
    for (d, product) in [
        (Dialect::Tencent, "MOSQTC0001"),
        (Dialect::Enos, "enosMosqPK"),
    ] {
        let secret = server.device(d, product, "dev1").await;
        let addr = DeviceAddr::new(product, "dev1");
        Client::connect(device_options(broker.addr, d, &addr, &secret))
            .await
            .unwrap_or_else(|e| panic!("{d:?} device refused: {e}\n{}", broker.log_text()));
        assert!(
            refused(Client::connect(device_options(broker.addr, d, &addr, "wrong")).await),
            "{d:?}"
        );
    }
    assert!(refused(
        Client::connect(device_options(broker.addr, dialect, &a, "wrong-secret")).await
    ));
    assert!(refused(
        Client::connect(device_options(
            broker.addr,
            dialect,
            &DeviceAddr::new("a1Mosq00001", "ghost"),
            &secret_a
        ))
        .await
    ));

    // Otter nodes: the broker secret makes a superuser; anything else is refused.
    let node_opts =
        |password: &str| mqtt_options(broker.addr, "otter-node-test", "otter-node", password);
    assert!(refused(Client::connect(node_opts("not-the-secret")).await));
    assert!(refused(Client::connect(node_opts("")).await));
    let mut node = Client::connect(node_opts(SECRET))
        .await
        .expect("node login refused");

    let mut dev_a = Client::connect(device_options(broker.addr, dialect, &a, &secret_a))
        .await
        .expect("device A refused");
    let mut dev_b = Client::connect(device_options(broker.addr, dialect, &b, &secret_b))
        .await
        .expect("device B refused");

    // Downstream: A subscribes to B's topic and to its own; only its own messages reach it.
    let down_a = protocol::downstream_topics(dialect, &a)[0].clone();
    let down_b = protocol::downstream_topics(dialect, &b)[0].clone();
    // Refused in the SUBACK (0x80), and no message on them ever arrives (below).
    assert!(!dev_a.subscribe(&down_b).await, "A subscribed to B's topic");
    assert!(!dev_a.subscribe("#").await, "A subscribed to #");
    assert!(dev_a.subscribe(&down_a).await, "A's own topic");
    assert!(dev_b.subscribe(&down_b).await, "B's own topic");
    assert!(
        node.subscribe("/ota/device/inform/#").await,
        "the node's wildcard"
    );

    node.publish(&down_b, "for-B").await;
    node.publish(&down_a, "for-A").await;
    assert_eq!(dev_b.next().await, (down_b.clone(), "for-B".into()));
    // The node published B's message first: had A been allowed B's topic, it would come first.
    assert_eq!(dev_a.next().await, (down_a.clone(), "for-A".into()));

    // Upstream: A's publish on B's topic is dropped. A's next publish, on its own topic, is
    // the first thing the node receives: had the forged one passed, it would have come first.
    let up_b = protocol::upstream_topics(dialect, &b)[0].clone();
    let up_a = protocol::upstream_topics(dialect, &a)[0].clone();
    dev_a.publish(&up_b, "forged-by-A").await;
    dev_a.publish(&up_a, "from-A").await;
    assert_eq!(node.next().await, (up_a, "from-A".into()));
    dev_b.publish(&up_b, "from-B").await;
    assert_eq!(node.next().await, (up_b, "from-B".into()));

    // A's own topic keeps working (now from the plugin's cache), and nothing else reached A.
    node.publish(&down_a, "again").await;
    assert_eq!(dev_a.next().await, (down_a, "again".into()));
    assert!(dev_a.inbox.try_recv().is_err());
}

#[tokio::test]
async fn mosquitto_refuses_devices_when_otter_is_unreachable() {
    let server = server().await;
    let secret = server.device(Dialect::Aliyun, "a1MosqDown1", "dev1").await;
    // A port nothing listens on: bound, then closed.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let broker = mosquitto(nowhere).await;
    let addr = DeviceAddr::new("a1MosqDown1", "dev1");
    assert!(refused(
        Client::connect(device_options(broker.addr, Dialect::Aliyun, &addr, &secret)).await
    ));
    // Nodes are checked by the plugin itself against the broker secret (the first node logs in
    // before any Otter can answer), so a node with the secret still gets in; a wrong one does not.
    let node = mqtt_options(broker.addr, "otter-node-test", "otter-node", SECRET);
    assert!(!refused(Client::connect(node).await));
    let impostor = mqtt_options(broker.addr, "otter-node-x", "otter-node", "not-the-secret");
    assert!(refused(Client::connect(impostor).await));
}
