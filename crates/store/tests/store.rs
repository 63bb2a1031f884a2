//! The store against real databases, on every engine: a SQLite file always, and PostgreSQL when
//! `OTTER_TEST_POSTGRES_URL` names a server (scripts/pg-throwaway.sh starts one). Each test gets
//! fresh databases of its own, so tests run in parallel.

mod engines;

use engines::{TestDb, databases};

use otter_core::campaign::{CampaignState, Strategy};
use otter_core::{
    DeviceName, Dialect, Module, ProductId, UpgradeState, UpgradeStatus, Version, VersionScheme,
};
use otter_store::{
    CampaignKind, CampaignMode, Firmware, FirmwareSignature, NewCampaign, NewFirmware, NewSlot,
    OnlineChange, Store, StoreError, Transition, UpgradeUpdate, VersionReport,
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
                skipped: None,
            })
            .collect(),
        supersede,
        rollback_of: None,
    }
}

/// A change of device `device` (product P1) in campaign `campaign` to `status`.
fn update(campaign: i64, device: &str, status: &UpgradeStatus) -> UpgradeUpdate {
    UpgradeUpdate {
        campaign_id: campaign,
        product: p("P1"),
        device: d(device),
        from: UpgradeState::Queued,
        status: status.clone(),
        changed: true,
        push: false,
    }
}

/// Device `device` (product P1) reports `version` of the default module now.
fn version_report(device: &str, version: &str) -> VersionReport {
    VersionReport {
        product: p("P1"),
        device: d(device),
        module: Module::default(),
        version: v(version),
        at: otter_store::now_ms().into(),
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

async fn store_with_firmware(db: &TestDb) -> (Store, otter_store::Firmware) {
    let store = db.open().await;
    store
        .create_product(&p("P1"), Dialect::Tencent, "P1", VersionScheme::Semver)
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
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
        assert!(matches!(
            store
                .create_product(&p("P1"), Dialect::Tencent, "again", VersionScheme::Semver)
                .await,
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
        db.drop().await;
    }
}

#[tokio::test]
async fn one_live_upgrade_per_device_and_module() {
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
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
                .update_upgrades(&[update(c.id, "a", &done)])
                .await
                .unwrap()[0]
        );
        let late = UpgradeStatus {
            state: UpgradeState::Downloading,
            ..UpgradeStatus::pending(v("2.0"))
        };
        assert!(
            !store
                .update_upgrades(&[update(c.id, "a", &late)])
                .await
                .unwrap()[0]
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
        db.drop().await;
    }
}

#[tokio::test]
async fn state_survives_reopening() {
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
        let c = campaign(&store, &fw, &[d("a"), d("b")]).await.unwrap();
        store
            .record_versions(&[version_report("a", "1.0")])
            .await
            .unwrap();
        drop(store);
        let store = db.open().await;
        assert_eq!(
            store.versions(&p("P1"), &d("a")).await.unwrap()[0].version,
            v("1.0")
        );
        assert_eq!(
            store
                .campaign_counts(c.id)
                .await
                .unwrap()
                .get(UpgradeState::Queued),
            2
        );
        db.drop().await;
    }
}

#[tokio::test]
async fn transitions_move_only_from_the_given_states_and_leave_history() {
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
        let c = campaign(&store, &fw, &[d("a"), d("b")]).await.unwrap();
        let release = Transition {
            from: &[UpgradeState::Queued],
            to: UpgradeState::Pending,
            result_code: None,
            result_msg: None,
            reason: None,
            released_at: Some(42.into()),
            count_push: false,
            keep_result: false,
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
            (UpgradeState::Pending, 1, Some(42.into()))
        );
        let history = store.device_events(&p("P1"), &d("a"), 10).await.unwrap();
        let states: Vec<_> = history.iter().map(|e| e.state).collect();
        assert_eq!(states, [UpgradeState::Pending, UpgradeState::Queued]);
        db.drop().await;
    }
}

#[tokio::test]
async fn supersede_cancels_the_other_campaigns_upgrade() {
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
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
        db.drop().await;
    }
}

#[tokio::test]
async fn tags_fleet_console_and_audit_queries_agree_across_engines() {
    for db in databases().await {
        let (store, _fw) = store_with_firmware(&db).await;
        let engine = db.engine;
        store
            .create_device(&p("P1"), &d("Big_1"), "x")
            .await
            .unwrap();
        let tags = store
            .set_tags(&p("P1"), &d("a"), &["zone=b".into(), "beta".into()], &[])
            .await
            .unwrap();
        assert_eq!(tags, ["beta", "zone=b"], "{engine}");
        store
            .set_tags(&p("P1"), &d("a"), &["beta".into()], &["zone=b".into()])
            .await
            .unwrap();
        store
            .set_tags(&p("P1"), &d("b"), &["zone=a".into(), "alpha".into()], &[])
            .await
            .unwrap();
        store
            .record_versions(&[version_report("a", "1.0")])
            .await
            .unwrap();
        store
            .set_online_many(&[OnlineChange {
                product: p("P1"),
                device: d("b"),
                online: true,
                connects: 1,
                at: otter_store::now_ms().into(),
            }])
            .await
            .unwrap();

        let fleet = store.fleet(&p("P1"), &Module::default()).await.unwrap();
        let view: Vec<_> = fleet
            .iter()
            .map(|f| (f.name.as_str(), f.online, f.version.clone(), f.tags.clone()))
            .collect();
        assert_eq!(
            view,
            [
                ("Big_1", false, None, vec![]),
                ("a", false, Some(v("1.0")), vec!["beta".to_string()]),
                ("b", true, None, vec!["alpha".into(), "zone=a".into()]),
            ],
            "{engine}: byte-wise order, tags sorted"
        );

        let page = |filter: otter_store::DeviceFilter| {
            let store = store.clone();
            async move {
                let (total, rows) = store
                    .device_page(&p("P1"), &Module::default(), &filter, 10, 0)
                    .await
                    .unwrap();
                let names: Vec<String> = rows.into_iter().map(|r| r.name.to_string()).collect();
                (total, names)
            }
        };
        let search = |s: &str| otter_store::DeviceFilter {
            search: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(
            page(search("BIG")).await,
            (1, vec!["Big_1".into()]),
            "{engine}: case-insensitive"
        );
        assert_eq!(
            page(search("g_")).await,
            (1, vec!["Big_1".into()]),
            "{engine}: _ is literal"
        );
        assert_eq!(
            page(search("%")).await,
            (0, vec![]),
            "{engine}: % is literal"
        );
        let never_reported = otter_store::DeviceFilter {
            version: Some(None),
            ..Default::default()
        };
        assert_eq!(page(never_reported).await.0, 2, "{engine}");
        let online = otter_store::DeviceFilter {
            online: Some(true),
            ..Default::default()
        };
        assert_eq!(page(online).await, (1, vec!["b".into()]), "{engine}");
        let tagged = otter_store::DeviceFilter {
            tag: Some("beta".into()),
            ..Default::default()
        };
        assert_eq!(page(tagged).await, (1, vec!["a".into()]), "{engine}");

        assert_eq!(
            store
                .version_counts(&p("P1"), &Module::default())
                .await
                .unwrap(),
            [(None, 2), (Some(v("1.0")), 1)],
            "{engine}"
        );
        let summary = &store.product_summaries().await.unwrap()[0];
        assert_eq!(
            (
                summary.devices,
                summary.online,
                summary.firmware,
                summary.live_campaigns
            ),
            (3, 1, 1, 0),
            "{engine}"
        );
        store.reset_online().await.unwrap();
        assert!(
            store.online_devices(&p("P1")).await.unwrap().is_empty(),
            "{engine}"
        );

        for action in ["campaign.create", "campaign.cancel", "product.create"] {
            store
                .record_audit("admin", action, "x", &serde_json::json!({"n": 1}))
                .await
                .unwrap();
        }
        assert_eq!(
            store.audit_count(Some("campaign.")).await.unwrap(),
            2,
            "{engine}"
        );
        assert_eq!(store.audit_count(None).await.unwrap(), 3, "{engine}");
        let log = store.audit_log(Some("campaign."), 1, 0).await.unwrap();
        assert_eq!(
            (log[0].action.as_str(), &log[0].detail),
            ("campaign.cancel", &serde_json::json!({"n": 1})),
            "{engine}: newest first"
        );
        db.drop().await;
    }
}

/// Two nodes (two stores on one database) release the same devices at once: every device moves
/// exactly once, so exactly one node pushes to it.
#[tokio::test]
async fn concurrent_claims_move_each_device_once() {
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
        let names: Vec<DeviceName> = (0..60).map(|i| d(&format!("n{i:02}"))).collect();
        for name in &names {
            store.create_device(&p("P1"), name, "x").await.unwrap();
        }
        let c = campaign(&store, &fw, &names).await.unwrap();
        let other = db.open().await;
        let release = Transition {
            from: &[UpgradeState::Queued],
            to: UpgradeState::Pending,
            result_code: None,
            result_msg: None,
            reason: None,
            released_at: Some(1.into()),
            count_push: false,
            keep_result: false,
        };
        let mut reversed = names.clone();
        reversed.reverse();
        let product = p("P1");
        for _ in 0..3 {
            let (a, b) = tokio::join!(
                store.transition(c.id, &product, &names, &release),
                other.transition(c.id, &product, &reversed, &release),
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert!(
                a.iter().all(|n| !b.contains(n)),
                "{}: claimed twice",
                db.engine
            );
            let back = Transition {
                from: &[UpgradeState::Pending],
                to: UpgradeState::Queued,
                released_at: None,
                ..release.clone()
            };
            assert_eq!(a.len() + b.len(), names.len(), "{}", db.engine);
            store
                .transition(c.id, &p("P1"), &names, &back)
                .await
                .unwrap();
        }
        db.drop().await;
    }
}

#[tokio::test]
async fn keys_and_signatures_round_trip() {
    for db in databases().await {
        let store = db.open().await;
        let p = ProductId::parse("P1").unwrap();
        store
            .create_product(&p, Dialect::Tencent, "P1", VersionScheme::Semver)
            .await
            .unwrap();
        store.add_product_key(&p, "k1", "AAAA", None).await.unwrap();
        store
            .add_product_key(&p, "k2", "BBBB", Some(("k1", "c2ln")))
            .await
            .unwrap();
        assert!(matches!(
            store.add_product_key(&p, "k1", "AAAA", None).await,
            Err(StoreError::Conflict(_))
        ));
        let keys = store.product_keys(&p).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].signed_by.as_deref(), Some("k1"));
        let fw = store
            .create_firmware(&NewFirmware {
                product: p.clone(),
                module: Module::default(),
                version: Version::parse("1.0").unwrap(),
                size: 1,
                md5: "m".into(),
                sha256: "s".into(),
            })
            .await
            .unwrap();
        assert_eq!(store.firmware_signature(fw.id).await.unwrap(), None);
        let mut sig = FirmwareSignature {
            firmware_id: fw.id,
            key_id: "k1".into(),
            sig: "c2ln".into(),
            issued: 10,
            expires: 20,
            downgrade: false,
            signed_at: 1.into(),
        };
        store.set_firmware_signature(&sig).await.unwrap();
        sig.issued = 11;
        sig.downgrade = true;
        store.set_firmware_signature(&sig).await.unwrap();
        assert_eq!(
            store.firmware_signature(fw.id).await.unwrap(),
            Some(sig.clone())
        );
        assert_eq!(store.firmware_signatures(&p).await.unwrap(), vec![sig]);
        db.drop().await;
    }
}

#[tokio::test]
async fn api_tokens_and_stored_secrets() {
    for db in databases().await {
        let store = db.open().await;
        let t = store.create_api_token("ci", "read", "h1").await.unwrap();
        assert!(matches!(
            store.create_api_token("again", "admin", "h1").await,
            Err(StoreError::Conflict(_))
        ));
        let used = store.use_api_token("h1").await.unwrap().unwrap();
        assert_eq!((used.id, used.scope.as_str()), (t.id, "read"));
        assert!(used.last_used.is_some());
        assert_eq!(store.use_api_token("nope").await.unwrap(), None);
        let revoked = store.revoke_api_token(t.id).await.unwrap();
        assert!(revoked.revoked_at.is_some());
        assert_eq!(store.use_api_token("h1").await.unwrap(), None);
        assert_eq!(
            store.revoke_api_token(t.id).await.unwrap().revoked_at,
            revoked.revoked_at,
            "revoking twice keeps the first time"
        );
        assert!(matches!(
            store.revoke_api_token(99).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.api_tokens().await.unwrap().len(), 1);

        store
            .create_product(&p("P1"), Dialect::Aliyun, "P1", VersionScheme::Semver)
            .await
            .unwrap();
        store
            .create_device(&p("P1"), &d("a"), "plain")
            .await
            .unwrap();
        store
            .create_device(&p("P1"), &d("b"), "sealed:v1:xyz")
            .await
            .unwrap();
        let plain = store
            .device_secrets_without_prefix("sealed:v1:")
            .await
            .unwrap();
        assert_eq!(plain, vec![("P1".into(), "a".into(), "plain".into())]);
        assert_eq!(
            store.device_secret_with_prefix("sealed:v1:").await.unwrap(),
            Some(("P1".into(), "b".into(), "sealed:v1:xyz".into())),
            "one sealed secret, for the start-up check of the secret key"
        );
        assert_eq!(
            store.device_secret_with_prefix("nothing:").await.unwrap(),
            None
        );
        store.ping().await.unwrap();
        store
            .set_device_secret(&p("P1"), &d("a"), "sealed:v1:abc")
            .await
            .unwrap();
        assert!(
            store
                .device_secrets_without_prefix("sealed:v1:")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.device(&p("P1"), &d("a")).await.unwrap().secret,
            "sealed:v1:abc"
        );
        assert!(matches!(
            store.set_device_secret(&p("P1"), &d("zz"), "x").await,
            Err(StoreError::NotFound(_))
        ));
        db.drop().await;
    }
}

#[tokio::test]
async fn node_membership_lists_live_nodes_in_one_order() {
    for db in databases().await {
        let a = db.open().await;
        let b = db.open().await;
        assert_eq!(
            a.node_heartbeat("node-b", 1_000, 0).await.unwrap(),
            ["node-b"]
        );
        assert_eq!(
            b.node_heartbeat("node-a", 1_500, 0).await.unwrap(),
            ["node-a", "node-b"]
        );
        // node-b stops beating: after the liveness window only node-a is left.
        assert_eq!(
            a.node_heartbeat("node-a", 9_000, 4_000).await.unwrap(),
            ["node-a"]
        );
        b.node_heartbeat("node-b", 9_100, 4_100).await.unwrap();
        b.node_leave("node-b").await.unwrap();
        assert_eq!(
            a.node_heartbeat("node-a", 9_200, 4_200).await.unwrap(),
            ["node-a"]
        );
        db.drop().await;
    }
}

#[tokio::test]
async fn version_reports_are_stored_in_batches() {
    for db in databases().await {
        let (store, _) = store_with_firmware(&db).await;
        let report = |device: &str, module: &str, version: &str, at: i64| VersionReport {
            product: p("P1"),
            device: d(device),
            module: Module::parse(module).unwrap(),
            version: v(version),
            at: at.into(),
        };
        store
            .record_versions(&[
                report("a", "default", "1.0", 1_000),
                report("a", "default", "1.2", 3_000),
                report("a", "default", "1.1", 2_000),
                report("a", "mcu", "7", 1_500),
                report("b", "default", "2.0", 4_000),
                // A device that does not exist (or was deleted meanwhile) is skipped.
                report("gone", "default", "9.9", 4_000),
            ])
            .await
            .unwrap();
        let a = store.versions(&p("P1"), &d("a")).await.unwrap();
        let a: Vec<(&str, &str, i64)> = a
            .iter()
            .map(|m| (m.module.as_str(), m.version.as_str(), m.reported_at.as_ms()))
            .collect();
        assert_eq!(a, [("default", "1.2", 3_000), ("mcu", "7", 1_500)]);
        assert_eq!(
            store.device(&p("P1"), &d("a")).await.unwrap().last_seen,
            Some(3_000.into())
        );
        assert_eq!(
            store.device(&p("P1"), &d("b")).await.unwrap().last_seen,
            Some(4_000.into())
        );
        // A batch that arrives late never moves a device back in time.
        store
            .record_versions(&[report("a", "default", "1.0", 2_500)])
            .await
            .unwrap();
        assert_eq!(
            store.versions(&p("P1"), &d("a")).await.unwrap()[0].version,
            v("1.2")
        );
        assert_eq!(
            store.device(&p("P1"), &d("a")).await.unwrap().last_seen,
            Some(3_000.into())
        );
        store.record_versions(&[]).await.unwrap();
        db.drop().await;
    }
}

#[tokio::test]
async fn device_changes_of_many_upgrades_commit_together() {
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
        let c = campaign(&store, &fw, &[d("a"), d("b")]).await.unwrap();
        let change = |device: &str, state: UpgradeState, percent: Option<u8>| UpgradeUpdate {
            campaign_id: c.id,
            product: p("P1"),
            device: d(device),
            from: UpgradeState::Queued,
            status: UpgradeStatus {
                state,
                percent,
                ..UpgradeStatus::pending(v("2.0"))
            },
            changed: true,
            push: false,
        };
        // b finishes first: a later change of b is no longer written.
        assert_eq!(
            store
                .update_upgrades(&[change("b", UpgradeState::Failed, None)])
                .await
                .unwrap(),
            [true]
        );
        let written = store
            .update_upgrades(&[
                change("a", UpgradeState::Downloading, Some(40)),
                change("b", UpgradeState::Downloading, Some(10)),
            ])
            .await
            .unwrap();
        assert_eq!(written, [true, false]);
        let a = store
            .live_upgrade(&p("P1"), &d("a"), &Module::default())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.status.state, a.status.percent),
            (UpgradeState::Downloading, Some(40))
        );
        let events = |device: &'static str| {
            let store = store.clone();
            async move {
                let events = store.device_events(&p("P1"), &d(device), 10).await.unwrap();
                events
                    .iter()
                    .map(|e| (e.state, e.percent))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(events("a").await[0], (UpgradeState::Downloading, Some(40)));
        assert_eq!(
            events("b").await[0],
            (UpgradeState::Failed, None),
            "no event for b's late change"
        );
        assert!(store.update_upgrades(&[]).await.unwrap().is_empty());

        // A push is counted in the same statement as the change it goes with; a push alone
        // (the status unchanged) leaves no history row; a change decided on a state the
        // upgrade has left is not written.
        let push = |from, state, changed| UpgradeUpdate {
            from,
            changed,
            push: true,
            ..change("a", state, None)
        };
        let before = events("a").await.len();
        let w = store
            .update_upgrades(&[push(UpgradeState::Downloading, UpgradeState::Pushed, true)])
            .await
            .unwrap();
        assert_eq!(w, [true]);
        let w = store
            .update_upgrades(&[push(UpgradeState::Pushed, UpgradeState::Pushed, false)])
            .await
            .unwrap();
        assert_eq!(w, [true]);
        let w = store
            .update_upgrades(&[push(UpgradeState::Downloading, UpgradeState::Pushed, true)])
            .await
            .unwrap();
        assert_eq!(w, [false], "stale: a is no longer downloading");
        let a = store
            .latest_upgrade(&p("P1"), &d("a"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.status.state, a.pushes), (UpgradeState::Pushed, 2));
        assert_eq!(
            events("a").await.len(),
            before + 1,
            "one row for one change"
        );
        db.drop().await;
    }
}

#[tokio::test]
async fn connects_and_disconnects_are_stored_in_batches() {
    for db in databases().await {
        let (store, _) = store_with_firmware(&db).await;
        let change = |device: &str, online: bool, at: i64| OnlineChange {
            product: p("P1"),
            device: d(device),
            online,
            connects: u32::from(online),
            at: at.into(),
        };
        store
            .set_online_many(&[change("a", true, 5_000), change("b", false, 6_000)])
            .await
            .unwrap();
        let a = store.device(&p("P1"), &d("a")).await.unwrap();
        assert_eq!((a.online, a.last_seen), (true, Some(5_000.into())));
        store
            .set_online_many(&[change("a", false, 4_000), change("b", true, 7_000)])
            .await
            .unwrap();
        let a = store.device(&p("P1"), &d("a")).await.unwrap();
        assert_eq!(
            (a.online, a.last_seen),
            (false, Some(5_000.into())),
            "last seen never goes back"
        );
        let online = store.online_devices(&p("P1")).await.unwrap();
        assert_eq!(online.into_iter().collect::<Vec<_>>(), [d("b")]);
        store.set_online_many(&[]).await.unwrap();
        db.drop().await;
    }
}

#[tokio::test]
async fn health_facts_and_bakes() {
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
        let mut nc = new_campaign(&fw, &[d("a"), d("b")], false);
        nc.slots[1].wave = 1;
        let c = store.create_campaign(&nc).await.unwrap();
        let a_done = UpgradeStatus {
            state: UpgradeState::Succeeded,
            ..UpgradeStatus::pending(v("2.0"))
        };
        assert!(
            store
                .update_upgrades(&[update(c.id, "a", &a_done)])
                .await
                .unwrap()[0]
        );
        let online = |device: &str, online: bool, connects: u32| OnlineChange {
            product: p("P1"),
            device: d(device),
            online,
            connects,
            at: otter_store::now_ms().into(),
        };
        store
            .set_online_many(&[online("a", true, 3), online("b", true, 1)])
            .await
            .unwrap();
        store
            .set_online_many(&[online("b", false, 0)])
            .await
            .unwrap();
        let crashes = std::collections::BTreeMap::from([("crashes".to_owned(), 2u64)]);
        for _ in 0..2 {
            store
                .add_device_counters(&p("P1"), &d("a"), &crashes)
                .await
                .unwrap();
        }
        let facts = store.health_facts(c.id, 0).await.unwrap();
        assert_eq!(
            facts,
            otter_store::HealthFacts {
                came_back: 1,
                not_back: 0,
                updated_offline: 0,
                updated_connects: 3,
                control: 1,
                control_offline: 1,
                control_connects: 1,
                counters: std::collections::BTreeMap::from([("crashes".to_owned(), 4)]),
            },
            "{}",
            db.engine
        );
        assert_eq!(
            store.device_counters(&p("P1"), &d("a")).await.unwrap()["crashes"],
            4
        );
        // A bake starts once and is judged once, whoever asks (two nodes, a restart).
        assert!(store.start_bake(c.id, 0, 1_000, &facts).await.unwrap());
        assert!(!store.start_bake(c.id, 0, 2_000, &facts).await.unwrap());
        let verdict = otter_core::health::Verdict::Unhealthy;
        let evaluation = serde_json::json!({ "summary": "unhealthy" });
        assert!(
            store
                .judge_bake(c.id, 0, 5_000, verdict, &evaluation)
                .await
                .unwrap()
        );
        assert!(
            !store
                .judge_bake(c.id, 0, 6_000, verdict, &evaluation)
                .await
                .unwrap()
        );
        store.accept_bakes(c.id).await.unwrap();
        let bakes = store.campaign_bakes(c.id).await.unwrap();
        assert_eq!(bakes.len(), 1);
        let b = &bakes[0];
        assert_eq!(
            (b.started_at, b.judged_at, b.verdict, b.accepted),
            (1_000.into(), Some(5_000.into()), Some(verdict), true)
        );
        assert_eq!(b.baseline, facts);
        db.drop().await;
    }
}

#[tokio::test]
async fn operators_and_console_sessions() {
    use otter_store::NewConsoleSession;
    for db in databases().await {
        let store = db.open().await;
        let alice = store
            .create_operator("alice", "operate", "$argon2id$v=19$fake")
            .await
            .unwrap();
        assert_eq!(
            (alice.name.as_str(), alice.scope.as_str()),
            ("alice", "operate")
        );
        assert_eq!(alice.disabled_at, None);
        assert!(matches!(
            store.create_operator("alice", "admin", "x").await,
            Err(StoreError::Conflict(_))
        ));
        store.create_operator("bob", "read", "h").await.unwrap();
        let names: Vec<String> = store
            .operators()
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["alice", "bob"]);
        let (found, hash) = store.operator_login("alice").await.unwrap().unwrap();
        assert_eq!((found.id, hash.as_str()), (alice.id, "$argon2id$v=19$fake"));
        assert_eq!(store.operator_login("nobody").await.unwrap(), None);

        // Sessions: live until revoked or expired.
        let now = otter_store::now_ms();
        let session =
            |hash: &'static str, actor: &'static str, token_id, expires_at| NewConsoleSession {
                session_hash: hash,
                actor,
                scope: "operate",
                token_id,
                expires_at,
            };
        store
            .create_console_session(&session("s1", "operator:alice", None, now + 60_000))
            .await
            .unwrap();
        let live = store.console_session("s1", now).await.unwrap().unwrap();
        assert_eq!(
            (live.actor.as_str(), live.scope.as_str()),
            ("operator:alice", "operate")
        );
        assert_eq!(
            store.console_session("s1", now + 60_000).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(store.console_session("nope", now).await.unwrap(), None);
        assert!(store.revoke_console_session("s1").await.unwrap());
        assert!(!store.revoke_console_session("s1").await.unwrap());
        assert_eq!(
            store.console_session("s1", now).await.unwrap(),
            None,
            "signed out"
        );

        // Disabling an operator ends its sessions and its sign-ins, for good.
        store
            .create_console_session(&session("s2", "operator:alice", None, now + 60_000))
            .await
            .unwrap();
        store
            .create_console_session(&session("s3", "operator:bob", None, now + 60_000))
            .await
            .unwrap();
        let disabled = store.disable_operator("alice").await.unwrap();
        assert!(disabled.disabled_at.is_some());
        assert_eq!(
            store.disable_operator("alice").await.unwrap().disabled_at,
            disabled.disabled_at,
            "disabling twice keeps the first time"
        );
        assert_eq!(store.console_session("s2", now).await.unwrap(), None);
        assert!(store.console_session("s3", now).await.unwrap().is_some());
        assert_eq!(store.operator_login("alice").await.unwrap(), None);
        assert!(matches!(
            store.disable_operator("carol").await,
            Err(StoreError::NotFound(_))
        ));

        // A session opened with an API token ends when the token is revoked.
        let token = store.create_api_token("ci", "read", "th").await.unwrap();
        store
            .create_console_session(&session("s4", "token:ci", Some(token.id), now + 60_000))
            .await
            .unwrap();
        assert!(store.console_session("s4", now).await.unwrap().is_some());
        store.revoke_api_token(token.id).await.unwrap();
        assert_eq!(store.console_session("s4", now).await.unwrap(), None);
        db.drop().await;
    }
}

#[tokio::test]
async fn deletes_are_refused_while_a_live_campaign_needs_them_and_take_their_rows_along() {
    for db in databases().await {
        let (store, fw) = store_with_firmware(&db).await;
        // Rows in every table a device, a firmware image and a product have.
        store
            .set_tags(&p("P1"), &d("a"), &["lab".into()], &[])
            .await
            .unwrap();
        store
            .record_versions(&[version_report("a", "1.0")])
            .await
            .unwrap();
        let counters = std::collections::BTreeMap::from([("crashes".to_owned(), 2u64)]);
        store
            .add_device_counters(&p("P1"), &d("a"), &counters)
            .await
            .unwrap();
        store
            .add_product_key(&p("P1"), "k1", "cHVibGlj", None)
            .await
            .unwrap();
        store
            .set_firmware_signature(&FirmwareSignature {
                firmware_id: fw.id,
                key_id: "k1".into(),
                sig: "c2ln".into(),
                issued: 1,
                expires: 2,
                downgrade: false,
                signed_at: 3.into(),
            })
            .await
            .unwrap();
        let live = campaign(&store, &fw, &[d("a")]).await.unwrap();
        store
            .start_bake(live.id, 0, 1, &Default::default())
            .await
            .unwrap();

        let conflict = |r: Result<otter_store::Removed, StoreError>| match r {
            Err(StoreError::Conflict(why)) => why,
            other => panic!("expected a conflict, got {other:?}"),
        };
        let why = conflict(store.delete_device(&p("P1"), &d("a")).await);
        assert!(
            why.contains(&format!("live campaign #{} (running)", live.id)),
            "{why}"
        );
        let why = conflict(
            store
                .delete_firmware(&p("P1"), &Module::default(), &v("2.0"), true)
                .await,
        );
        assert!(why.contains(&format!("#{}", live.id)), "{why}");
        let why = conflict(store.delete_product(&p("P1")).await);
        assert!(why.contains(&format!("#{}", live.id)), "{why}");
        assert!(matches!(
            store.delete_device(&p("P1"), &d("ghost")).await,
            Err(StoreError::NotFound(_))
        ));

        // Outside any live campaign: gone, and a device of that name can be made again.
        let removed = store.delete_device(&p("P1"), &d("b")).await.unwrap();
        assert_eq!(removed.devices, 1);
        assert!(matches!(
            store.device(&p("P1"), &d("b")).await,
            Err(StoreError::NotFound(_))
        ));
        store
            .create_device(&p("P1"), &d("b"), "eA==")
            .await
            .unwrap();

        // Finished: firmware history is kept unless purged.
        store
            .set_campaign_state(live.id, CampaignState::Finished, None)
            .await
            .unwrap();
        let why = conflict(
            store
                .delete_firmware(&p("P1"), &Module::default(), &v("2.0"), false)
                .await,
        );
        assert!(why.contains("purge"), "{why}");
        // Another image with the same content keeps the blob referenced.
        let twin = store
            .create_firmware(&NewFirmware {
                version: v("2.1"),
                ..NewFirmware {
                    product: p("P1"),
                    module: Module::default(),
                    version: v("x"),
                    size: 10,
                    md5: "m".into(),
                    sha256: "s".into(),
                }
            })
            .await
            .unwrap();
        let removed = store
            .delete_firmware(&p("P1"), &Module::default(), &v("2.0"), true)
            .await
            .unwrap();
        assert_eq!(removed.campaigns, [live.id]);
        assert!(removed.unreferenced_blobs.is_empty(), "{removed:?}");
        assert!(store.blob_referenced("s").await.unwrap());
        assert!(matches!(
            store.campaign(live.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.firmware_signature(fw.id).await.unwrap().is_none());
        // The device left the purged campaign's history; it can be deleted now.
        assert!(
            store
                .device_events(&p("P1"), &d("a"), 10)
                .await
                .unwrap()
                .is_empty()
        );

        // The product goes with everything, and the last image's blob is reported unreferenced.
        let other = campaign(&store, &twin, &[d("a")]).await.unwrap();
        store
            .set_campaign_state(other.id, CampaignState::Canceled, None)
            .await
            .unwrap();
        let removed = store.delete_product(&p("P1")).await.unwrap();
        assert_eq!(removed.devices, 2);
        assert_eq!(removed.firmware, 1);
        assert_eq!(removed.campaigns, [other.id]);
        assert_eq!(removed.unreferenced_blobs, ["s"]);
        assert!(!store.blob_referenced("s").await.unwrap());
        assert!(store.products().await.unwrap().is_empty());
        // Nothing of it is left to trip a product made again under the same id.
        store
            .create_product(&p("P1"), Dialect::Tencent, "again", VersionScheme::Semver)
            .await
            .unwrap();
        store
            .create_device(&p("P1"), &d("a"), "eA==")
            .await
            .unwrap();
        assert!(store.tags(&p("P1"), &d("a")).await.unwrap().is_empty());
        assert!(store.versions(&p("P1"), &d("a")).await.unwrap().is_empty());
        assert!(store.product_keys(&p("P1")).await.unwrap().is_empty());
        assert!(
            store
                .device_counters(&p("P1"), &d("a"))
                .await
                .unwrap()
                .is_empty()
        );
        db.drop().await;
    }
}
