//! Retiring through the `otter` binary, as an operator types it: a device in a live campaign
//! cannot be deleted and one outside can (its credentials stop working at once); firmware in a
//! live campaign cannot be deleted, in finished campaigns' history only with `--purge`, after
//! which its file is gone from the blob store and the version can be uploaded again; a product
//! goes with everything of it; every delete is in the audit log.

use std::path::Path;
use std::process::Output;
use std::sync::mpsc;
use std::time::Duration;

use otter_protocol::{DeviceAddr, Dialect};
use rumqttc::{Client, ConnectReturnCode, Event, MqttOptions, Packet};
use serde_json::Value;

use crate::OTTER;

const PK: &str = "RETIRE0001";
/// Generous bound on a CONNACK (CI runs on 2 busy cores); never a timing assertion.
const WAIT: Duration = Duration::from_secs(30);

/// `otter args --json`, which must fail; its error text.
fn refused(http: &str, data: &Path, args: &[&str]) -> String {
    let out: Output = OTTER
        .admin(http, data)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "otter {args:?} should have been refused: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The CONNACK code a Tencent login of `name` with `secret` gets.
fn connack(mqtt: &str, name: &str, secret: &str) -> ConnectReturnCode {
    let addr = DeviceAddr::new(PK, name);
    let creds = otter_protocol::sign(Dialect::Tencent, &addr, secret, 2_524_608_000_000);
    let (host, port) = mqtt.rsplit_once(':').unwrap();
    let mut opts = MqttOptions::new(creds.client_id, host, port.parse().unwrap());
    let password = String::from_utf8(creds.password.unwrap_or_default()).unwrap();
    opts.set_credentials(creds.username.unwrap_or_default(), password);
    let (client, mut connection) = Client::new(opts, 16);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    let _ = tx.send(ack.code);
                    return;
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    let _ = tx.send(code);
                    return;
                }
                Err(e) => panic!("no CONNACK: {e}"),
            }
        }
    });
    let code = rx.recv_timeout(WAIT).expect("no CONNACK");
    let _ = client.disconnect();
    code
}

/// A blob removal cut short (the process stopped after moving the blob aside) is settled at the
/// next start: put back when an image names it, deleted when none does.
#[test]
fn blobs_left_half_removed_are_settled_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, _mqtt, http) = OTTER.serve(&data, &[]);
    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", PK, "--dialect", "tencent"],
    );
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, b"kept").unwrap();
    let args = ["firmware", "upload", "--product", PK, "--version", "1.0.0"];
    let fw = OTTER.json(
        &http,
        &data,
        &[&args[..], &[image.to_str().unwrap()]].concat(),
    );
    drop(server);

    let sha = fw["sha256"].as_str().unwrap();
    let (blobs, trash) = (data.join("blobs/sha256"), data.join("blobs/trash"));
    std::fs::create_dir_all(&trash).unwrap();
    std::fs::rename(blobs.join(sha), trash.join(format!("{sha}.1"))).unwrap();
    let orphan = "0".repeat(64);
    std::fs::write(trash.join(format!("{orphan}.2")), b"nobody's").unwrap();

    let (_server, _mqtt, _http) = OTTER.serve(&data, &[]);
    assert_eq!(std::fs::read(blobs.join(sha)).unwrap(), b"kept");
    assert!(!blobs.join(&orphan).exists());
    assert_eq!(std::fs::read_dir(&trash).unwrap().count(), 0);
}

#[test]
fn devices_firmware_and_products_are_retired_unless_a_live_campaign_needs_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, mqtt, http) = OTTER.serve(&data, &[]);
    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", PK, "--dialect", "tencent"],
    );
    let mut secrets = Vec::new();
    for name in ["inside", "outside"] {
        let d = OTTER.json(
            &http,
            &data,
            &["device", "create", "--product", PK, "--name", name],
        );
        secrets.push(d["secret"].as_str().unwrap().to_owned());
    }
    let image = dir.path().join("fw.bin");
    std::fs::write(&image, vec![5u8; 40_000]).unwrap();
    let upload = [
        "firmware",
        "upload",
        "--product",
        PK,
        "--version",
        "2.0.0",
        image.to_str().unwrap(),
    ];
    let fw = OTTER.json(&http, &data, &upload);
    let blob = data
        .join("blobs/sha256")
        .join(fw["sha256"].as_str().unwrap());
    assert!(blob.is_file(), "the upload is stored at {}", blob.display());
    // "inside" is offline: it waits in the campaign, which stays live.
    let campaign = OTTER.json(
        &http,
        &data,
        &[
            "campaign",
            "create",
            "--product",
            PK,
            "--version",
            "2.0.0",
            "--device",
            "inside",
            "--skip-verification",
        ],
    );
    let id = campaign["id"].as_i64().unwrap().to_string();

    // A device in a live campaign: refused, naming the campaign; it still connects.
    let err = refused(
        &http,
        &data,
        &["device", "delete", "--product", PK, "--name", "inside"],
    );
    assert!(err.contains("409"), "{err}");
    assert!(err.contains(&format!("live campaign #{id}")), "{err}");
    assert_eq!(
        connack(&mqtt, "inside", &secrets[0]),
        ConnectReturnCode::Success
    );

    // A device outside any live campaign: deleted; its credentials stop working.
    assert_eq!(
        connack(&mqtt, "outside", &secrets[1]),
        ConnectReturnCode::Success
    );
    let deleted = OTTER.json(
        &http,
        &data,
        &["device", "delete", "--product", PK, "--name", "outside"],
    );
    assert_eq!(
        deleted["deleted"],
        format!("device {PK}/outside"),
        "{deleted}"
    );
    let err = refused(
        &http,
        &data,
        &["device", "show", "--product", PK, "--name", "outside"],
    );
    assert!(err.contains("404"), "{err}");
    assert_ne!(
        connack(&mqtt, "outside", &secrets[1]),
        ConnectReturnCode::Success
    );

    // Firmware: refused while the campaign is live, and a product with a live campaign too.
    let delete_fw = ["firmware", "delete", "--product", PK, "--version", "2.0.0"];
    let err = refused(&http, &data, &delete_fw);
    assert!(err.contains(&format!("live campaign #{id}")), "{err}");
    let err = refused(&http, &data, &["product", "delete", "--id", PK]);
    assert!(err.contains(&format!("live campaign #{id}")), "{err}");
    let err = refused(&http, &data, &upload);
    assert!(err.contains("already exists"), "{err}");

    // Once the campaign ended, it is history: kept unless --purge.
    OTTER.json(&http, &data, &["campaign", "cancel", &id]);
    let err = refused(&http, &data, &delete_fw);
    assert!(err.contains("--purge"), "{err}");
    assert!(blob.is_file());
    let purge: Vec<&str> = delete_fw.iter().copied().chain(["--purge"]).collect();
    let deleted = OTTER.json(&http, &data, &purge);
    assert_eq!(deleted["campaigns"][0].as_i64().unwrap().to_string(), id);
    assert_eq!(deleted["blobs_removed"], 1, "{deleted}");
    assert!(!blob.exists(), "no image uses the file: removed");
    refused(&http, &data, &["campaign", "show", &id]);

    // The version can be uploaded again; "inside" is outside any campaign now.
    let again = OTTER.json(&http, &data, &upload);
    assert_eq!(again["sha256"], fw["sha256"]);
    assert!(blob.is_file());
    OTTER.json(
        &http,
        &data,
        &["device", "delete", "--product", PK, "--name", "inside"],
    );

    // The product goes with everything of it.
    OTTER.json(
        &http,
        &data,
        &["device", "create", "--product", PK, "--name", "last"],
    );
    let deleted = OTTER.json(&http, &data, &["product", "delete", "--id", PK]);
    assert_eq!(deleted["devices"], 1, "{deleted}");
    assert_eq!(deleted["firmware"], 1, "{deleted}");
    assert_eq!(deleted["blobs_removed"], 1, "{deleted}");
    assert!(!blob.exists());
    let products = OTTER.json(&http, &data, &["product", "list"]);
    assert_eq!(products, Value::Array(vec![]), "{products}");
    // It can be created afresh.
    OTTER.json(
        &http,
        &data,
        &["product", "create", "--id", PK, "--dialect", "tencent"],
    );

    let audit = OTTER.json(&http, &data, &["audit"]);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.ends_with(".delete"))
        .collect();
    assert_eq!(
        actions,
        [
            "product.delete",
            "device.delete",
            "firmware.delete",
            "device.delete"
        ],
        "{audit}"
    );
}
