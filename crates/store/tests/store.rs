//! The store against a real SQLite file: constraints that the upgrade flow relies on.

use otter_core::{DeviceName, Module, ProductId, UpgradeState, UpgradeStatus, Version};
use otter_store::{NewFirmware, Store, StoreError};

fn p(s: &str) -> ProductId {
    ProductId::parse(s).unwrap()
}
fn d(s: &str) -> DeviceName {
    DeviceName::parse(s).unwrap()
}
fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

async fn store_with_firmware(dir: &tempfile::TempDir) -> (Store, otter_store::Firmware) {
    let store = Store::open_sqlite(&dir.path().join("otter.db"))
        .await
        .unwrap();
    store
        .create_product(&p("P1"), "tencent", "P1")
        .await
        .unwrap();
    for name in ["a", "b"] {
        store
            .create_device(&p("P1"), &d(name), "c2VjcmV0")
            .await
            .unwrap();
    }
    let fw = store
        .create_firmware(&NewFirmware {
            product: p("P1"),
            module: Module::default(),
            version: v("2.0"),
            size: 10,
            md5: "m".into(),
            sha256: "s".into(),
        })
        .await
        .unwrap();
    (store, fw)
}

#[tokio::test]
async fn duplicates_are_conflicts_and_unknowns_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fw) = store_with_firmware(&dir).await;
    assert!(matches!(
        store.create_product(&p("P1"), "tencent", "again").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_device(&p("P1"), &d("a"), "x").await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_device(&p("NOPE"), &d("a"), "x").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.create_campaign(&fw, &[d("ghost")]).await,
        Err(StoreError::NotFound(_))
    ));
    // The failed campaign left nothing behind: the device can still join a campaign.
    store.create_campaign(&fw, &[d("a")]).await.unwrap();
}

#[tokio::test]
async fn one_live_upgrade_per_device_and_module() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fw) = store_with_firmware(&dir).await;
    let c = store.create_campaign(&fw, &[d("a")]).await.unwrap();
    let err = store
        .create_campaign(&fw, &[d("b"), d("a")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("P1/a")),
        "{err}"
    );
    assert!(
        store
            .live_upgrade(&p("P1"), &d("b"), &Module::default())
            .await
            .unwrap()
            .is_none(),
        "all or nothing"
    );

    // Once finished, a late update never revives it, and a new campaign may start.
    let done = UpgradeStatus {
        state: UpgradeState::Succeeded,
        ..UpgradeStatus::pending(v("2.0"))
    };
    assert!(
        store
            .update_upgrade(c.id, &p("P1"), &d("a"), &done)
            .await
            .unwrap()
    );
    let late = UpgradeStatus {
        state: UpgradeState::Downloading,
        ..UpgradeStatus::pending(v("2.0"))
    };
    assert!(
        !store
            .update_upgrade(c.id, &p("P1"), &d("a"), &late)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .latest_upgrade(&p("P1"), &d("a"))
            .await
            .unwrap()
            .unwrap()
            .status
            .state,
        UpgradeState::Succeeded
    );
    store.create_campaign(&fw, &[d("a")]).await.unwrap();
}

#[tokio::test]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fw) = store_with_firmware(&dir).await;
    let c = store.create_campaign(&fw, &[d("a"), d("b")]).await.unwrap();
    store
        .record_version(&p("P1"), &d("a"), &Module::default(), &v("1.0"))
        .await
        .unwrap();
    drop(store);
    let store = Store::open_sqlite(&dir.path().join("otter.db"))
        .await
        .unwrap();
    assert_eq!(
        store.versions(&p("P1"), &d("a")).await.unwrap()[0].version,
        v("1.0")
    );
    assert_eq!(
        store.campaign_counts(c.id).await.unwrap().0.get("pending"),
        Some(&2)
    );
}
