//! The store's records and the engine's results as the API's bodies (crate otter-api), and the
//! API's requests as the engine's. Field for field: the wire shape is otter-api's.

use otter_api as api;
use otter_core::Dialect;
use otter_engine::campaigns::{CampaignRequest, Created};

pub fn product(p: otter_store::Product) -> api::Product {
    api::Product {
        id: p.id.to_string(),
        dialect: p.dialect,
        name: p.name,
        version_scheme: p.version_scheme,
        created_at: p.created_at,
    }
}

pub fn product_key(k: otter_store::ProductKey) -> api::ProductKey {
    api::ProductKey {
        product: k.product.to_string(),
        key_id: k.key_id,
        public_key: k.public_key,
        signed_by: k.signed_by,
        announcement: k.announcement,
        created_at: k.created_at,
    }
}

pub fn device(d: otter_store::Device) -> api::Device {
    api::Device {
        product: d.product.to_string(),
        name: d.name.to_string(),
        online: d.online,
        last_seen: d.last_seen,
        created_at: d.created_at,
    }
}

pub fn module_version(v: otter_store::ModuleVersion) -> api::ModuleVersion {
    api::ModuleVersion {
        module: v.module.to_string(),
        version: v.version.to_string(),
        reported_at: v.reported_at,
    }
}

pub fn upgrade_event(e: otter_store::UpgradeEvent) -> api::UpgradeEvent {
    api::UpgradeEvent {
        campaign_id: e.campaign_id,
        device: e.device.to_string(),
        at: e.at,
        state: e.state,
        percent: e.percent,
        result_code: e.result_code,
        result_msg: e.result_msg,
        reason: e.reason,
    }
}

pub fn firmware_state(s: otter_store::FirmwareState) -> api::FirmwareState {
    use otter_store::FirmwareState as S;
    match s {
        S::Uploaded => api::FirmwareState::Uploaded,
        S::Verifying => api::FirmwareState::Verifying,
        S::Verified => api::FirmwareState::Verified,
        S::Rejected => api::FirmwareState::Rejected,
    }
}

pub fn firmware(f: otter_store::Firmware) -> api::Firmware {
    api::Firmware {
        id: f.id,
        product: f.product.to_string(),
        module: f.module.to_string(),
        version: f.version.to_string(),
        size: f.size,
        md5: f.md5,
        sha256: f.sha256,
        state: firmware_state(f.state),
        created_at: f.created_at,
    }
}

pub fn signature(g: otter_store::FirmwareSignature) -> api::FirmwareSignature {
    api::FirmwareSignature {
        firmware_id: g.firmware_id,
        key_id: g.key_id,
        sig: g.sig,
        issued: g.issued,
        expires: g.expires,
        downgrade: g.downgrade,
        signed_at: g.signed_at,
    }
}

pub fn firmware_view(
    f: otter_store::Firmware,
    g: Option<otter_store::FirmwareSignature>,
) -> api::FirmwareView {
    api::FirmwareView {
        firmware: firmware(f),
        signature: g.map(signature),
    }
}

/// A signature document as the protocol crate checks it.
pub fn signature_doc(d: api::SignatureDocument) -> otter_protocol::SignatureDoc {
    otter_protocol::SignatureDoc {
        format: d.format,
        release: otter_protocol::SignedRelease {
            product: d.product,
            module: d.module,
            version: d.version,
            size: d.size,
            sha256: d.sha256,
            issued: d.issued,
            expires: d.expires,
            downgrade: d.downgrade,
        },
        key: d.key,
        sig: d.sig,
    }
}

pub fn campaign_kind(k: otter_store::CampaignKind) -> api::CampaignKind {
    match k {
        otter_store::CampaignKind::Rollout => api::CampaignKind::Rollout,
        otter_store::CampaignKind::Verification => api::CampaignKind::Verification,
    }
}

pub fn campaign(c: otter_store::Campaign) -> api::Campaign {
    api::Campaign {
        id: c.id,
        product: c.product.to_string(),
        firmware_id: c.firmware_id,
        kind: campaign_kind(c.kind),
        state: c.state,
        reason: c.reason,
        mode: c.mode,
        selection: c.selection,
        strategy: c.strategy,
        allow_downgrade: c.allow_downgrade,
        skip_verification: c.skip_verification,
        rollback_of: c.rollback_of,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

/// The store's counts as they serialize (state names, alphabetical, as stored).
pub fn counts(c: &otter_store::StateCounts) -> api::StateCounts {
    serde_json::to_value(c)
        .and_then(serde_json::from_value)
        .unwrap_or_default()
}

pub fn reason_count(r: otter_store::ReasonCount) -> api::ReasonCount {
    api::ReasonCount {
        state: r.state,
        reason: r.reason,
        devices: r.devices,
    }
}

pub fn health_facts(h: otter_store::HealthFacts) -> api::HealthFacts {
    api::HealthFacts {
        came_back: h.came_back,
        not_back: h.not_back,
        updated_offline: h.updated_offline,
        updated_connects: h.updated_connects,
        control: h.control,
        control_offline: h.control_offline,
        control_connects: h.control_connects,
        counters: h.counters,
    }
}

pub fn bake(b: otter_store::BakeRecord) -> api::BakeRecord {
    api::BakeRecord {
        campaign_id: b.campaign_id,
        wave: b.wave,
        started_at: b.started_at,
        baseline: health_facts(b.baseline),
        judged_at: b.judged_at,
        verdict: b.verdict,
        evaluation: b.evaluation,
        accepted: b.accepted,
    }
}

/// One device's upgrade; `dialect` (its product's) explains its result code.
pub fn upgrade(u: otter_store::Upgrade, dialect: Dialect) -> api::Upgrade {
    let retrying = u.status.reason == Some(otter_core::Reason::Retrying);
    api::Upgrade {
        result_text: u
            .status
            .result_code
            .map(|code| otter_protocol::codes::explain(dialect, code).to_owned()),
        retry_not_before: u
            .released_at
            .filter(|_| retrying)
            .map(|at| otter_core::campaign::retry_not_before(at.as_ms()).into()),
        campaign_id: u.campaign_id,
        product: u.product.to_string(),
        device: u.device.to_string(),
        module: u.module.to_string(),
        target: u.status.target.to_string(),
        state: u.status.state,
        percent: u.status.percent,
        result_code: u.status.result_code,
        result_msg: u.status.result_msg,
        reason: u.status.reason,
        pushes: u.pushes,
        ordinal: u.ordinal,
        wave: u.wave,
        attempts: u.attempts,
        released_at: u.released_at,
        from_version: u.from_version.map(|v| v.to_string()),
        mode: u.mode,
        allow_downgrade: u.allow_downgrade,
        version_scheme: u.version_scheme,
        created_at: u.created_at,
        updated_at: u.updated_at,
    }
}

pub fn upgrades(list: Vec<otter_store::Upgrade>, dialect: Dialect) -> Vec<api::Upgrade> {
    list.into_iter().map(|u| upgrade(u, dialect)).collect()
}

pub fn targeting(t: otter_core::targeting::Targeting) -> api::Targeting {
    api::Targeting {
        selected: t.selected.iter().map(ToString::to_string).collect(),
        skipped: t
            .skipped
            .into_iter()
            .map(|s| api::Skipped {
                device: s.device,
                reason: s.reason,
                code: s.code,
            })
            .collect(),
    }
}

/// What creating (or dry-running) a campaign produced, as `POST /campaigns` answers it.
pub fn campaign_created(
    view: Option<api::CampaignView>,
    dry_run: bool,
    created: Created,
    upgrades: Vec<otter_store::Upgrade>,
    dialect: Dialect,
) -> api::CampaignCreated {
    api::CampaignCreated {
        view,
        dry_run,
        campaign: created.campaign.map(campaign),
        targeting: targeting(created.targeting),
        waves: created.waves,
        projection: created.projection,
        upgrades: self::upgrades(upgrades, dialect),
    }
}

/// A rollout request as the engine takes it.
pub fn campaign_request(c: api::NewCampaign) -> CampaignRequest {
    CampaignRequest {
        product: c.product,
        version: c.version,
        module: c.module,
        selection: c.selection,
        device_file: c.device_file,
        strategy: c.strategy,
        mode: c.mode,
        dry_run: c.dry_run,
        supersede: c.supersede,
        allow_downgrade: c.allow_downgrade,
        skip_verification: c.skip_verification,
        rollback_of: None,
    }
}

pub fn api_token(t: otter_store::ApiToken) -> api::ApiToken {
    api::ApiToken {
        id: t.id,
        name: t.name,
        scope: t.scope,
        created_at: t.created_at,
        last_used: t.last_used,
        revoked_at: t.revoked_at,
    }
}

pub fn operator(o: otter_store::Operator) -> api::OperatorAccount {
    api::OperatorAccount {
        id: o.id,
        name: o.name,
        scope: o.scope,
        created_at: o.created_at,
        disabled_at: o.disabled_at,
    }
}

pub fn audit_entry(e: otter_store::AuditEntry) -> api::AuditEntry {
    api::AuditEntry {
        id: e.id,
        at: e.at,
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        detail: e.detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otter_core::campaign::{CampaignState, Strategy};
    use otter_core::{
        CampaignMode, DeviceName, Module, ProductId, Reason, Timestamp, UpgradeState,
        UpgradeStatus, Version, VersionScheme,
    };
    use serde::Serialize;

    /// The API's body serializes to exactly the bytes the store's record did.
    fn same_json(record: &impl Serialize, body: &impl Serialize) {
        assert_eq!(
            serde_json::to_string(record).unwrap(),
            serde_json::to_string(body).unwrap()
        );
    }

    fn upgrade_record() -> otter_store::Upgrade {
        otter_store::Upgrade {
            campaign_id: 7,
            product: ProductId::parse("P1").unwrap(),
            device: DeviceName::parse("d1").unwrap(),
            module: Module::parse("default").unwrap(),
            status: UpgradeStatus {
                target: Version::parse("2.0").unwrap(),
                state: UpgradeState::Failed,
                percent: Some(40),
                result_code: Some(-2),
                result_msg: Some("flash".into()),
                reason: Some(Reason::DeviceOffline),
            },
            pushes: 2,
            ordinal: 1,
            wave: 0,
            attempts: 1,
            released_at: None,
            from_version: Some(Version::parse("1.0").unwrap()),
            mode: CampaignMode::Push,
            allow_downgrade: false,
            version_scheme: VersionScheme::Numeric,
            created_at: Timestamp::from_ms(1),
            updated_at: Timestamp::from_ms(2),
        }
    }

    #[test]
    fn bodies_serialize_as_the_records_did() {
        let product = otter_store::Product {
            id: ProductId::parse("P1").unwrap(),
            dialect: Dialect::Aliyun,
            name: "P one".into(),
            version_scheme: VersionScheme::Semver,
            created_at: Timestamp::from_ms(5),
        };
        same_json(&product, &super::product(product.clone()));
        let device = otter_store::Device {
            product: ProductId::parse("P1").unwrap(),
            name: DeviceName::parse("d1").unwrap(),
            secret: "sealed".into(),
            online: true,
            last_seen: None,
            created_at: Timestamp::from_ms(3),
        };
        same_json(&device, &super::device(device.clone()));
        let firmware = otter_store::Firmware {
            id: 4,
            product: ProductId::parse("P1").unwrap(),
            module: Module::parse("default").unwrap(),
            version: Version::parse("2.0").unwrap(),
            size: 10,
            md5: "m".into(),
            sha256: "s".into(),
            state: otter_store::FirmwareState::Verifying,
            created_at: Timestamp::from_ms(6),
        };
        same_json(&firmware, &super::firmware(firmware.clone()));
        // The API's upgrade is the record's plus what Otter explains: its code in words, and
        // when a retry is due.
        let mut body =
            serde_json::to_value(super::upgrade(upgrade_record(), Dialect::Tencent)).unwrap();
        let extra = body.as_object_mut().unwrap();
        assert_eq!(
            extra.remove("result_text"),
            Some(serde_json::json!("firmware file not found (HTTP 404)"))
        );
        assert_eq!(
            extra.remove("retry_not_before"),
            Some(serde_json::Value::Null)
        );
        let record = serde_json::to_value(upgrade_record()).unwrap();
        assert_eq!(record, body);
        let campaign = otter_store::Campaign {
            id: 7,
            product: ProductId::parse("P1").unwrap(),
            firmware_id: 4,
            kind: otter_store::CampaignKind::Verification,
            state: CampaignState::Paused,
            reason: Some("why".into()),
            mode: CampaignMode::Requested,
            selection: serde_json::json!({ "devices": ["d1"] }),
            strategy: Strategy::default(),
            allow_downgrade: true,
            skip_verification: false,
            rollback_of: None,
            created_at: Timestamp::from_ms(1),
            updated_at: Timestamp::from_ms(2),
        };
        same_json(&campaign, &super::campaign(campaign.clone()));
        let event = otter_store::UpgradeEvent {
            campaign_id: 7,
            device: DeviceName::parse("d1").unwrap(),
            at: Timestamp::from_ms(9),
            state: UpgradeState::Burning,
            percent: None,
            result_code: None,
            result_msg: None,
            reason: Some(Reason::InstallReported),
        };
        same_json(&event, &super::upgrade_event(event.clone()));
        let bake = otter_store::BakeRecord {
            campaign_id: 7,
            wave: 1,
            started_at: Timestamp::from_ms(3),
            baseline: otter_store::HealthFacts::default(),
            judged_at: Some(Timestamp::from_ms(4)),
            verdict: Some(otter_core::health::Verdict::Unhealthy),
            evaluation: Some(serde_json::json!({ "evaluation": { "summary": "x" } })),
            accepted: false,
        };
        same_json(&bake, &super::bake(bake.clone()));
        let counts = otter_store::StateCounts::default();
        same_json(&counts, &super::counts(&counts));
    }

    #[test]
    fn a_campaign_request_reads_as_the_engines_did() {
        let cases = [
            r#"{"product":"P1","version":"2.0","selection":{"devices":["d1"]}}"#,
            r#"{"product":"P1","version":"2.0","module":"m","mode":"requested","dry_run":true,
                "strategy":{"waves":[10,100],"abort":{"failure_percent":5}},"device_file":"d1\n"}"#,
            r#"{"product":"P1","version":"2.0","mode":"sideways"}"#,
            r#"{"product":"P1","strategy":{"waves":"all"}}"#,
            r#"{"version":"2.0"}"#,
        ];
        for case in cases {
            let engine = serde_json::from_str::<CampaignRequest>(case);
            let api = serde_json::from_str::<api::NewCampaign>(case).map(campaign_request);
            match (engine, api) {
                (Ok(e), Ok(a)) => assert_eq!(format!("{e:?}"), format!("{a:?}"), "{case}"),
                (Err(e), Err(a)) => assert_eq!(e.to_string(), a.to_string(), "{case}"),
                (e, a) => panic!("{case}: engine {e:?}, api {a:?}"),
            }
        }
    }
}
