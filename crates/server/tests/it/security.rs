//! Admin access and device-login abuse, driven as a user and an attacker would: scoped API tokens
//! over HTTP, secrets read back from the database file, and floods of bad MQTT logins from other
//! client addresses while good devices keep connecting.

use crate::common::*;
use bytes::BytesMut;
use otter_protocol::{self as protocol, DeviceAddr, Dialect};
use otter_server::ThrottleConfig;
use reqwest::Method;
use rumqttc::ConnectionError;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Calls the API with `token` instead of the admin token.
async fn call(
    server: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = server
        .client
        .request(method, server.url(&format!("/api/v1{path}")))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn new_token(server: &TestServer, name: &str, scope: &str) -> (i64, String) {
    let v = server
        .post("/tokens", json!({ "name": name, "scope": scope }))
        .await;
    (
        v["id"].as_i64().unwrap(),
        v["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn scoped_tokens_allow_only_their_scope() {
    let server = start().await;
    server.device(Dialect::Aliyun, "a1Scoped01", "dev1").await;
    server.upload("a1Scoped01", "1.1.0", &image()).await;
    let (_, read) = new_token(&server, "dashboard", "read").await;
    let (_, operate) = new_token(&server, "release-bot", "operate").await;
    let campaign = json!({ "product": "a1Scoped01", "version": "1.1.0",
        "selection": { "devices": ["dev1"] }, "skip_verification": true });

    // read: looks, changes nothing.
    assert_eq!(
        call(&server, &read, Method::GET, "/products", None).await.0,
        200
    );
    let (status, body) = call(
        &server,
        &read,
        Method::POST,
        "/campaigns",
        Some(campaign.clone()),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("needs operate"),
        "{body}"
    );
    assert_eq!(server.get("/campaigns").await.as_array().unwrap().len(), 0);
    let new_product = json!({ "id": "a1Other0001", "dialect": "aliyun" });
    assert_eq!(
        call(
            &server,
            &read,
            Method::POST,
            "/products",
            Some(new_product.clone())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(&server, &read, Method::GET, "/tokens", None).await.0,
        403
    );

    // operate: runs rollouts, cannot change identities or tokens.
    let (status, body) = call(
        &server,
        &operate,
        Method::POST,
        "/campaigns",
        Some(campaign),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        call(
            &server,
            &operate,
            Method::POST,
            "/products",
            Some(new_product)
        )
        .await
        .0,
        403
    );
    let more = json!({ "name": "x", "scope": "admin" });
    assert_eq!(
        call(&server, &operate, Method::POST, "/tokens", Some(more))
            .await
            .0,
        403
    );

    // The audit log names the token that acted.
    let audit = server.get("/audit?action=campaign.").await;
    assert_eq!(audit[0]["actor"], "token:release-bot", "{audit}");

    // Listing never shows a token's text; nonsense and unknown tokens are refused.
    let listed = server.get("/tokens").await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&read), "{listed}");
    for bad in ["", "otk_", "otk_00", &format!("{read}x"), "admin"] {
        assert_eq!(
            call(&server, bad, Method::GET, "/products", None).await.0,
            401,
            "{bad:?}"
        );
    }
    let (status, _) = call(
        &server,
        &read,
        Method::POST,
        "/tokens",
        Some(json!({"name": "", "scope": "read"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .api(
            Method::POST,
            "/tokens",
            Some(json!({ "name": "x", "scope": "root" })),
        )
        .await;
    assert_eq!(status, 422, "an unknown scope is refused");
}

#[tokio::test]
async fn revoked_tokens_stop_working_at_once() {
    let server = start().await;
    let (id, token) = new_token(&server, "laptop", "admin").await;
    assert_eq!(
        call(&server, &token, Method::GET, "/products", None)
            .await
            .0,
        200
    );
    let revoked = server
        .api(Method::DELETE, &format!("/tokens/{id}"), None)
        .await;
    assert_eq!(revoked.0, 200);
    assert!(revoked.1["revoked_at"].is_i64());
    assert_eq!(
        call(&server, &token, Method::GET, "/products", None)
            .await
            .0,
        401
    );
    assert_eq!(server.api(Method::DELETE, "/tokens/999", None).await.0, 404);
}

#[tokio::test]
async fn device_secrets_are_sealed_at_rest_and_rotate() {
    let server = start().await;
    let product = "a1Sealed001";
    server
        .post("/products", json!({ "id": product, "dialect": "aliyun" }))
        .await;
    let secret = "0123456789abcdef0123456789abcdef";
    server
        .post(
            &format!("/products/{product}/devices"),
            json!({ "name": "dev1", "secret": secret }),
        )
        .await;

    // What the database holds is not the secret.
    let store = otter_store::Store::open_sqlite(&server.dir.path().join("otter.db"))
        .await
        .unwrap();
    let (p, d) = (
        otter_core::ProductId::parse(product).unwrap(),
        otter_core::DeviceName::parse("dev1").unwrap(),
    );
    let stored = store.device(&p, &d).await.unwrap().secret;
    assert!(stored.starts_with("sealed:v1:"), "{stored}");
    assert!(!stored.contains(secret));
    drop(store);

    // ... yet the device logs in with it.
    RawDevice::connect(&server, Dialect::Aliyun, product, "dev1", secret).await;

    // Rotation: the new secret is shown once, the old one is refused from now on.
    let path = format!("/products/{product}/devices/dev1/secret");
    let rotated = server.post(&path, json!({})).await;
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let addr = DeviceAddr::new(product, "dev1");
    let old = protocol::sign(Dialect::Aliyun, &addr, secret, 1_617_773_607_348);
    match connect_raw(options(&server, &old)).await {
        Err(ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, rumqttc::ConnectReturnCode::BadUserNamePassword)
        }
        other => panic!("old secret still works: {:?}", other.map(|_| ())),
    }
    RawDevice::connect(&server, Dialect::Aliyun, product, "dev1", new_secret).await;
    let audit = server.get("/audit?action=device.rotate_secret").await;
    assert_eq!(audit.as_array().unwrap().len(), 1);
    assert!(
        !audit.to_string().contains(new_secret),
        "secrets never reach the audit log"
    );
}

/// Sends one MQTT CONNECT from `source` and returns the CONNACK return code.
async fn connack_from(source: IpAddr, server: SocketAddr, creds: &protocol::Credentials) -> u8 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let mut connect = rumqttc::mqttbytes::v4::Connect::new(creds.client_id.clone());
    let password = String::from_utf8_lossy(creds.password.as_deref().unwrap_or_default());
    connect.set_login(creds.username.clone().unwrap_or_default(), password);
    let mut bytes = BytesMut::new();
    connect.write(&mut bytes).unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, stream.read_exact(&mut connack))
        .await
        .expect("no CONNACK")
        .unwrap();
    assert_eq!(connack[..2], [0x20, 0x02], "not a CONNACK");
    connack[3]
}

/// Issue 19, finding 4: the throttle slows wrong secrets and never refuses a right one. 32
/// wrong secrets for a device from one address do not keep the device out, from another
/// address or from that one; failed logins of unknown devices from one address (a fleet behind
/// NAT) do not lock out the good devices on it; only the per-address ceiling refuses outright.
#[tokio::test]
async fn wrong_secrets_are_slowed_and_a_right_secret_always_connects() {
    let server = start_with(|c| {
        c.login_throttle = ThrottleConfig {
            penalty: Duration::from_millis(50),
            ..ThrottleConfig::default()
        }
    })
    .await;
    let product = "a1Burst0001";
    let victim_secret = server.device(Dialect::Aliyun, product, "dev2").await;
    let good_secret = server.device(Dialect::Aliyun, product, "good").await;
    let sign = |device: &str, secret: &str| {
        protocol::sign(
            Dialect::Aliyun,
            &DeviceAddr::new(product, device),
            secret,
            1_617_773_607_348,
        )
    };
    let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for _ in 0..32 {
        let code = connack_from(attacker, server.mqtt, &sign("dev2", "00ff")).await;
        assert_eq!(code, 4, "a wrong secret is a wrong secret");
    }
    let elsewhere = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    assert_eq!(
        connack_from(elsewhere, server.mqtt, &sign("dev2", &victim_secret)).await,
        0,
        "the device itself, from another address"
    );
    assert_eq!(
        connack_from(attacker, server.mqtt, &sign("dev2", &victim_secret)).await,
        0,
        "the device itself, from the guesser's address (slowed, not refused)"
    );

    // A fleet behind one NAT address: logins of unknown devices fail, good ones still connect.
    let nat = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 4));
    for i in 0..32 {
        let code = connack_from(nat, server.mqtt, &sign(&format!("ghost{i}"), "00ff")).await;
        assert_eq!(code, 5, "unknown device");
    }
    for _ in 0..32 {
        let code = connack_from(nat, server.mqtt, &sign("ghost0", "00ff")).await;
        assert_eq!(code, 5, "unknown device, slowed");
    }
    assert_eq!(
        connack_from(nat, server.mqtt, &sign("good", &good_secret)).await,
        0,
        "a good device behind the same address"
    );
    RawDevice::connect(&server, Dialect::Aliyun, product, "good", &good_secret).await;
}

/// The one outright refusal: an address over the per-address ceiling (a flood) is refused
/// without a lookup until the window ends; other addresses are not.
#[tokio::test]
async fn an_address_over_the_ceiling_is_refused_and_others_are_not() {
    let server = start_with(|c| {
        c.login_throttle = ThrottleConfig {
            per_address: 10,
            penalty: Duration::from_millis(10),
            ..ThrottleConfig::default()
        }
    })
    .await;
    let product = "a1Flood0002";
    let secret = server.device(Dialect::Aliyun, product, "good").await;
    let sign = |device: &str, secret: &str| {
        protocol::sign(
            Dialect::Aliyun,
            &DeviceAddr::new(product, device),
            secret,
            1,
        )
    };
    let flood = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5));
    let mut codes = Vec::new();
    for i in 0..12 {
        codes.push(connack_from(flood, server.mqtt, &sign(&format!("x{i}"), "00")).await);
    }
    assert!(codes.iter().all(|c| *c == 5), "{codes:?}");
    assert_eq!(
        connack_from(flood, server.mqtt, &sign("good", &secret)).await,
        5
    );
    let calm = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 6));
    assert_eq!(
        connack_from(calm, server.mqtt, &sign("good", &secret)).await,
        0
    );
}

#[tokio::test]
async fn firmware_uploads_over_the_limit_are_refused() {
    let server = start_with(|c| c.max_firmware_size = 100_000).await;
    server.device(Dialect::Aliyun, "a1Limit0001", "dev1").await;
    let resp = server
        .client
        .post(server.url("/api/v1/products/a1Limit0001/firmware?version=2.0.0"))
        .bearer_auth(&server.token)
        .body(vec![7u8; 100_001])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("100000"), "{body}");
    assert!(
        server
            .get("/products/a1Limit0001/firmware")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_flooding_device_is_disconnected_and_others_are_not() {
    let server = start_with(|c| {
        c.publish_limit = Some(otter_broker::PublishLimit {
            per_sec: 5,
            burst: 10,
        })
    })
    .await;
    let product = "a1Flood0001";
    let flood_secret = server.device(Dialect::Aliyun, product, "flood").await;
    let calm_secret = server.device(Dialect::Aliyun, product, "calm").await;
    let calm = RawDevice::connect(&server, Dialect::Aliyun, product, "calm", &calm_secret).await;
    let flood = RawDevice::connect(&server, Dialect::Aliyun, product, "flood", &flood_secret).await;
    let topic = |d: &str| format!("/ota/device/inform/{product}/{d}");
    let report = r#"{"id":"1","params":{"version":"1.0.0"}}"#;
    server
        .wait_show(product, "flood", |v| v["online"] == true)
        .await;
    for _ in 0..200 {
        let _ = flood
            .client
            .try_publish(topic("flood"), rumqttc::QoS::AtMostOnce, false, report);
    }
    calm.send(&topic("calm"), report).await;
    server
        .wait_show(product, "flood", |v| v["online"] == false)
        .await;
    let calm_now = server
        .wait_show(product, "calm", |v| v.to_string().contains("1.0.0"))
        .await;
    assert_eq!(calm_now["online"], true, "{calm_now}");
}

/// Issue 19, finding 6: a Tencent product id that begins with, or extends, an existing Tencent
/// product id is refused with the reason: Tencent client ids `{productId}{deviceName}` have no
/// separator, so `TCPROD0001t` would take over the login of `TCPROD0001`'s device `tdev1`.
#[tokio::test]
async fn tencent_product_ids_that_prefix_each_other_are_refused() {
    let server = start().await;
    let secret = server.device(Dialect::Tencent, "TCPROD0001", "tdev1").await;
    for clash in ["TCPROD0001t", "TCPROD000", "TCPROD0001tdev"] {
        let (status, body) = server
            .api(
                Method::POST,
                "/products",
                Some(json!({ "id": clash, "dialect": "tencent" })),
            )
            .await;
        assert_eq!(status, 409, "{clash}: {body}");
        let why = body["error"].as_str().unwrap();
        assert!(
            why.contains("TCPROD0001") && why.contains("client id"),
            "{why}"
        );
    }
    // Not Tencent: no client id is ambiguous.
    server
        .post(
            "/products",
            json!({ "id": "TCPROD0001x", "dialect": "aliyun" }),
        )
        .await;
    server
        .post(
            "/products",
            json!({ "id": "TCPROD0002", "dialect": "tencent" }),
        )
        .await;
    // The device keeps logging in as itself.
    let _dev = RawDevice::connect(&server, Dialect::Tencent, "TCPROD0001", "tdev1", &secret).await;
    server
        .wait_show("TCPROD0001", "tdev1", |v| v["online"] == true)
        .await;
}

/// Issue 19, finding 8: names and versions that are dot segments, carry control characters or
/// run on are refused with a clear error; so are such product names.
#[tokio::test]
async fn dot_segments_control_characters_and_long_names_are_refused() {
    let server = start().await;
    server.device(Dialect::Aliyun, "a1Names0001", "dev1").await;
    for name in [
        ".",
        "..",
        "....",
        "%2e%2e",
        "a\tb",
        "a\u{0}b",
        &"d".repeat(65),
    ] {
        let (status, body) = server
            .api(
                Method::POST,
                "/products/a1Names0001/devices",
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(status, 400, "device {name:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("device name"),
            "{body}"
        );
    }
    for version in [".", "..", "....", &"1".repeat(65)] {
        let resp = server
            .client
            .post(server.url("/api/v1/products/a1Names0001/firmware"))
            .query(&[("version", version)])
            .bearer_auth(&server.token)
            .body(vec![1u8; 100])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "version {version:?}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("version"),
            "{body}"
        );
    }
    for name in ["bad\u{0}name", "line\nbreak", &"n".repeat(201), "   "] {
        let (status, body) = server
            .api(
                Method::POST,
                "/products",
                Some(json!({ "id": "a1Names0002", "dialect": "aliyun", "name": name })),
            )
            .await;
        assert_eq!(status, 400, "product name {name:?}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("product name"),
            "{body}"
        );
    }
    let ok = server
        .post(
            "/products",
            json!({ "id": "a1Names0002", "dialect": "aliyun", "name": "  Thermostat v2  " }),
        )
        .await;
    assert_eq!(ok["name"], "Thermostat v2");
}

/// Issue 19, finding 8: the data folder is its owner's only (0700), and so are the database,
/// its WAL and its shared-memory file (0600).
#[cfg(unix)]
#[tokio::test]
async fn data_folder_and_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("otter-data");
    let app = otter_server::Application::build(otter_server::ServeConfig::ephemeral(&data))
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "data folder");
    let db = data.join("otter.db");
    assert_eq!(mode(&db), 0o600, "database");
    for suffix in ["-wal", "-shm"] {
        let file = data.join(format!("otter.db{suffix}"));
        assert!(file.exists(), "{} missing", file.display());
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    drop(app);
}
