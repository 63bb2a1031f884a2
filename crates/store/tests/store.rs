//! The store against a real SQLite file: constraints that the upgrade flow relies on.

use otter_core::campaign::{CampaignState, Strategy};
use otter_core::{DeviceName, Module, ProductId, UpgradeState, UpgradeStatus, Version};
use otter_store::{
    CampaignKind, CampaignMode, Firmware, NewCampaign, NewFirmware, NewSlot, Store, StoreError,
    Transition,
};

async fn campaign(
    store: &Store,
    fw: &Firmware,
    devices: &[DeviceName],
) -> Result<otter_store::Campaign, StoreError> {
    store
        .create_campaign(&new_campaign(fw, devices, false))
        .await
}

fn new_campaign(fw: &Firmware, devices: &[DeviceName], supersede: bool) -> NewCampaign {
    NewCampaign {
        firmware: fw.clone(),
        kind: CampaignKind::Rollout,
        state: CampaignState::Running,
        mode: CampaignMode::Push,
        selection: serde_json::json!({}),
        strategy: Strategy::default(),
        allow_downgrade: false,
        skip_verification: false,
        slots: devices
            .iter()
            .map(|d| NewSlot {
                device: d.clone(),
                wave: 0,
                from_version: None,
            })
            .collect(),
        supersede,
    }
}

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
        campaign(&store, &fw, &[d("ghost")]).await,
        Err(StoreError::NotFound(_))
    ));
    // The failed campaign left nothing behind: the device can still join a campaign.
    campaign(&store, &fw, &[d("a")]).await.unwrap();
}

#[tokio::test]
async fn one_live_upgrade_per_device_and_module() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fw) = store_with_firmware(&dir).await;
    let c = campaign(&store, &fw, &[d("a")]).await.unwrap();
    let err = campaign(&store, &fw, &[d("b"), d("a")]).await.unwrap_err();
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
    campaign(&store, &fw, &[d("a")]).await.unwrap();
}

#[tokio::test]
async fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fw) = store_with_firmware(&dir).await;
    let c = campaign(&store, &fw, &[d("a"), d("b")]).await.unwrap();
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
        store.campaign_counts(c.id).await.unwrap().0.get("queued"),
        Some(&2)
    );
}

#[tokio::test]
async fn transitions_move_only_from_the_given_states_and_leave_history() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fw) = store_with_firmware(&dir).await;
    let c = campaign(&store, &fw, &[d("a"), d("b")]).await.unwrap();
    let release = Transition {
        from: &[UpgradeState::Queued],
        to: UpgradeState::Pending,
        result_code: None,
        result_msg: None,
        released_at: Some(42),
        count_push: false,
    };
    assert_eq!(
        store
            .transition(c.id, &p("P1"), &[d("a")], &release)
            .await
            .unwrap(),
        [d("a")]
    );
    assert!(
        store
            .transition(c.id, &p("P1"), &[d("a")], &release)
            .await
            .unwrap()
            .is_empty(),
        "already released"
    );
    let a = store
        .live_upgrade(&p("P1"), &d("a"), &Module::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.status.state, a.attempts, a.released_at),
        (UpgradeState::Pending, 1, Some(42))
    );
    let history = store.device_events(&p("P1"), &d("a"), 10).await.unwrap();
    let states: Vec<_> = history.iter().map(|e| e.state).collect();
    assert_eq!(states, [UpgradeState::Pending, UpgradeState::Queued]);
}

#[tokio::test]
async fn supersede_cancels_the_other_campaigns_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let (store, fw) = store_with_firmware(&dir).await;
    let first = campaign(&store, &fw, &[d("a")]).await.unwrap();
    let second = store
        .create_campaign(&new_campaign(&fw, &[d("a")], true))
        .await
        .unwrap();
    let old = store
        .campaign_upgrades(first.id, None, 10, 0)
        .await
        .unwrap();
    assert_eq!(old[0].status.state, UpgradeState::Canceled);
    assert!(
        old[0]
            .status
            .result_msg
            .as_deref()
            .unwrap()
            .contains(&format!("#{}", second.id))
    );
    assert_eq!(
        store
            .live_upgrade(&p("P1"), &d("a"), &Module::default())
            .await
            .unwrap()
            .unwrap()
            .campaign_id,
        second.id
    );
}
