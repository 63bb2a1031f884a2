//! Signed firmware in the server: product keys and announcements over the API, server-side
//! signing with a key from `--signing-key-dir`, the push extension carrying signature, validity
//! and rotation chain, and the anti-rollback rule for devices that moved ahead of a campaign.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey};
use otter_protocol::{Dialect, SignedRelease, announcement_message, key_base64, key_id};
use serde_json::{Value, json};
use std::time::Duration;

const P: &str = "SIGPROD";

fn report(version: &str) -> String {
    format!(r#"{{"type": "report_version", "report":{{"version":"{version}"}}}}"#)
}

async fn device(server: &TestServer, name: &str, version: &str) -> RawDevice {
    let secret = server.device(Dialect::Tencent, P, name).await;
    let mut dev = RawDevice::connect(server, Dialect::Tencent, P, name, &secret).await;
    dev.subscribe(&format!("$ota/update/{P}/{name}")).await;
    dev.send(&format!("$ota/report/{P}/{name}"), &report(version))
        .await;
    assert_eq!(
        dev.next_on(&format!("$ota/update/{P}/{name}")).await["type"],
        "report_version_rsp"
    );
    dev
}

#[tokio::test]
async fn server_signed_pushes_carry_signature_validity_and_rotation() {
    let keys = tempfile::tempdir().unwrap();
    let root = SigningKey::from_bytes(&[41; 32]);
    let online = SigningKey::from_bytes(&[42; 32]);
    std::fs::write(
        keys.path().join(format!("{P}.pem")),
        otter_protocol::private_key_pem(&online.to_bytes()),
    )
    .unwrap();
    let dir = keys.path().to_owned();
    let server = start_with(move |c| c.signing_key_dir = Some(dir)).await;
    let mut dev = device(&server, "d1", "1.0.0").await;
    let root_pk = root.verifying_key().to_bytes();
    let online_pk = online.verifying_key().to_bytes();
    server
        .post(
            &format!("/products/{P}/keys"),
            json!({ "public_key": key_base64(&root_pk) }),
        )
        .await;
    // A second key needs an announcement by a registered key; a forged one is refused.
    let path = format!("/products/{P}/keys");
    let msg = announcement_message(P, &online_pk).unwrap();
    let by_self = STANDARD.encode(online.sign(msg.as_bytes()).to_bytes());
    let forged = json!({ "public_key": key_base64(&online_pk), "signed_by": key_id(&root_pk), "sig": by_self });
    let (status, err) = server.api(reqwest::Method::POST, &path, Some(forged)).await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("does not verify"),
        "{err}"
    );
    let sig = STANDARD.encode(root.sign(msg.as_bytes()).to_bytes());
    server
        .post(&path, json!({ "public_key": key_base64(&online_pk), "signed_by": key_id(&root_pk), "sig": sig }))
        .await;
    assert_eq!(server.get(&path).await.as_array().unwrap().len(), 2);

    let fw = server.upload(P, "1.1.0", &image()).await;
    assert_eq!(fw["signature"]["key_id"], key_id(&online_pk));
    server.upgrade(P, "d1", "1.1.0").await;
    let push = dev.next_on(&format!("$ota/update/{P}/d1")).await;
    let ext = &push["otter"];
    assert_eq!(ext["key"], key_id(&online_pk));
    let rotation = ext["rotation"].as_array().unwrap();
    assert_eq!(rotation.len(), 1, "{ext}");
    assert_eq!(rotation[0]["signed_by"], key_id(&root_pk));
    let release = SignedRelease {
        product: P.into(),
        module: "default".into(),
        version: "1.1.0".into(),
        size: IMAGE_LEN as u64,
        sha256: fw["sha256"].as_str().unwrap().into(),
        issued: ext["issued"].as_u64().unwrap(),
        expires: ext["expires"].as_u64().unwrap(),
        downgrade: false,
    };
    assert!(release.expires > release.issued + 300 * 24 * 3600);
    let sig = STANDARD.decode(ext["sig"].as_str().unwrap()).unwrap();
    online
        .verifying_key()
        .verify_strict(
            release.message().unwrap().as_bytes(),
            &Signature::from_slice(&sig).unwrap(),
        )
        .expect("the pushed signature verifies");
    let listed = server.get(&format!("/products/{P}/firmware")).await;
    assert_eq!(
        listed[0]["signature"]["issued"],
        Value::from(release.issued)
    );
}

#[tokio::test]
async fn a_device_that_moved_ahead_is_not_offered_a_downgrade() {
    let server = start().await;
    let mut dev = device(&server, "ahead", "1.0.0").await;
    server.upload(P, "1.1.0", &image()).await;
    server.upgrade(P, "ahead", "1.1.0").await;
    let topic = format!("$ota/update/{P}/ahead");
    assert_eq!(dev.next_on(&topic).await["type"], "update_firmware");
    // Updated by other means to a newer version than the campaign's target.
    dev.send(&format!("$ota/report/{P}/ahead"), &report("2.0.0"))
        .await;
    assert_eq!(dev.next_on(&topic).await["type"], "report_version_rsp");
    // Not a silent refusal: the upgrade ends skipped, with the reason, and is never pushed.
    let shown = server
        .wait_show(P, "ahead", |v| v["upgrade"]["state"] == "skipped")
        .await;
    assert_eq!(shown["upgrade"]["reason"], "newer_than_target");
    assert!(
        shown["upgrade"]["result_msg"]
            .as_str()
            .unwrap()
            .starts_with("runs 2.0.0, newer than the target 1.1.0"),
        "{shown}"
    );
    dev.send(&format!("$ota/report/{P}/ahead"), &report("1.0.0"))
        .await;
    assert_eq!(dev.next_on(&topic).await["type"], "report_version_rsp");
    dev.nothing_for(Duration::from_millis(500)).await;
}
