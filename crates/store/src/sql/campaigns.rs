//! Campaigns, device upgrades and their history. Every state change of an upgrade writes an
//! event in the same transaction, so the history never disagrees with the current state.

use super::{Db, Engine, conflict_or, convert, corrupt, parse_scheme};
use crate::*;
use otter_core::Timestamp;
use otter_core::campaign::{CampaignState, Strategy};
use otter_core::{DeviceName, Module, ProductId, Reason, UpgradeState, UpgradeStatus, Version};

/// Upgrade rows with what `decide` needs from their campaign and product, then `$rest`.
macro_rules! upgrade_select {
    ($rest:expr) => {
        concat!(
            "SELECT u.*, c.mode, c.allow_downgrade, p.version_scheme FROM upgrades u
             JOIN campaigns c ON c.id = u.campaign_id JOIN products p ON p.id = u.product_id",
            $rest
        )
    };
}

/// The history row of an upgrade's current state (columns in the order `log_event` inserts).
macro_rules! event_columns {
    () => {
        "campaign_id, product_id, device_name, at, state, percent, result_code, result_msg, reason"
    };
}
use sqlx::{FromRow, Row, Transaction};

#[derive(FromRow)]
struct UpgradeRow {
    campaign_id: i64,
    product_id: String,
    device_name: String,
    module: String,
    target: String,
    state: String,
    percent: Option<i64>,
    result_code: Option<i64>,
    result_msg: Option<String>,
    reason: Option<String>,
    pushes: i64,
    ordinal: i64,
    wave: i64,
    attempts: i64,
    released_at: Option<i64>,
    from_version: Option<String>,
    mode: String,
    allow_downgrade: bool,
    version_scheme: String,
    created_at: i64,
    updated_at: i64,
}

pub(crate) fn parse_reason(r: Option<String>) -> Result<Option<Reason>> {
    r.map(|r| Reason::parse(&r).ok_or_else(|| corrupt(format!("upgrade reason {r:?}"))))
        .transpose()
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("{what}: {e}")))
}

impl TryFrom<UpgradeRow> for Upgrade {
    type Error = StoreError;
    fn try_from(r: UpgradeRow) -> Result<Self> {
        let state = UpgradeState::parse(&r.state)
            .ok_or_else(|| corrupt(format!("upgrade state {:?}", r.state)))?;
        Ok(Upgrade {
            campaign_id: r.campaign_id,
            product: ProductId::parse(r.product_id).map_err(corrupt)?,
            device: DeviceName::parse(r.device_name).map_err(corrupt)?,
            module: Module::parse(r.module).map_err(corrupt)?,
            status: UpgradeStatus {
                target: Version::parse(r.target).map_err(corrupt)?,
                state,
                percent: r.percent.map(|p| p.clamp(0, 100) as u8),
                result_code: r.result_code.map(|c| c as i32),
                result_msg: r.result_msg,
                reason: parse_reason(r.reason)?,
            },
            pushes: r.pushes,
            ordinal: r.ordinal,
            wave: u32::try_from(r.wave).map_err(corrupt)?,
            attempts: u32::try_from(r.attempts).map_err(corrupt)?,
            released_at: r.released_at.map(Timestamp::from),
            from_version: r
                .from_version
                .map(Version::parse)
                .transpose()
                .map_err(corrupt)?,
            mode: CampaignMode::parse(&r.mode)
                .ok_or_else(|| corrupt(format!("campaign mode {:?}", r.mode)))?,
            allow_downgrade: r.allow_downgrade,
            version_scheme: parse_scheme(&r.version_scheme)?,
            created_at: r.created_at.into(),
            updated_at: r.updated_at.into(),
        })
    }
}

#[derive(FromRow)]
struct CampaignRow {
    id: i64,
    product_id: String,
    firmware_id: i64,
    kind: String,
    state: String,
    reason: Option<String>,
    mode: String,
    selection: String,
    strategy: String,
    allow_downgrade: bool,
    skip_verification: bool,
    rollback_of: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<CampaignRow> for Campaign {
    type Error = StoreError;
    fn try_from(r: CampaignRow) -> Result<Self> {
        Ok(Campaign {
            id: r.id,
            product: ProductId::parse(r.product_id).map_err(corrupt)?,
            firmware_id: r.firmware_id,
            kind: CampaignKind::parse(&r.kind)
                .ok_or_else(|| corrupt(format!("campaign kind {:?}", r.kind)))?,
            state: CampaignState::parse(&r.state)
                .ok_or_else(|| corrupt(format!("campaign state {:?}", r.state)))?,
            reason: r.reason,
            mode: CampaignMode::parse(&r.mode)
                .ok_or_else(|| corrupt(format!("campaign mode {:?}", r.mode)))?,
            selection: parse_json("campaign selection", &r.selection)?,
            strategy: parse_json::<Strategy>("campaign strategy", &r.strategy)?,
            allow_downgrade: r.allow_downgrade,
            skip_verification: r.skip_verification,
            rollback_of: r.rollback_of,
            created_at: r.created_at.into(),
            updated_at: r.updated_at.into(),
        })
    }
}

/// Writes one history entry for the upgrade's current row (inside the caller's transaction).
async fn log_event(
    tx: &mut Transaction<'static, Db>,
    campaign_id: i64,
    product: &ProductId,
    device: &DeviceName,
) -> Result<()> {
    const SQL: &str = concat!(
        "INSERT INTO upgrade_events (",
        event_columns!(),
        ") SELECT campaign_id, product_id, device_name, updated_at, state, percent, result_code, result_msg, reason
         FROM upgrades WHERE campaign_id = $1 AND product_id = $2 AND device_name = $3"
    );
    sqlx::query(SQL)
        .bind(campaign_id)
        .bind(product.as_str())
        .bind(device.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Engine {
    /// Creates a campaign and its device upgrades (queued) in one transaction. A device already in
    /// a live upgrade of the module refuses the whole campaign with an error naming it, unless
    /// `supersede`, which cancels that other upgrade.
    pub async fn create_campaign(&self, c: &NewCampaign) -> Result<Campaign> {
        let now = now_ms();
        let fw = &c.firmware;
        let strategy = serde_json::to_string(&c.strategy).map_err(corrupt)?;
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO campaigns (product_id, firmware_id, kind, state, mode, selection, strategy, allow_downgrade, skip_verification, rollback_of, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $10, $10) RETURNING id",
        )
        .bind(fw.product.as_str())
        .bind(fw.id)
        .bind(c.kind.as_str())
        .bind(c.state.as_str())
        .bind(c.mode.as_str())
        .bind(c.selection.to_string())
        .bind(strategy)
        .bind(c.allow_downgrade)
        .bind(c.skip_verification)
        .bind(now)
        .bind(c.rollback_of)
        .fetch_one(&mut *tx)
        .await?;
        for (ordinal, slot) in c.slots.iter().enumerate() {
            // A skipped device is never offered anything: it leaves its other campaigns alone.
            if c.supersede && slot.skipped.is_none() {
                supersede(&mut tx, id, &fw.product, &slot.device, &fw.module).await?;
            }
            let (state, reason, text) = match &slot.skipped {
                Some((reason, text)) => (
                    UpgradeState::Skipped,
                    Some(reason.as_str()),
                    Some(text.as_str()),
                ),
                None => (UpgradeState::Queued, None, None),
            };
            sqlx::query(
                "INSERT INTO upgrades (campaign_id, product_id, device_name, module, target, state, ordinal, wave, from_version, reason, result_msg, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)",
            )
            .bind(id)
            .bind(fw.product.as_str())
            .bind(slot.device.as_str())
            .bind(fw.module.as_str())
            .bind(fw.version.as_str())
            .bind(state.as_str())
            .bind(ordinal as i64)
            .bind(i64::from(slot.wave))
            .bind(slot.from_version.as_ref().map(Version::as_str))
            .bind(reason)
            .bind(text)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound(format!("device {}/{}", fw.product, slot.device)),
                _ => conflict_or(e, || format!("device {}/{} is already in a live campaign for module {} (use supersede, otter: --supersede, to replace it)", fw.product, slot.device, fw.module)),
            })?;
            log_event(&mut tx, id, &fw.product, &slot.device).await?;
        }
        tx.commit().await?;
        self.campaign(id).await
    }

    pub async fn campaign(&self, id: i64) -> Result<Campaign> {
        let row: Option<CampaignRow> = sqlx::query_as("SELECT * FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reads)
            .await?;
        row.ok_or_else(|| StoreError::NotFound(format!("campaign #{id}")))?
            .try_into()
    }

    pub async fn campaigns(&self, product: Option<&ProductId>) -> Result<Vec<Campaign>> {
        let rows: Vec<CampaignRow> = match product {
            Some(p) => {
                sqlx::query_as("SELECT * FROM campaigns WHERE product_id = $1 ORDER BY id DESC")
                    .bind(p.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_as("SELECT * FROM campaigns ORDER BY id DESC")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        convert(rows)
    }

    /// Campaigns the planner still has work for.
    pub async fn live_campaigns(&self) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM campaigns WHERE state IN ('scheduled', 'running', 'paused') ORDER BY id").fetch_all(&self.pool).await?)
    }

    pub async fn set_campaign_state(
        &self,
        id: i64,
        state: CampaignState,
        reason: Option<&str>,
    ) -> Result<()> {
        let done = sqlx::query(
            "UPDATE campaigns SET state = $1, reason = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("campaign #{id}")));
        }
        Ok(())
    }

    /// Replaces the stored strategy (an operator overriding the success gate on resume).
    pub async fn set_campaign_strategy(&self, id: i64, strategy: &Strategy) -> Result<()> {
        sqlx::query("UPDATE campaigns SET strategy = $1, updated_at = $2 WHERE id = $3")
            .bind(serde_json::to_string(strategy).map_err(corrupt)?)
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn campaign_counts(&self, id: i64) -> Result<StateCounts> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM upgrades WHERE campaign_id = $1 GROUP BY state",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await?;
        let mut counts = StateCounts::default();
        for r in rows {
            let state: String = r.try_get("state")?;
            let state = UpgradeState::parse(&state)
                .ok_or_else(|| super::corrupt(format!("upgrade state {state:?}")))?;
            counts.add(state, r.try_get("n")?);
        }
        Ok(counts)
    }

    pub async fn campaign_reasons(&self, id: i64) -> Result<Vec<ReasonCount>> {
        let rows = sqlx::query(
            "SELECT state, reason, COUNT(*) AS n FROM upgrades WHERE campaign_id = $1 AND reason IS NOT NULL
             GROUP BY state, reason ORDER BY state, reason",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await?;
        rows.into_iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(ReasonCount {
                    state: UpgradeState::parse(&state)
                        .ok_or_else(|| corrupt(format!("upgrade state {state:?}")))?,
                    reason: parse_reason(r.try_get("reason")?)?.ok_or_else(|| corrupt("reason"))?,
                    devices: r.try_get("n")?,
                })
            })
            .collect()
    }

    /// A campaign's device upgrades in rollout order, optionally only those in `state`.
    pub async fn campaign_upgrades(
        &self,
        id: i64,
        state: Option<UpgradeState>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Upgrade>> {
        const SQL: &str = upgrade_select!(
            " WHERE u.campaign_id = $1 AND ($2 IS NULL OR u.state = $2) ORDER BY u.ordinal LIMIT $3 OFFSET $4"
        );
        convert(
            sqlx::query_as::<_, UpgradeRow>(SQL)
                .bind(id)
                .bind(state.map(UpgradeState::as_str))
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The device's live upgrade of `module`, if any (at most one, by a unique index).
    pub async fn live_upgrade(
        &self,
        product: &ProductId,
        device: &DeviceName,
        module: &Module,
    ) -> Result<Option<Upgrade>> {
        const SQL: &str = upgrade_select!(live_states!(
            " WHERE u.product_id = $1 AND u.device_name = $2 AND u.module = $3 AND u.state IN "
        ));
        let row: Option<UpgradeRow> = sqlx::query_as(SQL)
            .bind(product.as_str())
            .bind(device.as_str())
            .bind(module.as_str())
            .fetch_optional(&self.reads)
            .await?;
        row.map(Upgrade::try_from).transpose()
    }

    /// The device's most recent upgrade, live or not, for `device show`.
    pub async fn latest_upgrade(
        &self,
        product: &ProductId,
        device: &DeviceName,
    ) -> Result<Option<Upgrade>> {
        const SQL: &str = upgrade_select!(
            " WHERE u.product_id = $1 AND u.device_name = $2 ORDER BY u.updated_at DESC, u.campaign_id DESC LIMIT 1"
        );
        let row: Option<UpgradeRow> = sqlx::query_as(SQL)
            .bind(product.as_str())
            .bind(device.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(Upgrade::try_from).transpose()
    }

    /// Device-driven status changes of many upgrades in one transaction of two statements
    /// (set-based; the changes travel as one JSON parameter): each is written only while its
    /// upgrade is live, with its event. Returns, per change, whether it was written. At most one
    /// change per upgrade in a batch (the engine handles a device's messages in order).
    pub async fn update_upgrades(&self, updates: &[UpgradeUpdate]) -> Result<Vec<bool>> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let rows: Vec<serde_json::Value> = updates
            .iter()
            .map(|u| {
                serde_json::json!({ "c": u.campaign_id, "p": u.product.as_str(),
                    "d": u.device.as_str(), "f": u.from.as_str(), "s": u.status.state.as_str(),
                    "pc": u.status.percent, "rc": u.status.result_code,
                    "rm": u.status.result_msg, "r": u.status.reason.map(Reason::as_str),
                    "n": i64::from(u.push), "t": now })
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        // Written only from the state it was decided on, which is live (a `from` of a finished
        // state never matches: `decide` ignores finished upgrades).
        const MOVE: &str = concat!(
            "UPDATE upgrades SET state = x.s, percent = x.pc, result_code = x.rc,
                    result_msg = x.rm, reason = x.r, pushes = upgrades.pushes + x.n, updated_at = x.t
             FROM ",
            upgrade_rows!("$1"),
            " WHERE upgrades.campaign_id = x.c AND upgrades.product_id = x.p
               AND upgrades.device_name = x.d AND upgrades.state = x.f AND upgrades.state IN ",
            live_states!(""),
            " RETURNING upgrades.campaign_id, upgrades.product_id, upgrades.device_name"
        );
        const LOG: &str = concat!(
            "INSERT INTO upgrade_events (",
            event_columns!(),
            ") SELECT u.campaign_id, u.product_id, u.device_name, u.updated_at, u.state, u.percent, u.result_code, u.result_msg, u.reason
             FROM upgrades u JOIN ",
            upgrade_rows!("$1"),
            " ON u.campaign_id = x.c AND u.product_id = x.p AND u.device_name = x.d"
        );
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(MOVE)
            .bind(rows.as_str())
            .fetch_all(&mut *tx)
            .await?;
        // Which changes moved: RETURNING rows matched back to them (one change per upgrade).
        let index: std::collections::HashMap<(i64, &str, &str), usize> = updates
            .iter()
            .enumerate()
            .map(|(i, u)| ((u.campaign_id, u.product.as_str(), u.device.as_str()), i))
            .collect();
        let mut written = vec![false; updates.len()];
        for row in &moved {
            let campaign: i64 = row.try_get("campaign_id")?;
            let product: &str = row.try_get("product_id")?;
            let device: &str = row.try_get("device_name")?;
            if let Some(&i) = index.get(&(campaign, product, device)) {
                written[i] = true;
            }
        }
        // History rows only for the changes that moved a status: a push alone is no event.
        let logged: Vec<serde_json::Value> = updates
            .iter()
            .zip(&written)
            .filter(|(u, w)| **w && u.changed)
            .map(|(u, _)| serde_json::json!({ "c": u.campaign_id, "p": u.product.as_str(), "d": u.device.as_str() }))
            .collect();
        if !logged.is_empty() {
            let logged = serde_json::Value::Array(logged).to_string();
            sqlx::query(LOG)
                .bind(logged.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Planner-driven transitions of several devices of one campaign, in one transaction: each
    /// device moves to `to` only if it is in one of `from`. `released_at` set means a release
    /// (attempts + 1). Returns the devices that moved.
    pub async fn transition(
        &self,
        campaign_id: i64,
        product: &ProductId,
        devices: &[DeviceName],
        change: &Transition<'_>,
    ) -> Result<Vec<DeviceName>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        // Set-based: two statements whatever the number of devices (a wave can be 20,000).
        let from: Vec<&str> = change.from.iter().map(|s| s.as_str()).collect();
        let from = serde_json::to_string(&from).map_err(corrupt)?;
        let names: Vec<&str> = devices.iter().map(DeviceName::as_str).collect();
        let names = serde_json::to_string(&names).map_err(corrupt)?;
        let mut tx = self.pool.begin().await?;
        // A conditional update is the claim: on PostgreSQL a concurrent transition of the same
        // rows waits for this one, then re-checks `state` and skips the rows already moved, so
        // two nodes never both move (and push to) one device.
        const MOVE: &str = concat!(
            "UPDATE upgrades SET state = $1, updated_at = $4,
                    result_code = CASE WHEN $12 THEN result_code ELSE $2 END,
                    result_msg = CASE WHEN $12 THEN result_msg ELSE $3 END,
                    percent = CASE WHEN $5 IS NULL THEN percent ELSE NULL END,
                    released_at = COALESCE($5, released_at),
                    attempts = attempts + CASE WHEN $5 IS NULL THEN 0 ELSE 1 END,
                    pushes = pushes + $10, reason = $11
             WHERE campaign_id = $6 AND product_id = $7
               AND device_name IN ",
            text_array!("$8"),
            " AND state IN ",
            text_array!("$9"),
            " RETURNING device_name"
        );
        let moved: Vec<String> = sqlx::query_scalar(MOVE)
            .bind(change.to.as_str())
            .bind(change.result_code.map(i64::from))
            .bind(change.result_msg)
            .bind(now_ms())
            .bind(change.released_at.map(Timestamp::as_ms))
            .bind(campaign_id)
            .bind(product.as_str())
            .bind(&names)
            .bind(&from)
            .bind(i64::from(change.count_push))
            .bind(change.reason.map(Reason::as_str))
            .bind(change.keep_result)
            .fetch_all(&mut *tx)
            .await?;
        let moved_json = serde_json::to_string(&moved).map_err(corrupt)?;
        const LOG: &str = concat!(
            "INSERT INTO upgrade_events (",
            event_columns!(),
            ") SELECT campaign_id, product_id, device_name, updated_at, state, percent, result_code, result_msg, reason
             FROM upgrades WHERE campaign_id = $1 AND product_id = $2 AND device_name IN ",
            text_array!("$3")
        );
        sqlx::query(LOG)
            .bind(campaign_id)
            .bind(product.as_str())
            .bind(&moved_json)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        moved
            .into_iter()
            .map(|m| DeviceName::parse(m).map_err(corrupt))
            .collect()
    }

    /// The names of the product's devices that are online now.
    pub async fn online_devices(
        &self,
        product: &ProductId,
    ) -> Result<std::collections::HashSet<DeviceName>> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM devices WHERE product_id = $1 AND online")
                .bind(product.as_str())
                .fetch_all(&self.pool)
                .await?;
        names
            .into_iter()
            .map(|n| DeviceName::parse(n).map_err(corrupt))
            .collect()
    }

    /// The device's upgrade history, newest first.
    pub async fn device_events(
        &self,
        product: &ProductId,
        device: &DeviceName,
        limit: i64,
    ) -> Result<Vec<UpgradeEvent>> {
        let rows = sqlx::query(
            "SELECT campaign_id, device_name, at, state, percent, result_code, result_msg, reason FROM upgrade_events
             WHERE product_id = $1 AND device_name = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(product.as_str())
        .bind(device.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(UpgradeEvent {
                    campaign_id: r.try_get("campaign_id")?,
                    device: DeviceName::parse(r.try_get::<String, _>("device_name")?)
                        .map_err(corrupt)?,
                    at: Timestamp::from(r.try_get::<i64, _>("at")?),
                    state: UpgradeState::parse(&state)
                        .ok_or_else(|| corrupt(format!("event state {state:?}")))?,
                    percent: r
                        .try_get::<Option<i64>, _>("percent")?
                        .map(|p| p.clamp(0, 100) as u8),
                    result_code: r
                        .try_get::<Option<i64>, _>("result_code")?
                        .map(|c| c as i32),
                    result_msg: r.try_get("result_msg")?,
                    reason: parse_reason(r.try_get("reason")?)?,
                })
            })
            .collect()
    }
}

/// Cancels the device's live upgrade of `module` in any other campaign.
async fn supersede(
    tx: &mut Transaction<'static, Db>,
    campaign_id: i64,
    product: &ProductId,
    device: &DeviceName,
    module: &Module,
) -> Result<()> {
    const SQL: &str = live_states!(
        "SELECT campaign_id FROM upgrades WHERE product_id = $1 AND device_name = $2 AND module = $3 AND campaign_id <> $4 AND state IN "
    );
    let other: Option<i64> = sqlx::query_scalar(SQL)
        .bind(product.as_str())
        .bind(device.as_str())
        .bind(module.as_str())
        .bind(campaign_id)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(other) = other {
        sqlx::query("UPDATE upgrades SET state = 'canceled', reason = 'canceled', result_msg = $1, updated_at = $2 WHERE campaign_id = $3 AND product_id = $4 AND device_name = $5")
            .bind(format!("superseded by campaign #{campaign_id}"))
            .bind(now_ms())
            .bind(other)
            .bind(product.as_str())
            .bind(device.as_str())
            .execute(&mut **tx)
            .await?;
        log_event(tx, other, product, device).await?;
    }
    Ok(())
}
